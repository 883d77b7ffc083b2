"""The files of the output folder an item owns: its video and its sidecar, set aside under a
versioned name when a new version of the item takes their place, brought back when the manifest
asks for the old version again, and checked on a rerun."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from reelbatch.jobs.names import file_stem
from reelbatch.jobs.store import BatchMeta, ItemRecord

VIDEO, SIDECAR = ".mp4", ".json"
HASH_CHUNK = 1 << 20


def main_name(rec: ItemRecord) -> str:
    return file_stem(rec.item_id) + VIDEO


def versioned_name(rec: ItemRecord) -> str:
    """``<stem>.v<content key>.mp4``: where a set-aside version's video lives."""
    return f"{file_stem(rec.item_id)}.v{rec.item.content_key[:10]}{VIDEO}"


def _move(folder: Path, src: str, dst: str) -> bool:
    """Rename video and sidecar from ``src`` to ``dst`` (never over an existing file)."""
    if not (folder / src).is_file() or (folder / dst).exists():
        return False
    os.rename(folder / src, folder / dst)
    old_side, new_side = folder / Path(src).with_suffix(SIDECAR), folder / Path(dst).with_suffix(SIDECAR)
    if old_side.is_file() and not new_side.exists():
        os.rename(old_side, new_side)
    return True


def set_aside(meta: BatchMeta, rec: ItemRecord) -> str | None:
    """Move a paid version's files to its versioned name; the file name it now has."""
    folder, versioned = Path(meta.output), versioned_name(rec)
    if rec.file and _move(folder, rec.file, versioned):
        return versioned
    return rec.file


def rename(meta: BatchMeta, rec: ItemRecord, item_id: str) -> str | None:
    """Move an item's files to the names of its new id (the same content under another id)."""
    new = file_stem(item_id) + VIDEO
    if rec.file and rec.file != new and _move(Path(meta.output), rec.file, new):
        return new
    return rec.file


def restore(meta: BatchMeta, rec: ItemRecord) -> str | None:
    """Bring a set-aside version's files back under the item's own name (when it is free)."""
    folder, main = Path(meta.output), main_name(rec)
    if rec.file and rec.file != main and _move(folder, rec.file, main):
        return main
    return rec.file


def file_problem(meta: BatchMeta, rec: ItemRecord, verify: bool = False) -> str | None:
    """Why a succeeded item's video is not what was recorded (None when it is): missing, another
    size, or (with ``verify``) another sha256."""
    path = Path(meta.output) / (rec.file or main_name(rec))
    try:
        size = path.stat().st_size
    except OSError:
        return f"{path.name} is missing"
    if rec.bytes is not None and size != rec.bytes:
        return f"{path.name} has {size} bytes, {rec.bytes} were downloaded"
    if verify and rec.sha256 and _sha256(path) != rec.sha256:
        return f"{path.name} no longer has the sha256 it was downloaded with"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()

"""The report's input thumbnails: each item's input image, or the first frame of its input video.

A web image is linked as it is (the browser loads it lazily, only on the page shown); a local image
is linked relative to the page; a local video's first frame is extracted once per file into
``posters/inputs/``. Inline data and web videos get no thumbnail (nothing to show without
downloading them).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import quote

from reelbatch.jobs.errors import StorageError
from reelbatch.jobs.store import BatchMeta, ItemRecord
from reelbatch.worker.storage import poster_frame

INPUTS = "inputs"
WEB = ("https://", "http://")


def relative_url(path: Path | None, page_dir: Path) -> str | None:
    """A file's URL relative to the page (one rule for every path the report links)."""
    return None if path is None else quote(Path(os.path.relpath(path, page_dir)).as_posix())


def input_of(rec: ItemRecord) -> tuple[str, bool] | None:
    """(the input's location, whether it is a video), the first input the item has."""
    params = rec.item.params
    image = params.start_image or (params.images[0] if params.images else None) or \
        (params.elements[0].frontal_image if params.elements else None)
    if image:
        return image, False
    return (params.video, True) if params.video else None


def _local(where: str, meta: BatchMeta) -> Path | None:
    base = Path(meta.manifest).parent if meta.manifest else Path.cwd()
    path = (base / where).resolve()
    return path if path.is_file() else None


def _frame(video: Path, folder: Path) -> Path | None:
    out = folder / f"{hashlib.sha256(str(video).encode()).hexdigest()[:16]}.jpg"
    if out.exists() and out.stat().st_mtime >= video.stat().st_mtime:
        return out
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return poster_frame(video, out)
    except StorageError:
        return None


def thumb_url(where: str, video: bool, meta: BatchMeta, folder: Path, page_dir: Path) -> str | None:
    if where.startswith(WEB):
        return None if video else where
    if where.startswith("data:"):
        return None
    path = _local(where, meta)
    if path is None:
        return None
    return relative_url(_frame(path, folder) if video else path, page_dir)


def input_thumbs(meta: BatchMeta, records: list[ItemRecord], folder: Path, page_dir: Path) -> dict[str, str]:
    """item id -> its thumbnail's URL, each distinct input looked at once."""
    seen: dict[tuple[str, bool], str | None] = {}
    found: dict[str, str] = {}
    for rec in records:
        source = input_of(rec)
        if source is None:
            continue
        if source not in seen:
            seen[source] = thumb_url(*source, meta, folder, page_dir)
        thumb = seen[source]
        if thumb:
            found[rec.item_id] = thumb
    return found

"""``items_from`` as a folder or a glob of media files (``images/``, ``images/*.png``): one row per
file, sorted by path, hidden files skipped, only the media the model takes (videos for a model that
takes a video, else images in its formats). A row has the columns ``file`` (the file's path) and
``name`` (its stem); the item id is the name, and ``{file}`` and ``{name}`` fill placeholders in
``defaults:`` as any column does."""

from __future__ import annotations

import glob
from pathlib import Path

from reelbatch.jobs import inputs
from reelbatch.jobs.errors import ManifestError

GLOB_CHARS = frozenset("*?[")
VIDEO_SUFFIXES = frozenset({".mp4", ".mov"})


def is_file_set(ref: str, base: Path) -> bool:
    """A folder or a glob, not a CSV or JSON-lines file."""
    if any(c in ref for c in GLOB_CHARS):
        return True
    try:
        return inputs.local_path(ref, base).is_dir()
    except (ManifestError, OSError):
        return False


def suffixes_for(takes: tuple[str, ...], image_formats: tuple[str, ...]) -> frozenset[str]:
    if "video" in takes:
        return VIDEO_SUFFIXES
    return frozenset(f".{ext}" for ext, fmt in inputs.IMAGE_EXTENSIONS.items() if fmt in image_formats)


def _candidates(ref: str, base: Path) -> list[Path]:
    path = inputs.local_path(ref, base)
    if path.is_dir():
        return list(path.iterdir())
    return [Path(p) for p in glob.glob(str(path), recursive=True)]   # `*` skips hidden names


def media_files(ref: str, base: Path, suffixes: frozenset[str]) -> list[Path]:
    """The matching files, sorted; an empty match is one line."""
    found = sorted(p for p in _candidates(ref, base)
                   if not p.name.startswith(".") and p.suffix.lower() in suffixes and p.is_file())
    if not found:
        kinds = ", ".join(sorted(suffixes))
        raise ManifestError(f"{ref!r} matches no files ({kinds}); expected a folder or a glob of "
                            "the model's inputs, or a .csv or .jsonl file")
    return found


def file_row(path: Path) -> dict[str, str]:
    return {"file": str(path), "name": path.stem}

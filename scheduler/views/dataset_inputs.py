"""A dataset's local inputs: each distinct file (by content) placed once in ``inputs/`` and named
in the metadata by a ``<column>_file_name`` path relative to the folder, which ``datasets`` loads
as a file. Remote inputs stay URLs: in ``<column>`` when every value of the column is remote, in
``<column>_url`` beside ``<column>_file_name`` when a batch mixes both (one name per column, or
``datasets`` would merge them)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from reelbatch.jobs.content import file_sha256
from reelbatch.jobs.inputs import is_url

INPUTS = "inputs"
INPUT_COLUMNS = ("start_image", "end_image", "input_video")   # `video` is renamed input_video
Row = dict[str, Any]


class InputFiles:
    """The distinct local inputs of a dataset: one name under ``inputs/`` per content; a name taken
    by other content gets a short hash (``ox-1a2b3c4d.png``)."""

    def __init__(self) -> None:
        self.by_path: dict[str, str | None] = {}
        self.by_digest: dict[str, str] = {}
        self.sources: dict[str, Path] = {}      # relative name -> the file to place
        self.missing: list[str] = []

    def name(self, ref: str) -> str | None:
        if ref not in self.by_path:
            self.by_path[ref] = self._add(Path(ref))
        return self.by_path[ref]

    def _add(self, path: Path) -> str | None:
        try:
            digest = file_sha256(path)
        except OSError:
            self.missing.append(str(path))
            return None
        if digest not in self.by_digest:
            name = f"{INPUTS}/{path.name}"
            if name in self.sources:
                name = f"{INPUTS}/{path.stem}-{digest[:8]}{path.suffix}"
            self.by_digest[digest], self.sources[name] = name, path
        return self.by_digest[digest]

    def place(self, folder: Path, place: Callable[[Path, Path], bool]) -> int:
        """Link or copy every input into ``folder/inputs``; how many were hard links."""
        if not self.sources:
            return 0
        (folder / INPUTS).mkdir()
        return sum(place(src, folder / name) for name, src in self.sources.items())


def _renamed(row: Row, column: str, local: bool, remote: bool, files: InputFiles) -> Row:
    out: Row = {}
    for key, value in row.items():
        if key != column:
            out[key] = value
            continue
        is_remote = isinstance(value, str) and is_url(value)
        if local:
            out[f"{column}_file_name"] = files.name(value) if value and not is_remote else None
        if remote:
            out[f"{column}_url" if local else column] = value if is_remote else None
    return out


def with_inputs(rows: list[Row], files: InputFiles) -> list[Row]:
    """The rows with each local input column turned into ``<column>_file_name``."""
    for column in INPUT_COLUMNS:
        values = [str(row[column]) for row in rows if isinstance(row.get(column), str)]
        local = any(not is_url(v) for v in values)
        if local:
            rows = [_renamed(row, column, True, any(is_url(v) for v in values), files) for row in rows]
    return rows

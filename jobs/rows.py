"""Items from ``items_from``: the rows of a CSV or JSON-lines file, or one row per media file of a
folder or a glob (jobs/file_rows.py). Each row is a Source: its values, where each comes from, and
its columns as placeholders."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reelbatch.jobs import file_rows, inputs
from reelbatch.jobs.catalog import ModelSpec
from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.manifest import Manifest, ParamSpec, safe_id, validation_error
from reelbatch.jobs.manifest_yaml import YamlPath, dotted, read_text
from reelbatch.jobs.settings import Settings

Where = tuple[str, int | None, str]  # file, line, field
PARAM_NAMES = frozenset(ParamSpec.model_fields)
ROW_FORMATS = (".csv", ".jsonl", ".ndjson")
SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Source:
    """One item before expansion: an entry of ``items`` or a row of ``items_from``."""

    id: str
    values: dict[str, Any]
    origins: dict[str, Where]
    where: Where
    vars: dict[str, tuple[Any, ...]]
    from_row: bool = False


def at(exc: ManifestError, where: Where) -> ManifestError:
    """``exc`` placed at ``where``; a field named by ``exc`` is appended to the location's."""
    file, line, field = where
    return ManifestError(exc.message, file, line, ".".join(p for p in (field, exc.field) if p))


def _csv_rows(text: str, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        _check_header(reader.fieldnames, path)
        for row in reader:
            _check_width(row, reader, path)
            if row.get("images"):
                row["images"] = [part.strip() for part in row["images"].split("|")]
            yield reader.line_num, row
    except csv.Error as exc:   # the row starts after the last one read whole
        raise ManifestError(f"not readable as CSV: {exc} (an unclosed quote?)", str(path),
                            reader.line_num + 1, "row") from None


def _check_header(columns: Sequence[str] | None, path: Path) -> None:
    if not columns:
        raise ManifestError("the file is empty; expected a header line of column names, then rows",
                            str(path), 1, "header")
    if len(columns) == 1 and (sep := next((d for d in ";\t|" if d in columns[0]), None)):
        raise ManifestError(f"one column {columns[0]!r} found: the file looks separated by "
                            f"{sep!r}; expected commas", str(path), 1, "header")


def _check_width(row: dict[str | None, Any], reader: csv.DictReader[str], path: Path) -> None:
    """Each row has exactly the header's columns."""
    columns = len(reader.fieldnames or ())
    if None in row:
        raise ManifestError(f"more values than the header's {columns} columns", str(path),
                            reader.line_num, "row")
    if any(value is None for value in row.values()):
        found = sum(value is not None for value in row.values())
        raise ManifestError(f"{found} values; the header has {columns} columns", str(path),
                            reader.line_num, "row")


def _jsonl_rows(text: str, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"invalid JSON: {exc.msg}", str(path), line, "row") from None
        if not isinstance(row, dict):
            raise ManifestError("a row must be a JSON object", str(path), line, "row")
        _check_text(row, path, line)
        yield line, row


def _check_text(value: Any, path: Path, line: int, field: str = "row") -> None:
    """JSON may escape half a UTF-16 pair (``\\ud800``): that is no text, and nothing could send it."""
    if isinstance(value, dict):
        for key, inner in value.items():
            _check_text(key, path, line, field)
            _check_text(inner, path, line, str(key))
    elif isinstance(value, list):
        for inner in value:
            _check_text(inner, path, line, field)
    elif isinstance(value, str) and (bad := SURROGATE.search(value)):
        raise ManifestError(f"a lone surrogate escape \\u{ord(bad[0]):04x} is not text; expected "
                            "valid Unicode (a pair, or the character itself)", str(path), line, field)


def _rows_file(manifest: Manifest) -> Path:
    try:
        path = inputs.local_path(manifest.items_from or "", manifest.folder)
        found = path.is_file()
    except (ManifestError, OSError):
        raise manifest.error(f"{manifest.items_from!r} is not a valid path", ("items_from",)) from None
    if path.suffix.lower() not in ROW_FORMATS:
        raise manifest.error(f"{path.name}: expected a .csv or .jsonl file", ("items_from",))
    if not found:
        raise manifest.error(f"file not found: {path}", ("items_from",))
    return path


def _row_params(row: dict[str, Any], path: Path, line: int) -> dict[str, Any]:
    given = {k: v for k, v in row.items() if k in PARAM_NAMES and v not in (None, "")}
    try:
        return ParamSpec.model_validate(given).given()
    except ValidationError as exc:
        def locate(loc: YamlPath, message: str) -> ManifestError:
            return ManifestError(message, str(path), line, dotted(loc))
        raise validation_error(exc, locate) from None


def _row_id(row: dict[str, Any], path: Path, line: int, index: int) -> str:
    try:
        return safe_id(str(row.get("id") or f"{path.stem}-{index}"))
    except ValueError as exc:
        raise ManifestError(str(exc), str(path), line, "id") from None


def row_sources(manifest: Manifest, settings: Settings, defaults: dict[str, Any],
                 origins: dict[str, Where]) -> Iterator[Source]:
    path = _rows_file(manifest)
    text = read_text(path, settings.max_items_from_bytes, "max_items_from_bytes")
    rows = _jsonl_rows(text, path) if path.suffix.lower() != ".csv" else _csv_rows(text, path)
    index = 0
    for index, (line, row) in enumerate(rows, start=1):
        params = _row_params(row, path, line)
        here = {name: (str(path), line, name) for name in params}
        scalars = {k: (v,) for k, v in row.items() if isinstance(v, str | int | float | bool)}
        yield Source(_row_id(row, path, line, index), {**defaults, **params}, {**origins, **here},
                     (str(path), line, ""), scalars, from_row=True)
    if index == 0:
        raise ManifestError("no rows; expected at least one item below the header", str(path),
                            None, "items_from")


def file_sources(manifest: Manifest, spec: ModelSpec, defaults: dict[str, Any],
                  origins: dict[str, Where]) -> Iterator[Source]:
    """One item per media file of a folder or a glob (jobs/file_rows.py)."""
    ref = manifest.items_from or ""
    try:
        files = file_rows.media_files(ref, manifest.folder,
                                      file_rows.suffixes_for(spec.takes, spec.image_formats))
    except ManifestError as exc:
        raise manifest.error(exc.message, ("items_from",)) from None
    for path in files:
        row = file_rows.file_row(path)
        try:
            item = safe_id(row["name"])
        except ValueError as exc:
            raise ManifestError(f"cannot be an item id: {exc}", str(path), None, "name") from None
        yield Source(item, dict(defaults), dict(origins), (str(path), None, ""),
                     {k: (v,) for k, v in row.items()}, from_row=True)

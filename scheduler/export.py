"""`reelbatch export`: the results index, written from the state store.

Layouts:
- ``index`` (default): one line or row per item with the fields of ``worker.results.line``, as
  ``results.jsonl`` or ``results.csv`` in the batch's output folder (or ``--out``). In CSV, values
  that are not scalars (``params``) are one JSON-encoded column; empty cells are nulls.
- ``dataset``: ``metadata.jsonl`` (or ``metadata.csv``) beside the videos, as Hugging Face
  ``videofolder`` loaders expect: succeeded items only, ``file_name`` relative to the folder, then
  ``prompt``, ``item_id`` and every other parameter as its own column (the same columns on every row).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from reelbatch.jobs.files import atomic_write
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import BatchMeta, ItemRecord, Store
from reelbatch.scheduler.broker import connect_batch
from reelbatch.worker.results import line, write_index

FORMATS = ("jsonl", "csv")
Row = dict[str, Any]


def load_batch(store: Store, batch: str) -> tuple[BatchMeta, list[ItemRecord]]:
    """The batch's settings and every item, sorted by id (the batch is known)."""
    return store.batch(batch), sorted(store.items(batch), key=lambda rec: rec.item_id)


def index_rows(meta: BatchMeta, records: Iterable[ItemRecord]) -> list[Row]:
    return [line(meta, rec) for rec in records]


def dataset_rows(records: Iterable[ItemRecord]) -> list[Row]:
    """Succeeded items with a file, as dataset rows sharing one set of parameter columns."""
    done = [rec for rec in records if rec.state is S.SUCCEEDED and rec.file]
    params = [rec.item.params.model_dump(mode="json", exclude_defaults=True) for rec in done]
    columns = sorted({key for p in params for key in p} - {"prompt"})
    return [{"file_name": rec.file, "prompt": rec.item.params.prompt, "item_id": rec.item_id,
             **{key: p.get(key) for key in columns}} for rec, p in zip(done, params, strict=True)]


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return "" if value is None else value


def _atomic_write(path: Path, write: Callable[[Any], None]) -> Path:
    with atomic_write(path) as fh:
        write(fh)
    return path


def write_jsonl(rows: list[Row], path: Path) -> Path:
    return _atomic_write(path, lambda fh: fh.writelines(json.dumps(row) + "\n" for row in rows))


def write_csv(rows: list[Row], path: Path, columns: list[str]) -> Path:
    def write(fh) -> None:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows({key: _cell(row.get(key)) for key in columns} for row in rows)

    return _atomic_write(path, write)


def write_rows(rows: list[Row], path: Path, fmt: str, columns: list[str]) -> Path:
    return write_csv(rows, path, columns) if fmt == "csv" else write_jsonl(rows, path)


def export_index(meta: BatchMeta, records: list[ItemRecord], fmt: str, out: Path | None) -> Path:
    path = out or Path(meta.output) / f"results.{fmt}"
    if fmt == "jsonl":
        return write_index(meta, records, path)
    rows = index_rows(meta, records)
    return write_csv(rows, path, list(rows[0]) if rows else [])


def export_dataset(meta: BatchMeta, records: list[ItemRecord], fmt: str) -> tuple[Path, int]:
    """metadata.<fmt> beside the videos; the other format's file goes (loaders refuse two)."""
    rows = dataset_rows(records)
    columns = list(rows[0]) if rows else ["file_name", "prompt", "item_id"]
    folder = Path(meta.output)
    for other in FORMATS:
        if other != fmt:
            (folder / f"metadata.{other}").unlink(missing_ok=True)
    return write_rows(rows, folder / f"metadata.{fmt}", fmt, columns), len(rows)


def export_batch(settings: Settings, batch: str, fmt: str, layout: str, out: Path | None) -> int:
    if layout == "dataset" and out is not None:
        raise click.UsageError("--out does not go with --layout dataset: metadata.<format> is "
                               "written beside the videos")
    meta, records = load_batch(connect_batch(settings, batch).store, batch)
    if layout == "dataset":
        path, count = export_dataset(meta, records, fmt)
        click.echo(f"{batch}: {count} succeeded items of {len(records)} -> {path}")
    else:
        path = export_index(meta, records, fmt, out)
        click.echo(f"{batch}: {len(records)} items -> {path}")
    return 0

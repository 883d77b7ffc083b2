"""`reelbatch export`: the results index, or a dataset folder, written from the state store.

Layouts:
- ``index`` (default): one line or row per item with the fields of ``worker.results.line``, as
  ``results.jsonl`` or ``results.csv`` in the batch's output folder, at ``--out FILE``, or on
  standard output (``--out -``). In CSV, values that are not scalars (``params``) are one
  JSON-encoded column, empty cells are nulls, and a text cell that a spreadsheet would run as a
  formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return) gets a leading ``'``
  (OWASP's CSV injection advice). Text is UTF-8, never ``\\u`` escapes.
- ``dataset``: a clean folder (``--out DIR``, default ``<output>-dataset`` beside the output
  folder) with the succeeded videos (hard links where the file system allows, copies otherwise),
  ``metadata.jsonl`` (or ``.csv``) whose ``file_name`` names each video, and a dataset card
  ``README.md``: what Hugging Face ``datasets.load_dataset(DIR)`` loads as a video dataset. No
  sidecars, report or results files. Its text is kept exactly (no formula defusing: it is training
  data for loaders). The folder is built aside and swapped in whole; an existing
  folder is replaced only when it holds nothing but a previous export.

A file is written atomically and never through a symlink or over a device; a destination that
cannot be written is one line on stderr and exit 2.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import stat
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import click

from reelbatch.jobs.files import NotARegularFile, atomic_write, file_mode
from reelbatch.jobs.money import Spend
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import BatchMeta, ItemRecord, Store
from reelbatch.scheduler.views.dataset_inputs import INPUTS, InputFiles, with_inputs
from reelbatch.worker.results import line

STDOUT = "-"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
VIDEO_SUFFIXES = (".mp4", ".webm")
CARD = "README.md"
CARD_MARK = "<!-- written by reelbatch export --layout dataset -->"
RENAMED = {"video": "input_video"}   # `video` is the dataset's own column of the videos
Row = dict[str, Any]
Writer = Callable[[IO[str]], object]


def load_batch(store: Store, batch: str) -> tuple[BatchMeta, list[ItemRecord]]:
    """The batch's settings and every item, sorted by id (the batch is known)."""
    meta = store.batch(batch)
    assert meta is not None, batch   # connect_batch refused an unknown batch
    return meta, sorted(store.items(batch), key=lambda rec: rec.item_id)


def index_rows(meta: BatchMeta, records: Iterable[ItemRecord]) -> list[Row]:
    return [line(meta, rec) for rec in records]


# --- writing a file, or standard output ------------------------------------------------------

@contextmanager
def destination(path: Path | str, explicit: bool = True) -> Iterator[None]:
    """Turn what stops a write into one line and exit 2: a folder that is missing (for a path the
    user gave) or read-only, a symlink or device in the way."""
    path = Path(path)
    if explicit and not path.parent.is_dir():
        raise click.UsageError(f"cannot write {path}: the folder {path.parent} does not exist")
    try:
        yield
    except NotARegularFile as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        raise click.UsageError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None


class PipeClosed(Exception):
    """Standard output was closed by its reader before the export was written."""


def write_out(target: Path | str, write: Writer) -> Path | str:
    """``write`` into ``target`` atomically, or to standard output for ``-`` (as UTF-8)."""
    if str(target) == STDOUT:
        stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
        try:
            write(stream)
            stream.flush()
        except BrokenPipeError:     # `export --out - | head -1`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # no error at exit
            raise PipeClosed() from None
        stream.detach()
        return STDOUT
    with atomic_write(Path(target)) as fh:
        write(fh)
    return Path(target)


def safe_cell(value: Any, defuse: bool = True) -> Any:
    """A CSV cell: JSON for lists and dicts, empty for None, formula-looking text defused."""
    if isinstance(value, (dict, list, tuple)):
        value = json.dumps(value, ensure_ascii=False)
    if value is None:
        return ""
    if defuse and isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def jsonl_writer(rows: list[Row]) -> Writer:
    return lambda fh: fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def csv_writer(rows: list[Row], columns: list[str], defuse: bool = True) -> Writer:
    def write(fh: IO[str]) -> None:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows({key: safe_cell(row.get(key), defuse) for key in columns} for row in rows)

    return write


def rows_writer(rows: list[Row], fmt: str, columns: list[str] | None = None, defuse: bool = True) -> Writer:
    columns = columns or (list(rows[0]) if rows else [])
    return csv_writer(rows, columns, defuse) if fmt == "csv" else jsonl_writer(rows)


def export_index(meta: BatchMeta, records: list[ItemRecord], fmt: str, out: Path | str | None) -> Path | str:
    target = out or Path(meta.output) / f"results.{fmt}"
    with destination(target, explicit=out is not None and str(out) != STDOUT):
        return write_out(target, rows_writer(index_rows(meta, records), fmt))


# --- the dataset folder ----------------------------------------------------------------------

@dataclass(frozen=True)
class Video:
    """A succeeded item's video as it is on disk, checked against what was downloaded."""

    rec: ItemRecord
    path: Path


def videos_present(meta: BatchMeta, records: Iterable[ItemRecord]) -> tuple[list[Video], list[str]]:
    """Succeeded items whose video is a regular file in the output folder with the recorded size;
    and the ids of those whose video is not."""
    folder, found, missing = Path(meta.output), [], []
    for rec in records:
        if rec.state is not S.SUCCEEDED:
            continue
        path = folder / Path(rec.file or "").name
        try:
            info = os.lstat(path)
        except OSError:
            info = None
        if rec.file and info and stat.S_ISREG(info.st_mode) and rec.bytes in (None, info.st_size):
            found.append(Video(rec, path))
        else:
            missing.append(rec.item_id)
    return found, missing


def _column(value: Any) -> Any:
    """Scalars and lists of text stay as they are; anything else is one JSON text column."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return json.dumps(value, ensure_ascii=False)


def dataset_rows(videos: list[Video]) -> list[Row]:
    """One row per video, sharing one set of columns: file_name first (what loaders look for)."""
    params = [{RENAMED.get(k, k): _column(v) for k, v in
               v.rec.item.params.model_dump(mode="json", exclude_defaults=True).items()} for v in videos]
    columns = sorted({key for p in params for key in p} - {"prompt"})
    rows = []
    for video, p in zip(videos, params, strict=True):
        rec = video.rec
        rows.append({"file_name": video.path.name, "item_id": rec.item_id, "source_id": rec.item.source_id,
                     "sample": rec.item.sample, "prompt": rec.item.params.prompt,
                     **{key: p.get(key) for key in columns},
                     "provider": rec.item.provider, "model": rec.item.model, "generation_id": rec.generation_id,
                     "sha256": rec.sha256, "bytes": rec.bytes, "cost_usd": rec.cost_usd,
                     "cost_source": rec.cost_source})
    return rows


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return name
    return "100K<n<1M"


def _makers(meta: BatchMeta, rows: list[Row]) -> str:
    """The providers that made the videos (several in a batch over several), most videos first."""
    return most_first([str(r.get("provider") or meta.provider) for r in rows], meta.provider)


def most_first(providers: list[str], default: str) -> str:
    """``fal, oxen``: each provider named once, the one with the most items first."""
    return ", ".join(p for p, _ in Counter(providers).most_common()) or default


def dataset_card(meta: BatchMeta, rows: list[Row], fmt: str, spend: Spend) -> str:
    """README.md: YAML front matter the Hub reads, then what the folder holds and how to load it."""
    task = meta.model.rsplit("/", 1)[-1]
    front = ["---", f"pretty_name: {json.dumps(meta.name)}", "tags:", "- video", "- synthetic", "- reelbatch"]
    if task in ("image-to-video", "text-to-video", "video-to-video"):
        front += ["task_categories:", f"- {task}"]
    front += ["size_categories:", f"- {_size_category(len(rows))}", "---"]
    columns = list(rows[0]) if rows else ["file_name"]
    return "\n".join([*front, CARD_MARK, "", f"# {meta.name}", "",
                      f"{len(rows)} videos generated by {_makers(meta, rows)} ({meta.model}) with reelbatch, "
                      f"exported {datetime.now().astimezone().isoformat(timespec='seconds')}.", "",
                      "## Files", "", f"- `metadata.{fmt}`: one row per video; `file_name` is the video beside it.",
                      "- the videos (MP4), named from their item ids",
                      f"- `{INPUTS}/`: the local inputs (start and end images, input videos), each once; "
                      "a `*_file_name` column names one relative to this folder, remote inputs stay URLs", "",
                      "## Columns", "", ", ".join(f"`{c}`" for c in columns), "",
                      "`source_id` groups the variants of one manifest item (matrix values, `sample` for "
                      "repeats). `cost_usd` is what the generation cost as the provider charged it, or as "
                      "estimated from the catalogue's price when it reported none (`cost_source`).", "",
                      f"The batch's spend: {spend.label()}.", "",
                      "## Loading", "", "```python", "from datasets import load_dataset", "",
                      'ds = load_dataset("path/to/this/folder")   # a `video` column and the columns above',
                      "```", ""])


def _previous_export(folder: Path) -> bool:
    """Only a card of ours, metadata and videos: a folder an earlier export wrote."""
    names = os.listdir(folder)
    if not names:
        return True
    card = folder / CARD
    if not card.is_file() or CARD_MARK not in card.read_text(encoding="utf-8", errors="replace"):
        return False
    return all((folder / name).is_file() and (name in (CARD, "metadata.jsonl", "metadata.csv") or
                                              name.endswith(VIDEO_SUFFIXES))
               or (name == INPUTS and _only_files(folder / name)) for name in names)


def _only_files(folder: Path) -> bool:
    return folder.is_dir() and not folder.is_symlink() and all(p.is_file() for p in folder.iterdir())


def check_dataset_folder(folder: Path) -> None:
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise click.UsageError(f"refusing to replace {folder}: it is not a folder")
    if folder.exists() and not _previous_export(folder):
        raise click.UsageError(f"{folder} is not empty and not an earlier dataset export: choose a new folder")


def place(src: Path, dst: Path) -> bool:
    """A hard link to ``src`` at ``dst`` (True), or a copy where links cannot be made (False)."""
    try:
        os.link(src, dst)
        return True
    except OSError:
        shutil.copy2(src, dst)
        return False


@dataclass(frozen=True)
class DatasetExport:
    folder: Path
    videos: int
    linked: int
    missing: list[str]
    inputs: int = 0
    missing_inputs: tuple[str, ...] = ()


def export_dataset(meta: BatchMeta, records: list[ItemRecord], spend: Spend, folder: Path,
                   fmt: str = "jsonl") -> DatasetExport:
    """Build the folder aside, then swap it in whole (an earlier export is replaced); the card states
    ``spend``, the batch's (the store's counters)."""
    folder = folder.absolute()
    check_dataset_folder(folder)
    videos, missing = videos_present(meta, records)
    files = InputFiles()
    rows = with_inputs(dataset_rows(videos), files)
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".part", dir=folder.parent))
    try:
        linked = sum(place(v.path, building / v.path.name) for v in videos)
        files.place(building, place)
        columns = list(rows[0]) if rows else ["file_name", "item_id", "prompt"]
        # training data keeps its text exactly: no spreadsheet defusing in the dataset's metadata
        write_out(building / f"metadata.{fmt}", rows_writer(rows, fmt, columns, defuse=False))
        write_out(building / CARD, lambda fh: fh.write(dataset_card(meta, rows, fmt, spend)))
        os.chmod(building, _dir_mode())
        _swap(building, folder)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return DatasetExport(folder, len(videos), linked, missing, len(files.sources), tuple(files.missing))


def _dir_mode() -> int:
    """The user's umask applied to a folder: searchable wherever it is readable (0755 under 022)."""
    mode = file_mode()
    return mode | (mode & 0o444) >> 2


def _swap(new: Path, folder: Path) -> None:
    if not folder.exists():
        os.rename(new, folder)
        return
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    os.rename(folder, old)
    os.rename(new, folder)
    shutil.rmtree(old, ignore_errors=True)

"""An output folder belongs to one batch. A marker file, ``.reelbatch.json``, names the batch that
writes there and the store (data dir or broker) that last registered it; another batch's name
there is refused before anything is submitted. Videos another store made there for this batch
(the same item, the same content key, the file's sha256 the one its ``results.jsonl`` line gives)
are adopted: succeeded, with their generation id, never generated again."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelbatch.jobs.content import file_sha256
from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.files import write_text
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import ItemRecord, Store

MARKER = ".reelbatch.json"
RESULTS = "results.jsonl"
ADOPTABLE = frozenset({S.PENDING, S.FAILED, S.CANCELLED})   # nothing of ours is running for it


@dataclass(frozen=True)
class Owner:
    batch: str
    store: str | None


def owner(folder: Path) -> Owner | None:
    """The batch the folder belongs to (None for a folder no batch has claimed)."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        return Owner(str(data["batch"]), data.get("store"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_owner(folder: Path, batch: str) -> None:
    """Another batch's folder is refused in one line, saying how to go on."""
    found = owner(folder)
    if found is not None and found.batch != batch:
        raise ManifestError(f"{folder} belongs to batch {found.batch!r} (see {MARKER} there); "
                            f"give {batch!r} its own output folder, or delete {MARKER} to hand "
                            "the folder over", field="output")


def claim(folder: Path, batch: str, store: str) -> None:
    """Record that ``batch`` of ``store`` writes in the folder."""
    if owner(folder) == Owner(batch, store):
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / MARKER, json.dumps({"batch": batch, "store": store}) + "\n")
    except OSError:
        pass   # a folder that cannot be written pauses the batch at its first download


# --- what another store made here -------------------------------------------------------------

def _lines(folder: Path) -> Iterator[dict[str, Any]]:
    try:
        with open(folder / RESULTS, encoding="utf-8") as fh:
            for raw in fh:
                try:
                    row = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(row, dict) and row.get("status") == S.SUCCEEDED.value:
                    yield row
    except (OSError, UnicodeDecodeError):
        return


def _file_ok(folder: Path, row: dict[str, Any]) -> bool:
    name, sha = row.get("file"), row.get("sha256")
    if not isinstance(name, str) or not isinstance(sha, str) or Path(name).name != name:
        return False
    try:
        return file_sha256(folder / name) == sha
    except OSError:
        return False


def _adopted(rec: ItemRecord, row: dict[str, Any]) -> ItemRecord:
    return rec.model_copy(update={
        "state": S.SUCCEEDED, "generation_id": row.get("generation_id"), "file": row["file"],
        "sha256": row["sha256"], "bytes": row.get("bytes"), "video_url": row.get("video_url"),
        "cost_usd": row.get("cost_usd"), "cost_source": row.get("cost_source"),
        "error_kind": None, "error": None, "completed_at": time.time()})


def adopt_made_here(store: Store, batch: str, folder: Path) -> list[str]:
    """Items of ``batch`` not yet made here that the folder's index lists as made (the same content
    key, the file on disk with the listed sha256) become succeeded; their ids."""
    open_ids = {i for state in ADOPTABLE for i in store.item_ids(batch, state)}
    adopted = []
    for row in _lines(folder):
        item_id = row.get("item_id")
        rec = store.item(batch, item_id) if item_id in open_ids else None
        if (rec is None or rec.state not in ADOPTABLE or not row.get("generation_id")
                or rec.item.content_key != row.get("content_key") or not _file_ok(folder, row)):
            continue
        store.remove_item(batch, rec)
        store.restore_item(batch, _adopted(rec, row))
        adopted.append(rec.item_id)
    return adopted

"""The results index: one JSON object per item in ``results.jsonl``, and a sidecar JSON per item."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reelbatch.jobs.files import atomic_write, write_text
from reelbatch.jobs.names import file_stem
from reelbatch.jobs.store import BatchMeta, ItemRecord, Store
from reelbatch.jobs.tuning import INDEX_COST_FACTOR, INDEX_EVERY_S

RESULTS = "results.jsonl"
SIDECAR = ".json"


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


def line(meta: BatchMeta, rec: ItemRecord) -> dict[str, Any]:
    """The item's results line (docs/design.md section 1, output layout)."""
    item = rec.item
    return {
        "item_id": rec.item_id, "status": rec.state.value, "provider": item.provider,
        "model": item.model, "provider_model": item.provider_model,
        "params": item.params.model_dump(mode="json", exclude_defaults=True),
        "generation_id": rec.generation_id, "video_url": rec.video_url, "file": rec.file,
        "sha256": rec.sha256, "bytes": rec.bytes, "attempts": rec.attempts,
        "error_kind": rec.error_kind, "error": rec.error, "cost_usd": rec.cost_usd,
        "cost_source": rec.cost_source,
        "estimated_cost_usd": item.estimated_cost_usd, "content_key": item.content_key,
        "submitted_at": _iso(rec.submitted_at), "completed_at": _iso(rec.completed_at),
    }


def record(store: Store, meta: BatchMeta, rec: ItemRecord | None) -> None:
    """An item reached a terminal state: write its sidecar, and bring results.jsonl up to date
    (at most every INDEX_EVERY_S, or INDEX_COST_FACTOR times the last rewrite, and always once the
    batch has nothing open), so the index has
    exactly one line per item on one machine and in a fleet alike."""
    if rec is None:
        return
    out = Path(meta.output)
    write_text(out / (file_stem(rec.item_id) + SIDECAR), json.dumps(line(meta, rec), indent=2,
                                                                    ensure_ascii=False))
    if store.index_turn(meta.name, INDEX_EVERY_S, INDEX_COST_FACTOR):
        refresh_index(store, meta)


def refresh_index(store: Store, meta: BatchMeta) -> Path:
    """Rewrite results.jsonl from the state store, one writer at a time (the last one to write
    has read the newest states)."""
    with store.index_lock(meta.name):
        started = time.monotonic()
        path = write_index(meta, store.items(meta.name))   # streamed in id order: flat memory
        store.index_took(meta.name, time.monotonic() - started)
        return path


def write_index(meta: BatchMeta, records: Iterable[ItemRecord], path: Path | None = None) -> Path:
    """Rewrite results.jsonl atomically: exactly one line per item, in the order given (the
    store's ``items`` come sorted by id, a chunk at a time, so a large batch is never all in
    memory)."""
    path = path or Path(meta.output) / RESULTS
    with atomic_write(path) as fh:
        for rec in records:
            fh.write(json.dumps(line(meta, rec), ensure_ascii=False) + "\n")
    return path

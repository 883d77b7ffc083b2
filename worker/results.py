"""The results index: one JSON object per item in ``results.jsonl``, and a sidecar JSON per item."""

from __future__ import annotations

import fcntl
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reelbatch.jobs.files import atomic_write, write_text
from reelbatch.jobs.names import file_stem
from reelbatch.jobs.store import BatchMeta, ItemRecord

RESULTS = "results.jsonl"


def file_name(rec: ItemRecord) -> str:
    return file_stem(rec.item_id) + ".mp4"


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


def record(meta: BatchMeta, rec: ItemRecord | None) -> None:
    """Append the item's line to results.jsonl and write its sidecar (called once per terminal
    transition; `reelbatch run` and `export` rewrite the index with exactly one line per item)."""
    if rec is None:
        return
    out = Path(meta.output)
    out.mkdir(parents=True, exist_ok=True)
    data = line(meta, rec)
    write_text(out / (file_stem(rec.item_id) + ".json"), json.dumps(data, indent=2))
    with open(out / RESULTS, "a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(json.dumps(data) + "\n")


def write_index(meta: BatchMeta, records: list[ItemRecord], path: Path | None = None) -> Path:
    """Rewrite results.jsonl atomically: exactly one line per item."""
    path = path or Path(meta.output) / RESULTS
    with atomic_write(path) as fh:
        for rec in sorted(records, key=lambda r: r.item_id):
            fh.write(json.dumps(line(meta, rec)) + "\n")
    return path

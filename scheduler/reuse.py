"""``reuse: [batch names]`` (or ``run --reuse BATCH``): a pending item whose request another batch
already made (the same content key: provider, model, final parameters, sample) takes that batch's
video instead of generating it: a hard link where the file system allows, a copy otherwise, after
checking the source file against its recorded sha256. The item is succeeded at no cost
(``cost_source: reused``) with the other batch's generation id. Without ``reuse`` a batch under a
new name generates anew: a new sample may be what the user wants."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelbatch.jobs.content import file_sha256
from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import BatchMeta, ItemRecord, Store
from reelbatch.worker.outputs import main_name

THROUGH = (S.SUBMITTING, S.QUEUED, S.DOWNLOADING)   # the allowed path from pending to succeeded


@dataclass
class Reused:
    taken: int = 0
    linked: int = 0
    changed: int = 0    # the source video no longer matches its sha256: generated instead


def _sources(store: Store, batch: str, others: list[str]) -> dict[str, tuple[BatchMeta, ItemRecord]]:
    found: dict[str, tuple[BatchMeta, ItemRecord]] = {}
    for other in dict.fromkeys(others):
        meta = store.batch(other)
        if meta is None or other == batch:
            known = ", ".join(b for b in store.batches() if b != batch) or "none"
            raise ManifestError(f"no other batch named {other!r} to reuse; known: {known}", field="reuse")
        for rec in store.items(other, S.SUCCEEDED):
            found.setdefault(rec.item.content_key, (meta, rec))
    return found


def _place(src: Path, dst: Path) -> bool:
    """Link (True) or copy ``src`` to ``dst`` through a temporary name, so ``dst`` is whole or absent."""
    part = dst.with_name(f".{dst.name}.reuse-{os.getpid()}")
    part.unlink(missing_ok=True)
    try:
        os.link(src, part)
        linked = True
    except OSError:
        shutil.copy2(src, part)
        linked = False
    os.replace(part, dst)
    return linked


def _take(store: Store, meta: BatchMeta, rec: ItemRecord, source: tuple[BatchMeta, ItemRecord],
          reused: Reused) -> None:
    other, done = source
    src = Path(other.output) / Path(done.file or "").name
    if not done.file or not src.is_file() or file_sha256(src) != done.sha256:
        reused.changed += 1
        return
    dst = Path(meta.output) / main_name(rec)
    dst.parent.mkdir(parents=True, exist_ok=True)
    reused.linked += _place(src, dst)
    for state in THROUGH:
        store.transition(meta.name, rec.item_id, state)
    known: dict[str, Any] = {"generation_id": done.generation_id, "video_url": done.video_url}
    store.transition(meta.name, rec.item_id, S.SUCCEEDED, file=dst.name, sha256=done.sha256,
                     bytes=dst.stat().st_size, cost_usd=0.0, cost_source="reused",
                     **{k: v for k, v in known.items() if v is not None})
    reused.taken += 1


def reuse_videos(store: Store, batch: str, others: list[str]) -> Reused:
    """Take the videos of ``others`` for this batch's pending items that ask for the same request."""
    reused = Reused()
    if not others:
        return reused
    meta, sources = store.batch(batch), _sources(store, batch, others)
    if meta is None:
        return reused
    for rec in store.items(batch, S.PENDING):
        if rec.item.content_key in sources:
            _take(store, meta, rec, sources[rec.item.content_key], reused)
    return reused


def describe_reuse(reused: Reused) -> str | None:
    if not reused.taken and not reused.changed:
        return None
    text = (f"reused {reused.taken} videos of identical requests from other batches "
            f"({reused.linked} hard links, {reused.taken - reused.linked} copies): not paid again")
    if reused.changed:
        text += f"; {reused.changed} no longer match their sha256 and are generated"
    return text

"""`reelbatch retry`: send failed items (optionally of one error kind) back to pending and to work.
Succeeded items are never touched."""

from __future__ import annotations

from celery import Celery

from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import TransitionRefused
from reelbatch.scheduler.submit import enqueue
from reelbatch.worker.context import WorkerContext


def retry_failed(ctx: WorkerContext, app: Celery, batch: str, kind: str | None = None) -> int:
    """Returns how many items went back to pending."""
    store, moved = ctx.store, 0
    for rec in store.items(batch, S.FAILED):
        if kind and rec.error_kind != kind:
            continue
        try:
            store.transition(batch, rec.item_id, S.PENDING, [S.FAILED], attempts=0,
                             transient_retries=0, error_kind=None, error=None, completed_at=None)
            moved += 1
        except TransitionRefused:
            pass
    if moved:
        store.update_batch(batch, cancelled=False)
        enqueue(ctx, app, batch)
    return moved


def failure_kinds(ctx: WorkerContext, batch: str) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for rec in ctx.store.items(batch, S.FAILED):
        kinds[rec.error_kind or "error"] = kinds.get(rec.error_kind or "error", 0) + 1
    return kinds

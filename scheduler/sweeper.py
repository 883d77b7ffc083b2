"""The sweeper: sends again the task of any item whose task was lost (its worker died), and hands
free slots to waiting items. `reelbatch run` calls it every few seconds; a fleet runs it from
Celery beat."""

from __future__ import annotations

import time

from celery import Celery

from reelbatch.jobs.state import TERMINAL, ItemState as S
from reelbatch.worker.context import WorkerContext
from reelbatch.worker.dispatch import dispatch
from reelbatch.worker.limits import holder
from reelbatch.worker.steps import Next, feed
from reelbatch.scheduler.submit import RESUME, enqueue


def sweep(ctx: WorkerContext, app: Celery, batch: str, now: float | None = None) -> int:
    now = now or time.time()
    store, meta = ctx.store, ctx.store.batch(batch)
    if meta is None:
        return 0
    if meta.start_at and meta.start_at <= now and store.mark_started(batch):
        return enqueue(ctx, app, batch)
    nexts: list[Next] = []
    for item_id in store.overdue(batch, now):
        rec = store.item(batch, item_id)
        if rec is None or rec.state in TERMINAL:
            store.clear_due(batch, item_id)
        elif rec.state is S.PENDING:
            store.clear_due(batch, item_id)
            ctx.slots(meta.provider).release(holder(batch, item_id))
            ctx.slots(meta.provider).wait([holder(batch, item_id)], front=True)
        else:
            nexts.append(Next(RESUME[rec.state], batch, item_id))
    nexts += feed(ctx, meta.provider, meta.max_concurrency)
    return dispatch(app, store, nexts, ctx.settings.max_countdown_s)


SWEEP_LOCK = "rb:sweep:lock"


def sweep_open_batches(ctx: WorkerContext, app: Celery, lock_s: int = 30) -> int:
    """Sweep every batch that still has open items, if no other sweeper is at it."""
    if not ctx.store.r.set(SWEEP_LOCK, 1, nx=True, ex=lock_s):
        return 0
    try:
        sent = 0
        for batch in ctx.store.batches():
            counts = ctx.store.counts(batch)
            if any(n for state, n in counts.items() if state not in TERMINAL):
                sent += sweep(ctx, app, batch)
        return sent
    finally:
        ctx.store.r.delete(SWEEP_LOCK)

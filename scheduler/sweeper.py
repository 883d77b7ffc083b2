"""The sweeper: sends again the task of any item whose task was lost (its worker died), and hands
free slots to waiting items. `reelbatch run` calls it every few seconds; a fleet runs it from
Celery beat."""

from __future__ import annotations

import time

from celery import Celery

from jobs.state import TERMINAL, ItemState as S
from worker.context import WorkerContext
from worker.dispatch import dispatch
from worker.limits import holder
from worker.steps import Next, feed
from scheduler.submit import RESUME, enqueue


def sweep(ctx: WorkerContext, app: Celery, batch: str, now: float | None = None) -> int:
    now = now or time.time()
    store, meta = ctx.store, ctx.store.batch(batch)
    if meta is None:
        return 0
    if meta.start_at and meta.start_at <= now and not store.r.hget(store._k(batch, "meta"), "started"):
        store.update_batch(batch, started=1)
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

"""The sweeper: sends again the step of any item whose task was lost (its worker died), starts
batches whose --at time has come, and hands free slots to waiting items. `reelbatch run` calls it
every few seconds; a fleet runs it from Celery beat."""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.exceptions import LockError
from redis.lock import Lock

from reelbatch.jobs.limits import holder
from reelbatch.jobs.state import RESUME, TERMINAL
from reelbatch.jobs.state import ItemState as S
from reelbatch.worker.context import WorkerContext
from reelbatch.worker.engine.batch import enqueue
from reelbatch.worker.engine.line import feed
from reelbatch.worker.engine.next import Next

LOCK_S = 30.0


def sweep(ctx: WorkerContext, batch: str, now: float | None = None) -> list[Next]:
    now = now or time.time()
    store, meta = ctx.store, ctx.store.batch(batch)
    if meta is None:
        return []
    if meta.start_at and meta.start_at <= now and store.mark_started(batch):
        return enqueue(ctx, batch)
    nexts: list[Next] = []
    for item_id in store.overdue(batch, now):
        rec = store.item(batch, item_id)
        if rec is None or rec.state in TERMINAL:
            store.clear_due(batch, item_id)
        elif rec.state is S.PENDING:
            store.clear_due(batch, item_id)
            slots = ctx.slots(meta.provider)
            slots.release(holder(batch, item_id))
            slots.wait([holder(batch, item_id)], front=True)
        else:
            nexts.append(Next(RESUME[rec.state], batch, item_id))
    return nexts + feed(ctx, meta.provider, meta.max_concurrency)


def open_batches(ctx: WorkerContext) -> list[str]:
    """Batches with items not yet terminal."""
    found = []
    for batch in ctx.store.batches():
        counts = ctx.store.counts(batch)
        if any(n for state, n in counts.items() if state not in TERMINAL):
            found.append(batch)
    return found


def sweep_open_batches(ctx: WorkerContext, send: Callable[[list[Next]], int]) -> int:
    """Sweep every open batch, sending what each sweep finds, unless another sweeper holds the
    lock (redis-py's Lock: only its holder can release it, so a slow sweep never frees the next
    sweeper's lock). Returns how many steps were sent."""
    lock = ctx.store.sweep_lock(LOCK_S)
    if not lock.acquire():
        return 0
    try:
        return sum(send(sweep(ctx, batch)) for batch in open_batches(ctx))
    finally:
        _release(lock)


def _release(lock: Lock) -> None:
    try:
        lock.release()
    except LockError:
        pass  # it expired while we swept; another sweeper may hold it now, and keeps it

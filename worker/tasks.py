"""The Celery tasks: thin. Each checks its delivery count, runs one step and sends what comes next.
Arguments are a batch name and an item id: no secrets, no payloads."""

from __future__ import annotations

import logging

from reelbatch.jobs import errors
from reelbatch.jobs.state import TERMINAL
from reelbatch.worker import steps
from reelbatch.worker.app import app
from reelbatch.worker.context import context
from reelbatch.worker.dispatch import dispatch

log = logging.getLogger("reelbatch.worker")


def _delivery_key(task) -> str:
    return f"rb:deliv:{task.request.id}"


def _delivered_too_often(task) -> bool:
    """Our own redelivery cap: a message that keeps killing its worker fails its item."""
    ctx = context()
    key = _delivery_key(task)
    pipe = ctx.store.r.pipeline()
    pipe.incr(key)
    pipe.expire(key, 86400)
    count, _ = pipe.execute()
    return count > ctx.settings.redelivery_cap


def _run(task, step, batch: str, item_id: str) -> None:
    ctx = context()
    if _delivered_too_often(task):
        _poison(ctx, batch, item_id)
        return
    nexts = step(ctx, batch, item_id)
    dispatch(app, ctx.store, nexts, ctx.settings.max_countdown_s)
    ctx.store.r.unlink(_delivery_key(task))   # it ran: only a delivery that dies mid-step counts


def _poison(ctx, batch: str, item_id: str) -> None:
    meta, rec = ctx.store.batch(batch), ctx.store.item(batch, item_id)
    if meta and rec and rec.state not in TERMINAL:
        exc = errors.StorageError(f"task delivered more than {ctx.settings.redelivery_cap} times")
        dispatch(app, ctx.store, steps.fail(ctx, meta, item_id, exc, [rec.state]),
                 ctx.settings.max_countdown_s)


@app.task(name="reelbatch.submit", bind=True)
def submit_item(self, batch: str, item_id: str) -> None:
    _run(self, steps.submit, batch, item_id)


@app.task(name="reelbatch.poll", bind=True)
def poll_item(self, batch: str, item_id: str) -> None:
    _run(self, steps.poll, batch, item_id)


@app.task(name="reelbatch.download", bind=True)
def download_item(self, batch: str, item_id: str) -> None:
    _run(self, steps.fetch, batch, item_id)


@app.task(name="reelbatch.reconcile", bind=True)
def reconcile_item(self, batch: str, item_id: str) -> None:
    _run(self, steps.reconcile, batch, item_id)


@app.task(name="reelbatch.cancel", bind=True)
def cancel_item(self, batch: str, item_id: str) -> None:
    _run(self, steps.cancel, batch, item_id)


@app.task(name="reelbatch.sweep")
def sweep_all() -> int:
    """Periodic (Celery beat): resend lost tasks, start batches whose --at time came, feed slots.
    A lock keeps it to one sweep at a time across the fleet."""
    from reelbatch.scheduler.sweeper import sweep_open_batches

    return sweep_open_batches(context(), app)

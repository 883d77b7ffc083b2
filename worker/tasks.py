"""The Celery tasks: thin. Each checks its delivery count, runs one engine step and sends the steps
that come next. Arguments are a batch name and an item id: no secrets, no payloads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from celery import Task

from reelbatch.jobs import errors
from reelbatch.jobs.state import TERMINAL, Step
from reelbatch.worker.app import app
from reelbatch.worker.context import WorkerContext, context
from reelbatch.worker.engine import cancel, download, poll, submit, sweeper
from reelbatch.worker.engine.next import Next
from reelbatch.worker.engine.outcome import fail

SWEEP_GRACE_S = 60.0   # how late a step may run before the sweeper sends it again
EngineStep = Callable[[WorkerContext, str, str], list[Next]]


def send(ctx: WorkerContext, nexts: Iterable[Next]) -> int:
    """Send each step as its task. Every send also records when the item is due, so the sweeper
    finds items whose task was lost (a worker died holding it)."""
    sent = 0
    for nxt in nexts:
        countdown = max(0.0, min(float(nxt.countdown), ctx.settings.max_countdown_s))
        ctx.store.set_due(nxt.batch, nxt.item_id, time.time() + countdown + SWEEP_GRACE_S)
        TASKS[nxt.step].apply_async(args=[nxt.batch, nxt.item_id], countdown=countdown or None)
        sent += 1
    return sent


def _run(task: Task, step: EngineStep, batch: str, item_id: str) -> None:
    ctx = context()
    if ctx.store.count_delivery(task.request.id) > ctx.settings.redelivery_cap:
        _poison(ctx, batch, item_id)
        return
    send(ctx, step(ctx, batch, item_id))
    ctx.store.forget_delivery(task.request.id)   # it ran: only a delivery that dies mid-step counts


def _poison(ctx: WorkerContext, batch: str, item_id: str) -> None:
    """A message that keeps stopping its worker fails its item."""
    meta, rec = ctx.store.batch(batch), ctx.store.item(batch, item_id)
    if meta and rec and rec.state not in TERMINAL:
        exc = errors.DeliveryLimitExceeded(
            f"task delivered more than {ctx.settings.redelivery_cap} times (it kept stopping its worker)")
        send(ctx, fail(ctx, meta, item_id, exc, [rec.state]))


@app.task(name="reelbatch.submit", bind=True)
def submit_item(self: Task, batch: str, item_id: str) -> None:
    _run(self, submit.submit, batch, item_id)


@app.task(name="reelbatch.reconcile", bind=True)
def reconcile_item(self: Task, batch: str, item_id: str) -> None:
    _run(self, submit.reconcile, batch, item_id)


@app.task(name="reelbatch.poll", bind=True)
def poll_item(self: Task, batch: str, item_id: str) -> None:
    _run(self, poll.poll, batch, item_id)


@app.task(name="reelbatch.download", bind=True)
def download_item(self: Task, batch: str, item_id: str) -> None:
    _run(self, download.fetch, batch, item_id)


@app.task(name="reelbatch.cancel", bind=True)
def cancel_item(self: Task, batch: str, item_id: str) -> None:
    _run(self, cancel.cancel, batch, item_id)


TASKS: dict[Step, Task] = {Step.SUBMIT: submit_item, Step.RECONCILE: reconcile_item,
                           Step.POLL: poll_item, Step.DOWNLOAD: download_item,
                           Step.CANCEL: cancel_item}


@app.task(name="reelbatch.sweep")
def sweep_all() -> int:
    """Periodic (Celery beat): resend lost tasks, start batches whose --at time came, feed slots."""
    ctx = context()
    return sweeper.sweep_open_batches(ctx, lambda nexts: send(ctx, nexts))

"""The Celery tasks: thin. Each checks its delivery count, runs one engine step and sends the steps
that come next. Arguments are a batch name and an item id: no secrets, no payloads.

The task is also the boundary where whatever a step raises is accounted for: a race another task
won is logged at DEBUG; Redis going away is left to Celery (the message is delivered again); any
other exception counts against the item's budget of unexpected errors (INTERNAL_ERRORS, kept in
the store across redeliveries and sweeper resends), past which the item fails with kind
``internal`` and its slot is freed. A task whose step failed its item ends in Celery's FAILURE
state with the reason (Flower counts it), without a traceback in the log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import redis
from celery import Task
from kombu.exceptions import OperationalError

import reelbatch.worker.heartbeat  # noqa: F401  (workers report they are alive)
from reelbatch.jobs import errors
from reelbatch.jobs.policy import INTERNAL_ERRORS, backoff
from reelbatch.jobs.state import TERMINAL, Step
from reelbatch.jobs.store import BatchMeta, ItemRecord, TransitionRefused
from reelbatch.worker.app import app
from reelbatch.worker.engine import cancel, download, poll, submit, sweeper
from reelbatch.worker.engine.next import Failed, Next
from reelbatch.worker.engine.outcome import fail, give_up
from reelbatch.worker.engine.sweeper import busy_recheck_s, horizon_s, lost_after_s
from reelbatch.worker.lease import holding
from reelbatch.worker.runtime import Runtime, context

log = logging.getLogger("reelbatch.worker")
BROKER_DOWN = (redis.ConnectionError, redis.TimeoutError, OperationalError)
EngineStep = Callable[[Runtime, str, str], list[Next]]
STEPS: dict[Step, EngineStep] = {Step.SUBMIT: submit.submit, Step.RECONCILE: submit.reconcile,
                                 Step.POLL: poll.poll, Step.DOWNLOAD: download.fetch,
                                 Step.CANCEL: cancel.cancel}


class ItemFailed(Exception):
    """The step ended its item in failure: the task's FAILURE, with the reason (expected, so
    Celery logs it without a traceback)."""


def send(ctx: Runtime, nexts: Iterable[Next], task_id: str | None = None) -> int:
    """Send each step as its task, or keep it: a poll that waits at least the sweeper's horizon
    stays only in the store's due set while a sweeper runs, which sends it when it is due (no
    message held in Redis for it). Every step's due time is recorded, so the sweeper also finds
    items whose task was lost (a worker died holding it). ``task_id``: the task that ran, whose
    delivery count is forgotten in the same round trip. Returns how many were sent or kept."""
    now, dues, out = time.time(), [], []
    for nxt in nexts:
        countdown = max(0.0, min(float(nxt.countdown), ctx.settings.max_countdown_s))
        if _keep(ctx, nxt, countdown):
            dues.append((nxt.batch, nxt.item_id, now + countdown))
            continue
        dues.append((nxt.batch, nxt.item_id, now + countdown + lost_after_s(ctx.settings)))
        out.append((nxt, countdown))
    ctx.store.end_task(task_id, dues)
    for nxt, countdown in out:
        TASKS[nxt.step].apply_async(args=[nxt.batch, nxt.item_id], countdown=countdown or None,
                                    shadow=f"{TASKS[nxt.step].name} {nxt.batch}/{nxt.item_id}")  # Flower's name
    return len(dues)


def _keep(ctx: Runtime, nxt: Next, countdown: float) -> bool:
    return nxt.step is Step.POLL and countdown >= horizon_s(ctx.settings) and ctx.sweeper_alive()


def _run(task: Task, step: Step, batch: str, item_id: str) -> None:
    ctx = context()
    deliveries, meta, stored = ctx.store.begin_task(task.request.id, batch, item_id)
    if deliveries > ctx.settings.redelivery_cap:
        nexts = _poison(ctx, batch, item_id, meta, ItemRecord.from_hash(stored) if stored else None)
    else:
        with holding(ctx.leases, batch, item_id) as held:
            if held:
                ctx.hand_over(batch, item_id, meta, stored)
                nexts = _step(ctx, step, batch, item_id)
            else:
                nexts = _busy(ctx, step, batch, item_id)
    send(ctx, nexts, task.request.id)   # it ran: only a delivery that dies mid-step counts
    if isinstance(nexts, Failed):
        raise ItemFailed(nexts.reason)


def _busy(ctx: Runtime, step: Step, batch: str, item_id: str) -> list[Next]:
    """Another task is working on the item (a duplicate, or a step sent while one ran): look again
    once that one has likely ended; by then the item has usually moved on and this step is a no-op."""
    log.debug("%s %s/%s: another task holds the item; trying again later", step.value, batch, item_id)
    return [Next(step, batch, item_id, busy_recheck_s(ctx.settings))]


def _step(ctx: Runtime, step: Step, batch: str, item_id: str) -> list[Next]:
    try:
        return STEPS[step](ctx, batch, item_id)
    except TransitionRefused as exc:
        log.debug("%s %s/%s: the item moved on first (%s -> %s)", step.value, batch, item_id,
                  exc.current, exc.target)
        return []
    except BROKER_DOWN:
        raise
    except Exception as exc:  # noqa: BLE001 - the task boundary: anything else counts against the item
        return _unexpected(ctx, step, batch, item_id, exc)


def _unexpected(ctx: Runtime, step: Step, batch: str, item_id: str, exc: Exception) -> list[Next]:
    """Run the step again after a backoff, or past the item's budget fail it (kind internal), with
    the traceback logged that one time."""
    if not ctx.store.item_exists(batch, item_id):
        return []
    count = ctx.store.count(batch, item_id, "internal_errors")
    if count <= INTERNAL_ERRORS:
        log.warning("%s %s/%s raised %s: %s (%d of %d; trying again)", step.value, batch, item_id,
                    type(exc).__name__, exc, count, INTERNAL_ERRORS)
        return [Next(step, batch, item_id, backoff(count, 2.0, 120.0))]
    log.error("%s %s/%s raised %s %d times; the item fails", step.value, batch, item_id,
              type(exc).__name__, count, exc_info=exc)
    return give_up(ctx, batch, item_id, errors.InternalError(f"{type(exc).__name__}: {exc}"))


def _poison(ctx: Runtime, batch: str, item_id: str, meta: BatchMeta | None,
            rec: ItemRecord | None) -> list[Next]:
    """A message that keeps stopping its worker fails its item."""
    if not (meta and rec and rec.state not in TERMINAL):
        return []
    exc = errors.DeliveryLimitExceeded(
        f"task delivered more than {ctx.settings.redelivery_cap} times (it kept stopping its worker)")
    return fail(ctx, meta, item_id, exc, [rec.state])


def _task(step: Step) -> Task:
    def run(self: Task, batch: str, item_id: str) -> None:
        _run(self, step, batch, item_id)

    run.__name__ = run.__qualname__ = f"{step.value}_item"
    run.__doc__ = f"The {step.value} step of one item."
    return app.task(name=f"reelbatch.{step.value}", bind=True, throws=(ItemFailed,))(run)


TASKS: dict[Step, Task] = {step: _task(step) for step in Step}


@app.task(name="reelbatch.sweep")
def sweep_all() -> int:
    """Periodic (Celery beat): resend lost tasks, start batches whose --at time came, feed slots."""
    ctx = context()
    return sweeper.sweep_open_batches(ctx, lambda nexts: send(ctx, nexts))

"""How a step ends badly: the one retry-or-fail decision for transient errors, and fail()."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from reelbatch.jobs.errors import ProviderUnreachable, ReelbatchError
from reelbatch.jobs.policy import RETRIES
from reelbatch.jobs.state import OPEN, ItemState, Step
from reelbatch.jobs.store import BatchMeta, TransitionRefused
from reelbatch.worker import results
from reelbatch.worker.engine.line import release
from reelbatch.worker.engine.next import Failed, Next
from reelbatch.worker.runtime import Runtime

log = logging.getLogger("reelbatch.worker")
DOWN_MARK_S = 120.0             # the "unreachable" mark lapses this long after the last failure (the
                                # backoff below brings a failure at least every 64 s while it lasts)
UNREACHABLE_BACKOFF_STEP = 5    # the backoff step an unreachable provider is waited out with


def fail(ctx: Runtime, meta: BatchMeta, item_id: str, exc: Exception,
         expected: Iterable[ItemState], incr: dict[str, int] | None = None) -> list[Next]:
    """End the item as failed with the error's kind and message, free its slot, record it
    (``incr``: counters moved in the same step, e.g. the attempt a refused submit did not make)."""
    kind = getattr(exc, "kind", "error")
    ctx.store.record_attempt(meta.name, item_id, kind, str(exc))
    try:
        ctx.store.transition(meta.name, item_id, ItemState.FAILED, expected, incr=incr, error_kind=kind,
                             error=str(exc), completed_at=time.time())
    except TransitionRefused:
        return []
    nexts = release(ctx, meta.provider, meta.name, item_id)
    try:
        results.record(ctx.store, meta, ctx.store.item(meta.name, item_id))
    except (ValueError, OSError) as problem:   # an unreadable record, a full disk: still failed
        log.warning("%s/%s failed; its results line could not be written: %s", meta.name, item_id,
                    problem)
    return Failed(nexts, f"[{kind}] {exc}")


def give_up(ctx: Runtime, batch: str, item_id: str, exc: Exception) -> list[Next]:
    """Fail an item whatever state it is in and whatever its record holds (the end of the budget
    of unexpected errors): its slot is released even when its record cannot be read."""
    meta = ctx.store.batch(batch)
    return fail(ctx, meta, item_id, exc, OPEN) if meta is not None else []


def retry_delay(ctx: Runtime, meta: BatchMeta, item_id: str, step: Step,
                exc: ReelbatchError) -> float | None:
    """Count a transient error of ``step``: the backoff before trying again (RETRIES), or None
    once the step has used its attempts. A provider that cannot be reached at all is not the
    item's fault: it is waited out without using the item's attempts (a long outage pauses the
    batch, see the sweeper)."""
    policy = RETRIES[step]
    if isinstance(exc, ProviderUnreachable):
        ctx.provider_down(meta.provider, str(exc), DOWN_MARK_S)
        return policy.delay(UNREACHABLE_BACKOFF_STEP)
    tries = ctx.store.count(meta.name, item_id, "transient_retries")
    if policy.exhausted(tries):
        return None
    ctx.store.record_attempt(meta.name, item_id, exc.kind, str(exc))
    return policy.delay(tries, getattr(exc, "retry_after", None))


def retry_or_fail(ctx: Runtime, meta: BatchMeta, item_id: str, step: Step,
                  exc: ReelbatchError, expected: Iterable[ItemState],
                  give_up: Exception | None = None) -> list[Next]:
    """A transient error in ``step``: run it again after the step's backoff, or past its attempts
    fail the item with ``give_up`` (default: the error itself)."""
    delay = retry_delay(ctx, meta, item_id, step, exc)
    if delay is None:
        return fail(ctx, meta, item_id, give_up or exc, expected)
    return [Next(step, meta.name, item_id, delay)]

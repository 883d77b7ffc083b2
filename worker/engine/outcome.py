"""How a step ends badly: the one retry-or-fail decision for transient errors, and fail()."""

from __future__ import annotations

import time
from collections.abc import Iterable

from reelbatch.jobs.errors import ReelbatchError
from reelbatch.jobs.policy import RETRIES
from reelbatch.jobs.state import ItemState, Step
from reelbatch.jobs.store import BatchMeta, TransitionRefused
from reelbatch.worker import results
from reelbatch.worker.context import WorkerContext
from reelbatch.worker.engine.line import release
from reelbatch.worker.engine.next import Next


def fail(ctx: WorkerContext, meta: BatchMeta, item_id: str, exc: Exception,
         expected: Iterable[ItemState]) -> list[Next]:
    """End the item as failed with the error's kind and message, record it, free its slot."""
    kind = getattr(exc, "kind", "error")
    ctx.store.record_attempt(meta.name, item_id, kind, str(exc))
    try:
        ctx.store.transition(meta.name, item_id, ItemState.FAILED, expected, error_kind=kind,
                             error=str(exc), completed_at=time.time())
    except TransitionRefused:
        return []
    results.record(ctx.store, meta, ctx.store.item(meta.name, item_id))
    return release(ctx, meta.provider, meta.name, item_id)


def retry_delay(ctx: WorkerContext, meta: BatchMeta, item_id: str, step: Step,
                exc: ReelbatchError) -> float | None:
    """Count a transient error of ``step``: the backoff before trying again (RETRIES), or None
    once the step has used its attempts."""
    policy, tries = RETRIES[step], ctx.store.count(meta.name, item_id, "transient_retries")
    if policy.exhausted(tries):
        return None
    ctx.store.record_attempt(meta.name, item_id, exc.kind, str(exc))
    return policy.delay(tries, getattr(exc, "retry_after", None))


def retry_or_fail(ctx: WorkerContext, meta: BatchMeta, item_id: str, step: Step,
                  exc: ReelbatchError, expected: Iterable[ItemState],
                  give_up: Exception | None = None) -> list[Next]:
    """A transient error in ``step``: run it again after the step's backoff, or past its attempts
    fail the item with ``give_up`` (default: the error itself)."""
    delay = retry_delay(ctx, meta, item_id, step, exc)
    if delay is None:
        return fail(ctx, meta, item_id, give_up or exc, expected)
    return [Next(step, meta.name, item_id, delay)]

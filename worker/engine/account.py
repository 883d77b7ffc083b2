"""Account problems: a key refused, no credits left, a model gone. They are the batch's, not the
item's. The first one marks the provider (or, for a model gone, that model there): nothing more is
submitted there, the sweeper pauses its batches with the reason, `run` exits 3, and every item
keeps its state (one whose generation was refused or failed unbilled goes back to pending). Running
the same command again clears the mark and goes on."""

from __future__ import annotations

import logging

from reelbatch.jobs import errors
from reelbatch.jobs.catalog import catalog
from reelbatch.jobs.state import IN_PROGRESS, ItemState as S
from reelbatch.jobs.store import BatchMeta, ItemRecord, Problem, TransitionRefused
from reelbatch.worker.engine import budget, fanout
from reelbatch.worker.engine.line import release, requeue
from reelbatch.worker.engine.next import Next
from reelbatch.worker.providers.http import AUTH_REFUSED
from reelbatch.worker.runtime import Runtime

log = logging.getLogger("reelbatch.worker")
WHAT = {"key_refused": ("refuses the key", "set a valid key"),
        "no_credits": ("has no credits left", "top up the account"),
        "model_gone": ("no longer has the model", "choose another model or provider")}


def stopped(ctx: Runtime, meta: BatchMeta) -> Problem | None:
    """The mark that stops submits to the batch's provider (or its model there), if any."""
    return ctx.store.account_problem(meta.provider, meta.model)


def reason(meta: BatchMeta, exc: errors.AccountProblem) -> str:
    what, advice = WHAT.get(exc.kind, ("refuses the account", "fix the account"))
    model = f" {meta.model}" if isinstance(exc, errors.ModelGone) else ""
    said = f"{exc.status_code}: {exc.message}" if exc.status_code else exc.message
    return f"{meta.provider} {what}{model} ({said}): {advice}"


def confirmed(ctx: Runtime, meta: BatchMeta, exc: errors.AccountProblem) -> bool:
    """Whether the problem is the account's. A 401/403 is asked again with the provider's key check
    (one request): one refused call (a flaky gateway) is not a revoked key."""
    if not isinstance(exc, errors.KeyRefused) or stopped(ctx, meta):
        return True
    model_id = catalog().model_for(meta.provider, meta.model).ids[meta.provider]
    try:
        ctx.provider(meta.provider).check_key(model_id)
    except errors.PermanentProviderError as again:
        return again.status_code in AUTH_REFUSED
    except errors.TransientProviderError:
        return False
    return False


def stop(ctx: Runtime, meta: BatchMeta, exc: errors.AccountProblem) -> None:
    """Mark the provider (or the model there) stopped; the first mark's reason stays."""
    model = meta.model if isinstance(exc, errors.ModelGone) else ""
    if ctx.store.mark_account_problem(meta.provider, reason(meta, exc), model):
        log.info("%s: %s", meta.name, reason(meta, exc))   # `run` and `status` say it


def park(ctx: Runtime, meta: BatchMeta, item_id: str) -> list[Next]:
    """A pending item that may not be submitted now: it leaves the line and gives its slot back;
    the next run puts it in line again. In a batch over several providers it goes to the others at
    once, and so do the stopped provider's other pending items."""
    spread = ctx.fanout(meta.name)
    if spread is not None:
        return fanout.park(ctx, meta, spread, item_id)
    ctx.store.clear_due(meta.name, item_id)
    return release(ctx, meta.provider, meta.name, item_id)


def stopped_by(ctx: Runtime, meta: BatchMeta, exc: Exception) -> bool:
    """Whether ``exc`` is the account's problem (a refused key confirmed); if so the provider (or the
    model there) is marked stopped. Anything else is left to the step, as any permanent error."""
    if not isinstance(exc, errors.AccountProblem) or not confirmed(ctx, meta, exc):
        return False
    stop(ctx, meta, exc)
    return True


def unsent(ctx: Runtime, meta: BatchMeta, rec: ItemRecord, exc: errors.ReelbatchError) -> list[Next]:
    """A submit the account refused created nothing: the item goes back to pending, unbilled (its
    budget was given back), and waits for the next run."""
    ctx.store.transition(meta.name, rec.item_id, S.PENDING, [S.SUBMITTING], incr={"attempts": -1},
                         error_kind=exc.kind, error=str(exc))
    return park(ctx, meta, rec.item_id)


def unbilled(ctx: Runtime, meta: BatchMeta, rec: ItemRecord,
             exc: errors.AccountProblem) -> list[Next]:
    """The provider failed the generation for the account's sake (no credits): it was not billed,
    so the item goes back to pending without its generation, and waits for the next run. One
    submitted before a rerun cleared the mark failed while the account was empty (before the
    top-up): its item goes back in line and nothing is stopped."""
    ctx.store.record_attempt(meta.name, rec.item_id, exc.kind, str(exc))
    try:
        ctx.store.transition(meta.name, rec.item_id, S.PENDING, IN_PROGRESS, incr={"attempts": -1},
                             error_kind=exc.kind, error=str(exc), generation_id=None)
    except TransitionRefused:
        return []
    budget.unreserve(ctx, meta, rec)
    if (rec.submitted_at or 0.0) < ctx.store.account_cleared_at(meta.provider):
        return requeue(ctx, meta.provider, meta.name, rec.item_id)   # failed before the top-up
    stop(ctx, meta, exc)
    return park(ctx, meta, rec.item_id)

"""Submitting: the budget, the request rate, the POST, and reconciling a submit whose answer was
lost. A submit POST is never retried blindly: only a refusal (nothing was created) is sent again."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from reelbatch.jobs import errors
from reelbatch.jobs.catalog import provider_request
from reelbatch.jobs.inputs import is_url, to_data_uri
from reelbatch.jobs.limits import holder
from reelbatch.jobs.state import ItemState as S, Step
from reelbatch.jobs.store import BatchMeta, ItemRecord, TransitionRefused
from reelbatch.jobs.tuning import ACCOUNT_RECHECK_S, CLOCK_SLACK_S, RECONCILE_AFTER_S, RECONCILE_LOOKS as LOOKS
from reelbatch.worker.engine import account, budget, depth, route
from reelbatch.worker.engine.line import release, wait_in_line
from reelbatch.worker.engine.next import Next
from reelbatch.worker.engine.orphans import late_answer
from reelbatch.worker.engine.outcome import fail, retry_delay, retry_or_fail
from reelbatch.worker.engine.poll import by_give_up, give_up_after_s, past_give_up, poll_policy
from reelbatch.worker.providers.base import FindsLostSubmits
from reelbatch.worker.runtime import Runtime


def submit(ctx: Runtime, batch: str, item_id: str) -> list[Next]:
    store = ctx.store
    meta, rec = ctx.load(batch, item_id)
    if rec is None or meta is None or rec.state is not S.PENDING:
        return _release_if_idle(ctx, meta, rec, batch, item_id)
    if not route.bound_here(ctx, meta, item_id):   # moved off a paused provider: its lines have it
        return []
    if meta.cancelled:
        store.transition(batch, item_id, S.CANCELLED, [S.PENDING], error="batch cancelled")
        return release(ctx, meta.provider, batch, item_id)
    if meta.start_at and meta.start_at > time.time():   # `submit --at` again: a task an earlier
        store.clear_due(batch, item_id)                  # submit sent waits for the sweeper's start
        return release(ctx, meta.provider, batch, item_id)
    if account.stopped(ctx, meta):   # a key refused, no credits, a model gone: nothing more is sent
        return account.park(ctx, meta, item_id)
    if not budget.reserve(ctx, meta, rec):
        return release(ctx, meta.provider, batch, item_id)
    wait = ctx.rate(meta.provider).take(meta.requests_per_minute)
    if wait:
        budget.unreserve(ctx, meta, rec)
        return [Next(Step.SUBMIT, batch, item_id, wait)]
    return _send(ctx, meta, rec)


def _release_if_idle(ctx: Runtime, meta: BatchMeta | None, rec: ItemRecord | None,
                     batch: str, item_id: str) -> list[Next]:
    """A duplicate or stale submit: free the slot it was handed unless the item is in flight."""
    if meta and (rec is None or rec.state not in (S.SUBMITTING, S.QUEUED, S.RUNNING)):
        return release(ctx, meta.provider, batch, item_id)
    return []


def _send(ctx: Runtime, meta: BatchMeta, rec: ItemRecord) -> list[Next]:
    store, batch, item_id = ctx.store, meta.name, rec.item_id
    try:
        store.transition(batch, item_id, S.SUBMITTING, [S.PENDING], incr={"attempts": 1},
                         submitted_at=time.time(), error_kind=None, error=None, reconcile_looks=0)
    except TransitionRefused:
        budget.unreserve(ctx, meta, rec)
        return []  # a duplicate submit task: the other one is sending it
    try:
        generation_id = ctx.provider(meta.provider).submit(provider_request(rec.item, resolver(ctx)))
    except errors.SubmitOutcomeUnknown as exc:
        store.record_attempt(batch, item_id, exc.kind, str(exc))
        return [Next(Step.RECONCILE, batch, item_id, RECONCILE_AFTER_S)]
    except errors.TransientProviderError as exc:
        return _submit_refused(ctx, meta, rec, exc)
    except (errors.PermanentProviderError, errors.ManifestError) as exc:
        budget.unreserve(ctx, meta, rec)
        if account.stopped_by(ctx, meta, exc):
            return account.unsent(ctx, meta, rec, exc)
        return fail(ctx, meta, item_id, exc, [S.SUBMITTING])
    ctx.provider_up(meta.provider)
    try:
        store.transition(batch, item_id, S.QUEUED, [S.SUBMITTING], generation_id=generation_id,
                         transient_retries=0)
    except TransitionRefused:   # the item moved on while the POST ran (cancelled, failed)
        return late_answer(ctx, meta, rec, generation_id)
    claim(ctx, meta.provider, generation_id, batch, item_id)
    return [Next(Step.POLL, batch, item_id, poll_policy(ctx, meta, rec).first_delay())]


def resolver(ctx: Runtime) -> Callable[[str], str]:
    """Media references as the provider takes them: URLs as they are, local files inlined."""
    limit = ctx.settings.max_data_uri_bytes
    return lambda ref: ref if is_url(ref) else to_data_uri(Path(ref), limit)


def _submit_refused(ctx: Runtime, meta: BatchMeta, rec: ItemRecord,
                    exc: errors.TransientProviderError) -> list[Next]:
    """Nothing was created (429, 503, no connection): back to pending, try again after a backoff;
    past the retries the item fails from submitting (pending -> failed is no transition)."""
    budget.unreserve(ctx, meta, rec)
    if depth.refused_past_limit(ctx, meta, exc):   # no depth there: back in line, its slot freed
        ctx.store.transition(meta.name, rec.item_id, S.PENDING, [S.SUBMITTING], incr={"attempts": -1})
        wait_in_line(ctx, meta.provider, meta.name, [rec.item_id], front=True)
        return release(ctx, meta.provider, meta.name, rec.item_id)
    delay = retry_delay(ctx, meta, rec.item_id, Step.SUBMIT, exc)
    if delay is None:
        return fail(ctx, meta, rec.item_id, exc, [S.SUBMITTING], incr={"attempts": -1})
    ctx.store.transition(meta.name, rec.item_id, S.PENDING, [S.SUBMITTING],
                         incr={"attempts": -1}, error_kind=exc.kind, error=str(exc))
    return [Next(Step.SUBMIT, meta.name, rec.item_id, delay)]


# --- reconcile: a submit whose answer was lost ----------------------------------------------

def reconcile(ctx: Runtime, batch: str, item_id: str) -> list[Next]:
    """Find the generation a lost submit may have created; resubmit only when there is none.

    Providers that can list recent generations (Oxen, the simulator) are asked for one whose echoed
    model and prompt match, created after the submit started. Where no such list exists (the AI/ML
    API) the item fails with kind ``submit_unknown``: `reelbatch retry --kind submit_unknown`
    resubmits it, a decision left to the person paying for it."""
    store = ctx.store
    meta, rec = ctx.load(batch, item_id)
    if meta is None or rec is None or rec.state is not S.SUBMITTING:
        return []
    client = ctx.provider(meta.provider)
    if not isinstance(client, FindsLostSubmits):
        return _cannot_ask(ctx, meta, rec)
    try:
        found = client.find(provider_request(rec.item, resolver(ctx)),
                            since=(rec.submitted_at or 0) - CLOCK_SLACK_S)
    except errors.TransientProviderError as exc:
        return _not_asked(ctx, meta, rec, exc)
    except errors.PermanentProviderError as exc:   # e.g. its history answers 404
        if account.stopped_by(ctx, meta, exc):
            return [Next(Step.RECONCILE, batch, item_id, ACCOUNT_RECHECK_S)]
        return fail(ctx, meta, item_id, _unknown(meta, f"the provider refused to be asked ({exc})"),
                    [S.SUBMITTING])
    generation_id = _claim_first(ctx, meta.provider, [g.generation_id for g in found], batch, item_id)
    if generation_id:
        store.transition(batch, item_id, S.QUEUED, [S.SUBMITTING], generation_id=generation_id,
                         transient_retries=0)
        return [Next(Step.POLL, batch, item_id, 0)]
    return _nothing_found(ctx, meta, rec)


def _not_asked(ctx: Runtime, meta: BatchMeta, rec: ItemRecord,
               exc: errors.TransientProviderError) -> list[Next]:
    """The provider could not be asked: again after a backoff, within polling.give_up_after_s of
    the submit, like any generation in flight; past it (or past the step's retries) the item
    fails ``submit_unknown``."""
    since = rec.submitted_at or time.time()
    if past_give_up(ctx, meta, since, time.time()):
        why = (f"the provider could not be asked for {give_up_after_s(meta):.0f} s "
               f"(polling.give_up_after_s; last: {exc})")
        return fail(ctx, meta, rec.item_id, _unknown(meta, why), [S.SUBMITTING])
    retried = retry_or_fail(ctx, meta, rec.item_id, Step.RECONCILE, exc, [S.SUBMITTING],
                            give_up=_unknown(meta, f"the provider could not be asked ({exc})"))
    return by_give_up(since, meta, retried)


def look_again_every_s(ctx: Runtime) -> float:
    """How often a reconcile that found nothing looks again: LOOKS times over its window."""
    return max(RECONCILE_AFTER_S, look_window_s(ctx) / LOOKS)


def look_window_s(ctx: Runtime) -> float:
    """How long a lost submit's generation is looked for: the HTTP read timeout plus a margin (a
    provider may still be working on a POST its gateway or our client gave up on)."""
    return ctx.settings.http_read_timeout_s + ctx.settings.reconcile_margin_s


def _nothing_found(ctx: Runtime, meta: BatchMeta, rec: ItemRecord) -> list[Next]:
    """Look again until the window has passed; then submit again, at most ``reconcile_resubmits``
    times per item, after which the item fails ``submit_unknown`` (the person paying decides)."""
    store, batch, item_id, window = ctx.store, meta.name, rec.item_id, look_window_s(ctx)
    if store.count(batch, item_id, "reconcile_looks") == 1:   # the first look since this submit
        store.open_look_window(batch, item_id, window)
    if store.look_window_open(batch, item_id):
        return [Next(Step.RECONCILE, batch, item_id, look_again_every_s(ctx))]
    cap = ctx.settings.reconcile_resubmits
    if store.count(batch, item_id, "reconcile_resubmits") > cap:
        why = (f"nothing found over {window:.0f} s after each of {cap + 1} submits; "
               "`reelbatch retry --kind submit_unknown` submits it again (may pay twice)")
        return fail(ctx, meta, item_id, _unknown(meta, why), [S.SUBMITTING])
    return _submit_again(ctx, meta, rec)


def _cannot_ask(ctx: Runtime, meta: BatchMeta, rec: ItemRecord) -> list[Next]:
    """The provider has no way to tell whether the lost submit created a generation: the manifest's
    ``retry.lost_submit`` decides (``fail``, the default, leaves it to the person paying)."""
    if meta.lost_submit == "resubmit":
        ctx.store.record_attempt(meta.name, rec.item_id, "submit_unknown",
                                 "answer lost; resubmitted as retry.lost_submit says (may pay twice)")
        return _submit_again(ctx, meta, rec)
    return fail(ctx, meta, rec.item_id, _unknown(meta, "the provider cannot be asked"), [S.SUBMITTING])


def _submit_again(ctx: Runtime, meta: BatchMeta, rec: ItemRecord) -> list[Next]:
    ctx.store.transition(meta.name, rec.item_id, S.PENDING, [S.SUBMITTING], incr={"attempts": -1},
                         transient_retries=0)
    budget.unreserve(ctx, meta, rec)
    return [Next(Step.SUBMIT, meta.name, rec.item_id, 0)]


def _unknown(meta: BatchMeta, why: str) -> errors.SubmitOutcomeUnknown:
    return errors.SubmitOutcomeUnknown(meta.provider, None, None, f"submit sent but unanswered; {why}")


def claim(ctx: Runtime, provider: str, generation_id: str, batch: str, item_id: str) -> bool:
    """Record whose generation this is (the event listener looks it up); False when another
    item has it already."""
    return ctx.store.claim_generation(provider, generation_id, holder(batch, item_id))


def _claim_first(ctx: Runtime, provider: str, candidates: list[str], batch: str,
                 item_id: str) -> str | None:
    """The newest matching generation no other item has: identical requests (repeat samples)
    each adopt their own."""
    return next((g for g in candidates if claim(ctx, provider, g, batch, item_id)), None)

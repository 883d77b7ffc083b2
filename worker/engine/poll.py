"""Polling: ask the provider how a generation is doing, and act on what it says (a poll's answer
or a pushed event go through the same ``observe``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from reelbatch.jobs import errors
from reelbatch.jobs.catalog import catalog
from reelbatch.jobs.errors import PERMANENT_FAILURE_KINDS
from reelbatch.jobs.limits import holder
from reelbatch.jobs.policy import PollPolicy
from reelbatch.jobs.state import IN_PROGRESS, ItemState as S, Step
from reelbatch.jobs.store import BatchMeta, ItemRecord, TransitionRefused
from reelbatch.jobs.tuning import ACCOUNT_RECHECK_S, EVENT_BACKSTOP_FACTOR
from reelbatch.worker.engine import account, budget, fanout, timing
from reelbatch.worker.engine.cancel import cancel_remote
from reelbatch.worker.engine.line import release, requeue
from reelbatch.worker.engine.next import Next
from reelbatch.worker.engine.outcome import fail, retry_or_fail
from reelbatch.worker.providers.base import Generation, RemoteStatus
from reelbatch.worker.providers.http import generation_failure
from reelbatch.worker.runtime import Runtime

POLL_QUANTILES = (0.2, 0.5, 0.9)   # early, expected, late: the first poll, the bulk polls cross
GIVE_UP_MARGIN_S = 0.5             # a poll due at the give-up time comes this much after it
ENDING_SHARE = 0.25                # the last in flight (of the running limit) are polled ...
ENDING_FACTOR = 4                  # ... this many times as often


def poll(ctx: Runtime, batch: str, item_id: str) -> list[Next]:
    meta, rec = ctx.load(batch, item_id)
    if meta is None or rec is None or rec.state not in IN_PROGRESS:
        return []
    renew: Callable[[], None] = lambda: ctx.slots(meta.provider).renew(holder(batch, item_id))   # noqa: E731
    if meta.cancelled and not rec.cancel_requested:
        renew()
        return cancel_remote(ctx, meta, rec)
    assert rec.generation_id is not None   # queued and running items have their generation
    try:
        generation = ctx.provider(meta.provider).get(rec.generation_id)
    except errors.TransientProviderError as exc:
        if _stuck_for_long(ctx, meta, rec, time.time()):   # a provider away for good: bounded too
            return fail(ctx, meta, item_id, _unanswered(meta, rec, exc), IN_PROGRESS)
        renew()   # still ours while the provider cannot be asked
        return by_give_up(rec.in_flight_since or rec.submitted_at, meta,
                          retry_or_fail(ctx, meta, item_id, Step.POLL, exc, IN_PROGRESS))
    except errors.PermanentProviderError as exc:
        if account.stopped_by(ctx, meta, exc):
            renew()   # its generation may still run: asked again later
            return [Next(Step.POLL, batch, item_id, ACCOUNT_RECHECK_S)]
        return fail(ctx, meta, item_id, exc, IN_PROGRESS)
    ctx.provider_up(meta.provider)
    if not generation.terminal:
        renew()   # a finished one gives its slot back instead
    return observe(ctx, meta, rec, generation, polled=True)


def observe(ctx: Runtime, meta: BatchMeta, rec: ItemRecord, g: Generation,
            polled: bool = False, unfinished_at: float | None = None) -> list[Next]:
    """Act on what the provider says about a generation (from a poll, an event or a lister's
    page). ``unfinished_at``: when it was last seen unfinished (a lister's previous page), for
    learning how long it took; a poll's is the item's ``polled_at``."""
    batch, item_id = meta.name, rec.item_id
    if g.status is RemoteStatus.SUCCEEDED:
        seen = rec.polled_at if polled else unfinished_at
        return _finished(ctx, meta, rec, g, seen)
    if g.status is RemoteStatus.FAILED:
        return _remote_failed(ctx, meta, rec, g)
    if g.status is RemoteStatus.CANCELLED:
        return _cancelled(ctx, meta, rec, g)
    if g.status is RemoteStatus.RUNNING and rec.state is S.QUEUED:
        ctx.store.transition(batch, item_id, S.RUNNING, [S.QUEUED],
                             remote_started_at=g.started_at or time.time())
    now = time.time()
    if _stuck_for_long(ctx, meta, rec, now):
        return fail(ctx, meta, item_id, _stuck(meta, rec, g), IN_PROGRESS)
    if polled:  # a good answer: earlier transient errors no longer count against the item
        ctx.store.update(batch, item_id, polled_at=now, transient_retries=0)
    elapsed = now - (rec.submitted_at or now)
    return [Next(Step.POLL, batch, item_id, poll_policy(ctx, meta, rec, after_a_poll=True).next_delay(elapsed))]


def _stuck_for_long(ctx: Runtime, meta: BatchMeta, rec: ItemRecord, now: float) -> bool:
    return past_give_up(ctx, meta, rec.in_flight_since or rec.submitted_at or now, now)


def past_give_up(ctx: Runtime, meta: BatchMeta, since: float, now: float) -> bool:
    """In flight since ``since`` past ``give_up_after_s``: by this worker's clock, confirmed by the
    Redis server's (a worker clock that jumped forward must not end every item in flight)."""
    bound = give_up_after_s(meta)
    return now - since > bound and ctx.store.server_time() - since > bound


def by_give_up(since: float | None, meta: BatchMeta, nexts: list[Next]) -> list[Next]:
    """The next look (a poll, a reconcile) no later than just past the item's give-up time: a
    provider's backoff (tens of seconds while it cannot be reached) does not keep an item in flight
    past give_up_after_s."""
    if since is None:
        return nexts
    left = max(0.0, since + give_up_after_s(meta) - time.time()) + GIVE_UP_MARGIN_S
    return [replace(n, countdown=min(n.countdown, left)) if n.step in (Step.POLL, Step.RECONCILE) else n
            for n in nexts]


def give_up_after_s(meta: BatchMeta) -> float:
    """How long an item may stay in flight: the manifest's polling.give_up_after_s, else the model's."""
    if meta.give_up_after_s is not None:
        return meta.give_up_after_s
    return catalog().model_for(meta.provider, meta.model).give_up_after_s


def _stuck(meta: BatchMeta, rec: ItemRecord, g: Generation) -> errors.GenerationStuck:
    """Past the bound in time: the item fails, its generation kept (not cancelled at the provider)."""
    return errors.GenerationStuck(
        f"generation {rec.generation_id} still {g.status.value} after {give_up_after_s(meta):.0f} s in "
        f"flight (polling.give_up_after_s); it is kept: `reelbatch retry --kind stuck` polls it again")


def _unanswered(meta: BatchMeta, rec: ItemRecord, exc: errors.ReelbatchError) -> errors.GenerationStuck:
    return errors.GenerationStuck(
        f"generation {rec.generation_id} unanswered after {give_up_after_s(meta):.0f} s in flight "
        f"(polling.give_up_after_s; last: {exc}); it is kept: `reelbatch retry --kind stuck` polls it again")


def _finished(ctx: Runtime, meta: BatchMeta, rec: ItemRecord, g: Generation,
              unfinished_at: float | None) -> list[Next]:
    charged = g.cost_usd is not None
    cost = g.cost_usd if g.cost_usd is not None else rec.item.estimated_cost_usd
    try:   # made, so paid (downloaded or not): counted in the batch's spend in the same step
        ctx.store.transition(meta.name, rec.item_id, S.DOWNLOADING, IN_PROGRESS, spend=(cost, charged),
                             video_url=g.video_url, detected_at=time.time(), cost_usd=cost,
                             cost_source="charged" if charged else "estimated",
                             remote_started_at=g.started_at, remote_completed_at=g.completed_at,
                             transient_retries=0, url_stale=0)
    except TransitionRefused:
        return []  # another poll or the event stream got there first
    if not charged and ctx.provider(meta.provider).charges_in_history:
        ctx.store.owe_charge(meta.provider, meta.name, rec.item_id, rec.submitted_at or time.time())
    if rec.submitted_at:
        finished_at = _finished_at(rec, g, unfinished_at)
        timing.record(ctx.store, rec.item, finished_at - rec.submitted_at)
        ctx.store.queue_depth(meta.provider).notice(time.time() - finished_at)   # engine/depth.py
    return [Next(Step.DOWNLOAD, meta.name, rec.item_id)] + release(ctx, meta.provider, meta.name,
                                                                    rec.item_id)


def _cancelled(ctx: Runtime, meta: BatchMeta, rec: ItemRecord, g: Generation) -> list[Next]:
    """Cancelled at the provider. One cancelled while it ran may still be billed: it is counted at
    its estimate until the provider's history gives the charged figure (``collect_charges``), as a
    success is; one cancelled before it started costs nothing."""
    ran = g.started_at is not None or rec.state is S.RUNNING
    charged = g.cost_usd is not None
    billable = ran and (charged or ctx.provider(meta.provider).charges_in_history)
    cost = g.cost_usd if charged else rec.item.estimated_cost_usd
    extra: dict[str, Any] = dict(spend=(cost, charged), cost_usd=cost,
                 cost_source="charged" if charged else "estimated") if billable else {}
    try:
        ctx.store.transition(meta.name, rec.item_id, S.CANCELLED, IN_PROGRESS,
                             error="cancelled at the provider", **extra)
    except TransitionRefused:
        return []
    if billable and not charged:
        ctx.store.owe_charge(meta.provider, meta.name, rec.item_id, rec.submitted_at or time.time())
    return release(ctx, meta.provider, meta.name, rec.item_id)


def _finished_at(rec: ItemRecord, g: Generation, unfinished_at: float | None) -> float:
    """When the generation finished, for learning: now when an event said so at once; from a poll
    or a lister's page, the middle of the window it finished in, after the last look that saw it
    unfinished, narrowed by the provider's whole-second completed_at. (Learning the time it was
    seen done instead piles every generation that finished before the first poll onto the first
    poll's time, so the first poll never moves earlier.)"""
    now = time.time()
    if unfinished_at is None:
        return now
    low, high = max(unfinished_at, rec.submitted_at or 0.0), now
    if g.completed_at is not None and max(low, g.completed_at) < min(high, g.completed_at + 1):
        low, high = max(low, g.completed_at), min(high, g.completed_at + 1)
    return (low + high) / 2


def _remote_failed(ctx: Runtime, meta: BatchMeta, rec: ItemRecord, g: Generation) -> list[Next]:
    exc = generation_failure(meta.provider, g.error)
    if isinstance(exc, errors.AccountProblem):   # failed unbilled for the account (no credits)
        return account.unbilled(ctx, meta, rec, exc)
    ctx.store.record_attempt(meta.name, rec.item_id, exc.kind, str(exc))
    if rec.attempts >= meta.max_attempts or exc.kind in PERMANENT_FAILURE_KINDS:
        return fail(ctx, meta, rec.item_id, exc, IN_PROGRESS)
    try:
        ctx.store.transition(meta.name, rec.item_id, S.PENDING, IN_PROGRESS,
                             error_kind=exc.kind, error=str(exc), generation_id=None)
    except TransitionRefused:
        return []
    budget.unreserve(ctx, meta, rec)
    spread = ctx.fanout(meta.name)
    if spread is not None and spread.on_other_provider:   # may be made on another provider
        return fanout.elsewhere(ctx, meta, spread, rec)
    return requeue(ctx, meta.provider, meta.name, rec.item_id)


def poll_policy(ctx: Runtime, meta: BatchMeta, rec: ItemRecord, after_a_poll: bool = False) -> PollPolicy:
    """The item's poll schedule (``learned_policy``), relaxed to a backstop while the event stream
    or a lister tells of completions; ``after_a_poll`` (the steps, not the first poll), tightened
    for the provider's last few in flight."""
    policy = learned_policy(ctx, meta, rec)
    if ctx.told_of_completions(meta.provider):
        return policy.relaxed(EVENT_BACKSTOP_FACTOR)
    if after_a_poll and _among_the_last(ctx, meta):
        return replace(policy, steps_across=policy.steps_across * ENDING_FACTOR)
    return policy


def _among_the_last(ctx: Runtime, meta: BatchMeta) -> bool:
    """Nothing waits in line for the provider and at most ENDING_SHARE of its running limit is in
    flight: the last generations, whose detection ends the batch."""
    slots = ctx.slots(meta.provider)
    return slots.waiting() == 0 and slots.held() <= max(1, int(meta.max_concurrency * ENDING_SHARE))


def learned_policy(ctx: Runtime, meta: BatchMeta, rec: ItemRecord) -> PollPolicy:
    """First poll near the early part of the generation times learned for this model and length
    (before anything is learned: the manifest's first_after_s, else the catalogue's typical time
    for the provider), tightening after, never more than max_interval_s apart; while the event
    stream or a lister tells of completions, polls relax to a backstop (``poll_policy``)."""
    learned = timing.quantiles(ctx.store, rec.item, POLL_QUANTILES)
    if learned:
        early, expected, late = learned
    else:
        expected = meta.first_after_s or catalog().model_for(meta.provider, meta.model).expected_seconds
        early = meta.first_after_s if meta.first_after_s is not None else 0.8 * expected
        late = None
    return PollPolicy(expected_s=expected or 0.0, early_s=early, late_s=late,
                      min_interval_s=meta.min_interval_s, max_interval_s=meta.max_interval_s)

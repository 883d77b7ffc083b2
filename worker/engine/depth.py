"""Queue depth: how many generations to keep queued at a provider beyond the account's running
limit (``max_concurrency``), so that a slot freed at the provider starts the next generation at
once instead of idling until reelbatch notices the completion and submits the next item.

- None at a provider that refuses a submit past its running limit: its registry entry says so
  (``queues_beyond_limit=False``), or, where nobody documented which (None: the AI/ML API), it
  answered such a submit with a 429: the item goes back to the front of the line, its slot
  freed, and no depth is kept there for a day. ``limits.queue_depth: 0`` keeps none either.
- The manifest's ``limits.queue_depth`` when given.
- Else learned on each sweep (Little's law): the completions expected while a finished slot waits
  to be refilled, plus one: ``ceil(running x refill / expected) + 1`` within 1 and half the running
  limit, where ``expected`` is the learned median generation time and ``refill`` the longer of the
  detection window (a lister's tick, the per-item poll step, nothing with an open event stream)
  and twice the measured mean wait to be noticed (poll.py records it; a wait uniform over a window
  averages half of it), plus the measured delay before the step a completion sends starts
  (download.py records it; the next submit waits in the same task queue). A busy machine
  lengthens both. ``START`` until a generation time is learned.

jobs/depth.py keeps the figures in Redis and opens the slots past the running limit as far as items
wait; at a provider shared by a batch over several providers, only while more than ``depth`` items
wait (the end of such a batch is not held queued at one of them).
"""

from __future__ import annotations

import logging
import math

from reelbatch.jobs import errors
from reelbatch.jobs.policy import PollPolicy
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import BatchMeta, ItemRecord
from reelbatch.worker.engine import timing
from reelbatch.worker.engine.bulk_poll import REQUESTS_PER_COMPLETION
from reelbatch.worker.engine.poll import POLL_QUANTILES, learned_policy
from reelbatch.worker.providers import entry
from reelbatch.worker.runtime import Runtime

log = logging.getLogger(__name__)

START = 2                  # the depth before any generation time is learned
MOST_SHARE = 0.5           # a learned depth stays within this share of the running limit
REFUSED_FOR_S = 86400.0    # after a refusal past the running limit, no depth there for this long
NOTICED_FACTOR = 2.0       # the window a mean wait to be noticed stands for
SHARED_FOR_S = 120.0       # a provider of a batch over several counts as shared this long after a sweep


def per_provider(ctx: Runtime, meta: BatchMeta) -> list[BatchMeta]:
    """The batch as each of its providers sees it, each with its own running limit (and depth)."""
    return [ctx.seen_by(meta, p) for p in ctx.providers_of(meta)]


def start(ctx: Runtime, meta: BatchMeta) -> None:
    """Record the account's running limit and the first depth; open the slots (enqueue)."""
    _share(ctx, meta)
    ctx.store.queue_depth(meta.provider).set(meta.max_concurrency, _first(ctx, meta))


def _share(ctx: Runtime, meta: BatchMeta) -> None:
    """A provider of a batch over several: its last items are left to whichever frees a slot first."""
    if len(ctx.providers_of(meta)) > 1:
        ctx.store.queue_depth(meta.provider).share(SHARED_FOR_S)


def _first(ctx: Runtime, meta: BatchMeta) -> int:
    if not may_queue(ctx, meta.provider):
        return 0
    if meta.queue_depth is not None:
        return meta.queue_depth
    return min(START, most(meta.max_concurrency))


def may_queue(ctx: Runtime, provider: str) -> bool:
    """Whether generations may be kept queued at the provider (it has not refused one)."""
    return entry(provider).queues_beyond_limit is not False and not ctx.store.queue_depth(provider).refused()


def most(running: int) -> int:
    return max(1, int(running * MOST_SHARE))


def learn(ctx: Runtime, meta: BatchMeta) -> int | None:
    """The depth learned from the batch's generation times, set and returned (on each sweep);
    None when the depth is not learned (the manifest's, none allowed, nothing learned yet)."""
    _share(ctx, meta)
    if meta.queue_depth is not None or not may_queue(ctx, meta.provider):
        return None
    rec = _in_flight(ctx, meta)
    if rec is None or timing.quantiles(ctx.store, rec.item, POLL_QUANTILES) is None:
        return None
    figures = ctx.store.queue_depth(meta.provider)
    depth = learned_depth(learned_policy(ctx, meta, rec), meta.max_concurrency, _window(ctx, meta),
                          *figures.delays())
    figures.set_depth(depth)
    return depth


def _in_flight(ctx: Runtime, meta: BatchMeta) -> ItemRecord | None:
    """One of the batch's items in flight: its model and length stand for the batch's."""
    for state in (S.RUNNING, S.QUEUED):
        for item_id in ctx.store.item_ids(meta.name, state)[:1]:
            return ctx.store.item(meta.name, item_id)
    return None


def _window(ctx: Runtime, meta: BatchMeta) -> str:
    if ctx.store.events_healthy(meta.provider):
        return "events"
    return "lister" if ctx.told_of_completions(meta.provider) else "polls"


def learned_depth(policy: PollPolicy, running: int, told_by: str, noticed_s: float | None = None,
                  hop_s: float | None = None) -> int:
    """ceil(running x refill / expected) + 1 within 1 and ``most(running)``: the completions
    expected while a finished slot waits to be refilled, plus one."""
    expected = max(policy.expected_s, 1e-3)
    refill = max(window_s(policy, running, told_by), NOTICED_FACTOR * (noticed_s or 0.0)) + (hop_s or 0.0)
    return min(most(running), max(1, math.ceil(running * refill / expected) + 1))


def window_s(policy: PollPolicy, running: int, told_by: str) -> float:
    """How long a completion may wait to be noticed: nothing on an open event stream; a lister's
    tick (bulk_poll.tick_s at the running limit); else the per-item poll step."""
    if told_by == "events":
        return 0.0
    if told_by == "lister":
        tick = policy.expected_s / (REQUESTS_PER_COMPLETION * running)
        return min(policy.max_interval_s, max(policy.min_interval_s, tick))
    return policy.next_delay(policy.expected_s)


def refused_past_limit(ctx: Runtime, meta: BatchMeta, exc: errors.TransientProviderError) -> bool:
    """A 429 on a submit while more than the running limit were in flight, at a provider not
    known to queue past it: it refuses there, so from now on none is kept queued (True: the item
    goes back in line). A provider known to queue (Oxen, fal) only rate-limits with a 429."""
    if entry(meta.provider).queues_beyond_limit is not None or not isinstance(exc, errors.RateLimited):
        return False
    depth = ctx.store.queue_depth(meta.provider)
    running = depth.running()
    if running is None or ctx.slots(meta.provider).held() <= running:
        return False
    if not depth.refused():
        log.info("%s refused a submit past its running limit (%d): no generations kept queued there",
                 meta.provider, running)
    depth.refuse(REFUSED_FOR_S)
    return True

"""The sweeper: sends the polls that wait in the store's due set when they come due (sent a little
ahead, with the rest of the wait as their countdown, so none is late), sends again the step of any
item whose task was lost (its worker died; not while no live worker serves its provider: the
step waits in that provider's queue), starts batches whose --at time has come, and hands
free slots to waiting items. `reelbatch run` calls it every few seconds; a fleet runs it from
Celery beat, which checks every ``sweep_every_s`` whether anything is due within the horizon."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from redis.exceptions import LockError
from redis.lock import Lock

from reelbatch.jobs.limits import holder
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.state import RESUME, TERMINAL, ItemState as S
from reelbatch.jobs.store import BatchMeta
from reelbatch.jobs.tuning import (
    SWEEP_HORIZON_FACTOR as HORIZON_FACTOR,
    SWEEP_LOCK_S as LOCK_S,
    SWEEP_TAKE_ROUNDS as TAKE_ROUNDS,
    SWEEPER_TTL_S,
)
from reelbatch.worker.engine import depth, fanout as fan
from reelbatch.worker.engine.batch import enqueue
from reelbatch.worker.engine.line import feed
from reelbatch.worker.engine.next import Next
from reelbatch.worker.providers import entry
from reelbatch.worker.runtime import Runtime


def horizon_s(settings: Settings) -> float:
    """How far ahead a sweep sends due steps; a poll waiting at least this long is left in the
    due set. `run` sweeps every 5 s and beat checks every ``sweep_every_s``, both within it."""
    return HORIZON_FACTOR * settings.sweep_every_s


def lost_after_s(settings: Settings) -> float:
    """How long past its countdown a sent step is recorded as due: sent again only when it has
    not run ``sweep_grace_s`` after it should have, the sweep's look-ahead notwithstanding."""
    return settings.sweep_grace_s + horizon_s(settings)


def busy_recheck_s(settings: Settings) -> float:
    """When a step that found its item held by a running task looks again."""
    return min(5.0, settings.task_lease_s / 2)


def sweep(ctx: Runtime, batch: str, now: float | None = None) -> list[Next]:
    now = now or time.time()
    store, meta = ctx.store, ctx.store.batch(batch)
    if meta is None:
        return []
    store.mark_sweeper(SWEEPER_TTL_S)
    check_health(ctx, meta, now)
    for seen in depth.per_provider(ctx, meta):
        depth.learn(ctx, seen)
    if meta.start_at and meta.start_at <= now and store.mark_started(batch):
        return enqueue(ctx, batch)
    nexts: list[Next] = []
    fanout = ctx.fanout(batch)
    if not any(store.serving(p) for p in ctx.providers_of(meta)):
        return [] if fanout else feed(ctx, meta.provider, meta.max_concurrency)   # no worker has a key:
        # a step sent again would only wait beside the first
    for _ in range(TAKE_ROUNDS):
        taken = store.take_due(batch, now + horizon_s(ctx.settings), now, lost_after_s(ctx.settings))
        nexts += _due(ctx, meta, taken, now)
        if len(taken) < 1000:
            break
    if fanout is not None:   # pending items leave a provider that paused, come back when it is live
        return nexts + fan.reroute(ctx, meta, fanout)
    return nexts + feed(ctx, meta.provider, meta.max_concurrency)


def _due(ctx: Runtime, meta: BatchMeta, taken: list[tuple[str, float]], now: float) -> list[Next]:
    """The steps of items due (a kept wait ending, or a task lost), each with the rest of its wait."""
    store, batch, nexts = ctx.store, meta.name, []
    running = ctx.leases.live(batch, [i for i, _ in taken])
    store.look_again_at(batch, sorted(running), now + ctx.settings.task_lease_s)
    for (item_id, due), state in zip(taken, store.states(batch, [i for i, _ in taken]), strict=True):
        if item_id in running:
            continue   # its task still runs (a slow POST, a long download): looked at again soon
        if state is None or state in TERMINAL:
            store.clear_due(batch, item_id)
        elif state is S.PENDING:
            store.clear_due(batch, item_id)
            _back_in_line(ctx, meta, item_id)
        else:
            nexts.append(Next(RESUME[state], batch, item_id, max(0.0, due - now)))
    return nexts


def _back_in_line(ctx: Runtime, meta: BatchMeta, item_id: str) -> None:
    """A pending item whose wait ended: its slot freed, at the front of its line (lines, with
    several providers)."""
    fanout = ctx.fanout(meta.name)
    for provider in ctx.providers_of(meta):
        ctx.slots(provider).release(holder(meta.name, item_id))
    if fanout is not None:
        fan.place(ctx, meta.name, fanout, [item_id], front=True)
    else:
        ctx.slots(meta.provider).wait([holder(meta.name, item_id)], front=True)


def check_health(ctx: Runtime, meta: BatchMeta, now: float) -> str | None:
    """Pause the batch while something outside it stops it (its provider unreachable for longer
    than ``provider_unreachable_s``, its provider account refusing work, its output folder
    unwritable), resume it when that has
    passed; the reason it is paused, or None."""
    reason = _stopped_by(ctx, meta, now)
    if reason and not meta.paused:
        ctx.store.pause(meta.name, reason)
    elif not reason and meta.paused:
        ctx.store.unpause(meta.name)
    return reason


def _stopped_by(ctx: Runtime, meta: BatchMeta, now: float) -> str | None:
    fanout = ctx.fanout(meta.name)
    stops = {p: provider_stopped(ctx, p, meta.model, now) for p in ctx.providers_of(meta)}
    reasons = "; ".join(s for s in stops.values() if s)
    if all(stops.values()):   # a batch over several providers goes on while one of them is live,
        return reasons        # unless what is left is only the stopped providers' to make
    if fanout is not None and reasons and fan.stranded(ctx, meta.name, [p for p, s in stops.items() if not s]):
        return reasons
    output = ctx.store.output_problem(meta.name)
    if output:
        return f"cannot write to {meta.output} since {_clock(output.since)}: {output.why}"
    return None


def provider_stopped(ctx: Runtime, provider: str, model: str, now: float) -> str | None:
    """Why ``provider`` (or ``model`` there) takes no work: unreachable longer than
    ``provider_unreachable_s``, or its account stopped; None when it works."""
    down = ctx.store.provider_down(provider)
    if down and now - down.since >= ctx.settings.provider_unreachable_s:
        url = entry(provider).base_url(ctx.settings)
        return (f"{provider} at {url} cannot be reached since {_clock(down.since)} "
                f"({now - down.since:.0f} s): {down.why}")
    account = ctx.store.account_problem(provider, model)
    if account:
        return f"since {_clock(account.since)}: {account.why}"
    return None



def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def open_batches(ctx: Runtime) -> list[str]:
    """Batches with items not yet terminal."""
    found = []
    for batch in ctx.store.batches():
        counts = ctx.store.counts(batch)
        if any(n for state, n in counts.items() if state not in TERMINAL):
            found.append(batch)
    return found


def sweep_open_batches(ctx: Runtime, send: Callable[[list[Next]], int]) -> int:
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

"""A batch over several providers at work: its pending items put in their providers' lines, free
slots handed out in the route's order, pending items moved off a provider that paused, a failed
generation sent to another provider. The decisions are worker/engine/route.py's."""

from __future__ import annotations

from reelbatch.jobs.fanout import Fanout
from reelbatch.jobs.limits import holder
from reelbatch.jobs.state import IN_PROGRESS, TERMINAL, ItemState as S
from reelbatch.jobs.store import BatchMeta, ItemRecord
from reelbatch.worker.engine import route
from reelbatch.worker.engine.line import feed, wait_in_line
from reelbatch.worker.engine.next import Next
from reelbatch.worker.runtime import Runtime

LIVE_NOTE = "live"   # the providers live when the batch's items were last placed


def set_limits(ctx: Runtime, fanout: Fanout) -> None:
    for provider in fanout.providers:
        ctx.slots(provider).set_limit(fanout.limit(provider)[0])


def place(ctx: Runtime, batch: str, fanout: Fanout, item_ids: list[str], front: bool = False) -> None:
    """Put pending items in line: a bound one at its provider, the others where the route says."""
    up = route.live(ctx, fanout)
    specs = ctx.fanout_store.specs(batch, item_ids)
    bound = ctx.fanout_store.bindings(batch, item_ids)
    lines: dict[str, list[str]] = {}
    for item_id, item in specs.items():
        for provider in [b] if (b := bound.get(item_id)) else route.lines_for(fanout, item, up):
            lines.setdefault(provider, []).append(item_id)
    for provider, ids in lines.items():
        wait_in_line(ctx, provider, batch, ids, front=front)


def feed_batch(ctx: Runtime, fanout: Fanout) -> list[Next]:
    """Hand the live providers' free slots to waiting items, in the route's order."""
    up = route.feed_order(fanout, route.live(ctx, fanout))
    if fanout.route != "spread":
        return [n for p in up for n in feed(ctx, p, fanout.limit(p)[0])]
    nexts: list[Next] = []
    while up:
        provider = route.emptiest(ctx, fanout, up)
        got = feed(ctx, provider, fanout.limit(provider)[0], most=1)
        if not got:
            up.remove(provider)
        nexts += got
    return nexts


def enqueue(ctx: Runtime, meta: BatchMeta, fanout: Fanout, pending: list[str]) -> list[Next]:
    set_limits(ctx, fanout)
    place(ctx, meta.name, fanout, pending)
    ctx.fanout_store.flag(meta.name, LIVE_NOTE, ",".join(route.live(ctx, fanout)))
    return feed_batch(ctx, fanout)


def reroute(ctx: Runtime, meta: BatchMeta, fanout: Fanout, force: bool = False) -> list[Next]:
    """When the live providers changed (one paused, or came back): pending items bound to a paused
    provider are freed, and every pending item is put in the lines the route now says. Then free
    slots are handed out."""
    up = ",".join(route.live(ctx, fanout))
    if force or ctx.fanout_store.flag(meta.name, LIVE_NOTE) != up:
        pending = ctx.store.item_ids(meta.name, S.PENDING)
        bound = ctx.fanout_store.bindings(meta.name, pending)
        for item_id, provider in bound.items():
            if provider and ctx.provider_paused(provider) and ctx.fanout_store.unbind(meta.name, item_id):
                ctx.slots(provider).release(holder(meta.name, item_id))
        place(ctx, meta.name, fanout, pending)
        ctx.fanout_store.flag(meta.name, LIVE_NOTE, up)
    return feed_batch(ctx, fanout)


def park(ctx: Runtime, meta: BatchMeta, fanout: Fanout, item_id: str) -> list[Next]:
    """A pending item whose provider stopped (the account): freed from it at once, and in line at
    the providers still live; the rest of that provider's pending items follow."""
    ctx.store.clear_due(meta.name, item_id)
    ctx.slots(meta.provider).release(holder(meta.name, item_id))
    ctx.fanout_store.unbind(meta.name, item_id)
    return reroute(ctx, meta, fanout, force=True)


def elsewhere(ctx: Runtime, meta: BatchMeta, fanout: Fanout, rec: ItemRecord) -> list[Next]:
    """A generation that failed remotely, back to pending, goes to another live provider that can
    make it (``retry.on_other_provider``; else, or with none, again where it failed)."""
    failed_on = meta.provider
    ctx.slots(failed_on).release(holder(meta.name, rec.item_id))
    targets = route.elsewhere(rec.item, failed_on, route.live(ctx, fanout))
    if targets != [failed_on] and ctx.fanout_store.unbind(meta.name, rec.item_id):
        for provider in targets:
            wait_in_line(ctx, provider, meta.name, [rec.item_id])
    else:
        wait_in_line(ctx, failed_on, meta.name, [rec.item_id])
    return feed_batch(ctx, fanout)


def in_flight(ctx: Runtime, provider: str) -> list[tuple[BatchMeta, str, str, float]]:
    """(batch as the provider sees it, item id, generation id, submitted at) of every generation in
    flight at ``provider``: items of batches on that one provider, and items of batches over
    several that are bound to it."""
    found = [f for f in ctx.store.in_flight(provider) if ctx.fanout(f[0].name) is None]
    for name in ctx.store.batches():
        fanout, meta = ctx.fanout(name), ctx.store.batch(name)
        if fanout is None or meta is None or provider not in fanout.providers:
            continue
        concurrency, per_minute = fanout.limit(provider)
        seen = meta.model_copy(update={"provider": provider, "max_concurrency": concurrency,
                                       "requests_per_minute": per_minute})
        ids = sorted({i for state in IN_PROGRESS for i in ctx.store.item_ids(name, state)})
        found += [(seen, *flight) for flight in ctx.fanout_store.in_flight(name, ids, provider)]
    return found


def stranded(ctx: Runtime, batch: str, up: list[str]) -> bool:
    """Every item left (not terminal) is bound to, or can only be made by, a provider not in
    ``up``: the batch cannot go on until one of those comes back (a rerun after a new key)."""
    pending = ctx.store.item_ids(batch, S.PENDING)
    going = [i for state in S if state not in (*TERMINAL, S.PENDING) for i in ctx.store.item_ids(batch, state)]
    if not pending and not going:
        return False
    if any(p in up for p in ctx.fanout_store.bindings(batch, going).values()):
        return False   # an item on its way at a live provider
    return not any(item.can_go_to(p) for item in ctx.fanout_store.specs(batch, pending).values() for p in up)

"""Which provider takes the items of a batch over several (``provider: [..]`` and ``route:``).

Every decision of the fan-out is here; worker/engine/fanout.py acts on them.
- A provider is live unless paused: its account stopped (a key refused, no credits, the model gone)
  or it cannot be reached. A paused provider takes no items.
- A pending item waits in the line of every live provider that can make it (``cheapest``,
  ``spread``), or of the first of the list's live providers that can (``in-order``: the next one
  only while the first is paused).
- Free slots are handed out cheapest provider first (``cheapest``), in the list's order
  (``in-order``), or one at a time to the provider with the smallest share of its slots in use
  (``spread``). A slot that frees takes the next item waiting in its line at once, so no slot idles
  while an item it can take waits, except near the end of a batch: a slot leaves the waiting items
  to the other live providers when they would finish every one of them before it would finish one
  (``others_finish_sooner``, from the generation times learned at each provider), so the batch's
  last items do not wait behind a slow provider's running or queued generations.
- A slot binds the item it takes (atomically, only a pending item not bound elsewhere): from then on
  it is submitted, polled, reconciled and downloaded there. Only a pending item is ever unbound: its
  provider paused, or its generation failed remotely with ``retry.on_other_provider``.
"""

from __future__ import annotations

from reelbatch.jobs.fanout import Fanout
from reelbatch.jobs.item import Item
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import BatchMeta
from reelbatch.worker.engine import timing
from reelbatch.worker.runtime import Runtime


def live(ctx: Runtime, fanout: Fanout) -> list[str]:
    """The batch's providers that take items now, in the list's order."""
    return [p for p in fanout.providers if not ctx.provider_paused(p)]


def lines_for(fanout: Fanout, item: Item, up: list[str]) -> list[str]:
    """The live providers whose line a pending, unbound item waits in."""
    offered = [o.provider for o in item.offers if o.provider in up]
    if fanout.route == "in-order":
        return [p for p in fanout.providers if p in offered][:1]
    return offered


def feed_order(fanout: Fanout, up: list[str]) -> list[str]:
    """The order live providers are handed items when several have free slots."""
    order = fanout.by_price if fanout.route == "cheapest" else fanout.providers
    return [p for p in order if p in up]


def emptiest(ctx: Runtime, fanout: Fanout, candidates: list[str]) -> str:
    """``spread``: the provider with the smallest share of its slots in use."""
    return min(candidates, key=lambda p: ctx.slots(p).held() / fanout.limit(p)[0])


def elsewhere(item: Item, failed_on: str, up: list[str]) -> list[str]:
    """Where a generation that failed remotely may go again: the other live providers that can
    make it, else (none) the one it failed on."""
    others = [o.provider for o in item.offers if o.provider in up and o.provider != failed_on]
    return others or [failed_on]


def bound_here(ctx: Runtime, meta: BatchMeta, item_id: str) -> bool:
    """Whether a submit may go to the provider ``meta`` names: in a batch over several, only the
    one the item is bound to (a submit sent before it was moved off a paused provider is not)."""
    if ctx.fanout(meta.name) is None:
        return True
    return ctx.fanout_store.bindings(meta.name, [item_id])[item_id] == meta.provider


def takes(ctx: Runtime, provider: str, batch: str, item_id: str) -> bool:
    """Whether a free slot of ``provider`` takes the item (binding it there): always in a batch on
    one provider; in a batch over several, when the provider is live, the item's route allows it
    there and the item, still pending, is not bound to another provider."""
    fanout = ctx.fanout(batch)
    if fanout is None:
        return True
    if provider not in fanout.providers or ctx.provider_paused(provider):
        return False
    item = ctx.fanout_store.specs(batch, [item_id]).get(item_id)
    if item is None or not item.can_go_to(provider):
        return False
    bound = ctx.fanout_store.bindings(batch, [item_id])[item_id]
    if bound is None and provider not in lines_for(fanout, item, live(ctx, fanout)):
        return False   # in-order: a provider further down the list while an earlier one is live
    return ctx.fanout_store.bind(batch, item, provider)


def others_finish_sooner(ctx: Runtime, provider: str, batch: str, item_id: str) -> bool:
    """Near the end of a batch over several providers: whether the other live providers that can
    make the item would finish every item still waiting before ``provider`` would finish this one
    (started now, or after the generations queued ahead of it there). Each other provider ``q``
    finishes by then its free slots plus ``running x (horizon - T_q) / T_q`` refills, less the
    generations queued at it. False while a generation time is not yet learned at one of them."""
    fanout = ctx.fanout(batch)
    if fanout is None or fanout.route == "in-order":
        return False
    item = ctx.fanout_store.specs(batch, [item_id]).get(item_id)
    if item is None or ctx.fanout_store.bindings(batch, [item_id])[item_id] is not None:
        return False   # a bound item: at its provider it goes on, elsewhere it leaves the line
    others = [p for p in live(ctx, fanout) if p != provider and item.can_go_to(p)]
    learned = {p: _expected_s(ctx, item, p) for p in [provider, *others]}
    times = {p: t for p, t in learned.items() if t}
    if not others or len(times) < len(learned):
        return False
    running, held = fanout.limit(provider)[0], ctx.slots(provider).held()
    horizon = times[provider] * (1 + max(0, held + 1 - running) / running)
    room = sum(_finished_by(ctx, fanout, p, times[p], horizon) for p in others)
    if room < 1:
        return False
    if ctx.store.counts(batch)[S.PENDING] > room:
        return False   # more wait than the others could finish sooner (counted before reading bindings)
    pending = ctx.store.item_ids(batch, S.PENDING)
    waiting = sum(1 for b in ctx.fanout_store.bindings(batch, pending).values() if b is None)
    return waiting <= room


def _expected_s(ctx: Runtime, item: Item, provider: str) -> float | None:
    learned = timing.quantiles(ctx.store, item.bound_to(provider), (0.5,))
    return learned[0] if learned else None


def _finished_by(ctx: Runtime, fanout: Fanout, provider: str, expected_s: float, horizon: float) -> float:
    """How many items handed to ``provider`` now would be finished within ``horizon`` seconds."""
    if horizon <= expected_s:
        return 0.0   # none would finish sooner
    running, held = fanout.limit(provider)[0], ctx.slots(provider).held()
    refills = running * (horizon - expected_s) / expected_s
    return max(0.0, max(0, running - held) + refills - max(0, held - running))

"""Listing: one request for many generations, where the provider can list them (Oxen). Without its
event stream, a lister (worker/history_watch.py) looks at each model in flight on a tick: one page of the
generation history (newest first, up to 1,000 rows, each finished one with its charged cost), and
only when some generation in flight is not on it, the active queue and older pages. Every finished
item goes through the same ``observe`` as a poll's answer; every one still running has its slot
lease renewed. Per-item polls stay as a slow backstop.

The tick is set by a request budget: about ``REQUESTS_PER_COMPLETION`` requests per expected
completion (the items in flight over the expected generation time), counting what a look has been
costing (one request when the history page shows every generation in flight, more when the active
queue or older pages are needed), within the batches' polling intervals. The history also gives
the charged cost of generations whose completion came another way (an event, a poll):
``collect_charges``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis

from reelbatch.jobs import errors
from reelbatch.jobs.catalog import catalog
from reelbatch.jobs.limits import holder
from reelbatch.jobs.state import IN_PROGRESS
from reelbatch.jobs.store import BatchMeta
from reelbatch.worker.engine.next import Next
from reelbatch.worker.engine.poll import learned_policy, observe
from reelbatch.worker.providers.base import Generation, ListsGenerations
from reelbatch.worker.runtime import Runtime

log = logging.getLogger("reelbatch.lister")

PAGE_SIZE = 1000         # the history's largest page
MAX_PAGES = 10           # pages read back at most, looking for a generation or its cost
REQUESTS_PER_COMPLETION = 0.8   # the request budget the tick is set by
SLACK_S = 5.0            # clock slack between us and the provider; a just-submitted item may be missing
CHARGE_GIVE_UP_S = 86400.0   # a cost not found in the history after a day stays estimated


@dataclass(frozen=True)
class Flight:
    """An item whose generation is queued or running at the provider."""

    meta: BatchMeta
    item_id: str
    generation_id: str
    submitted_at: float


def in_flight(ctx: Runtime, provider: str) -> dict[str, list[Flight]]:
    """The provider's generations in flight, by the provider's model id."""
    groups: dict[str, list[Flight]] = {}
    for meta, item_id, generation_id, submitted_at in ctx.store.in_flight(provider):
        model = catalog().model_for(provider, meta.model).ids[provider]
        groups.setdefault(model, []).append(Flight(meta, item_id, generation_id, submitted_at))
    return groups


def tick_s(ctx: Runtime, group: list[Flight], requests_per_look: float = 1.0) -> float:
    """Seconds between two looks at one model: the time in which enough completions are expected
    to keep within REQUESTS_PER_COMPLETION, within the tightest polling intervals of the batches
    in flight."""
    first = group[0]
    rec = ctx.store.item(first.meta.name, first.item_id)
    expected = learned_policy(ctx, first.meta, rec).expected_s if rec else 600.0
    low = min(f.meta.min_interval_s for f in group)
    high = min(f.meta.max_interval_s for f in group)
    completions = requests_per_look / REQUESTS_PER_COMPLETION
    return min(high, max(low, completions * expected / len(group)))


def look(ctx: Runtime, provider: str, model: str, group: list[Flight],
         unfinished_at: float | None) -> tuple[list[Next], int]:
    """One look at a model's generations: the steps of the items that finished, and how many
    requests it took."""
    client = lister(ctx, provider)
    started = time.time()
    ours = {f.generation_id: f for f in group}
    size = page_size(len(group))
    seen = {g.generation_id: g for g in client.list_page(model, 1, size) if g.generation_id in ours}
    unseen = [f for f in group if f.generation_id not in seen and f.submitted_at < started - SLACK_S]
    requests = 1
    if unseen:
        deeper, more = _deeper(ctx, provider, model, unseen, ours, size)
        seen, requests = seen | deeper, requests + more
    ctx.provider_up(provider)
    nexts: list[Next] = []
    alive = []
    for generation_id, g in seen.items():
        flight = ours[generation_id]
        if g.unconfirmed:   # a history row that ended without saying how: ask its queue row
            g, requests = _confirm(ctx, provider, g), requests + 1
        if g.terminal:
            nexts += _finish(ctx, flight, g, unfinished_at)
        else:
            alive.append(holder(flight.meta.name, flight.item_id))
    ctx.slots(provider).renew_many(alive)
    return nexts, requests


def _confirm(ctx: Runtime, provider: str, g: Generation) -> Generation:
    """The generation's own answer (Oxen's queue row carries ``status``); on an error the row is
    left as it was (unknown: the item's backstop poll asks again)."""
    try:
        return ctx.provider(provider).get(g.generation_id)
    except errors.ProviderError as exc:
        log.info("lister: %s could not be confirmed (%s)", g.generation_id, exc)
        return g


def lister(ctx: Runtime, provider: str) -> ListsGenerations:
    """The provider's client, which lists its generations (only such providers have a lister)."""
    client = ctx.provider(provider)
    if not isinstance(client, ListsGenerations):
        raise TypeError(f"{provider} cannot list its generations")
    return client


def page_size(in_flight: int) -> int:
    """Rows per history page: enough for the generations in flight (the newest rows) with room
    for others on the account, and no more (a page of 1,000 rows is slow to read every tick)."""
    return min(PAGE_SIZE, max(100, 4 * in_flight))


def _deeper(ctx: Runtime, provider: str, model: str, unseen: list[Flight],
            ours: dict[str, Flight], size: int) -> tuple[dict[str, Generation], int]:
    """Generations in flight that the first page did not show: the active queue, then older
    history pages back to the oldest of them (a busy account pushes them down); and how many
    requests that took."""
    client = lister(ctx, provider)
    found = {g.generation_id: g for g in client.list_active(model) if g.generation_id in ours}
    missing = [f for f in unseen if f.generation_id not in found]
    oldest = min((f.submitted_at for f in missing), default=0.0) - SLACK_S
    requests = 1
    for page in range(2, MAX_PAGES + 1):
        if not missing:
            break
        requests += 1
        rows = client.list_page(model, page, size)
        found |= {g.generation_id: g for g in rows if g.generation_id in ours}
        missing = [f for f in missing if f.generation_id not in found]
        if len(rows) < size or all((g.enqueued_at or 0.0) < oldest for g in rows):
            break
    return found, requests   # what is still missing is left to its per-item backstop poll


def _finish(ctx: Runtime, flight: Flight, g: Generation, unfinished_at: float | None) -> list[Next]:
    """Move one finished item on; an error stays with that item (seen again on the next look, or
    by its own backstop poll), so the steps found for the others are still sent."""
    rec = ctx.store.item(flight.meta.name, flight.item_id)
    if rec is None or rec.state not in IN_PROGRESS or rec.generation_id != flight.generation_id:
        return []
    try:
        return observe(ctx, flight.meta, rec, g, unfinished_at=unfinished_at)
    except redis.RedisError:
        raise   # Redis itself: the whole look waits for it
    except Exception:   # noqa: BLE001 - logged; the item is not lost (see above)
        log.exception("lister: %s/%s could not be moved on", flight.meta.name, flight.item_id)
        return []


def collect_charges(ctx: Runtime, provider: str) -> int:
    """Read the history pages that hold the generations counted at their estimate (finished by an
    event or a poll: queue rows and events carry no cost) and charge each its cost; how many."""
    owed = ctx.store.owed_charges(provider)
    if not owed:
        return 0
    ids = ctx.store.generation_ids([(batch, item_id) for batch, item_id, _ in owed])
    want = {gid: (batch, item_id) for (batch, item_id, _), gid in zip(owed, ids, strict=True) if gid}
    for (batch, item_id, _), gid in zip(owed, ids, strict=True):
        if not gid:
            ctx.store.charge(provider, batch, item_id, None)
    oldest = min(since for _, _, since in owed) - SLACK_S
    charged = 0
    for page in range(1, MAX_PAGES + 1):
        rows = lister(ctx, provider).list_page(None, page, PAGE_SIZE)
        for g in rows:
            if g.generation_id in want and (g.terminal or g.unconfirmed) and g.cost_usd is not None:
                batch, item_id = want.pop(g.generation_id)
                charged += ctx.store.charge(provider, batch, item_id, g.cost_usd)
        if not want or len(rows) < PAGE_SIZE or all((g.enqueued_at or 0.0) < oldest for g in rows):
            break
    _give_up(ctx, provider, owed, want)
    return charged


def _give_up(ctx: Runtime, provider: str, owed: list[tuple[str, str, float]],
             want: dict[str, tuple[str, str]]) -> None:
    """Costs the history has not shown for a day stay estimated, and are no longer looked for."""
    left = set(want.values())
    for batch, item_id, since in owed:
        if (batch, item_id) in left and time.time() - since > CHARGE_GIVE_UP_S:
            ctx.store.charge(provider, batch, item_id, None)

"""At the end of a run: the provider's generations of the batch's model made since the batch
started that no item claims (a submit whose answer was lost and whose row showed only after its
item gave up, or a generation made outside reelbatch). One younger than a lost submit's look
window may be a submit whose answer is still on its way: it is left out. Each that matches an item
still pending (same model and prompt, as a reconcile matches) is adopted by it; the rest are
recorded for `status`, the run's summary and the report. Only where the provider lists what the
account made (``ListsMadeGenerations``: Oxen's queue and history, the AI/ML API's request log);
matching needs ``FindsLostSubmits``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from reelbatch.jobs import errors
from reelbatch.jobs.catalog import catalog, provider_request
from reelbatch.jobs.limits import holder
from reelbatch.jobs.state import ItemState as S, Step
from reelbatch.jobs.store import BatchMeta, ItemRecord
from reelbatch.worker.engine.next import Next
from reelbatch.worker.engine.orphans import adopt
from reelbatch.worker.engine.submit import look_window_s, resolver
from reelbatch.worker.providers.base import FindsLostSubmits, Generation, ListsMadeGenerations
from reelbatch.worker.runtime import Runtime

log = logging.getLogger("reelbatch.worker")
SLACK_S = 5.0          # clock slack between us and the provider
MAX_MATCHED = 200      # pending items asked about at most (one request each)


@dataclass(frozen=True)
class Unclaimed:
    generation_id: str
    model: str
    created_at: float | None
    cost_usd: float | None
    status: str


def look(ctx: Runtime, batch: str) -> tuple[list[Next], list[Unclaimed]]:
    """Adopt or record the batch's unclaimed generations at each of its providers: the steps of the
    items that adopted one, and those recorded now. In a batch over several providers, a pending
    item that can go to the provider where its generation was found is bound there."""
    meta = ctx.store.batch(batch)
    if meta is None:
        return [], []
    nexts: list[Next] = []
    recorded: list[Unclaimed] = []
    for provider in ctx.providers_of(meta):
        found_nexts, found = _look_at(ctx, ctx.seen_by(meta, provider))
        nexts += found_nexts
        recorded += found
    return nexts, recorded


def _look_at(ctx: Runtime, meta: BatchMeta) -> tuple[list[Next], list[Unclaimed]]:
    batch = meta.name
    client = ctx.provider(meta.provider)
    if not isinstance(client, ListsMadeGenerations):
        return [], []
    model = catalog().model_for(meta.provider, meta.model).ids[meta.provider]
    answered_by = time.time() - look_window_s(ctx)   # a newer one may be a POST still unanswered
    try:
        found = {g.generation_id: g for g in client.made_since(model, meta.created_at - SLACK_S)
                 if (g.enqueued_at or 0.0) <= answered_by
                 and ctx.store.generation_owner(meta.provider, g.generation_id) is None}
        nexts = _adopt_pending(ctx, meta, found) if found else []
    except errors.ProviderError as exc:
        log.info("%s: the provider's generations could not be listed (%s)", batch, exc)
        return [], []
    recorded = [Unclaimed(g.generation_id, model, g.enqueued_at, g.cost_usd, g.status.value)
                for g in found.values()
                if ctx.store.record_unclaimed(batch, g.generation_id, model, g.enqueued_at,
                                    g.cost_usd, g.status.value)]
    return nexts, recorded


def _adopt_pending(ctx: Runtime, meta: BatchMeta, found: dict[str, Generation]) -> list[Next]:
    """Pending items that match an unclaimed generation adopt it (it leaves ``found``)."""
    client = ctx.provider(meta.provider)
    if not isinstance(client, FindsLostSubmits) or meta.cancelled:
        return []
    nexts = []
    for rec in _pending_here(ctx, meta)[:MAX_MATCHED]:
        request = provider_request(rec.item, resolver(ctx))
        for g in client.find(request, since=meta.created_at - SLACK_S):
            if g.generation_id in found and _bound_here(ctx, meta, rec) and \
                    ctx.store.claim_generation(meta.provider, g.generation_id, holder(meta.name, rec.item_id)):
                if adopt(ctx, meta, rec, g.generation_id):
                    found.pop(g.generation_id)
                    nexts.append(Next(Step.POLL, meta.name, rec.item_id, 0))
                break
        if not found:
            break
    return nexts


def _pending_here(ctx: Runtime, meta: BatchMeta) -> list[ItemRecord]:
    """The pending items the provider ``meta`` names can make, each as that provider makes it (in a
    batch over several: its model id there)."""
    pending = list(ctx.store.items(meta.name, S.PENDING))
    if ctx.fanout(meta.name) is None:
        return pending
    return [rec.model_copy(update={"item": rec.item.bound_to(meta.provider)}) for rec in pending
            if rec.item.can_go_to(meta.provider)]


def _bound_here(ctx: Runtime, meta: BatchMeta, rec: ItemRecord) -> bool:
    """A batch over several providers: the item bound to this provider (it stays pending until it
    adopts the generation); always for a batch on one."""
    return ctx.fanout(meta.name) is None or ctx.fanout_store.bind(meta.name, rec.item, meta.provider)

"""The batch budget: each submit reserves its item's estimated cost; past ``max_cost_usd`` the item
waits (kind budget) until the limit is raised and the batch is run again."""

from __future__ import annotations

from reelbatch.jobs import errors
from reelbatch.jobs.store import BatchMeta, ItemRecord
from reelbatch.worker.runtime import Runtime


def reserve(ctx: Runtime, meta: BatchMeta, rec: ItemRecord) -> bool:
    """Reserve the item's estimated cost; False (and the item parked) when it would pass the limit."""
    if meta.max_cost_usd is None:
        return True
    if ctx.store.commit_cost(meta.name, rec.item.estimated_cost_usd) <= meta.max_cost_usd + 1e-9:
        return True
    unreserve(ctx, meta, rec)
    ctx.store.clear_due(meta.name, rec.item_id)
    exc = errors.BudgetExceeded(f"waiting: submitting it would pass max_cost_usd {meta.max_cost_usd}")
    ctx.store.wait_for_budget(meta.name, rec.item_id, exc.kind, str(exc))
    return False


def unreserve(ctx: Runtime, meta: BatchMeta, rec: ItemRecord) -> None:
    """Give back the estimated cost reserved for the item's submit."""
    if meta.max_cost_usd is not None:
        ctx.store.commit_cost(meta.name, -rec.item.estimated_cost_usd)

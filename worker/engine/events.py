"""Acting on a completion the provider pushed (Oxen's /api/events): the same ``observe`` a poll's
answer goes through, for the item that owns the generation."""

from __future__ import annotations

from reelbatch.jobs.limits import split_holder
from reelbatch.jobs.state import IN_PROGRESS
from reelbatch.worker.engine.next import Next
from reelbatch.worker.engine.poll import observe
from reelbatch.worker.providers.base import Generation
from reelbatch.worker.runtime import Runtime


def owner_of(ctx: Runtime, provider: str, generation_id: str) -> tuple[str, str] | None:
    who = ctx.store.generation_owner(provider, generation_id)
    return split_holder(who) if who else None


def on_event(ctx: Runtime, provider: str, generation: Generation) -> list[Next]:
    """The steps a pushed completion starts; nothing for generations that are not ours (another
    tool on the same account) or items that moved on."""
    owner = owner_of(ctx, provider, generation.generation_id)
    if owner is None:
        return []
    batch, item_id = owner
    meta, rec = ctx.load(batch, item_id)
    if meta is None or rec is None or rec.state not in IN_PROGRESS:
        return []
    return observe(ctx, meta, rec, generation)

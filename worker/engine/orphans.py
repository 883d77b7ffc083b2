"""An answer that arrives for an item that has moved on: the submit POST returns a generation id
after the item was sent back, failed or cancelled. That generation is paid for. The item adopts it
when it still needs one (back in pending or submitting, or failed, with no generation of its own);
otherwise it is a known orphan: counted in the batch's spend and kept for `status` to show."""

from __future__ import annotations

import logging

from reelbatch.jobs.limits import holder
from reelbatch.jobs.state import ItemState as S, Step
from reelbatch.jobs.store import BatchMeta, ItemRecord, TransitionRefused
from reelbatch.worker.engine.next import Next
from reelbatch.worker.engine.poll import poll_policy
from reelbatch.worker.runtime import Runtime

log = logging.getLogger("reelbatch.worker")
ADOPT_FROM = (S.SUBMITTING, S.FAILED)


def late_answer(ctx: Runtime, meta: BatchMeta, rec: ItemRecord, generation_id: str) -> list[Next]:
    """The steps after a generation id came back for an item that is no longer submitting it."""
    batch, item_id = meta.name, rec.item_id
    if not ctx.store.claim_generation(meta.provider, generation_id, holder(batch, item_id)):
        return []   # another item found it first (a reconcile): it is held, not an orphan
    now = ctx.store.item(batch, item_id)
    if now is not None and _adopt(ctx, meta, now, generation_id):
        return [Next(Step.POLL, batch, item_id, poll_policy(ctx, meta, now).first_delay())]
    state = now.state.value if now is not None else "gone"
    why = f"the submit answered after the item was {state}"
    if ctx.store.record_orphan(batch, generation_id, item_id, rec.item.estimated_cost_usd, why):
        log.warning("%s/%s: generation %s is paid for but no item holds it (%s)", batch, item_id,
                    generation_id, why)
    return []


def _adopt(ctx: Runtime, meta: BatchMeta, now: ItemRecord, generation_id: str) -> bool:
    """Give the generation to its item when the item still needs one and the batch goes on."""
    if meta.cancelled or now.generation_id or now.state not in (S.PENDING, *ADOPT_FROM):
        return False
    if now.state is S.FAILED and now.error_kind not in ("submit_unknown", "internal"):
        return False
    batch, item_id = meta.name, now.item_id
    try:
        if now.state is S.PENDING:
            ctx.store.transition(batch, item_id, S.SUBMITTING, [S.PENDING], incr={"attempts": 1})
        ctx.store.transition(batch, item_id, S.QUEUED, ADOPT_FROM, generation_id=generation_id,
                             transient_retries=0, error_kind=None, error=None)
    except TransitionRefused:
        return False
    ctx.slots(meta.provider).acquire(holder(batch, item_id), meta.max_concurrency)
    return True

"""The waiting line for a provider's concurrency slots: an item holds a slot from the moment it is
handed a submit task until its remote generation ends."""

from __future__ import annotations

from reelbatch.jobs.limits import holder, split_holder
from reelbatch.jobs.state import Step
from reelbatch.worker.engine.next import Next
from reelbatch.worker.engine.route import others_finish_sooner, takes
from reelbatch.worker.runtime import Runtime


def feed(ctx: Runtime, provider: str, default_limit: int = 5, most: int | None = None) -> list[Next]:
    """Hand free slots to the items waiting longest (at most ``most``). Each gets a submit task
    holding its slot; in a batch over several providers it is bound to this one as it gets it (an
    item bound elsewhere, or that this provider cannot take now, leaves this line)."""
    if ctx.account_stopped(provider):
        return []   # a key refused or no credits: nothing is handed a submit until a rerun
    slots = ctx.slots(provider)
    ctx.store.queue_depth(provider).open()   # the slots past the running limit: engine/depth.py
    ready: list[Next] = []
    while (most is None or len(ready) < most) and (who := slots.next_waiting()) is not None:
        if others_finish_sooner(ctx, provider, *split_holder(who)):
            slots.wait([who], front=True)   # near the end: left to faster providers (route.py)
            break
        if not slots.acquire(who, default_limit):
            slots.wait([who], front=True)
            break
        batch, item_id = split_holder(who)
        if not takes(ctx, provider, batch, item_id):
            slots.release(who)
            continue
        ready.append(Next(Step.SUBMIT, batch, item_id))
    return ready


def release(ctx: Runtime, provider: str, batch: str, item_id: str) -> list[Next]:
    """Give the item's slot back and hand it to the next waiting item."""
    ctx.slots(provider).release(holder(batch, item_id))
    return feed(ctx, provider)


def requeue(ctx: Runtime, provider: str, batch: str, item_id: str) -> list[Next]:
    """Put a pending item back in line (after a remote failure or a refused submit)."""
    ctx.slots(provider).wait([holder(batch, item_id)])
    return release(ctx, provider, batch, item_id)


def wait_in_line(ctx: Runtime, provider: str, batch: str, item_ids: list[str],
                 front: bool = False) -> None:
    ctx.slots(provider).wait([holder(batch, i) for i in item_ids], front=front)

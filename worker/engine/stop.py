"""`reelbatch cancel`: nothing new is submitted; pending items are cancelled at once; queued and
running generations are cancelled at the provider where it allows it, by the workers when some are
running, else right here (on one machine the command holds the same keys)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from reelbatch.jobs.errors import ProviderError
from reelbatch.jobs.state import IN_PROGRESS, ItemState as S, Step
from reelbatch.worker.engine import cancel, poll
from reelbatch.worker.engine.next import Next
from reelbatch.worker.runtime import Runtime


@dataclass
class Stopped:
    """What `cancel` did, item by item, and the steps left for workers."""

    done: Counter[str] = field(default_factory=Counter)   # cancelled | asked | finishing | sent
    nexts: list[Next] = field(default_factory=list)


def cancel_batch(ctx: Runtime, batch: str, abandon: bool, here: bool) -> Stopped:
    """Stop the batch. ``here``: no worker is running, so the provider is asked from this process."""
    ctx.store.update_batch(batch, cancelled=True, abandon=abandon)
    out = Stopped()
    for item_id in ctx.store.item_ids(batch, S.PENDING):
        out.nexts += cancel.cancel(ctx, batch, item_id)
        out.done["cancelled"] += 1
    remote = [i for state in IN_PROGRESS for i in ctx.store.item_ids(batch, state)]
    if not here:
        out.nexts += [Next(Step.CANCEL, batch, item_id) for item_id in remote]
        out.done["sent"] += len(remote)
        return out
    for item_id in remote:
        _cancel_here(ctx, batch, item_id, out)
    return out


def _cancel_here(ctx: Runtime, batch: str, item_id: str, out: Stopped) -> None:
    """Ask the provider, then poll once to record what became of the generation."""
    try:
        follow = cancel.cancel(ctx, batch, item_id)
    except ProviderError:      # no key or no provider here: the next run (or a worker) does it
        out.done["later"] += 1
        return
    if any(n.step is Step.POLL and n.item_id == item_id for n in follow):
        follow = [n for n in follow if n.item_id != item_id] + poll.poll(ctx, batch, item_id)
    out.nexts += follow
    rec = ctx.store.item(batch, item_id)
    state = rec.state if rec else S.CANCELLED
    out.done["cancelled" if state is S.CANCELLED else "finishing"] += 1

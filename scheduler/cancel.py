"""`reelbatch cancel`: nothing new is submitted; queued and running generations are cancelled
where the provider allows it (workers do the calls: they hold the keys)."""

from __future__ import annotations

from celery import Celery

from reelbatch.jobs.state import ItemState as S
from reelbatch.worker.context import WorkerContext
from reelbatch.worker.dispatch import dispatch
from reelbatch.worker.steps import Next


def cancel_batch(ctx: WorkerContext, app: Celery, batch: str, abandon: bool = False) -> int:
    """Mark the batch cancelled and send a cancel task for every item not yet finished."""
    store = ctx.store
    store.update_batch(batch, cancelled=True, abandon=abandon)
    nexts = [Next("cancel", batch, item_id) for state in (S.PENDING, S.QUEUED, S.RUNNING)
             for item_id in store.item_ids(batch, state)]
    return dispatch(app, store, nexts, ctx.settings.max_countdown_s)

"""Registering a planned batch in the state store and putting its items to work.

Running the same manifest again resumes: items are matched by content key, so a succeeded item is
never regenerated, an item in flight is polled (never resubmitted) and only pending items are
submitted. An item whose content changed (an edited prompt) is a new item."""

from __future__ import annotations

import time
from dataclasses import dataclass

from celery import Celery

from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.item import Item
from reelbatch.jobs.state import TERMINAL, ItemState as S
from reelbatch.jobs.store import BatchMeta, Store
from reelbatch.worker.context import WorkerContext
from reelbatch.worker.dispatch import dispatch
from reelbatch.worker.limits import holder
from reelbatch.worker.steps import Next, feed


@dataclass(frozen=True)
class Registration:
    new: int
    kept: int
    replaced: int


def batch_meta(plan, start_at: float | None = None) -> BatchMeta:
    m = plan.manifest
    return BatchMeta(
        name=m.name, provider=m.provider, model=m.model, output=str(m.output),
        max_concurrency=m.limits.max_concurrency, requests_per_minute=m.limits.requests_per_minute,
        max_cost_usd=m.limits.max_cost_usd, max_attempts=m.retry.max_attempts,
        first_after_s=m.polling.first_after_s, min_interval_s=m.polling.min_interval_s,
        max_interval_s=m.polling.max_interval_s, start_at=start_at, created_at=time.time())


def register(store: Store, plan, start_at: float | None = None) -> Registration:
    """Save the batch and add the items it does not have yet."""
    meta = batch_meta(plan, start_at)
    known = store.known_keys(meta.name)
    fresh = [item for item in plan.items if item.content_key not in known]
    replaced = _replace_changed(store, meta.name, fresh, set(known.values()))
    old = store.batch(meta.name)
    if old is not None:
        meta = meta.model_copy(update={"created_at": old.created_at, "cancelled": False})
    store.save_batch(meta)
    store.add_items(meta.name, fresh)
    return Registration(new=len(fresh), kept=len(plan.items) - len(fresh), replaced=replaced)


def _replace_changed(store: Store, batch: str, fresh: list[Item], known_ids: set[str]) -> int:
    """An item id whose content changed: forget the old item unless its generation is in flight."""
    replaced = 0
    for item in fresh:
        if item.item_id not in known_ids:
            continue
        old = store.item(batch, item.item_id)
        if old is not None and old.state not in TERMINAL and old.state is not S.PENDING:
            raise ManifestError("changed while its generation is in flight; wait for it or "
                                "`reelbatch cancel` first", field=f"item {item.item_id}")
        if old is not None:
            store.remove_item(batch, old)
            replaced += 1
    return replaced


RESUME = {S.SUBMITTING: "reconcile", S.QUEUED: "poll", S.RUNNING: "poll", S.DOWNLOADING: "download"}


def enqueue(ctx: WorkerContext, app: Celery, batch: str) -> int:
    """Put pending items in line for their provider's slots; resume everything in flight."""
    store, meta = ctx.store, ctx.store.batch(batch)
    ctx.slots(meta.provider).set_limit(meta.max_concurrency)
    if meta.start_at and meta.start_at > time.time():
        return 0  # the sweeper starts it when due
    pending = store.item_ids(batch, S.PENDING)
    store.clear_errors(batch, pending)
    ctx.slots(meta.provider).wait([holder(batch, i) for i in pending])
    nexts = [Next(task, batch, item_id) for state, task in RESUME.items()
             for item_id in store.item_ids(batch, state)]
    nexts += feed(ctx, meta.provider, meta.max_concurrency)
    return dispatch(app, store, nexts, ctx.settings.max_countdown_s)

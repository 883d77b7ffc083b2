"""Whole-batch operations: register a planned batch, put it to work, retry or cancel it. Each
returns the steps to send; worker/control.py sends them.

Running the same manifest again resumes: items are matched by content key, so a succeeded item is
never regenerated, an item in flight is polled (never resubmitted) and only pending items are
submitted. An item whose content changed (an edited prompt) is a new item."""

from __future__ import annotations

import time
from dataclasses import dataclass

from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.item import Item
from reelbatch.jobs.state import RESUME, TERMINAL, Step
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import BatchMeta, Store, TransitionRefused
from reelbatch.worker.context import WorkerContext
from reelbatch.worker.engine.line import feed, wait_in_line
from reelbatch.worker.engine.next import Next


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


def enqueue(ctx: WorkerContext, batch: str) -> list[Next]:
    """Put pending items in line for their provider's slots; resume everything in flight."""
    store, meta = ctx.store, ctx.store.batch(batch)
    ctx.slots(meta.provider).set_limit(meta.max_concurrency)
    if meta.start_at and meta.start_at > time.time():
        return []  # the sweeper starts it when due
    pending = store.item_ids(batch, S.PENDING)
    store.clear_errors(batch, pending)
    wait_in_line(ctx, meta.provider, batch, pending)
    nexts = [Next(step, batch, item_id) for state, step in RESUME.items()
             for item_id in store.item_ids(batch, state)]
    return nexts + feed(ctx, meta.provider, meta.max_concurrency)


def retry_failed(ctx: WorkerContext, batch: str, kind: str | None = None) -> tuple[int, list[Next]]:
    """Failed items (of one kind) back to pending and to work: how many, and the steps to send.
    Succeeded items are never touched."""
    store, moved = ctx.store, 0
    for rec in store.items(batch, S.FAILED):
        if kind and rec.error_kind != kind:
            continue
        try:
            store.transition(batch, rec.item_id, S.PENDING, [S.FAILED], attempts=0,
                             transient_retries=0, internal_errors=0, error_kind=None, error=None,
                             completed_at=None)
            moved += 1
        except TransitionRefused:
            pass
    if not moved:
        return 0, []
    store.update_batch(batch, cancelled=False)
    return moved, enqueue(ctx, batch)


def failure_kinds(store: Store, batch: str) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for rec in store.items(batch, S.FAILED):
        kinds[rec.error_kind or "error"] = kinds.get(rec.error_kind or "error", 0) + 1
    return kinds


def cancel_batch(ctx: WorkerContext, batch: str, abandon: bool = False) -> list[Next]:
    """Mark the batch cancelled and send a cancel step to every item not yet finished (workers do
    the provider calls: they hold the keys)."""
    store = ctx.store
    store.update_batch(batch, cancelled=True, abandon=abandon)
    return [Next(Step.CANCEL, batch, item_id) for state in (S.PENDING, S.QUEUED, S.RUNNING)
            for item_id in store.item_ids(batch, state)]

"""Whole-batch operations: register a planned batch, put it to work, retry or cancel it. Each
returns the steps to send; worker/control.py sends them.

Running the same manifest again resumes: items are matched by content key, so a succeeded item is
never regenerated, an item in flight is polled (never resubmitted) and only pending items are
submitted. An item whose content changed (an edited prompt) is a new item."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from reelbatch.jobs.content import moved_same_work, rekeyed
from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.fanout import Fanout
from reelbatch.jobs.item import Item
from reelbatch.jobs.manifest import Manifest
from reelbatch.jobs.offers import kept_spec, same_work
from reelbatch.jobs.state import IN_FLIGHT, RESUME, ItemState as S
from reelbatch.jobs.store import BatchMeta, ItemRecord, Store
from reelbatch.worker import folder, outputs
from reelbatch.worker.engine import depth, fanout as fan
from reelbatch.worker.engine.line import feed, wait_in_line
from reelbatch.worker.engine.next import Next
from reelbatch.worker.runtime import Runtime


@dataclass
class Registration:
    """What registering a manifest did to the batch's items."""

    new: int = 0          # never seen: pending
    kept: int = 0         # unchanged: resumed where they are
    changed: int = 0      # edited under the same id: a new version (a paid one is kept aside)
    readopted: int = 0    # an earlier paid version is back in the manifest: no new generation
    dropped: int = 0      # left the manifest before being paid for: forgotten
    retired: int = 0      # left the manifest after being paid for: kept aside
    finishing: int = 0    # left the manifest while in flight: finished and recorded
    adopted: int = 0      # made into the output folder by another store: kept, not generated
    renamed: int = 0      # the same content under a new id (matrix tags were positional): kept



class PlannedBatch(Protocol):
    """What registering reads of a plan (scheduler/plan.py's Plan)."""

    @property
    def manifest(self) -> Manifest: ...
    @property
    def items(self) -> list[Item]: ...


def batch_meta(plan: PlannedBatch, start_at: float | None = None) -> BatchMeta:
    m = plan.manifest
    return BatchMeta(
        name=m.name, provider=m.provider, model=m.model, output=str(m.output),
        max_concurrency=m.limits.max_concurrency, queue_depth=m.limits.queue_depth,
        requests_per_minute=m.limits.requests_per_minute,
        max_cost_usd=m.limits.max_cost_usd, max_attempts=m.retry.max_attempts,
        lost_submit=m.retry.lost_submit,
        first_after_s=m.polling.first_after_s, min_interval_s=m.polling.min_interval_s,
        max_interval_s=m.polling.max_interval_s, give_up_after_s=m.polling.give_up_after_s,
        start_at=start_at, manifest=str(m.source),
        manifest_sha256=m.digest or None,
        created_at=time.time())


def register(store: Store, plan: PlannedBatch, start_at: float | None = None, adopt: bool = False) -> Registration:
    """Save the batch and make its items what the manifest says: new items pending, unchanged ones
    kept, edited ones a new version, and items that left it dropped (or, once paid, kept aside)."""
    meta = batch_meta(plan, start_at)
    folder.check_owner(Path(meta.output), meta.name)
    old = store.batch(meta.name)
    if old is not None:
        _check_same_manifest(old, meta, adopt)
        # a cancelled batch stays cancelled until `retry --kind cancelled` brings it back
        meta = meta.model_copy(update={"created_at": old.created_at, "cancelled": old.cancelled,
                                       "abandon": old.abandon})
    current = {rec.item_id: rec for rec in store.items(meta.name)}
    reg = Registration()
    _upgrade_moved(store, meta.name, plan.items, current, _folder(old), plan.manifest.folder)
    _adopt_renamed(store, meta, plan.items, current, reg)
    _refuse_edits_in_flight(plan.items, current)
    store.save_batch(meta)
    fanned = store.fanouts.save(meta.name, Fanout.of(plan.manifest, plan.items))
    for provider in plan.manifest.providers:
        store.clear_account_problem(provider, meta.model)   # a new key, a top-up: try again
    store.track_estimates(meta.name, current.values())   # a batch registered before: count them now
    _register_items(store, meta, plan.items, current, reg)
    if fanned:   # pending items take the plan's offers, bound nowhere yet
        store.fanouts.reset(meta.name, [i for i in plan.items if i.item_id in current
                                               and current[i.item_id].state is S.PENDING])
    wanted = {item.item_id for item in plan.items}
    for rec in current.values():
        if rec.item_id not in wanted:
            _leave(store, meta, rec, reg)
    adopted = folder.adopt_made_here(store, meta.name, Path(meta.output))
    reg.adopted = len(adopted)
    reg.new -= sum(item_id not in current for item_id in adopted)
    folder.claim(Path(meta.output), meta.name, store.identity())
    return reg


def _check_same_manifest(old: BatchMeta, meta: BatchMeta, adopt: bool) -> None:
    """Another manifest file under a batch's name is refused unless adopted; the same text in
    another place (a copy, a moved file, another checkout) is the same manifest."""
    moved = old.manifest_sha256 is not None and old.manifest_sha256 == meta.manifest_sha256
    if old.manifest and old.manifest != meta.manifest and not (adopt or moved):
        raise ManifestError(f"batch {meta.name!r} belongs to {old.manifest}; this is {meta.manifest}. "
                            "Rename this batch (name:), or take it over with --adopt", field="name")


def _folder(old: BatchMeta | None) -> Path | None:
    return Path(old.manifest).parent if old is not None and old.manifest else None


def _upgrade_moved(store: Store, batch: str, items: list[Item], current: dict[str, ItemRecord],
                   old_folder: Path | None, new_folder: Path) -> None:
    """Items saved when a local input was keyed by its path take the key of its bytes when the
    manifest asks for the same request (the files merely moved): kept, never paid again."""
    for item in items:
        rec = current.get(item.item_id)
        if rec is None or rec.item.content_key == item.content_key:
            continue
        if moved_same_work(rec.item, item, old_folder, new_folder):
            store.update(batch, item.item_id, spec=item.model_dump_json())
            current[item.item_id] = rec.model_copy(update={"item": item})


def _adopt_renamed(store: Store, meta: BatchMeta, items: list[Item], current: dict[str, ItemRecord],
                   reg: Registration) -> None:
    """A new id whose content an item leaving the manifest has (matrix values were tagged by
    position before; a value moved): that item's record, generation and files take the new id."""
    wanted = {item.item_id for item in items}
    leaving: dict[str, list[ItemRecord]] = {}
    for rec in current.values():
        if rec.item_id not in wanted and rec.state not in IN_FLIGHT:
            for key in filter(None, (rec.item.content_key, rekeyed(rec.item))):
                leaving.setdefault(key, []).append(rec)
    for item in items:
        candidates = leaving.get(item.content_key, [])
        while candidates and candidates[0].item_id not in current:
            candidates.pop(0)   # taken by an earlier new id
        if item.item_id in current or not candidates:
            continue
        rec = candidates.pop(0)
        moved = rec.model_copy(update={"item": item, "file": outputs.rename(meta, rec, item.item_id)})
        store.remove_item(meta.name, rec)
        store.restore_item(meta.name, moved)
        del current[rec.item_id]
        current[item.item_id] = moved
        reg.renamed += 1


def _refuse_edits_in_flight(items: list[Item], current: dict[str, ItemRecord]) -> None:
    """An item may not change while its generation runs: that paid work would have no home."""
    for item in items:
        rec = current.get(item.item_id)
        if rec and rec.item.content_key != item.content_key and rec.state in IN_FLIGHT:
            raise ManifestError("changed while its generation is in flight; wait for it or "
                                "`reelbatch cancel` first", field=f"item {item.item_id}")


def _register_items(store: Store, meta: BatchMeta, items: list[Item], current: dict[str, ItemRecord],
                    reg: Registration) -> None:
    """Unchanged items are kept; an edited one's old version goes aside; an earlier paid version
    the manifest asks for again comes back; the rest are added (in few round trips: a batch of
    100,000 new items registers in seconds)."""
    fresh = []
    for item in items:
        rec = current.get(item.item_id)
        if rec is not None and rec.item.content_key != item.content_key and same_work(rec.item, item):
            kept = kept_spec(rec.item, item, rec.state is S.PENDING)
            store.update(meta.name, item.item_id, spec=kept.model_dump_json())
            rec = current[item.item_id] = rec.model_copy(update={"item": kept})
        if rec is not None and rec.item.content_key == item.content_key:
            reg.kept += 1
            continue
        if rec is not None:
            reg.changed += 1
            _set_aside(store, meta, rec)
        fresh.append(item)
    archived = store.archived_many(meta.name, [(item.item_id, item.content_key) for item in fresh])
    added = []
    for item, back in zip(fresh, archived, strict=True):
        if back is not None:
            reg.readopted += 1
            store.restore_item(meta.name, back, file=outputs.restore(meta, back))
        else:
            reg.new += item.item_id not in current
            added.append(item)
    store.add_items(meta.name, added)


def _leave(store: Store, meta: BatchMeta, rec: ItemRecord, reg: Registration) -> None:
    """An item that left the manifest: finished if in flight, kept aside if paid, else dropped."""
    if rec.state in IN_FLIGHT:
        reg.finishing += 1
    elif rec.state is S.SUCCEEDED:
        reg.retired += 1
        _set_aside(store, meta, rec)
    else:
        reg.dropped += 1
        store.remove_item(meta.name, rec)


def _set_aside(store: Store, meta: BatchMeta, rec: ItemRecord) -> None:
    """A succeeded version goes aside with its file renamed to a versioned name; anything else
    (pending, failed, cancelled) was not paid for a video and is forgotten."""
    if rec.state is S.SUCCEEDED:
        store.archive_item(meta.name, rec, file=outputs.set_aside(meta, rec), archived_at=time.time())
    else:
        store.remove_item(meta.name, rec)


def enqueue(ctx: Runtime, batch: str) -> list[Next]:
    """Put pending items in line for their provider's slots; resume everything in flight."""
    store, meta = ctx.store, ctx.store.batch(batch)
    assert meta is not None, batch   # registered before it is enqueued; batches are never deleted
    fanout = ctx.fanout(batch, fresh=True)
    for seen in depth.per_provider(ctx, meta):
        depth.start(ctx, seen)   # the slots: the running limit and the queue depth beyond it
    if meta.start_at and meta.start_at > time.time():
        return []  # the sweeper starts it when due
    pending = store.item_ids(batch, S.PENDING)
    store.clear_errors(batch, pending)
    if fanout is None:
        wait_in_line(ctx, meta.provider, batch, pending)
    nexts = [Next(step, batch, item_id) for state, step in RESUME.items()
             for item_id in _not_running(ctx, batch, store.item_ids(batch, state))]
    if fanout is not None:
        return nexts + fan.enqueue(ctx, meta, fanout, pending)
    return nexts + feed(ctx, meta.provider, meta.max_concurrency)


def _not_running(ctx: Runtime, batch: str, item_ids: list[str]) -> list[str]:
    """The items no running task holds: a task still at work carries its item on by itself (the
    sweeper looks again if it dies)."""
    running = ctx.leases.live(batch, item_ids)
    ctx.store.look_again_at(batch, sorted(running), time.time() + ctx.settings.task_lease_s)
    return [item_id for item_id in item_ids if item_id not in running]

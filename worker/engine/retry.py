"""`reelbatch retry`: failed (or, when asked, cancelled) items back to work, each from where it
can go on without paying twice. A generation that exists is polled or downloaded again; only an
item whose generation never existed, failed at the provider, or is gone is submitted again."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from reelbatch.jobs.errors import PERMANENT_KINDS, REMOTE_FAILURE_KINDS
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import ItemRecord, Store, TransitionRefused
from reelbatch.worker.engine.batch import enqueue
from reelbatch.worker.engine.next import Next
from reelbatch.worker.runtime import Runtime

CANCELLED = "cancelled"   # the pseudo kind that selects cancelled items
FRESH = dict(transient_retries=0, internal_errors=0, error_kind=None, error=None, completed_at=None)


@dataclass
class Retried:
    """What `retry` did: items sent back, by where they went, and what it left alone."""

    moved: Counter[str] = field(default_factory=Counter)      # submit | poll | download -> count
    skipped: Counter[str] = field(default_factory=Counter)    # permanent kind -> count

    @property
    def total(self) -> int:
        return sum(self.moved.values())


def resume_state(rec: ItemRecord) -> S:
    """Where a failed item goes on: its download, its generation's polling, or a new submit."""
    if rec.state is S.CANCELLED or not rec.generation_id or rec.error_kind == "missing" \
            or rec.error_kind in REMOTE_FAILURE_KINDS:
        return S.PENDING
    return S.DOWNLOADING if rec.detected_at else S.QUEUED


def _wanted(rec: ItemRecord, kind: str | None, include_permanent: bool) -> bool:
    """Asked for by kind; or, without one, every failed item, except those that would be paid for
    again for a reason retrying cannot fix (unless ``include_permanent``). Going on with a
    generation that exists (a 401 on a poll, say) costs nothing and is always wanted."""
    if kind:
        return rec.error_kind == kind or (kind == CANCELLED and rec.state is S.CANCELLED)
    if rec.state is not S.FAILED:
        return False
    return include_permanent or rec.error_kind not in PERMANENT_KINDS or resume_state(rec) is not S.PENDING


def _send_back(store: Store, batch: str, rec: ItemRecord) -> str | None:
    """Move one item; the step it will take, or None when another command moved it first."""
    target = resume_state(rec)
    fields: dict[str, Any] = dict(FRESH)
    if target is S.PENDING:
        fields.update(attempts=0, generation_id=None, video_url=None, detected_at=None,
                      reconcile_resubmits=0)
    elif target is S.DOWNLOADING:
        fields.update(url_stale=1)
    else:   # polled again: a stuck one gets a new polling.give_up_after_s from now
        fields.update(in_flight_since=time.time())
    try:
        store.transition(batch, rec.item_id, target, [rec.state], **fields)
    except TransitionRefused:
        return None
    return {S.PENDING: "submit", S.QUEUED: "poll", S.DOWNLOADING: "download"}[target]


def retry_items(ctx: Runtime, batch: str, kind: str | None = None,
                include_permanent: bool = False) -> tuple[Retried, list[Next]]:
    """Send back the failed items of ``kind`` (all kinds worth retrying when None; ``cancelled``
    brings back cancelled items); what was done and the steps to send."""
    store, done = ctx.store, Retried()
    states = (S.CANCELLED,) if kind == CANCELLED else (S.FAILED,)
    for state in states:
        for rec in store.items(batch, state):
            if not _wanted(rec, kind, include_permanent):
                if not kind:
                    done.skipped[rec.error_kind or "error"] += 1
                continue
            step = _send_back(store, batch, rec)
            if step:
                done.moved[step] += 1
    if not done.total:
        return done, []
    store.update_batch(batch, cancelled=False)
    return done, enqueue(ctx, batch)


def failure_kinds(store: Store, batch: str) -> dict[str, int]:
    """Failed items by kind, and cancelled items under ``cancelled``."""
    kinds = Counter(rec.error_kind or "error" for rec in store.items(batch, S.FAILED))
    cancelled = store.counts(batch)[S.CANCELLED]
    if cancelled:
        kinds[CANCELLED] = cancelled
    return dict(kinds.most_common())

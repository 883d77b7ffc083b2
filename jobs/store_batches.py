"""The store's batches: their settings, pause marks, index turns and what `status` and the progress
readers take from a batch without reading every item (estimates per state, pace, outcomes)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from redis.lock import Lock

from reelbatch.jobs import keys
from reelbatch.jobs.state import OPEN, ItemState
from reelbatch.jobs.store_base import CHUNK, StoreBase, state_set
from reelbatch.jobs.store_records import BatchMeta, ItemRecord, flat, meta_from

_STATES = frozenset(s.value for s in ItemState)

_INDEX_TURN = """
local open = 0
for i = 3, #KEYS do open = open + redis.call('SCARD', KEYS[i]) end
if open == 0 then return 1 end
local took = tonumber(redis.call('HGET', KEYS[2], 'index_s') or '0') or 0
local every = math.max(tonumber(ARGV[1]), tonumber(ARGV[2]) * took)
if redis.call('SET', KEYS[1], 1, 'NX', 'PX', math.floor(every * 1000)) then return 1 end
return 0
"""


class Batches(StoreBase):
    """Batch settings (``rb:{batch}:meta``) and the per-batch summaries kept beside them."""

    def identity(self) -> str:
        """This store's id: random, made once, kept with its data (an output folder names it)."""
        self._r.set(keys.STORE_ID, uuid.uuid4().hex[:12], nx=True)
        return str(self._r.get(keys.STORE_ID))

    def save_batch(self, meta: BatchMeta) -> None:
        """Save (or re-save) a batch's settings; a new start time must be started again."""
        self._r.sadd(keys.BATCHES, meta.name)
        self._r.hset(keys.meta(meta.name), mapping=flat(meta.model_dump()))
        self._r.hdel(keys.meta(meta.name), "started", "paused", "paused_at")

    def update_batch(self, batch: str, **fields: Any) -> None:
        self._r.hset(keys.meta(batch), mapping=flat(fields))

    def batch(self, batch: str) -> BatchMeta | None:
        return meta_from(self._r.hgetall(keys.meta(batch)))

    def batch_and_item(self, batch: str, item_id: str) -> tuple[BatchMeta | None, ItemRecord | None]:
        """The batch's settings and the item, in one round trip."""
        pipe = self._r.pipeline(transaction=False)
        pipe.hgetall(keys.meta(batch))
        pipe.hgetall(keys.item(batch, item_id))
        meta, item = pipe.execute()
        return meta_from(meta), (ItemRecord.from_hash(item) if item else None)

    def batches(self) -> list[str]:
        return sorted(self._r.smembers(keys.BATCHES))

    def pause(self, batch: str, reason: str) -> bool:
        """Mark the batch paused with ``reason``; False when it already was."""
        first = bool(self._r.hsetnx(keys.meta(batch), "paused", reason))
        if first:
            self._r.hset(keys.meta(batch), "paused_at", time.time())
        return first

    def unpause(self, batch: str) -> None:
        self._r.hdel(keys.meta(batch), "paused", "paused_at")

    def claim_notice(self, batch: str, notice: str) -> bool:
        """True the first time ``notice`` is claimed for the batch (who sends it), False after."""
        return bool(self._r.hsetnx(keys.notified(batch), notice, round(time.time(), 3)))

    def outcomes(self, batch: str, after: str, limit: int = CHUNK) -> list[tuple[str, str, ItemState]]:
        """(cursor, item id, state) of items that became terminal after ``after`` ("0-0": the oldest
        kept), oldest first, at most ``limit``."""
        rows = self._r.xrange(keys.outcomes(batch), min=f"({after}", count=limit)
        return [(cursor, data["item"], ItemState(data["state"])) for cursor, data in rows]

    def outcome_cursor(self, batch: str) -> str:
        """The cursor of the newest outcome ("0-0" when there is none)."""
        newest = self._r.xrevrange(keys.outcomes(batch), count=1)
        return newest[0][0] if newest else "0-0"

    def index_turn(self, batch: str, every_s: float, cost_factor: float = 0.0) -> bool:
        """Whose turn it is to rewrite the index, across the fleet: True when nothing in the batch
        is open any more, else at most once every ``every_s``, or ``cost_factor`` times as long as
        the last rewrite took (``index_took``), whichever is longer, so rewriting a large batch's
        index stays a bounded share of the work. One round trip."""
        open_sets = [state_set(batch, s) for s in OPEN]
        return bool(self._script(_INDEX_TURN)(keys=[keys.index_turn(batch), keys.meta(batch), *open_sets],
                                     args=[every_s, cost_factor]))

    def index_took(self, batch: str, seconds: float) -> None:
        self._r.hset(keys.meta(batch), "index_s", round(seconds, 3))

    def index_lock(self, batch: str) -> Lock:
        lock: Lock = self._r.lock(keys.index_lock(batch), timeout=120, blocking_timeout=120)
        return lock

    def estimates_tracked(self, batch: str) -> bool:
        return bool(self._r.hexists(keys.meta(batch), "est_tracked"))

    def track_estimates(self, batch: str, records: Iterable[ItemRecord]) -> None:
        """Start counting the estimated cost per state of a batch registered before it was counted
        (its items get their ``est``); a no-op once it is counted."""
        if self.estimates_tracked(batch):
            return
        sums: dict[str, float] = {}
        pipe = self._r.pipeline(transaction=False)
        for n, rec in enumerate(records, 1):
            pipe.hset(keys.item(batch, rec.item_id), "est", rec.item.estimated_cost_usd)
            sums[rec.state.value] = sums.get(rec.state.value, 0.0) + rec.item.estimated_cost_usd
            if rec.state is ItemState.PENDING and rec.error_kind == "budget":
                pipe.sadd(keys.budget_waiting(batch), rec.item_id)
            if n % CHUNK == 0:
                pipe.execute()
        pipe.delete(keys.estimates(batch))
        if sums:
            pipe.hset(keys.estimates(batch), mapping=sums)
        pipe.hset(keys.meta(batch), "est_tracked", 1)
        pipe.execute()

    def estimates(self, batch: str) -> dict[ItemState, float]:
        """The estimated cost of the batch's items, per state."""
        data = self._r.hgetall(keys.estimates(batch))
        return {ItemState(k): float(v) for k, v in data.items() if k in _STATES}

    def budget_waiting(self, batch: str) -> int:
        return int(self._r.scard(keys.budget_waiting(batch)))

    def pace(self, batch: str) -> tuple[float | None, float | None]:
        """When the batch's first item was submitted and its last one completed (unix seconds)."""
        first, last = self._r.hmget(keys.meta(batch), ["first_submitted_at", "last_completed_at"])
        return (float(first) if first else None), (float(last) if last else None)

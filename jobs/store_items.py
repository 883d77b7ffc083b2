"""The store's items: adding, archiving, restoring and reading item records, their per-state sets
and counters, the errors and attempts they carry, and the one claim of a cancel request."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

from reelbatch.jobs import keys
from reelbatch.jobs.item import Item
from reelbatch.jobs.state import TERMINAL, ItemState
from reelbatch.jobs.store_base import CHUNK, StoreBase, state_set
from reelbatch.jobs.store_records import ItemRecord, flat

# One cancel request per item: claimed atomically, so a cancel task and a poll of a cancelled batch
# never both ask the provider (a read-then-write sent 5 requests for 4 items under load).
_CLAIM_CANCEL = """
local v = redis.call('HGET', KEYS[1], 'cancel_requested')
if not redis.call('HGET', KEYS[1], 'state') or v == '1' or v == 'True' then return 0 end
redis.call('HSET', KEYS[1], 'cancel_requested', '1')
return 1
"""


class Items(StoreBase):
    """Item records: ``rb:{batch}:i:<id>``, the per-state sets, ids, versions and attempts."""

    def add_items(self, batch: str, items: Iterable[Item], now: float | None = None) -> int:
        """Add new items in ``pending``."""
        now = now or time.time()
        added = 0
        pipe = self._r.pipeline(transaction=False)
        for n, item in enumerate(items, 1):
            pipe.hset(keys.item(batch, item.item_id), mapping={
                "spec": item.model_dump_json(), "state": ItemState.PENDING.value,
                "attempts": 0, "updated_at": now, "est": item.estimated_cost_usd})
            pipe.sadd(state_set(batch, ItemState.PENDING), item.item_id)
            pipe.sadd(keys.ids(batch), item.item_id)
            pipe.hincrbyfloat(keys.estimates(batch), ItemState.PENDING.value, item.estimated_cost_usd)
            added += 1
            if n % CHUNK == 0:
                pipe.execute()
        pipe.execute()
        return added

    def remove_item(self, batch: str, record: ItemRecord) -> None:
        """Forget an item that was never paid for (or failed): it left the manifest or changed."""
        pipe = self._r.pipeline()
        self._unlist(pipe, batch, record)
        pipe.delete(keys.attempts(batch, record.item_id))
        pipe.execute()

    def archive_item(self, batch: str, record: ItemRecord, **fields: Any) -> None:
        """Keep a paid version aside (superseded by an edit, or gone from the manifest) under its
        content key; ``restore_item`` brings it back when the manifest asks for it again."""
        data = {**self._r.hgetall(keys.item(batch, record.item_id)), **flat(fields)}
        pipe = self._r.pipeline()
        pipe.hset(keys.versions(batch, record.item_id), record.item.content_key, json.dumps(data))
        self._unlist(pipe, batch, record)
        pipe.execute()

    def archived(self, batch: str, item_id: str, content_key: str) -> ItemRecord | None:
        data = self._r.hget(keys.versions(batch, item_id), content_key)
        return ItemRecord.from_hash(json.loads(data)) if data else None

    def archived_many(self, batch: str, wanted: list[tuple[str, str]]) -> list[ItemRecord | None]:
        """``archived`` for each (item id, content key), in chunks of one round trip."""
        found: list[ItemRecord | None] = []
        for start in range(0, len(wanted), CHUNK):
            pipe = self._r.pipeline(transaction=False)
            for item_id, content_key in wanted[start:start + CHUNK]:
                pipe.hget(keys.versions(batch, item_id), content_key)
            found += [ItemRecord.from_hash(json.loads(d)) if d else None for d in pipe.execute()]
        return found

    def restore_item(self, batch: str, record: ItemRecord, **fields: Any) -> None:
        data = {**record.to_hash(), **flat(fields), "est": str(record.item.estimated_cost_usd)}
        pipe = self._r.pipeline()
        pipe.hset(keys.item(batch, record.item_id), mapping=data)
        pipe.sadd(state_set(batch, record.state), record.item_id)
        pipe.hincrbyfloat(keys.estimates(batch), record.state.value, record.item.estimated_cost_usd)
        pipe.sadd(keys.ids(batch), record.item_id)
        pipe.hdel(keys.versions(batch, record.item_id), record.item.content_key)
        pipe.execute()

    @staticmethod
    def _unlist(pipe: Any, batch: str, record: ItemRecord) -> None:
        pipe.srem(state_set(batch, record.state), record.item_id)
        pipe.srem(keys.ids(batch), record.item_id)
        pipe.delete(keys.item(batch, record.item_id))
        pipe.zrem(keys.due(batch), record.item_id)
        pipe.hincrbyfloat(keys.estimates(batch), record.state.value, -record.item.estimated_cost_usd)
        pipe.srem(keys.budget_waiting(batch), record.item_id)

    def item_exists(self, batch: str, item_id: str) -> bool:
        return bool(self._r.exists(keys.item(batch, item_id)))

    def item(self, batch: str, item_id: str) -> ItemRecord | None:
        data = self._r.hgetall(keys.item(batch, item_id))
        return ItemRecord.from_hash(data) if data else None

    def states(self, batch: str, item_ids: list[str]) -> list[ItemState | None]:
        """The state of each item (None for an item that is gone), in one round trip."""
        pipe = self._r.pipeline(transaction=False)
        for item_id in item_ids:
            pipe.hget(keys.item(batch, item_id), "state")
        return [ItemState(v) if v else None for v in pipe.execute()] if item_ids else []

    def item_ids(self, batch: str, state: ItemState | None = None) -> list[str]:
        if state is not None:
            return sorted(self._r.smembers(state_set(batch, state)))
        return sorted(self._r.smembers(keys.ids(batch)))

    def items(self, batch: str, state: ItemState | None = None) -> Iterator[ItemRecord]:
        ids = self.item_ids(batch, state)
        for start in range(0, len(ids), CHUNK):
            pipe = self._r.pipeline(transaction=False)
            for item_id in ids[start:start + CHUNK]:
                pipe.hgetall(keys.item(batch, item_id))
            for data in pipe.execute():
                if data:
                    yield ItemRecord.from_hash(data)

    def counts(self, batch: str) -> dict[ItemState, int]:
        pipe = self._r.pipeline(transaction=False)
        for state in ItemState:
            pipe.scard(state_set(batch, state))
        return dict(zip(ItemState, pipe.execute(), strict=True))

    def open_items(self, batch: str) -> int:
        """Items not in a terminal state."""
        return sum(n for state, n in self.counts(batch).items() if state not in TERMINAL)

    def generation_ids(self, pairs: list[tuple[str, str]]) -> list[str | None]:
        """The generation id of each (batch, item id), in one round trip."""
        pipe = self._r.pipeline(transaction=False)
        for batch, item_id in pairs:
            pipe.hget(keys.item(batch, item_id), "generation_id")
        return [v or None for v in pipe.execute()] if pairs else []

    def update(self, batch: str, item_id: str, **fields: Any) -> None:
        """Write fields that do not change the state (e.g. a fresh video URL)."""
        self._r.hset(keys.item(batch, item_id), mapping=flat(fields))

    def count(self, batch: str, item_id: str, field: str) -> int:
        """Add one to an item's counter (transient_retries, internal_errors); returns the total."""
        return int(self._r.hincrby(keys.item(batch, item_id), field, 1))

    def claim_cancel(self, batch: str, item_id: str) -> bool:
        """True for the one caller that may ask the provider to cancel the item's generation."""
        return bool(self._script(_CLAIM_CANCEL)(keys=[keys.item(batch, item_id)]))

    def clear_errors(self, batch: str, item_ids: list[str]) -> None:
        """Forget why items were waiting (a budget, a refused submit) before they go back to work."""
        pipe = self._r.pipeline(transaction=False)
        for n, item_id in enumerate(item_ids, 1):
            pipe.hset(keys.item(batch, item_id), mapping={"error_kind": "", "error": ""})
            pipe.srem(keys.budget_waiting(batch), item_id)
            if n % CHUNK == 0:
                pipe.execute()
        pipe.execute()

    def wait_for_budget(self, batch: str, item_id: str, kind: str, message: str) -> None:
        """A pending item parked by the batch's budget (counted for `status` without reading it)."""
        pipe = self._r.pipeline(transaction=False)
        pipe.hset(keys.item(batch, item_id), mapping={"error_kind": kind, "error": message})
        pipe.sadd(keys.budget_waiting(batch), item_id)
        pipe.execute()

    def failures(self, batch: str) -> list[tuple[str, str | None, str | None]]:
        """(item id, error kind, error) of every failed item, reading only those fields."""
        ids = self.item_ids(batch, ItemState.FAILED)
        found: list[tuple[str, str | None, str | None]] = []
        for start in range(0, len(ids), CHUNK):
            pipe = self._r.pipeline(transaction=False)
            for item_id in ids[start:start + CHUNK]:
                pipe.hmget(keys.item(batch, item_id), ["error_kind", "error"])
            for item_id, (kind, error) in zip(ids[start:start + CHUNK], pipe.execute(), strict=True):
                found.append((item_id, kind or None, error or None))
        return found

    def record_attempt(self, batch: str, item_id: str, kind: str, message: str) -> None:
        line = json.dumps({"at": time.time(), "kind": kind, "error": message})
        self._r.rpush(keys.attempts(batch, item_id), line)

    def attempts(self, batch: str, item_id: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self._r.lrange(keys.attempts(batch, item_id), 0, -1)]

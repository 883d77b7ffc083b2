"""The Redis state store: batches, items, their states and attempts.

Every state change is one Lua script: it checks the current state against the caller's expectation
and the allowed transitions, moves the item between the per-state sets (whose sizes are the per-state
counters), and writes the item's fields, all atomically.

Every key it writes is named in ``jobs/keys.py``; no other module calls Redis for state.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
from pydantic import BaseModel
from redis.lock import Lock

from reelbatch.jobs import keys
from reelbatch.jobs.item import Item
from reelbatch.jobs.limits import RequestRate, Slots, holder, split_holder
from reelbatch.jobs.money import Spend
from reelbatch.jobs.state import TERMINAL, ItemState, sources_of

CHUNK = 1000
OUTCOME_LOG = 10_000   # terminal outcomes kept per batch for progress readers (a bounded stream)

_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {-1, ''} end
local allowed = false
for s in string.gmatch(ARGV[2], '[^,]+') do if s == cur then allowed = true end end
if not allowed then return {0, cur} end
local to = ARGV[3]
if cur ~= to then
  redis.call('SMOVE', ARGV[1] .. cur, ARGV[1] .. to, ARGV[4])
  local est = redis.call('HGET', KEYS[1], 'est')
  if est then
    redis.call('HINCRBYFLOAT', KEYS[5], cur, -tonumber(est))
    redis.call('HINCRBYFLOAT', KEYS[5], to, est)
  end
  if cur == 'pending' then redis.call('SREM', KEYS[6], ARGV[4]) end
end
local sets = cjson.decode(ARGV[5])
local flat = {'state', to}
for k, v in pairs(sets) do flat[#flat + 1] = k; flat[#flat + 1] = v end
redis.call('HSET', KEYS[1], unpack(flat))
local incr = cjson.decode(ARGV[6])
for k, v in pairs(incr) do redis.call('HINCRBY', KEYS[1], k, v) end
if sets['submitted_at'] and sets['submitted_at'] ~= '' then
  redis.call('HSETNX', KEYS[4], 'first_submitted_at', sets['submitted_at'])
end
if sets['completed_at'] and sets['completed_at'] ~= '' then
  redis.call('HSET', KEYS[4], 'last_completed_at', sets['completed_at'])
end
if ARGV[9] ~= '' then redis.call('HINCRBYFLOAT', KEYS[4], ARGV[9], ARGV[10]) end
if ARGV[12] == '1' then redis.call('DEL', KEYS[7]) end
if ARGV[7] == '1' then redis.call('ZREM', KEYS[2], ARGV[4]) end
if ARGV[7] == '1' and cur ~= to then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'item', ARGV[4], 'state', to)
end
if ARGV[11] == '1' then return {1, cur, redis.call('HGETALL', KEYS[1])} end
return {1, cur}
"""

# Charge a finished generation the provider's figure: once, moving the amount it was counted at
# (estimated) to charged in the batch's spend.
_CHARGE = """
local source = redis.call('HGET', KEYS[1], 'cost_source')
if source ~= 'estimated' then return 0 end
local old = tonumber(redis.call('HGET', KEYS[1], 'cost_usd') or '0') or 0
redis.call('HSET', KEYS[1], 'cost_usd', ARGV[1], 'cost_source', 'charged')
redis.call('HINCRBYFLOAT', KEYS[2], 'estimated_usd', -old)
redis.call('HINCRBYFLOAT', KEYS[2], 'charged_usd', ARGV[1])
return 1
"""

# Take the items whose next step is due by ARGV[1] (up to ARGV[4]): each is given a new due time
# (when it will be sent, ARGV[2] at the earliest, plus the grace ARGV[3]) so no other sweeper sends it.
_TAKE_DUE = """
local found = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[4])
local now, grace = tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, #found, 2 do
  local when = math.max(tonumber(found[i + 1]), now)
  redis.call('ZADD', KEYS[1], when + grace, found[i])
end
return found
"""


_INDEX_TURN = """
local open = 0
for i = 3, #KEYS do open = open + redis.call('SCARD', KEYS[i]) end
if open == 0 then return 1 end
local took = tonumber(redis.call('HGET', KEYS[2], 'index_s') or '0') or 0
local every = math.max(tonumber(ARGV[1]), tonumber(ARGV[2]) * took)
if redis.call('SET', KEYS[1], 1, 'NX', 'PX', math.floor(every * 1000)) then return 1 end
return 0
"""


class BatchMeta(BaseModel):
    """What a worker needs to know about a batch, besides its items."""

    name: str
    provider: str
    model: str
    output: str
    max_concurrency: int = 5
    queue_depth: int | None = None     # limits.queue_depth (None: learned; worker/engine/depth.py)
    requests_per_minute: int = 60
    max_cost_usd: float | None = None
    max_attempts: int = 3
    lost_submit: str = "fail"          # fail | resubmit (retry.lost_submit)
    first_after_s: float | None = None
    min_interval_s: float = 5.0
    max_interval_s: float = 60.0
    give_up_after_s: float | None = None   # in flight this long, an item fails stuck (None: the model's)
    start_at: float | None = None      # unix time; None means now
    manifest: str | None = None        # the manifest file the batch came from
    manifest_sha256: str | None = None # its text's digest (a copy elsewhere is the same manifest)
    paused: str | None = None          # why the batch cannot go on (a provider down, a full disk)
    paused_at: float | None = None
    cancelled: bool = False
    abandon: bool = False
    created_at: float = 0.0


class ItemRecord(BaseModel):
    """An item as the store holds it."""

    item: Item
    state: ItemState
    generation_id: str | None = None
    attempts: int = 0
    error_kind: str | None = None
    error: str | None = None
    cost_usd: float | None = None
    cost_source: str | None = None     # charged (the provider reported it) | estimated
    video_url: str | None = None
    file: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    submitted_at: float | None = None
    remote_started_at: float | None = None
    remote_completed_at: float | None = None
    detected_at: float | None = None
    completed_at: float | None = None
    updated_at: float | None = None
    polled_at: float | None = None        # the last good answer of a poll (learning timings)
    in_flight_since: float | None = None  # when `retry` sent it back to polling (else submitted_at)
    transient_retries: int = 0            # transient errors in a row of the current step
    internal_errors: int = 0              # unexpected exceptions, across redeliveries
    cancel_requested: bool = False
    url_stale: bool = False               # ask the provider for the result URL before downloading
    reconcile_looks: int = 0              # looks for a lost submit's generation since that submit
    reconcile_resubmits: int = 0          # submits sent again because a reconcile found nothing

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> ItemRecord:
        fields = {k: v for k, v in data.items() if k not in _NOT_FIELDS and v != ""}
        return cls(item=Item.model_validate_json(data["spec"]), **fields)

    @property
    def item_id(self) -> str:
        return str(self.item.item_id)

    def to_hash(self) -> dict[str, str]:
        fields = self.model_dump(mode="json", exclude={"item"}, exclude_none=True)
        return {"spec": self.item.model_dump_json(), **_flat(fields)}


@dataclass(frozen=True)
class Problem:
    """Something outside the batch that stops it: since when (unix time) and why."""

    since: float
    why: str


class TransitionRefused(Exception):
    """The item was not in a state the caller expected (another worker got there first)."""

    def __init__(self, item_id: str, current: str, target: str):
        super().__init__(item_id, current, target)
        self.item_id, self.current, self.target = item_id, current, target


_NOT_FIELDS = frozenset({"spec", "est"})   # stored beside the fields: the spec, its estimated cost


# One cancel request per item: claimed atomically, so a cancel task and a poll of a cancelled batch
# never both ask the provider (a read-then-write sent 5 requests for 4 items under load).
_CLAIM_CANCEL = """
local v = redis.call('HGET', KEYS[1], 'cancel_requested')
if not redis.call('HGET', KEYS[1], 'state') or v == '1' or v == 'True' then return 0 end
redis.call('HSET', KEYS[1], 'cancel_requested', '1')
return 1
"""

_STATES = frozenset(s.value for s in ItemState)


def _state_set(batch: str, state: ItemState | str) -> str:
    return keys.state_prefix(batch) + str(ItemState(state).value)


def _meta(data: dict[str, str]) -> BatchMeta | None:
    if not data:
        return None
    known: dict[str, Any] = {k: v for k, v in data.items() if k in BatchMeta.model_fields and v != ""}
    for flag in ("cancelled", "abandon"):
        if flag in known:
            known[flag] = known[flag] == "True"
    return BatchMeta(**known)


def _usd(value: str | None) -> float:
    return max(0.0, round(float(value or 0.0), 6))


def _pairs(flat: Any) -> dict[str, str]:
    """A hash as Lua hands it back: a flat list of field, value (or already a mapping)."""
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _flat(fields: dict[str, Any]) -> dict[str, str]:
    return {k: ("" if v is None else str(v)) for k, v in fields.items()}


class Store:
    """Batches and items in Redis. Safe to share between threads."""

    def __init__(self, client: redis.Redis):
        # Any: the client decodes to str (decode_responses=True), which redis-py's types cannot say
        self.r: Any = client
        self._transition = client.register_script(_TRANSITION)
        self._charge = client.register_script(_CHARGE)
        self._take_due = client.register_script(_TAKE_DUE)
        self._index_turn = client.register_script(_INDEX_TURN)
        self._claim_cancel = client.register_script(_CLAIM_CANCEL)

    @classmethod
    def from_url(cls, url: str) -> Store:
        return cls(redis.Redis.from_url(url, decode_responses=True, health_check_interval=30))

    def identity(self) -> str:
        """This store's id: random, made once, kept with its data (an output folder names it)."""
        self.r.set(keys.STORE_ID, uuid.uuid4().hex[:12], nx=True)
        return str(self.r.get(keys.STORE_ID))

    def ping(self) -> bool:
        return bool(self.r.ping())

    def server_time(self) -> float:
        """The Redis server's clock (unix seconds): what a worker whose own clock jumped (a suspend,
        an NTP step) checks a long interval against before acting on it."""
        seconds, micros = self.r.time()
        return float(seconds) + float(micros) / 1e6

    # --- batches ----------------------------------------------------------------------------
    def save_batch(self, meta: BatchMeta) -> None:
        """Save (or re-save) a batch's settings; a new start time must be started again."""
        self.r.sadd(keys.BATCHES, meta.name)
        self.r.hset(keys.meta(meta.name), mapping=_flat(meta.model_dump()))
        self.r.hdel(keys.meta(meta.name), "started", "paused", "paused_at")

    def update_batch(self, batch: str, **fields: Any) -> None:
        self.r.hset(keys.meta(batch), mapping=_flat(fields))

    def batch(self, batch: str) -> BatchMeta | None:
        return _meta(self.r.hgetall(keys.meta(batch)))

    def batch_and_item(self, batch: str, item_id: str) -> tuple[BatchMeta | None, ItemRecord | None]:
        """The batch's settings and the item, in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(keys.meta(batch))
        pipe.hgetall(keys.item(batch, item_id))
        meta, item = pipe.execute()
        return _meta(meta), (ItemRecord.from_hash(item) if item else None)

    def batches(self) -> list[str]:
        return sorted(self.r.smembers(keys.BATCHES))

    def add_spend(self, batch: str, usd: float, charged: bool) -> None:
        """Count a generation the provider made: charged when it reported the cost."""
        self.r.hincrbyfloat(keys.meta(batch), "charged_usd" if charged else "estimated_usd", usd)

    def commit_cost(self, batch: str, usd: float) -> float:
        """Add (or, negative, take back) estimated spend reserved for submits; returns the total."""
        return float(self.r.hincrbyfloat(keys.meta(batch), "committed_usd", usd))

    def mark_started(self, batch: str) -> bool:
        """Record that a batch with a start time was started; False if it already was."""
        return bool(self.r.hsetnx(keys.meta(batch), "started", 1))

    def spend(self, batch: str) -> Spend:
        """The batch's spend; sums moved from estimated to charged leave no float dust behind."""
        charged, estimated = self.r.hmget(keys.meta(batch), ["charged_usd", "estimated_usd"])
        return Spend(_usd(charged), _usd(estimated))

    # --- items ------------------------------------------------------------------------------
    def add_items(self, batch: str, items: Iterable[Item], now: float | None = None) -> int:
        """Add new items in ``pending``."""
        now = now or time.time()
        added = 0
        pipe = self.r.pipeline(transaction=False)
        for n, item in enumerate(items, 1):
            pipe.hset(keys.item(batch, item.item_id), mapping={
                "spec": item.model_dump_json(), "state": ItemState.PENDING.value,
                "attempts": 0, "updated_at": now, "est": item.estimated_cost_usd})
            pipe.sadd(_state_set(batch, ItemState.PENDING), item.item_id)
            pipe.sadd(keys.ids(batch), item.item_id)
            pipe.hincrbyfloat(keys.estimates(batch), ItemState.PENDING.value, item.estimated_cost_usd)
            added += 1
            if n % CHUNK == 0:
                pipe.execute()
        pipe.execute()
        return added

    def remove_item(self, batch: str, record: ItemRecord) -> None:
        """Forget an item that was never paid for (or failed): it left the manifest or changed."""
        pipe = self.r.pipeline()
        self._unlist(pipe, batch, record)
        pipe.delete(keys.attempts(batch, record.item_id))
        pipe.execute()

    def archive_item(self, batch: str, record: ItemRecord, **fields: Any) -> None:
        """Keep a paid version aside (superseded by an edit, or gone from the manifest) under its
        content key; ``restore_item`` brings it back when the manifest asks for it again."""
        data = {**self.r.hgetall(keys.item(batch, record.item_id)), **_flat(fields)}
        pipe = self.r.pipeline()
        pipe.hset(keys.versions(batch, record.item_id), record.item.content_key, json.dumps(data))
        self._unlist(pipe, batch, record)
        pipe.execute()

    def archived(self, batch: str, item_id: str, content_key: str) -> ItemRecord | None:
        data = self.r.hget(keys.versions(batch, item_id), content_key)
        return ItemRecord.from_hash(json.loads(data)) if data else None

    def archived_many(self, batch: str, wanted: list[tuple[str, str]]) -> list[ItemRecord | None]:
        """``archived`` for each (item id, content key), in chunks of one round trip."""
        found: list[ItemRecord | None] = []
        for start in range(0, len(wanted), CHUNK):
            pipe = self.r.pipeline(transaction=False)
            for item_id, content_key in wanted[start:start + CHUNK]:
                pipe.hget(keys.versions(batch, item_id), content_key)
            found += [ItemRecord.from_hash(json.loads(d)) if d else None for d in pipe.execute()]
        return found

    def restore_item(self, batch: str, record: ItemRecord, **fields: Any) -> None:
        data = {**record.to_hash(), **_flat(fields), "est": str(record.item.estimated_cost_usd)}
        pipe = self.r.pipeline()
        pipe.hset(keys.item(batch, record.item_id), mapping=data)
        pipe.sadd(_state_set(batch, record.state), record.item_id)
        pipe.hincrbyfloat(keys.estimates(batch), record.state.value, record.item.estimated_cost_usd)
        pipe.sadd(keys.ids(batch), record.item_id)
        pipe.hdel(keys.versions(batch, record.item_id), record.item.content_key)
        pipe.execute()

    @staticmethod
    def _unlist(pipe: Any, batch: str, record: ItemRecord) -> None:
        pipe.srem(_state_set(batch, record.state), record.item_id)
        pipe.srem(keys.ids(batch), record.item_id)
        pipe.delete(keys.item(batch, record.item_id))
        pipe.zrem(keys.due(batch), record.item_id)
        pipe.hincrbyfloat(keys.estimates(batch), record.state.value, -record.item.estimated_cost_usd)
        pipe.srem(keys.budget_waiting(batch), record.item_id)

    def item_exists(self, batch: str, item_id: str) -> bool:
        return bool(self.r.exists(keys.item(batch, item_id)))

    def item(self, batch: str, item_id: str) -> ItemRecord | None:
        data = self.r.hgetall(keys.item(batch, item_id))
        return ItemRecord.from_hash(data) if data else None

    def states(self, batch: str, item_ids: list[str]) -> list[ItemState | None]:
        """The state of each item (None for an item that is gone), in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for item_id in item_ids:
            pipe.hget(keys.item(batch, item_id), "state")
        return [ItemState(v) if v else None for v in pipe.execute()] if item_ids else []

    def item_ids(self, batch: str, state: ItemState | None = None) -> list[str]:
        if state is not None:
            return sorted(self.r.smembers(_state_set(batch, state)))
        return sorted(self.r.smembers(keys.ids(batch)))

    def items(self, batch: str, state: ItemState | None = None) -> Iterator[ItemRecord]:
        ids = self.item_ids(batch, state)
        for start in range(0, len(ids), CHUNK):
            pipe = self.r.pipeline(transaction=False)
            for item_id in ids[start:start + CHUNK]:
                pipe.hgetall(keys.item(batch, item_id))
            for data in pipe.execute():
                if data:
                    yield ItemRecord.from_hash(data)

    def open_items(self, batch: str) -> int:
        """Items not in a terminal state."""
        return sum(n for state, n in self.counts(batch).items() if state not in TERMINAL)

    def index_turn(self, batch: str, every_s: float, cost_factor: float = 0.0) -> bool:
        """Whose turn it is to rewrite the index, across the fleet: True when nothing in the batch
        is open any more, else at most once every ``every_s``, or ``cost_factor`` times as long as
        the last rewrite took (``index_took``), whichever is longer, so rewriting a large batch's
        index stays a bounded share of the work. One round trip."""
        open_sets = [_state_set(batch, s) for s in ItemState if s not in TERMINAL]
        return bool(self._index_turn(keys=[keys.index_turn(batch), keys.meta(batch), *open_sets],
                                     args=[every_s, cost_factor]))

    def index_took(self, batch: str, seconds: float) -> None:
        self.r.hset(keys.meta(batch), "index_s", round(seconds, 3))

    def index_lock(self, batch: str) -> Lock:
        lock: Lock = self.r.lock(keys.index_lock(batch), timeout=120, blocking_timeout=120)
        return lock

    def counts(self, batch: str) -> dict[ItemState, int]:
        pipe = self.r.pipeline(transaction=False)
        for state in ItemState:
            pipe.scard(_state_set(batch, state))
        return dict(zip(ItemState, pipe.execute(), strict=True))

    def transition(self, batch: str, item_id: str, target: ItemState,
                   expected: Iterable[ItemState] | None = None,
                   incr: dict[str, int] | None = None, spend: tuple[float, bool] | None = None,
                   clear_output: bool = False, **fields: Any) -> ItemState:
        """Move an item to ``target`` if it is in one of ``expected`` (default: every state the
        state machine allows). Returns the state it left; raises TransitionRefused otherwise.
        ``spend``: (usd, charged) added to the batch's spend in the same step (a generation made);
        ``clear_output``: forget the batch's "output folder cannot be written" mark."""
        return self._move(batch, item_id, target, expected, incr, spend, clear_output, False,
                          fields)[0]

    def transition_read(self, batch: str, item_id: str, target: ItemState,
                        expected: Iterable[ItemState] | None = None, clear_output: bool = False,
                        **fields: Any) -> ItemRecord:
        """``transition``, returning the item as it is afterwards (one round trip)."""
        record = self._move(batch, item_id, target, expected, None, None, clear_output, True, fields)[1]
        assert record is not None
        return record

    def _move(self, batch: str, item_id: str, target: ItemState, expected: Iterable[ItemState] | None,
              incr: dict[str, int] | None, spend: tuple[float, bool] | None, clear_output: bool,
              read: bool, fields: dict[str, Any]) -> tuple[ItemState, ItemRecord | None]:
        allowed = set(sources_of(target)) if expected is None else set(expected) & sources_of(target)
        if target in (expected or ()):
            allowed.add(target)  # an idempotent re-write of the same state, when asked for
        fields["updated_at"] = time.time()
        spent = ("charged_usd" if spend[1] else "estimated_usd", spend[0]) if spend else ("", 0)
        answer = self._transition(
            keys=[keys.item(batch, item_id), keys.due(batch), keys.outcomes(batch), keys.meta(batch),
                  keys.estimates(batch), keys.budget_waiting(batch), keys.output_problem(batch)],
            args=[keys.state_prefix(batch), ",".join(sorted(s.value for s in allowed)), target.value,
                  item_id, json.dumps(_flat(fields)), json.dumps(incr or {}),
                  "1" if target in TERMINAL else "0", OUTCOME_LOG, spent[0], spent[1],
                  "1" if read else "0", "1" if clear_output else "0"])
        status, current = answer[0], answer[1]
        if status != 1:
            raise TransitionRefused(item_id, current or "missing", target.value)
        record = ItemRecord.from_hash(_pairs(answer[2])) if read else None
        return ItemState(current), record

    def update(self, batch: str, item_id: str, **fields: Any) -> None:
        """Write fields that do not change the state (e.g. a fresh video URL)."""
        self.r.hset(keys.item(batch, item_id), mapping=_flat(fields))

    def claim_cancel(self, batch: str, item_id: str) -> bool:
        """True for the one caller that may ask the provider to cancel the item's generation."""
        return bool(self._claim_cancel(keys=[keys.item(batch, item_id)]))

    def clear_errors(self, batch: str, item_ids: list[str]) -> None:
        """Forget why items were waiting (a budget, a refused submit) before they go back to work."""
        pipe = self.r.pipeline(transaction=False)
        for n, item_id in enumerate(item_ids, 1):
            pipe.hset(keys.item(batch, item_id), mapping={"error_kind": "", "error": ""})
            pipe.srem(keys.budget_waiting(batch), item_id)
            if n % CHUNK == 0:
                pipe.execute()
        pipe.execute()

    def wait_for_budget(self, batch: str, item_id: str, kind: str, message: str) -> None:
        """A pending item parked by the batch's budget (counted for `status` without reading it)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(keys.item(batch, item_id), mapping={"error_kind": kind, "error": message})
        pipe.sadd(keys.budget_waiting(batch), item_id)
        pipe.execute()

    # --- what `status` reads without reading every item ---------------------------------------
    def estimates_tracked(self, batch: str) -> bool:
        return bool(self.r.hexists(keys.meta(batch), "est_tracked"))

    def track_estimates(self, batch: str, records: Iterable[ItemRecord]) -> None:
        """Start counting the estimated cost per state of a batch registered before it was counted
        (its items get their ``est``); a no-op once it is counted."""
        if self.estimates_tracked(batch):
            return
        sums: dict[str, float] = {}
        pipe = self.r.pipeline(transaction=False)
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
        data = self.r.hgetall(keys.estimates(batch))
        return {ItemState(k): float(v) for k, v in data.items() if k in _STATES}

    def budget_waiting(self, batch: str) -> int:
        return int(self.r.scard(keys.budget_waiting(batch)))

    def pace(self, batch: str) -> tuple[float | None, float | None]:
        """When the batch's first item was submitted and its last one completed (unix seconds)."""
        first, last = self.r.hmget(keys.meta(batch), ["first_submitted_at", "last_completed_at"])
        return (float(first) if first else None), (float(last) if last else None)

    def failures(self, batch: str) -> list[tuple[str, str | None, str | None]]:
        """(item id, error kind, error) of every failed item, reading only those fields."""
        ids = self.item_ids(batch, ItemState.FAILED)
        found: list[tuple[str, str | None, str | None]] = []
        for start in range(0, len(ids), CHUNK):
            pipe = self.r.pipeline(transaction=False)
            for item_id in ids[start:start + CHUNK]:
                pipe.hmget(keys.item(batch, item_id), ["error_kind", "error"])
            for item_id, (kind, error) in zip(ids[start:start + CHUNK], pipe.execute(), strict=True):
                found.append((item_id, kind or None, error or None))
        return found

    def record_attempt(self, batch: str, item_id: str, kind: str, message: str) -> None:
        line = json.dumps({"at": time.time(), "kind": kind, "error": message})
        self.r.rpush(keys.attempts(batch, item_id), line)

    def attempts(self, batch: str, item_id: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.r.lrange(keys.attempts(batch, item_id), 0, -1)]

    # --- outcomes: a bounded log of items becoming terminal, read from a cursor --------------
    def outcomes(self, batch: str, after: str, limit: int = CHUNK) -> list[tuple[str, str, ItemState]]:
        """(cursor, item id, state) of items that became terminal after ``after`` ("0-0": the oldest
        kept), oldest first, at most ``limit``."""
        rows = self.r.xrange(keys.outcomes(batch), min=f"({after}", count=limit)
        return [(cursor, data["item"], ItemState(data["state"])) for cursor, data in rows]

    def outcome_cursor(self, batch: str) -> str:
        """The cursor of the newest outcome ("0-0" when there is none)."""
        newest = self.r.xrevrange(keys.outcomes(batch), count=1)
        return newest[0][0] if newest else "0-0"

    # --- notifications: each sent once per batch, event and outcome ----------------------------
    def claim_notice(self, batch: str, notice: str) -> bool:
        """True the first time ``notice`` is claimed for the batch (who sends it), False after."""
        return bool(self.r.hsetnx(keys.notified(batch), notice, round(time.time(), 3)))

    # --- due times (the sweeper finds work whose task was lost) ----------------------------
    def set_due(self, batch: str, item_id: str, when: float) -> None:
        self.r.zadd(keys.due(batch), {item_id: when})

    def look_again_at(self, batch: str, item_ids: list[str], when: float) -> None:
        """Bring the due time of items whose task still runs forward to ``when`` (never later than
        it was): the sweeper looks again soon after a dead holder's lease would have lapsed."""
        if item_ids:
            self.r.zadd(keys.due(batch), {item_id: when for item_id in item_ids}, lt=True)

    def overdue(self, batch: str, before: float, limit: int = 1000) -> list[str]:
        return list(self.r.zrangebyscore(keys.due(batch), "-inf", before, start=0, num=limit))

    def take_due(self, batch: str, until: float, now: float, grace_s: float,
                 limit: int = 1000) -> list[tuple[str, float]]:
        """(item id, due time) of items due by ``until``, each given the due time ``max(due,
        now) + grace_s`` in the same step, so a second sweeper does not send it again."""
        found = self._take_due(keys=[keys.due(batch)], args=[until, now, grace_s, limit])
        return [(found[i], float(found[i + 1])) for i in range(0, len(found), 2)]

    def due_at(self, batch: str, item_id: str) -> float | None:
        score = self.r.zscore(keys.due(batch), item_id)
        return float(score) if score is not None else None

    def clear_due(self, batch: str, item_id: str) -> None:
        self.r.zrem(keys.due(batch), item_id)

    # --- counters an item carries across tasks --------------------------------------------
    def count(self, batch: str, item_id: str, field: str) -> int:
        """Add one to an item's counter (transient_retries, internal_errors); returns the total."""
        return int(self.r.hincrby(keys.item(batch, item_id), field, 1))

    def count_delivery(self, task_id: str) -> int:
        """Our own redelivery cap: how often this task message was delivered (kept a day)."""
        return self.begin_task(task_id, None, None)[0]

    def begin_task(self, task_id: str, batch: str | None, item_id: str | None
                   ) -> tuple[int, BatchMeta | None, dict[str, str] | None]:
        """A task starts: count its delivery, and read its batch and item, in one round trip. The
        item comes as stored (``ItemRecord.from_hash`` reads it), so a record that cannot be read
        fails in the step, where it counts against the item."""
        pipe = self.r.pipeline(transaction=False)
        pipe.incr(keys.delivery(task_id))
        pipe.expire(keys.delivery(task_id), 86400)
        if batch is not None and item_id is not None:
            pipe.hgetall(keys.meta(batch))
            pipe.hgetall(keys.item(batch, item_id))
        answers = pipe.execute()
        if len(answers) < 4:
            return int(answers[0]), None, None
        return int(answers[0]), _meta(answers[2]), answers[3] or None

    def forget_delivery(self, task_id: str) -> None:
        self.end_task(task_id, [])

    def end_task(self, task_id: str | None, dues: Iterable[tuple[str, str, float]]) -> None:
        """Record when each (batch, item id) is due next, and forget the task's delivery count
        (it ran), in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for batch, item_id, when in dues:
            pipe.zadd(keys.due(batch), {item_id: when})
        if task_id is not None:
            pipe.unlink(keys.delivery(task_id))
        pipe.execute()

    # --- generations: which item owns which remote generation ------------------------------
    def claim_generation(self, provider: str, generation_id: str, owner: str) -> bool:
        """Record whose generation this is; False when another owner has it. Claiming one's own
        again is True (a reconcile that claimed and then died must adopt it next time)."""
        index = keys.generations(provider)
        return bool(self.r.hsetnx(index, generation_id, owner)) or \
            self.r.hget(index, generation_id) == owner

    def record_orphan(self, batch: str, generation_id: str, item_id: str, usd: float, why: str) -> bool:
        """A paid generation no item holds (an answer that came after its item moved on): kept
        for `status` and counted in the spend, once."""
        entry = json.dumps({"item_id": item_id, "cost_usd": usd, "why": why, "at": round(time.time(), 3)})
        if not self.r.hsetnx(keys.orphans(batch), generation_id, entry):
            return False
        self.add_spend(batch, usd, charged=False)
        return True

    def orphans(self, batch: str) -> dict[str, dict[str, Any]]:
        """generation id -> what is known of a paid generation no item holds."""
        return {g: json.loads(v) for g, v in self.r.hgetall(keys.orphans(batch)).items()}

    def generation_owner(self, provider: str, generation_id: str) -> str | None:
        owner: str | None = self.r.hget(keys.generations(provider), generation_id)
        return owner

    # --- learned generation times ------------------------------------------------------------
    def record_time(self, item: Item, seconds: float, keep: int) -> None:
        key = keys.times(item.provider, item.model, item.video_seconds)
        pipe = self.r.pipeline(transaction=False)
        pipe.lpush(key, round(seconds, 3))
        pipe.ltrim(key, 0, keep - 1)
        pipe.execute()

    def times(self, item: Item) -> list[float]:
        return [float(x) for x in self.r.lrange(keys.times(item.provider, item.model,
                                                           item.video_seconds), 0, -1)]

    def count_request(self, provider: str, outcome: str) -> None:
        """One more provider request with this outcome (ok | transient | permanent)."""
        self.r.hincrby(keys.requests(provider), outcome, 1)

    def requests(self, provider: str) -> dict[str, int]:
        return {k: int(v) for k, v in self.r.hgetall(keys.requests(provider)).items()}

    def learned_times(self) -> dict[tuple[str, str, int], list[float]]:
        """Every kept generation time, per (provider, model, seconds): for metrics."""
        found = {}
        for key in self.r.scan_iter(match=keys.TIMES_MATCH, count=500):
            found[keys.times_parts(key)] = [float(x) for x in self.r.lrange(key, 0, -1)]
        return found

    # --- the event stream's health beacon ----------------------------------------------------
    def mark_events_healthy(self, provider: str, ttl_s: int) -> None:
        self.r.set(keys.events_healthy(provider), 1, ex=ttl_s)

    def clear_events_healthy(self, provider: str) -> None:
        self.r.delete(keys.events_healthy(provider))

    def events_healthy(self, provider: str) -> bool:
        return bool(self.r.exists(keys.events_healthy(provider)))

    def told_of_completions(self, provider: str) -> bool:
        """Whether completions reach the workers without per-item polls: the event stream is open,
        or a lister is listing the provider's generations."""
        return bool(self.r.exists(keys.events_healthy(provider), keys.listing(provider)))

    # --- the lister: one poller per provider asks for many generations at once ---------------
    def mark_listing(self, provider: str, ttl_s: float) -> None:
        self.r.set(keys.listing(provider), 1, px=int(ttl_s * 1000))

    def clear_listing(self, provider: str) -> None:
        self.r.delete(keys.listing(provider))

    def lister_lock(self, provider: str, timeout_s: float) -> Lock:
        """One lister per provider across the fleet; only its holder (a token) extends or frees it."""
        lock: Lock = self.r.lock(keys.lister_lock(provider), timeout=timeout_s, blocking=False,
                                 thread_local=False)   # taken by its thread, freed by whoever stops it
        return lock

    def in_flight(self, provider: str) -> list[tuple[BatchMeta, str, str, float]]:
        """(batch, item id, generation id, submitted at) of every item of the provider whose
        generation is queued or running, across batches."""
        found: list[tuple[BatchMeta, str, str, float]] = []
        for name in self.batches():
            meta = self.batch(name)
            if meta is None or meta.provider != provider:
                continue
            ids = sorted(self.r.sunion(_state_set(name, ItemState.QUEUED), _state_set(name, ItemState.RUNNING)))
            for start in range(0, len(ids), CHUNK):
                pipe = self.r.pipeline(transaction=False)
                for item_id in ids[start:start + CHUNK]:
                    pipe.hmget(keys.item(name, item_id), ["generation_id", "submitted_at"])
                for item_id, (gid, at) in zip(ids[start:start + CHUNK], pipe.execute(), strict=True):
                    if gid:
                        found.append((meta, item_id, gid, float(at or 0)))
        return found

    def generation_ids(self, pairs: list[tuple[str, str]]) -> list[str | None]:
        """The generation id of each (batch, item id), in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for batch, item_id in pairs:
            pipe.hget(keys.item(batch, item_id), "generation_id")
        return [v or None for v in pipe.execute()] if pairs else []

    def owe_charge(self, provider: str, batch: str, item_id: str, since: float) -> None:
        """The item's cost is an estimate until the provider's history gives the charged figure."""
        self.r.zadd(keys.uncharged(provider), {holder(batch, item_id): since})

    def owed_charges(self, provider: str, limit: int = 5000) -> list[tuple[str, str, float]]:
        """(batch, item id, since) of items waiting for their charged cost, oldest first."""
        rows = self.r.zrange(keys.uncharged(provider), 0, limit - 1, withscores=True)
        return [(*split_holder(who), float(since)) for who, since in rows]

    def charge(self, provider: str, batch: str, item_id: str, usd: float | None) -> bool:
        """Record what the provider charged for the item's generation (None: forget it, there is
        nothing to charge): its cost becomes that figure and the batch's spend moves it from
        estimated to charged, once. True when it was moved."""
        moved = False
        if usd is not None:
            moved = bool(self._charge(keys=[keys.item(batch, item_id), keys.meta(batch)], args=[usd]))
        self.r.zrem(keys.uncharged(provider), holder(batch, item_id))
        return moved

    # --- health: a provider that cannot be reached, an output folder that cannot be written ---
    def mark_provider_down(self, provider: str, why: str, ttl_s: float) -> None:
        """Record that the provider cannot be reached. The first failure's time stays; the mark
        lapses ``ttl_s`` after the last failure, so nobody has to clear it when the provider is back."""
        self._mark(keys.provider_down(provider), why, ttl_s)

    def provider_down(self, provider: str) -> Problem | None:
        return self._problem(keys.provider_down(provider))

    def clear_provider_down(self, provider: str) -> None:
        self.r.delete(keys.provider_down(provider))

    def mark_output_problem(self, batch: str, why: str, ttl_s: float) -> None:
        self._mark(keys.output_problem(batch), why, ttl_s)

    def output_problem(self, batch: str) -> Problem | None:
        return self._problem(keys.output_problem(batch))

    def clear_output_problem(self, batch: str) -> None:
        self.r.delete(keys.output_problem(batch))

    def mark_account_problem(self, provider: str, why: str, model: str = "") -> bool:
        """Record that the provider account (or, with ``model``, that model there) cannot take work;
        the first mark's time and reason stay until a rerun clears it. True for the first mark."""
        value = json.dumps({"since": time.time(), "why": why})
        return bool(self.r.set(keys.account_problem(provider, model), value, nx=True))

    def account_problem(self, provider: str, model: str = "") -> Problem | None:
        """The provider account's problem, else the model's there (with ``model``), or None."""
        found = self.r.mget([keys.account_problem(provider)] +
                            ([keys.account_problem(provider, model)] if model else []))
        data = next((d for d in found if d), None)
        return Problem(**json.loads(data)) if data else None

    def clear_account_problem(self, provider: str, model: str) -> None:
        self.r.delete(keys.account_problem(provider), keys.account_problem(provider, model))

    def _mark(self, key: str, why: str, ttl_s: float) -> None:
        pipe = self.r.pipeline()
        pipe.set(key, json.dumps({"since": time.time(), "why": why}), nx=True, px=int(ttl_s * 1000))
        pipe.pexpire(key, int(ttl_s * 1000))
        pipe.execute()

    def _problem(self, key: str) -> Problem | None:
        data = self.r.get(key)
        return Problem(**json.loads(data)) if data else None

    def pause(self, batch: str, reason: str) -> bool:
        """Mark the batch paused with ``reason``; False when it already was."""
        first = bool(self.r.hsetnx(keys.meta(batch), "paused", reason))
        if first:
            self.r.hset(keys.meta(batch), "paused_at", time.time())
        return first

    def unpause(self, batch: str) -> None:
        self.r.hdel(keys.meta(batch), "paused", "paused_at")

    def sweep_needed(self, now: float, ahead_s: float = 0.0) -> bool:
        """Whether a sweep has work: an item whose task is due within ``ahead_s`` (a long wait
        kept here, or a task lost), a batch whose start time came, a batch paused, its provider
        unreachable or its output folder unwritable (to pause or resume it)."""
        for batch in self.batches():
            meta = self.batch(batch)
            if meta is None:
                continue
            if meta.paused or (meta.start_at and meta.start_at <= now and not self._started(batch)):
                return True
            if self.r.exists(keys.provider_down(meta.provider), keys.output_problem(batch),
                             keys.account_problem(meta.provider),
                             keys.account_problem(meta.provider, meta.model)):
                return True
            if self.overdue(batch, now + ahead_s, limit=1):
                return True
        return False

    def mark_sweeper(self, ttl_s: float) -> None:
        """A sweeper runs (``run``'s watch, the fleet's beat): long waits may be left to it."""
        self.r.set(keys.SWEEPER, 1, px=int(ttl_s * 1000))

    def sweeper_alive(self) -> bool:
        return bool(self.r.exists(keys.SWEEPER))

    def _started(self, batch: str) -> bool:
        return bool(self.r.hexists(keys.meta(batch), "started"))

    # --- workers' heartbeats ----------------------------------------------------------------
    def mark_worker(self, name: str, ttl_s: float) -> None:
        self.r.zadd(keys.WORKERS, {name: time.time() + ttl_s})

    def forget_worker(self, name: str) -> None:
        self.r.zrem(keys.WORKERS, name)

    def workers(self) -> list[str]:
        """Workers whose heartbeat has not lapsed."""
        return list(self.r.zrangebyscore(keys.WORKERS, time.time(), "+inf"))

    # --- limits and locks --------------------------------------------------------------------
    def slots(self, provider: str) -> Slots:
        return Slots(self.r, provider)

    def request_rate(self, url: str, provider: str) -> RequestRate:
        return RequestRate(url, provider)

    def sweep_lock(self, timeout_s: float) -> Lock:
        """One sweep at a time across the fleet; released only by its own holder (a token check)."""
        lock: Lock = self.r.lock(keys.SWEEP_LOCK, timeout=timeout_s, blocking=False)
        return lock

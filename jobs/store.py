"""The Redis state store: batches, items, their states and attempts.

Every state change is one Lua script: it checks the current state against the caller's expectation
and the allowed transitions, moves the item between the per-state sets (whose sizes are the per-state
counters), and writes the item's fields, all atomically.

Every key it writes is named in ``jobs/keys.py``; no other module calls Redis for state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
from pydantic import BaseModel
from redis.lock import Lock

from reelbatch.jobs import keys
from reelbatch.jobs.item import Item
from reelbatch.jobs.limits import RequestRate, Slots
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
end
local sets = cjson.decode(ARGV[5])
for k, v in pairs(sets) do redis.call('HSET', KEYS[1], k, v) end
local incr = cjson.decode(ARGV[6])
for k, v in pairs(incr) do redis.call('HINCRBY', KEYS[1], k, v) end
redis.call('HSET', KEYS[1], 'state', to)
if ARGV[7] == '1' then redis.call('ZREM', KEYS[2], ARGV[4]) end
if ARGV[7] == '1' and cur ~= to then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'item', ARGV[4], 'state', to)
end
return {1, cur}
"""


class BatchMeta(BaseModel):
    """What a worker needs to know about a batch, besides its items."""

    name: str
    provider: str
    model: str
    output: str
    max_concurrency: int = 5
    requests_per_minute: int = 60
    max_cost_usd: float | None = None
    max_attempts: int = 3
    lost_submit: str = "fail"          # fail | resubmit (retry.lost_submit)
    first_after_s: float | None = None
    min_interval_s: float = 5.0
    max_interval_s: float = 60.0
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
    transient_retries: int = 0            # transient errors in a row of the current step
    internal_errors: int = 0              # unexpected exceptions, across redeliveries
    cancel_requested: bool = False
    url_stale: bool = False               # ask the provider for the result URL before downloading

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> ItemRecord:
        fields = {k: v for k, v in data.items() if k != "spec" and v != ""}
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


def _state_set(batch: str, state: ItemState | str) -> str:
    return keys.state_prefix(batch) + str(ItemState(state).value)


def _flat(fields: dict[str, Any]) -> dict[str, str]:
    return {k: ("" if v is None else str(v)) for k, v in fields.items()}


class Store:
    """Batches and items in Redis. Safe to share between threads."""

    def __init__(self, client: redis.Redis):
        # Any: the client decodes to str (decode_responses=True), which redis-py's types cannot say
        self.r: Any = client
        self._transition = client.register_script(_TRANSITION)

    @classmethod
    def from_url(cls, url: str) -> Store:
        return cls(redis.Redis.from_url(url, decode_responses=True, health_check_interval=30))

    def ping(self) -> bool:
        return bool(self.r.ping())

    # --- batches ----------------------------------------------------------------------------
    def save_batch(self, meta: BatchMeta) -> None:
        """Save (or re-save) a batch's settings; a new start time must be started again."""
        self.r.sadd(keys.BATCHES, meta.name)
        self.r.hset(keys.meta(meta.name), mapping=_flat(meta.model_dump()))
        self.r.hdel(keys.meta(meta.name), "started", "paused", "paused_at")

    def update_batch(self, batch: str, **fields: Any) -> None:
        self.r.hset(keys.meta(batch), mapping=_flat(fields))

    def batch(self, batch: str) -> BatchMeta | None:
        data = self.r.hgetall(keys.meta(batch))
        if not data:
            return None
        known = {k: v for k, v in data.items() if k in BatchMeta.model_fields and v != ""}
        for flag in ("cancelled", "abandon"):
            if flag in known:
                known[flag] = known[flag] == "True"
        return BatchMeta(**known)

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
        charged, estimated = self.r.hmget(keys.meta(batch), ["charged_usd", "estimated_usd"])
        return Spend(float(charged or 0.0), float(estimated or 0.0))

    # --- items ------------------------------------------------------------------------------
    def add_items(self, batch: str, items: Iterable[Item], now: float | None = None) -> int:
        """Add new items in ``pending``."""
        now = now or time.time()
        added = 0
        pipe = self.r.pipeline(transaction=False)
        for n, item in enumerate(items, 1):
            pipe.hset(keys.item(batch, item.item_id), mapping={
                "spec": item.model_dump_json(), "state": ItemState.PENDING.value,
                "attempts": 0, "updated_at": now})
            pipe.sadd(_state_set(batch, ItemState.PENDING), item.item_id)
            pipe.sadd(keys.ids(batch), item.item_id)
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

    def restore_item(self, batch: str, record: ItemRecord, **fields: Any) -> None:
        data = {**record.to_hash(), **_flat(fields)}
        pipe = self.r.pipeline()
        pipe.hset(keys.item(batch, record.item_id), mapping=data)
        pipe.sadd(_state_set(batch, record.state), record.item_id)
        pipe.sadd(keys.ids(batch), record.item_id)
        pipe.hdel(keys.versions(batch, record.item_id), record.item.content_key)
        pipe.execute()

    @staticmethod
    def _unlist(pipe: Any, batch: str, record: ItemRecord) -> None:
        pipe.srem(_state_set(batch, record.state), record.item_id)
        pipe.srem(keys.ids(batch), record.item_id)
        pipe.delete(keys.item(batch, record.item_id))
        pipe.zrem(keys.due(batch), record.item_id)

    def item_exists(self, batch: str, item_id: str) -> bool:
        return bool(self.r.exists(keys.item(batch, item_id)))

    def item(self, batch: str, item_id: str) -> ItemRecord | None:
        data = self.r.hgetall(keys.item(batch, item_id))
        return ItemRecord.from_hash(data) if data else None

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

    def index_turn(self, batch: str, every_s: float) -> bool:
        """True at most once every ``every_s`` across the fleet: whose turn to rewrite the index."""
        return bool(self.r.set(keys.index_turn(batch), 1, nx=True, px=int(every_s * 1000)))

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
                   incr: dict[str, int] | None = None, **fields: Any) -> ItemState:
        """Move an item to ``target`` if it is in one of ``expected`` (default: every state the
        state machine allows). Returns the state it left; raises TransitionRefused otherwise."""
        allowed = set(sources_of(target)) if expected is None else set(expected) & sources_of(target)
        if target in (expected or ()):
            allowed.add(target)  # an idempotent re-write of the same state, when asked for
        fields["updated_at"] = time.time()
        status, current = self._transition(
            keys=[keys.item(batch, item_id), keys.due(batch), keys.outcomes(batch)],
            args=[keys.state_prefix(batch), ",".join(sorted(s.value for s in allowed)), target.value,
                  item_id, json.dumps(_flat(fields)), json.dumps(incr or {}),
                  "1" if target in TERMINAL else "0", OUTCOME_LOG])
        if status != 1:
            raise TransitionRefused(item_id, current or "missing", target.value)
        return ItemState(current)

    def update(self, batch: str, item_id: str, **fields: Any) -> None:
        """Write fields that do not change the state (e.g. a fresh video URL)."""
        self.r.hset(keys.item(batch, item_id), mapping=_flat(fields))

    def clear_errors(self, batch: str, item_ids: list[str]) -> None:
        """Forget why items were waiting (a budget, a refused submit) before they go back to work."""
        pipe = self.r.pipeline(transaction=False)
        for n, item_id in enumerate(item_ids, 1):
            pipe.hset(keys.item(batch, item_id), mapping={"error_kind": "", "error": ""})
            if n % CHUNK == 0:
                pipe.execute()
        pipe.execute()

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

    def overdue(self, batch: str, before: float, limit: int = 1000) -> list[str]:
        return list(self.r.zrangebyscore(keys.due(batch), "-inf", before, start=0, num=limit))

    def clear_due(self, batch: str, item_id: str) -> None:
        self.r.zrem(keys.due(batch), item_id)

    # --- counters an item carries across tasks --------------------------------------------
    def count(self, batch: str, item_id: str, field: str) -> int:
        """Add one to an item's counter (transient_retries, internal_errors); returns the total."""
        return int(self.r.hincrby(keys.item(batch, item_id), field, 1))

    def count_delivery(self, task_id: str) -> int:
        """Our own redelivery cap: how often this task message was delivered (kept a day)."""
        pipe = self.r.pipeline()
        pipe.incr(keys.delivery(task_id))
        pipe.expire(keys.delivery(task_id), 86400)
        return int(pipe.execute()[0])

    def forget_delivery(self, task_id: str) -> None:
        self.r.unlink(keys.delivery(task_id))

    # --- generations: which item owns which remote generation ------------------------------
    def claim_generation(self, provider: str, generation_id: str, owner: str) -> bool:
        """Record whose generation this is; False when another owner has it. Claiming one's own
        again is True (a reconcile that claimed and then died must adopt it next time)."""
        index = keys.generations(provider)
        return bool(self.r.hsetnx(index, generation_id, owner)) or \
            self.r.hget(index, generation_id) == owner

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

    # --- the event stream's health beacon ----------------------------------------------------
    def mark_events_healthy(self, provider: str, ttl_s: int) -> None:
        self.r.set(keys.events_healthy(provider), 1, ex=ttl_s)

    def clear_events_healthy(self, provider: str) -> None:
        self.r.delete(keys.events_healthy(provider))

    def events_healthy(self, provider: str) -> bool:
        return bool(self.r.exists(keys.events_healthy(provider)))

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

    def sweep_needed(self, now: float) -> bool:
        """Whether a sweep has work: an item whose task is overdue, a batch whose start time came,
        a batch paused, its provider unreachable or its output folder unwritable (to pause or
        resume it)."""
        for batch in self.batches():
            meta = self.batch(batch)
            if meta is None:
                continue
            if meta.paused or (meta.start_at and meta.start_at <= now and not self._started(batch)):
                return True
            if self.r.exists(keys.provider_down(meta.provider), keys.output_problem(batch)):
                return True
            if self.overdue(batch, now, limit=1):
                return True
        return False

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

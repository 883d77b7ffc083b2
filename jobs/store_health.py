"""The store's view of the fleet's health: providers down, output folders and accounts that refuse
work, the event stream's beacon and the lister, workers' and the sweeper's heartbeats, and the
fleet-wide locks and limits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from redis.lock import Lock

from reelbatch.jobs import keys
from reelbatch.jobs.limits import RequestRate, Slots
from reelbatch.jobs.state import ItemState
from reelbatch.jobs.store_base import CHUNK, state_set
from reelbatch.jobs.store_batches import Batches
from reelbatch.jobs.store_records import BatchMeta, Problem


class FleetHealth(Batches):
    """Marks with a lifetime (problems, beacons, heartbeats) and the locks the fleet shares."""

    def mark_provider_down(self, provider: str, why: str, ttl_s: float) -> None:
        """Record that the provider cannot be reached. The first failure's time stays; the mark
        lapses ``ttl_s`` after the last failure, so nobody has to clear it when the provider is back."""
        self._mark(keys.provider_down(provider), why, ttl_s)

    def provider_down(self, provider: str) -> Problem | None:
        return self._problem(keys.provider_down(provider))

    def clear_provider_down(self, provider: str) -> None:
        self._r.delete(keys.provider_down(provider))

    def mark_output_problem(self, batch: str, why: str, ttl_s: float) -> None:
        self._mark(keys.output_problem(batch), why, ttl_s)

    def output_problem(self, batch: str) -> Problem | None:
        return self._problem(keys.output_problem(batch))

    def clear_output_problem(self, batch: str) -> None:
        self._r.delete(keys.output_problem(batch))

    def mark_account_problem(self, provider: str, why: str, model: str = "") -> bool:
        """Record that the provider account (or, with ``model``, that model there) cannot take work;
        the first mark's time and reason stay until a rerun clears it. True for the first mark."""
        value = json.dumps({"since": time.time(), "why": why})
        return bool(self._r.set(keys.account_problem(provider, model), value, nx=True))

    def account_problem(self, provider: str, model: str = "") -> Problem | None:
        """The provider account's problem, else the model's there (with ``model``), or None."""
        found = self._r.mget([keys.account_problem(provider)] +
                            ([keys.account_problem(provider, model)] if model else []))
        data = next((d for d in found if d), None)
        return Problem(**json.loads(data)) if data else None

    def clear_account_problem(self, provider: str, model: str) -> None:
        """A rerun tries the account again (a new key, a top-up): the marks go, and the time is kept."""
        self._r.delete(keys.account_problem(provider), keys.account_problem(provider, model))
        self._r.set(keys.account_cleared(provider), time.time())

    def account_cleared_at(self, provider: str) -> float:
        """When a rerun last cleared the provider's marks (0: never)."""
        return float(self._r.get(keys.account_cleared(provider)) or 0.0)

    def _mark(self, key: str, why: str, ttl_s: float) -> None:
        pipe = self._r.pipeline()
        pipe.set(key, json.dumps({"since": time.time(), "why": why}), nx=True, px=int(ttl_s * 1000))
        pipe.pexpire(key, int(ttl_s * 1000))
        pipe.execute()

    def _problem(self, key: str) -> Problem | None:
        data = self._r.get(key)
        return Problem(**json.loads(data)) if data else None

    def mark_events_healthy(self, provider: str, ttl_s: int) -> None:
        self._r.set(keys.events_healthy(provider), 1, ex=ttl_s)

    def clear_events_healthy(self, provider: str) -> None:
        self._r.delete(keys.events_healthy(provider))

    def events_healthy(self, provider: str) -> bool:
        return bool(self._r.exists(keys.events_healthy(provider)))

    def told_of_completions(self, provider: str) -> bool:
        """Whether completions reach the workers without per-item polls: the event stream is open,
        or a lister is listing the provider's generations."""
        return bool(self._r.exists(keys.events_healthy(provider), keys.listing(provider)))

    def mark_listing(self, provider: str, ttl_s: float) -> None:
        self._r.set(keys.listing(provider), 1, px=int(ttl_s * 1000))

    def clear_listing(self, provider: str) -> None:
        self._r.delete(keys.listing(provider))

    def lister_lock(self, provider: str, timeout_s: float) -> Lock:
        """One lister per provider across the fleet; only its holder (a token) extends or frees it."""
        lock: Lock = self._r.lock(keys.lister_lock(provider), timeout=timeout_s, blocking=False,
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
            ids = sorted(self._r.sunion(state_set(name, ItemState.QUEUED), state_set(name, ItemState.RUNNING)))
            for start in range(0, len(ids), CHUNK):
                pipe = self._r.pipeline(transaction=False)
                for item_id in ids[start:start + CHUNK]:
                    pipe.hmget(keys.item(name, item_id), ["generation_id", "submitted_at"])
                for item_id, (gid, at) in zip(ids[start:start + CHUNK], pipe.execute(), strict=True):
                    if gid:
                        found.append((meta, item_id, gid, float(at or 0)))
        return found

    def mark_sweeper(self, ttl_s: float) -> None:
        """A sweeper runs (``run``'s watch, the fleet's beat): long waits may be left to it."""
        self._r.set(keys.SWEEPER, 1, px=int(ttl_s * 1000))

    def sweeper_alive(self) -> bool:
        return bool(self._r.exists(keys.SWEEPER))

    def mark_worker(self, name: str, ttl_s: float) -> None:
        self._r.zadd(keys.WORKERS, {name: time.time() + ttl_s})

    def forget_worker(self, name: str) -> None:
        self._r.zrem(keys.WORKERS, name)

    def workers(self) -> list[str]:
        """Workers whose heartbeat has not lapsed."""
        return list(self._r.zrangebyscore(keys.WORKERS, time.time(), "+inf"))

    def mark_serving(self, worker: str, providers: Iterable[str], ttl_s: float) -> None:
        """``worker`` consumes these providers' queues (it has their keys) for the next ``ttl_s``
        seconds (renewed with its heartbeat), so `status` can say "no worker has a key for oxen"."""
        until = time.time() + ttl_s
        pipe = self._r.pipeline(transaction=False)
        for provider in providers:
            pipe.zadd(keys.serving(provider), {worker: until})
        pipe.execute()

    def forget_serving(self, worker: str, providers: Iterable[str]) -> None:
        pipe = self._r.pipeline(transaction=False)
        for provider in providers:
            pipe.zrem(keys.serving(provider), worker)
        pipe.execute()

    def serving(self, provider: str) -> int:
        """How many live workers consume the provider's queue."""
        return int(self._r.zcount(keys.serving(provider), time.time(), "+inf"))

    def unserved(self, providers: Iterable[str]) -> list[str]:
        """The providers no live worker serves (none has its key)."""
        return [p for p in providers if not self.serving(p)]

    def slots(self, provider: str) -> Slots:
        return Slots(self._r, provider)

    def request_rate(self, url: str, provider: str) -> RequestRate:
        return RequestRate(url, provider)

    def sweep_lock(self, timeout_s: float) -> Lock:
        """One sweep at a time across the fleet; released only by its own holder (a token check)."""
        lock: Lock = self._r.lock(keys.SWEEP_LOCK, timeout=timeout_s, blocking=False)
        return lock

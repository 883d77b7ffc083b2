"""The Redis state store: batches, items, their states and attempts.

``Store`` is composed of one part per key family, each its own module:

    store_items.py        item records, per-state sets, errors and attempts, the cancel claim
    store_transitions.py  the state machine: one Lua script per move (``Move``)
    store_batches.py      batch settings, pause marks, index turns, per-batch summaries
    store_schedule.py     due times, start times (`--at`), task deliveries, leases, look windows
    store_ledger.py       spend, owed charges, generation owners and orphans, learned times
    store_health.py       providers down, account and output problems, beacons, heartbeats, locks
    fanout.py             (``Store.fanouts``) a batch's spread over several providers, items' bindings

The Redis client is private to the store. Every key it writes is named in ``jobs/keys.py``; no
other module calls Redis for state.
"""

from __future__ import annotations

from functools import cached_property

import redis

from reelbatch.jobs.depth import QueueDepth
from reelbatch.jobs.fanout import FanoutStore, providers_of
from reelbatch.jobs.store_base import CHUNK, REDIS_DOWN
from reelbatch.jobs.store_health import FleetHealth
from reelbatch.jobs.store_items import Items
from reelbatch.jobs.store_ledger import Ledger
from reelbatch.jobs.store_records import BatchMeta, ItemRecord, Problem, TransitionRefused
from reelbatch.jobs.store_schedule import Schedule
from reelbatch.jobs.store_transitions import OUTCOME_LOG, Move, Transitions

__all__ = [
    "CHUNK", "OUTCOME_LOG", "REDIS_DOWN", "BatchMeta", "ItemRecord", "Move", "Problem", "Store", "TransitionRefused",
]


class Store(Items, Transitions, Schedule, Ledger, FleetHealth):
    """Batches and items in Redis. Safe to share between threads."""

    @cached_property
    def fanouts(self) -> FanoutStore:
        """How batches spread over several providers (``jobs/fanout.py``), on this store's client."""
        return FanoutStore(self._r)

    def providers_of(self, meta: BatchMeta) -> tuple[str, ...]:
        """The batch's providers: its list in a batch over several, else its one."""
        return providers_of(self.fanouts.load(meta.name), meta.provider)

    def queue_depth(self, provider: str) -> QueueDepth:
        """The generations kept queued at ``provider`` past its running limit (``jobs/depth.py``)."""
        return QueueDepth(self._r, provider)

    @classmethod
    def from_url(cls, url: str) -> Store:
        return cls(redis.Redis.from_url(url, decode_responses=True, health_check_interval=30))

    def ping(self) -> bool:
        return bool(self._r.ping())

    def server_time(self) -> float:
        """The Redis server's clock (unix seconds): what a worker whose own clock jumped (a suspend,
        an NTP step) checks a long interval against before acting on it."""
        seconds, micros = self._r.time()
        return float(seconds) + float(micros) / 1e6

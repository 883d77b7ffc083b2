"""What one worker process shares between its tasks: settings, the state store, one client per
provider, the limits. Built on first use, never at import time."""

from __future__ import annotations

import threading
import time
from functools import cached_property, partial

import httpx

from reelbatch.jobs.errors import ServiceUnavailable
from reelbatch.jobs.leases import TaskLeases
from reelbatch.jobs.limits import RequestRate, Slots
from reelbatch.jobs.settings import Settings, get_settings
from reelbatch.jobs.store import BatchMeta, ItemRecord, Store
from reelbatch.worker.providers import build_provider
from reelbatch.worker.providers.base import Provider
from reelbatch.worker.providers.http import build_download_client

FLAG_TTL_S = 1.0   # how long a process trusts a beacon it read (the event stream, the sweeper)


class Runtime:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._providers: dict[str, Provider] = {}
        self._slots: dict[str, Slots] = {}
        self._rates: dict[str, RequestRate] = {}
        self._marked_down: set[str] = set()   # providers this process found unreachable
        self._local = threading.local()        # what the task boundary read for its step
        self._flags: dict[tuple[str, str], tuple[float, bool]] = {}   # beacons read, until when

    def load(self, batch: str, item_id: str) -> tuple[BatchMeta | None, ItemRecord | None]:
        """The batch's settings and the item: what this thread's task boundary read with its
        delivery count (handed over once), else both read in one round trip."""
        handed = getattr(self._local, "loaded", None)
        self._local.loaded = None
        if handed is not None and handed[0] == (batch, item_id):
            return handed[1], ItemRecord.from_hash(handed[2]) if handed[2] else None
        return self.store.batch_and_item(batch, item_id)

    def hand_over(self, batch: str, item_id: str, meta: BatchMeta | None,
                  rec: dict[str, str] | None) -> None:
        """Keep what the task boundary read for the step it runs next on this thread (``load``)."""
        self._local.loaded = ((batch, item_id), meta, rec)

    def told_of_completions(self, provider: str) -> bool:
        """The event stream or a lister tells of the provider's completions (read at most every
        FLAG_TTL_S per process)."""
        return self._flag("told", provider, lambda: self.store.told_of_completions(provider))

    def account_stopped(self, provider: str) -> bool:
        """The provider account cannot take work (read at most every FLAG_TTL_S per process)."""
        return self._flag("account", provider, lambda: self.store.account_problem(provider))

    def sweeper_alive(self) -> bool:
        """A sweeper runs, so long waits may be left to it (read at most every FLAG_TTL_S)."""
        return self._flag("sweeper", "", self.store.sweeper_alive)

    def _flag(self, name: str, key: str, read) -> bool:
        now = time.monotonic()
        hit = self._flags.get((name, key))
        if hit is not None and hit[0] > now:
            return hit[1]
        value = bool(read())
        self._flags[(name, key)] = (now + FLAG_TTL_S, value)
        return value

    @cached_property
    def store(self) -> Store:
        return Store.from_url(_broker_url(self.settings))

    @cached_property
    def leases(self) -> TaskLeases:
        """The leases running tasks hold on their items (worker/lease.py renews them)."""
        return TaskLeases(self.store.r, self.settings.task_lease_s)

    @cached_property
    def download_client(self) -> httpx.Client:
        """For result URLs: never carries a provider's key to another host."""
        return build_download_client(self.settings)

    def provider(self, name: str) -> Provider:
        with self._lock:
            if name not in self._providers:
                self._providers[name] = build_provider(name, self.settings,   # requests counted for metrics
                                                       tally=partial(self.store.count_request, name))
            return self._providers[name]

    def slots(self, provider: str) -> Slots:
        with self._lock:
            if provider not in self._slots:
                self._slots[provider] = self.store.slots(provider)
            return self._slots[provider]

    def rate(self, provider: str) -> RequestRate:
        with self._lock:
            if provider not in self._rates:
                self._rates[provider] = self.store.request_rate(_broker_url(self.settings), provider)
            return self._rates[provider]

    def provider_down(self, provider: str, why: str, ttl_s: float) -> None:
        """The provider cannot be reached: mark it (the sweeper pauses its batches if it lasts)."""
        self.store.mark_provider_down(provider, why, ttl_s)
        self._marked_down.add(provider)

    def provider_up(self, provider: str) -> None:
        """The provider answered: clear the mark this process set (one write, only after an outage)."""
        if provider in self._marked_down:
            self._marked_down.discard(provider)
            self.store.clear_provider_down(provider)

    def close(self) -> None:
        for client in self._providers.values():
            client.close()


_context: Runtime | None = None
_context_lock = threading.Lock()


def context() -> Runtime:
    global _context
    with _context_lock:
        if _context is None:
            _context = Runtime(get_settings())
        return _context


def _broker_url(settings: Settings) -> str:
    """The Redis URL a worker's state lives at (`run` passes it; a fleet sets it in the environment)."""
    if not settings.broker_url:
        raise ServiceUnavailable("REELBATCH_BROKER_URL is not set: a worker needs the Redis URL")
    return settings.broker_url

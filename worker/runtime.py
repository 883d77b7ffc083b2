"""What one worker process shares between its tasks: settings, the state store, one client per
provider, the limits. Built on first use, never at import time."""

from __future__ import annotations

import threading
import time
from functools import cached_property, partial

import httpx

from reelbatch.jobs.errors import ServiceUnavailable
from reelbatch.jobs.fanout import Fanout, FanoutStore, providers_of
from reelbatch.jobs.leases import TaskLeases
from reelbatch.jobs.limits import RequestRate, Slots
from reelbatch.jobs.settings import Settings, get_settings
from reelbatch.jobs.store import BatchMeta, ItemRecord, Store
from reelbatch.jobs.tuning import BEACON_TRUST_S as FLAG_TTL_S, PROVIDER_TRUST_S as PROVIDER_TTL_S
from reelbatch.worker.providers import build_provider
from reelbatch.worker.providers.base import Provider
from reelbatch.worker.providers.http import build_download_client


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
        self._batch_providers: dict[str, tuple[float, str | None]] = {}   # read, until when
        self._fanouts: dict[str, tuple[float, Fanout | None]] = {}    # batches' routing, until when

    def load(self, batch: str, item_id: str) -> tuple[BatchMeta | None, ItemRecord | None]:
        """The batch's settings and the item: what this thread's task boundary read with its
        delivery count (handed over once), else both read in one round trip."""
        handed = getattr(self._local, "loaded", None)
        self._local.loaded = None
        if handed is not None and handed[0] == (batch, item_id):
            meta, rec = handed[1], ItemRecord.from_hash(handed[2]) if handed[2] else None
        else:
            meta, rec = self.store.batch_and_item(batch, item_id)
        return self.as_bound(meta, rec), rec

    def as_bound(self, meta: BatchMeta | None, rec: ItemRecord | None) -> BatchMeta | None:
        """The batch's settings as the item's provider sees them: in a batch over several providers,
        the provider the item is bound to (or offered to first) and that provider's limits."""
        if meta is None or rec is None:
            return meta
        return self.seen_by(meta, rec.item.provider)

    def seen_by(self, meta: BatchMeta, provider: str) -> BatchMeta:
        """The batch's settings as ``provider`` sees them in a batch over several (its own limits);
        a one-provider batch's as they are."""
        fanout = self.fanout(meta.name)
        if fanout is None:
            return meta
        concurrency, per_minute = fanout.limit(provider)
        return meta.model_copy(update={"provider": provider, "max_concurrency": concurrency,
                                       "requests_per_minute": per_minute,
                                       "queue_depth": fanout.depths.get(provider, meta.queue_depth)})

    def fanout(self, batch: str, fresh: bool = False) -> Fanout | None:
        """How the batch spreads over several providers (None: one provider); read at most every
        FLAG_TTL_S per process (it changes only when the batch is registered again), or now."""
        now = time.monotonic()
        hit = self._fanouts.get(batch)
        if hit is not None and hit[0] > now and not fresh:
            return hit[1]
        found = self.fanout_store.load(batch)
        self._fanouts[batch] = (now + FLAG_TTL_S, found)
        return found

    def providers_of(self, meta: BatchMeta) -> tuple[str, ...]:
        """The batch's providers: its list in a batch over several, else its one."""
        return providers_of(self.fanout(meta.name), meta.provider)

    def provider_paused(self, provider: str) -> bool:
        """The provider takes no items of a batch over several: its account stopped, it cannot be
        reached, or no live worker has its key (its queue has no consumer); read at most every
        FLAG_TTL_S per process."""
        return (self.account_stopped(provider)
                or self._flag("down", provider, lambda: self.store.provider_down(provider))
                or self._flag("unserved", provider, lambda: not self.store.serving(provider)))

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

    def item_provider(self, batch: str, item_id: str) -> str | None:
        """The provider the item's steps ask (their queue, worker/queues.py): the one stored on the
        item: the one it is bound to in a batch over several providers, else the batch's, read at
        most every PROVIDER_TTL_S per batch (None: the batch or the item is gone)."""
        if self.fanout(batch) is not None:
            rec = self.store.item(batch, item_id)
            return rec.item.provider if rec is not None else None
        now = time.monotonic()
        hit = self._batch_providers.get(batch)
        if hit is None or hit[0] <= now:
            meta = self.store.batch(batch)
            hit = (now + PROVIDER_TTL_S, meta.provider if meta else None)
            self._batch_providers[batch] = hit
        return hit[1]

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
    def fanout_store(self) -> FanoutStore:
        return self.store.fanouts

    @cached_property
    def leases(self) -> TaskLeases:
        """The leases running tasks hold on their items (worker/lease.py renews them)."""
        return self.store.task_leases(self.settings.task_lease_s)

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
        self._flags[("down", provider)] = (time.monotonic() + FLAG_TTL_S, True)   # known here at once

    def provider_up(self, provider: str) -> None:
        """The provider answered: clear the mark this process set (one write, only after an outage)."""
        if provider in self._marked_down:
            self._marked_down.discard(provider)
            self.store.clear_provider_down(provider)
            self._flags.pop(("down", provider), None)

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

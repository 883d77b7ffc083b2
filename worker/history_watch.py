"""The lister: one thread per provider that can list its generations (Oxen), beside the event
listener (`reelbatch run`, the fleet's `reelbatch scheduler`). Across the fleet one of them works
at a time: the holder of a Redis lock with a token (``Store.lister_lock``), which it extends while
it works; another takes over when it lapses.

While the provider's event stream is not healthy (or ``event_listener`` is off) it looks at each
model in flight on a tick (worker/engine/bulk_poll.py) and sends the steps of every finished item;
its beacon (``Store.mark_listing``) tells workers to relax per-item polls to a backstop. Whether
the stream is up or not, every ``COST_EVERY_S`` it reads the history for the charged cost of
generations counted at their estimate."""

from __future__ import annotations

import logging
import threading
import time

from redis.exceptions import LockError
from redis.lock import Lock

from reelbatch.jobs import errors
from reelbatch.jobs.settings import Settings
from reelbatch.worker.engine import bulk_poll
from reelbatch.worker.engine.outcome import DOWN_MARK_S
from reelbatch.worker.providers.base import ListsGenerations
from reelbatch.worker.runtime import Runtime
from reelbatch.worker.tasks import BROKER_DOWN, send

log = logging.getLogger("reelbatch.lister")
LOCK_S = 30.0          # the lock lapses this long after its holder last extended it
EXTEND_EVERY_S = 5.0
WAIT_LOCK_S = 5.0      # another process lists: ask for the lock again after this
IDLE_S = 1.0           # nothing in flight: look again after this
AFTER_ERROR_S = 2.0
COST_EVERY_S = 30.0    # how often the history is read for charged costs
BEACON_MIN_S = 5.0     # the beacon lasts three ticks, and at least this long
FAILED_QUIET_S = 60.0  # after a failed look, no beacon for this long (items poll on their own)


class HistoryWatch:
    def __init__(self, settings: Settings, provider: str):
        self.ctx, self.provider = Runtime(settings), provider
        self.with_events = settings.event_listener
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rb-lister")
        self._lock: Lock | None = None
        self._extended = 0.0
        self._next: dict[str, float] = {}      # model -> when to look next
        self._looked: dict[str, float] = {}    # model -> when it was last looked at
        self._cost: dict[str, float] = {}      # model -> requests a look takes (a moving average)
        self._next_cost = 0.0
        self._failed_at = float("-inf")        # when a look last failed: no beacon for a while
        self.looks = 0

    def lists(self) -> bool:
        """Whether the provider can list its generations (a lister is worth starting)."""
        return isinstance(self.ctx.provider(self.provider), ListsGenerations)

    def start(self) -> HistoryWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        try:
            if self._lock is not None:
                self.ctx.store.clear_listing(self.provider)
                self._lock.release()
        except (LockError, *BROKER_DOWN):
            pass   # it lapses on its own
        self.ctx.close()

    def _run(self) -> None:
        pause = 0.0
        while not self._stop.wait(pause):
            try:
                pause = self.turn()
            except BROKER_DOWN as exc:
                log.warning("lister: Redis unavailable (%s); trying again", type(exc).__name__)
                pause = AFTER_ERROR_S
            except errors.ReelbatchError as exc:   # the provider: per-item polls carry on meanwhile
                log.info("lister: %s could not be asked (%s); trying again", self.provider, exc)
                if isinstance(exc, errors.ProviderUnreachable):   # counts towards pausing its batches
                    self.ctx.provider_down(self.provider, str(exc), DOWN_MARK_S)
                self._failed()
                pause = AFTER_ERROR_S
            except Exception:   # noqa: BLE001 - a bug must not end listing for the rest of the batch
                log.exception("lister: %s: unexpected error; trying again", self.provider)
                self._failed()
                pause = AFTER_ERROR_S

    def _failed(self) -> None:
        """A look failed: take the beacon down, so items are polled on their own meanwhile."""
        self._failed_at = time.monotonic()
        try:
            self.ctx.store.clear_listing(self.provider)
        except BROKER_DOWN:
            pass

    def _beacon(self, ttl_s: float) -> None:
        if time.monotonic() - self._failed_at > FAILED_QUIET_S:
            self.ctx.store.mark_listing(self.provider, ttl_s)

    def turn(self) -> float:
        """One turn: costs when due, then a look at each model due; seconds until the next turn."""
        if not self._hold():
            return WAIT_LOCK_S
        now = time.time()
        if now >= self._next_cost:
            self._next_cost = now + COST_EVERY_S
            bulk_poll.collect_charges(self.ctx, self.provider)
        if self.with_events and self.ctx.store.events_healthy(self.provider):
            return min(IDLE_S, self._next_cost - now)
        groups = bulk_poll.in_flight(self.ctx, self.provider)
        if not groups:   # the beacon goes up before the first submit, so no item polls on its own
            self._beacon(BEACON_MIN_S)
            return IDLE_S
        return max(0.005, min(self._look(groups, now), self._next_cost - now))

    def _look(self, groups: dict[str, list[bulk_poll.Flight]], now: float) -> float:
        ticks = {model: bulk_poll.tick_s(self.ctx, group, self._cost.get(model, 1.0))
                 for model, group in groups.items()}
        waits = []
        for model, group in groups.items():
            if now >= self._next.get(model, 0.0):
                found, requests = bulk_poll.look(self.ctx, self.provider, model, group, self._looked.get(model))
                send(self.ctx, found)   # now: a later model's failed look must not lose these steps
                self._cost[model] = 0.8 * self._cost.get(model, 1.0) + 0.2 * requests
                self._looked[model], self._next[model] = now, now + ticks[model]
                self.looks += 1
            waits.append(self._next[model] - time.time())
        self._beacon(max(BEACON_MIN_S, 3 * max(ticks.values())))   # only once the looks succeeded
        return min(waits)

    def _hold(self) -> bool:
        """Whether this process is the one listing: it holds the lock (extended now and then)."""
        if self._lock is not None:
            if time.monotonic() - self._extended < EXTEND_EVERY_S:
                return True
            try:
                self._lock.reacquire()
                self._extended = time.monotonic()
                return True
            except LockError:
                self._lock = None   # it lapsed and another took it
                return False
        lock = self.ctx.store.lister_lock(self.provider, LOCK_S)
        if lock.acquire():
            self._lock, self._extended = lock, time.monotonic()
            return True
        return False

"""The event listener: one /api/events connection per provider key. Each completion it hears
marks the generation finished and sends its download at once; polling stays as the backstop (the
stream replays nothing that happened while it was down).

While the stream is open, a health beacon in Redis tells workers to relax their polls; whether it
is open or not, a lister (worker/history_watch.py) reads many generations at once where the provider can
list them: their completions while the stream is down, their charged costs always."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from reelbatch.jobs import errors
from reelbatch.jobs.settings import Settings
from reelbatch.worker.engine.events import on_event
from reelbatch.worker.history_watch import HistoryWatch
from reelbatch.worker.providers import build_provider, entry
from reelbatch.worker.providers.base import FollowsRequests, Generation, StreamsEvents
from reelbatch.worker.runtime import Runtime
from reelbatch.worker.tasks import BROKER_DOWN, send

log = logging.getLogger("reelbatch.events")
BEACON_EVERY_S = 5.0
BEACON_TTL_S = 15


def start_watchers(settings: Settings, providers: Iterable[str]) -> list[EventListener | HistoryWatch]:
    """A started event listener for each provider that has a key and pushes events (unless the
    event_listener setting is off), and a lister (worker/history_watch.py) for each that can list its
    generations; the caller stops them."""
    keyed = [name for name in providers if entry(name).key(settings)]
    started: list[EventListener | HistoryWatch] = []
    if settings.event_listener:
        found = [EventListener(settings, name) for name in keyed]
        started += [listener.start() for listener in found if listener.pushes_events()]
    listers = [HistoryWatch(settings, name) for name in keyed]
    for lister in listers:
        if lister.lists():
            started.append(lister.start())
        else:
            lister.ctx.close()
    return started


class EventListener:
    def __init__(self, settings: Settings, provider: str):
        self.ctx, self.provider = Runtime(settings), provider
        self.client = build_provider(provider, settings)  # its own client: the stream holds one
        self.stream = self.client if isinstance(self.client, StreamsEvents) else None
        if isinstance(self.client, FollowsRequests):   # fal: one status stream per request in flight
            self.client.follow(self._in_flight)
        self.heard = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._listen, daemon=True, name="rb-events"),
                         threading.Thread(target=self._beacon, daemon=True, name="rb-beacon")]

    def _in_flight(self) -> list[str]:
        try:
            return [generation_id for _, _, generation_id, _ in self.ctx.store.in_flight(self.provider)]
        except BROKER_DOWN:   # Redis restarting: the next turn reads them again
            return []

    def pushes_events(self) -> bool:
        if self.stream is not None:
            return True
        self.client.close()
        return False

    def start(self) -> EventListener:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.client.close()
        try:
            self.ctx.store.clear_events_healthy(self.provider)
        except BROKER_DOWN:
            pass   # the beacon's TTL lapses on its own

    def _listen(self) -> None:
        try:
            for generation in self.stream.events() if self.stream else ():
                try:
                    self.handle(generation)
                except BROKER_DOWN as exc:   # Redis restarting: the poll backstop catches this one
                    log.warning("could not act on an event (%s: %s)", type(exc).__name__, exc)
        except errors.PermanentProviderError as exc:
            log.warning("event stream refused (%s); polling carries on alone", exc)
        except errors.ReelbatchError as exc:
            log.warning("event stream stopped (%s); polling carries on alone", exc)

    def _beacon(self) -> None:
        while not self._stop.wait(BEACON_EVERY_S if self._open() else 0.5):
            try:
                if self._open():
                    self.ctx.store.mark_events_healthy(self.provider, BEACON_TTL_S)
                else:
                    self.ctx.store.clear_events_healthy(self.provider)
            except BROKER_DOWN:
                pass   # Redis is restarting; the beacon's TTL lapses on its own meanwhile

    def _open(self) -> bool:
        return self.stream is not None and self.stream.stream_is_open()

    def handle(self, generation: Generation) -> None:
        nexts = on_event(self.ctx, self.provider, generation)
        if nexts:
            self.heard += 1
            send(self.ctx, nexts)

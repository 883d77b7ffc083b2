"""The Oxen event listener: one /api/events connection per provider key. Each completion it hears
marks the generation finished and sends its download at once; polling stays as the backstop (the
stream replays nothing that happened while it was down).

While the stream is open, a health beacon in Redis tells workers to relax their polls."""

from __future__ import annotations

import logging
import threading

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from reelbatch.jobs import errors
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.state import ItemState as S
from reelbatch.worker.context import WorkerContext
from reelbatch.worker.dispatch import dispatch
from reelbatch.worker.providers import build_provider
from reelbatch.worker.providers.base import Generation
from reelbatch.worker.steps import events_healthy_key, observe, owner_of

log = logging.getLogger("reelbatch.events")
BEACON_EVERY_S = 5.0
BEACON_TTL_S = 15
BROKER_DOWN = (redis.ConnectionError, redis.TimeoutError, OperationalError)


class EventListener:
    def __init__(self, settings: Settings, app: Celery, provider: str):
        self.ctx, self.app, self.provider = WorkerContext(settings), app, provider
        self.client = build_provider(provider, settings)  # its own client: the stream holds one
        self.heard = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._listen, daemon=True, name="rb-events"),
                         threading.Thread(target=self._beacon, daemon=True, name="rb-beacon")]

    def start(self) -> EventListener:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.client.close()
        self.ctx.store.r.delete(events_healthy_key(self.provider))

    def _listen(self) -> None:
        try:
            for generation in self.client.events():
                try:
                    self.handle(generation)
                except BROKER_DOWN as exc:   # Redis restarting: the poll backstop catches this one
                    log.warning("could not act on an event (%s: %s)", type(exc).__name__, exc)
        except errors.PermanentProviderError as exc:
            log.warning("event stream refused (%s); polling carries on alone", exc)
        except errors.ReelbatchError as exc:
            log.warning("event stream stopped (%s); polling carries on alone", exc)

    def _beacon(self) -> None:
        key = events_healthy_key(self.provider)
        while not self._stop.wait(BEACON_EVERY_S if self.client.stream_open else 0.5):
            try:
                if self.client.stream_open:
                    self.ctx.store.r.set(key, 1, ex=BEACON_TTL_S)
                else:
                    self.ctx.store.r.delete(key)
            except BROKER_DOWN:
                pass   # Redis is restarting; the beacon's TTL lapses on its own meanwhile

    def handle(self, generation: Generation) -> None:
        owner = owner_of(self.ctx, self.provider, generation.generation_id)
        if owner is None:
            return  # not ours (another tool on the same account)
        batch, item_id = owner
        meta, rec = self.ctx.store.batch(batch), self.ctx.store.item(batch, item_id)
        if meta is None or rec is None or rec.state not in (S.QUEUED, S.RUNNING):
            return
        self.heard += 1
        nexts = observe(self.ctx, meta, rec, generation)
        dispatch(self.app, self.ctx.store, nexts, self.ctx.settings.max_countdown_s)

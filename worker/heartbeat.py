"""Each worker says it is alive every few seconds (a heartbeat in the state store), so `run` and
`status` can tell the user when no worker consumes the queue."""

from __future__ import annotations

import logging
import threading

import redis
from celery.signals import worker_ready, worker_shutdown

from reelbatch.worker.runtime import context

log = logging.getLogger("reelbatch.worker")
EVERY_S = 5.0
TTL_S = 15.0
_stop = threading.Event()


def _beat(name: str) -> None:
    while not _stop.wait(EVERY_S):
        try:
            context().store.mark_worker(name, TTL_S)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.debug("heartbeat skipped: %s", exc)


@worker_ready.connect
def _started(sender: object = None, **_: object) -> None:
    name = str(getattr(sender, "hostname", "worker"))
    context().store.mark_worker(name, TTL_S)
    threading.Thread(target=_beat, args=(name,), daemon=True, name="rb-heartbeat").start()


@worker_shutdown.connect
def _stopping(sender: object = None, **_: object) -> None:
    _stop.set()
    try:
        context().store.forget_worker(str(getattr(sender, "hostname", "worker")))
    except (redis.ConnectionError, redis.TimeoutError):
        pass

"""Each worker says it is alive every few seconds (a heartbeat in the state store), so `run` and
`status` can tell the user when no worker consumes the queue."""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutdown

from reelbatch.jobs.store import REDIS_DOWN
from reelbatch.jobs.tuning import HEARTBEAT_EVERY_S as EVERY_S, HEARTBEAT_TTL_S as TTL_S
from reelbatch.worker.context import context

log = logging.getLogger("reelbatch.worker")
_stop = threading.Event()


def _beat(name: str) -> None:
    while not _stop.wait(EVERY_S):
        try:
            context().store.mark_worker(name, TTL_S)
        except REDIS_DOWN as exc:
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
    except REDIS_DOWN:
        pass

"""Each worker says it is alive every few seconds (a heartbeat in the state store), and which
providers it serves (the queues it consumes: worker/queues.py), so `run` and `status` can tell the
user when no worker consumes the queue, or none has a provider's key."""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutdown

from reelbatch.jobs.store import REDIS_DOWN
from reelbatch.jobs.tuning import HEARTBEAT_EVERY_S as EVERY_S, HEARTBEAT_TTL_S as TTL_S
from reelbatch.worker.queues import served
from reelbatch.worker.runtime import context

log = logging.getLogger("reelbatch.worker")
_stop = threading.Event()


def _mark(name: str) -> None:
    ctx = context()
    ctx.store.mark_worker(name, TTL_S)
    ctx.store.mark_serving(name, served(ctx.settings), TTL_S)


def _beat(name: str) -> None:
    while not _stop.wait(EVERY_S):
        try:
            _mark(name)
        except REDIS_DOWN as exc:
            log.debug("heartbeat skipped: %s", exc)


@worker_ready.connect
def _started(sender: object = None, **_: object) -> None:
    name = str(getattr(sender, "hostname", "worker"))
    _mark(name)
    log.info("serving the queues of %s", ", ".join(served(context().settings)) or "no provider")
    threading.Thread(target=_beat, args=(name,), daemon=True, name="rb-heartbeat").start()


@worker_shutdown.connect
def _stopping(sender: object = None, **_: object) -> None:
    _stop.set()
    name, ctx = str(getattr(sender, "hostname", "worker")), context()
    try:
        ctx.store.forget_worker(name)
        ctx.store.forget_serving(name, served(ctx.settings))
    except REDIS_DOWN:
        pass

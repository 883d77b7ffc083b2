"""Holding a task lease while a step runs: taken when the task starts, renewed by a background
thread every third of its TTL (so a POST or a download of many minutes keeps it), released when the
step ends. A worker that dies stops renewing: its lease lapses and the sweeper takes over."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from reelbatch.jobs.leases import TaskLeases
from reelbatch.jobs.store import REDIS_DOWN
from reelbatch.jobs.tuning import TASK_LEASE_RENEWALS as RENEWALS_PER_TTL

log = logging.getLogger("reelbatch.worker")


@contextmanager
def holding(leases: TaskLeases, batch: str, item_id: str) -> Iterator[bool]:
    """Hold the item's lease for the block: True inside when it was taken, False when another
    running task holds it (the block must then leave the item alone)."""
    token = leases.take(batch, item_id)
    if token is None:
        yield False
        return
    stop = threading.Event()
    beat = threading.Thread(target=_renew, args=(leases, batch, item_id, token, stop),
                            name=f"lease-{item_id}", daemon=True)
    beat.start()
    try:
        yield True
    finally:
        stop.set()
        beat.join()
        leases.release(batch, item_id, token)


def _renew(leases: TaskLeases, batch: str, item_id: str, token: str, stop: threading.Event) -> None:
    every = leases.ttl_ms / 1000 / RENEWALS_PER_TTL
    while not stop.wait(every):
        try:
            if not leases.renew(batch, item_id, token):
                log.warning("%s/%s: another task took the lease while this one ran", batch, item_id)
        except REDIS_DOWN as exc:
            log.warning("%s/%s: the task's lease could not be renewed: %s", batch, item_id, exc)

"""Sending the next task for an item. Every send also writes when the item is due, so the sweeper
can find items whose task was lost (a worker died holding it)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from celery import Celery

from reelbatch.jobs.store import Store

TASKS = {"submit": "reelbatch.submit", "poll": "reelbatch.poll",
         "download": "reelbatch.download", "reconcile": "reelbatch.reconcile",
         "cancel": "reelbatch.cancel"}
SWEEP_GRACE_S = 60.0   # how late a task may run before the sweeper sends it again


def dispatch(app: Celery, store: Store, nexts: Iterable, max_countdown: float) -> int:
    sent = 0
    for nxt in nexts:
        countdown = max(0.0, min(float(nxt.countdown), max_countdown))
        store.set_due(nxt.batch, nxt.item_id, time.time() + countdown + SWEEP_GRACE_S)
        app.send_task(TASKS[nxt.task], args=[nxt.batch, nxt.item_id],
                      countdown=countdown or None)
        sent += 1
    return sent

"""When the fleet's periodic sweep runs: Celery beat checks every ``sweep_every_s`` whether anything
needs the sweeper (a task overdue, a batch whose --at time came, an outage or a full disk to pause
or resume a batch for) and only then sends the sweep task, so an idle fleet's Flower shows item
tasks, not a sweep every few seconds. At least every ``SWEEP_AT_LEAST_S`` it sweeps anyway."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from celery.schedules import schedstate, schedule

from reelbatch.worker.engine.sweeper import SWEEPER_TTL_S, horizon_s
from reelbatch.worker.runtime import context

SWEEP_AT_LEAST_S = 300.0


class WhenDue(schedule):
    """A ``schedule`` that is due only when the state store says a sweep has something to do."""

    def is_due(self, last_run_at: datetime) -> schedstate:
        due, next_check = super().is_due(last_run_at)
        if not due:
            return schedstate(False, next_check)
        idle_for = (self.now() - self.maybe_make_aware(last_run_at)).total_seconds()
        return schedstate(idle_for >= SWEEP_AT_LEAST_S or sweep_needed(), next_check)

    def __reduce__(self) -> tuple:
        return self.__class__, (self.run_every, self.relative, self.nowfun)


def sweep_needed(now: float | None = None) -> bool:
    """Anything due within the sweeper's horizon (the polls kept in the due set are sent ahead of
    time, so none is late); beat checking is also the sign that a sweeper runs."""
    ctx = context()
    ctx.store.mark_sweeper(SWEEPER_TTL_S)
    return ctx.store.sweep_needed(now or time.time(), horizon_s(ctx.settings))


def every(seconds: float) -> WhenDue:
    return WhenDue(timedelta(seconds=seconds))

"""Runs engine steps in process, the way a Celery worker would, without Celery: each ``Next`` goes
through the task boundary of worker/tasks.py (the delivery count, the item's task lease, ``_step``
over the ``STEPS`` table, the due times ``send`` records), in due order on a virtual clock. A
countdown moves the clock; nothing sleeps; a reconcile's look-again window (a Redis TTL) lapses on
the virtual clock too. Not Celery's eager mode: no task object, no broker."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from reelbatch.jobs import keys
from reelbatch.jobs.store import ItemRecord
from reelbatch.worker import tasks
from reelbatch.worker.engine.next import Failed, Next
from reelbatch.worker.engine.sweeper import lost_after_s
from reelbatch.worker.lease import holding
from reelbatch.worker.runtime import Runtime


@dataclass
class Ran:
    """One step the driver ran: when (virtual seconds), what, and what it returned."""

    at: float
    step: Next
    nexts: list[Next]
    failed: str | None = None   # the reason when the step failed its item (Celery's FAILURE)


@dataclass
class Driver:
    ctx: Runtime
    budget: int = 400   # steps one run may take before it is called a loop
    now: float = 0.0    # virtual seconds since the driver started
    ran: list[Ran] = field(default_factory=list)
    _queue: list[tuple[float, int, Next]] = field(default_factory=list)
    _seq: itertools.count = field(default_factory=itertools.count)
    _windows: dict[str, float] = field(default_factory=dict)   # look-window key -> virtual end

    def send(self, nexts: Iterable[Next], task_id: str | None = None) -> int:
        """Queue steps as ``tasks.send`` sends them: countdowns capped at max_countdown_s, each
        step's due time recorded for the sweeper (a lost task is found by it), a long poll left
        only in the due set while a sweeper runs (``tasks._keep``), and the delivery count of
        ``task_id`` (the task that returned them) forgotten."""
        now, grace, dues = time.time(), lost_after_s(self.ctx.settings), []
        for nxt in nexts:
            countdown = max(0.0, min(float(nxt.countdown), self.ctx.settings.max_countdown_s))
            if tasks._keep(self.ctx, nxt, countdown):
                dues.append((nxt.batch, nxt.item_id, now + countdown))
                continue
            heapq.heappush(self._queue, (self.now + countdown, next(self._seq), nxt))
            dues.append((nxt.batch, nxt.item_id, now + countdown + grace))
        self.ctx.store.end_task(task_id, dues)
        return len(dues)

    def drop(self) -> list[Next]:
        """Lose every queued step (the worker holding them died); what was lost."""
        lost = self.pending
        self._queue.clear()
        return lost

    @property
    def pending(self) -> list[Next]:
        return [nxt for _, _, nxt in sorted(self._queue)]

    def step(self) -> Ran:
        """Run the step due first, as one task delivery."""
        due, seq, nxt = heapq.heappop(self._queue)
        self.now = max(self.now, due)
        self._lapse_windows()
        nexts = self.deliver(nxt, f"task-{seq}")
        self._watch_window(nxt.batch, nxt.item_id)
        ran = Ran(self.now, nxt, list(nexts), nexts.reason if isinstance(nexts, Failed) else None)
        self.ran.append(ran)
        self.send(nexts, f"task-{seq}")
        return ran

    def deliver(self, nxt: Next, task_id: str) -> list[Next]:
        """What ``tasks._run`` does with one delivery, before it sends: count it, then run the step
        (or fail a message delivered past the redelivery cap); the steps that follow."""
        ctx = self.ctx
        deliveries, meta, stored = ctx.store.begin_task(task_id, nxt.batch, nxt.item_id)
        if deliveries > ctx.settings.redelivery_cap:
            rec = ItemRecord.from_hash(stored) if stored else None
            nexts = tasks._poison(ctx, nxt.batch, nxt.item_id, meta, rec)
        else:
            with holding(ctx.leases, nxt.batch, nxt.item_id) as held:
                if held:
                    ctx.hand_over(nxt.batch, nxt.item_id, meta, stored)
                    nexts = tasks._step(ctx, nxt.step, nxt.batch, nxt.item_id)
                else:
                    nexts = tasks._busy(ctx, nxt.step, nxt.batch, nxt.item_id)
        return nexts

    def _watch_window(self, batch: str, item_id: str) -> None:
        """Note when a look-again window the step opened ends, on the virtual clock."""
        key = keys.look_window(batch, item_id)
        left_ms = self.ctx.store.r.pttl(key)
        if left_ms > 0 and key not in self._windows:
            self._windows[key] = self.now + left_ms / 1000

    def _lapse_windows(self) -> None:
        """End the look-again windows whose virtual time has come (Redis would, in real time)."""
        for key, end in list(self._windows.items()):
            if end <= self.now or not self.ctx.store.r.exists(key):
                self.ctx.store.r.delete(key)
                del self._windows[key]

    def run(self, until: float | None = None) -> int:
        """Run steps until none is left (or the next is due after virtual time ``until``); how
        many ran. Past ``budget`` steps it stops with an AssertionError naming the last ones."""
        count = 0
        while self._queue and (until is None or self._queue[0][0] <= until):
            if count >= self.budget:
                last = [f"{r.at:.1f}s {r.step.step.value} {r.step.item_id}" for r in self.ran[-5:]]
                raise AssertionError(f"still running after {self.budget} steps; the last: {last}")
            self.step()
            count += 1
        if until is not None:
            self.now = max(self.now, until)
        return count

    def run_while(self, going: Callable[[], bool]) -> int:
        """Run steps while ``going()`` holds (and some are left); how many ran."""
        count = 0
        while self._queue and going():
            assert count < self.budget, f"still going after {self.budget} steps"
            self.step()
            count += 1
        return count

    def steps_of(self, item_id: str) -> list[str]:
        """The steps one item took, in order (``submit``, ``poll``, ...)."""
        return [r.step.step.value for r in self.ran if r.step.item_id == item_id]

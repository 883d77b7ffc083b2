"""The worker processes `reelbatch run` starts (scheduler/stack/worker_group.py)."""

from __future__ import annotations

import os

from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.stack.worker_group import DEFAULT_MOST_PROCESSES, WorkerGroup, usable_cores


def test_one_worker_process_per_usable_core_by_default(tmp_path):
    assert Settings().worker_processes == 0
    group = WorkerGroup({}, tmp_path / "worker.log", 0, 8)
    assert usable_cores() == len(os.sched_getaffinity(0))
    assert len(group.workers) == min(usable_cores(), DEFAULT_MOST_PROCESSES) >= 1
    assert all(worker.concurrency == 8 for worker in group.workers)


def test_each_worker_process_logs_to_its_own_file(tmp_path):
    group = WorkerGroup({}, tmp_path / "worker.log", 3, 4)
    assert [w.logfile.name for w in group.workers] == ["worker.log", "worker-2.log", "worker-3.log"]
    assert len({w.name for w in group.workers}) == 3          # each its own Celery node name
    assert not group.alive()                                  # nothing started yet

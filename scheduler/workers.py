"""`reelbatch worker`: a Celery worker on the configured broker (or the embedded Redis's folder, so
`submit` then `worker` also works on one machine)."""

from __future__ import annotations

import os
import sys

from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.broker import broker
from reelbatch.scheduler.embedded import WorkerProcess


def run_worker(settings: Settings, concurrency: int | None, extra: list[str]) -> int:
    url = broker(settings)
    log = settings.data_dir / "logs" / "worker.log"
    proc = WorkerProcess({"REELBATCH_BROKER_URL": url}, log, concurrency or settings.worker_concurrency)
    cmd = proc.command(to_logfile=False) + extra
    os.environ["REELBATCH_BROKER_URL"] = url
    os.execv(sys.executable, cmd)
    return 0  # not reached

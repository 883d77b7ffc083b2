"""`reelbatch worker`: a Celery worker on the configured broker (or the embedded Redis's folder, so
`submit` then `worker` also works on one machine)."""

from __future__ import annotations

from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.broker import broker
from reelbatch.scheduler.embedded import WorkerProcess, run_foreground


def run_worker(settings: Settings, concurrency: int | None, extra: list[str]) -> int:
    """A worker in the foreground, logging to stderr; the embedded Redis it may have started is
    stopped when it ends (unless another command still uses it)."""
    url = broker(settings)
    proc = WorkerProcess({"REELBATCH_BROKER_URL": url}, settings.data_dir / "logs" / "worker.log",
                         concurrency or settings.worker_concurrency)
    return run_foreground(proc.command() + extra, {"REELBATCH_BROKER_URL": url}, settings.data_dir)

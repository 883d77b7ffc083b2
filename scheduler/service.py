"""`reelbatch scheduler`: the fleet's one scheduler process: Celery beat (the periodic sweeper) and
an event listener for each provider key that has an event stream."""

from __future__ import annotations

import logging

from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.broker import connect
from reelbatch.scheduler.metrics import serve_metrics
from reelbatch.scheduler.notify import BatchWatcher
from reelbatch.worker.app import app
from reelbatch.worker.event_stream import start_watchers
from reelbatch.worker.providers import PROVIDERS

log = logging.getLogger("reelbatch.scheduler")


def run_scheduler(settings: Settings) -> int:
    ctx = connect(settings)
    settings = ctx.settings
    started = start_watchers(settings, PROVIDERS)
    watcher = BatchWatcher.start(ctx.store, settings)   # REELBATCH_NOTIFY: batches ended or paused
    log.info("listening to %s", ", ".join(one.provider for one in started) or "no event streams")
    schedule = settings.data_dir / "beat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    try:
        with serve_metrics(ctx.store, settings):   # REELBATCH_METRICS_PORT: Prometheus scrapes here
            app.Beat(loglevel="INFO", schedule=str(schedule)).run()
    finally:
        watcher.stop()
        for listener in started:
            listener.stop()
    return 0

"""`reelbatch scheduler`: the fleet's one scheduler process: Celery beat (the periodic sweeper) and
an event listener for each provider key that has an event stream."""

from __future__ import annotations

import logging

from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.events import EventListener
from reelbatch.scheduler.fleet import connect
from reelbatch.worker.app import app
from reelbatch.worker.providers import PROVIDERS, provider_has_events

log = logging.getLogger("reelbatch.scheduler")


def listeners(settings: Settings) -> list[EventListener]:
    return [EventListener(settings, app, name).start() for name in PROVIDERS
            if settings.event_listener and provider_has_events(name) and settings.key_for(name)]


def run_scheduler(settings: Settings) -> int:
    ctx = connect(settings)
    settings = ctx.settings
    started = listeners(settings)
    log.info("listening to %s", ", ".join(l.provider for l in started) or "no event streams")
    schedule = settings.data_dir / "beat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    try:
        app.Beat(loglevel="INFO", schedule=str(schedule)).run()
    finally:
        for listener in started:
            listener.stop()
    return 0

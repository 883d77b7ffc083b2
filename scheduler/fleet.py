"""The fleet path: `reelbatch submit` enqueues onto a configured Redis and returns; `reelbatch
worker` runs a Celery worker there. Without REELBATCH_BROKER_URL both use the embedded Redis's
folder, so `submit` then `worker` also works on one machine."""

from __future__ import annotations

import atexit
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

import click
import redis

from reelbatch.jobs.errors import ManifestError, ServiceUnavailable
from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.embedded import EmbeddedRedis, WorkerProcess
from reelbatch.scheduler.plan import plan_batch
from reelbatch.scheduler.submit import enqueue, register
from reelbatch.worker.app import app, use_broker
from reelbatch.worker.context import WorkerContext


def broker(settings: Settings) -> str:
    """The configured broker, or the embedded one: started if it is not running, and then stopped
    again when this command exits."""
    if settings.broker_url:
        return settings.broker_url
    embedded = EmbeddedRedis(settings.data_dir)
    url = embedded.start()
    atexit.register(embedded.stop)   # a no-op when the server was already running
    return url


def connect(settings: Settings) -> WorkerContext:
    url = broker(settings)
    use_broker(url)
    ctx = WorkerContext(settings.model_copy(update={"broker_url": url}))
    try:
        ctx.store.r.ping()
    except (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError) as exc:
        raise ServiceUnavailable(f"Redis at the configured broker: {type(exc).__name__}") from None
    return ctx


def connect_batch(settings: Settings, batch: str) -> WorkerContext:
    """Connect, and refuse (exit 2) a batch the store does not know."""
    ctx = connect(settings)
    if ctx.store.batch(batch) is None:
        known = ", ".join(ctx.store.batches()) or "none"
        raise ManifestError(f"no batch named {batch!r}; known: {known}", field="BATCH")
    return ctx


def parse_at(value: str, now: datetime | None = None) -> float:
    """HH:MM (its next occurrence, local time) or an ISO 8601 time, as a unix timestamp."""
    now = now or datetime.now().astimezone()
    try:
        if len(value) <= 5 and ":" in value:
            hour, minute = (int(x) for x in value.split(":"))
            when = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
            return (when if when > now else when + timedelta(days=1)).timestamp()
        when = datetime.fromisoformat(value)
        return (when if when.tzinfo else when.astimezone()).timestamp()
    except ValueError:
        raise ManifestError("expected HH:MM or an ISO 8601 time", field="--at") from None


def submit_batch(manifest: Path, settings: Settings, at: str | None) -> int:
    plan = plan_batch(manifest, settings)
    start_at = parse_at(at) if at else None
    ctx = connect(settings)
    reg = register(ctx.store, plan, start_at)
    sent = enqueue(ctx, app, plan.manifest.name)
    when = f", starting at {datetime.fromtimestamp(start_at).isoformat(timespec='minutes')}" if start_at else ""
    click.echo(f"{plan.manifest.name}: {reg.new} new items, {reg.kept} known, {sent} tasks sent{when}")
    return 0


def run_worker(settings: Settings, concurrency: int | None, extra: list[str]) -> int:
    url = broker(settings)
    log = settings.data_dir / "logs" / "worker.log"
    proc = WorkerProcess({"REELBATCH_BROKER_URL": url}, log, concurrency or settings.worker_concurrency)
    cmd = proc.command(to_logfile=False) + extra
    os.environ["REELBATCH_BROKER_URL"] = url
    os.execv(sys.executable, cmd)
    return 0  # not reached

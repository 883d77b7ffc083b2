"""Reaching the broker: the configured Redis, or the embedded one (started for this command and
stopped again when it exits, unless it was already running)."""

from __future__ import annotations

import atexit

import redis

from reelbatch.jobs.errors import ManifestError, ServiceUnavailable
from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.embedded import EmbeddedRedis
from reelbatch.worker.app import use_broker
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
        ctx.store.ping()
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

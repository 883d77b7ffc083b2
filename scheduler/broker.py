"""Reaching the broker: the configured Redis, or the embedded one (started for this command and
stopped again when it exits, unless it was already running)."""

from __future__ import annotations

import atexit

import redis

from reelbatch.jobs.errors import ManifestError, ServiceUnavailable
from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.embedded import EmbeddedRedis
from reelbatch.worker.app import use_broker
from reelbatch.worker.runtime import Runtime


def broker(settings: Settings) -> str:
    """The configured broker, or the embedded one: this command joins its users (starting it when
    it is not running) and leaves them when it exits (the last user stops it)."""
    if settings.broker_url:
        return settings.broker_url
    embedded = EmbeddedRedis(settings.data_dir)
    url = embedded.start()
    atexit.register(embedded.stop)
    return url


def check_broker(url: str) -> None:
    """Ping the broker: one line (exit 2 for a wrong URL, 3 for a broker out of reach) instead of
    a traceback later."""
    try:
        redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10).ping()
    except redis.AuthenticationError:
        raise ManifestError("the broker refused the password", field="REELBATCH_BROKER_URL") from None
    except redis.ResponseError as exc:      # e.g. "DB index is out of range"
        raise ManifestError(f"the broker refused it: {exc}", field="REELBATCH_BROKER_URL") from None
    except redis.RedisError as exc:         # refused, timed out, or not speaking Redis at all
        raise ServiceUnavailable(f"Redis at REELBATCH_BROKER_URL: {type(exc).__name__}: {exc} "
                                 "(is it a Redis server, and running?)") from None
    except ValueError as exc:               # a URL redis-py cannot read
        raise ManifestError(str(exc), field="REELBATCH_BROKER_URL") from None


def connect(settings: Settings) -> Runtime:
    url = broker(settings)
    check_broker(url)
    use_broker(url)
    return Runtime(settings.model_copy(update={"broker_url": url}))


def connect_batch(settings: Settings, batch: str) -> Runtime:
    """Connect, and refuse (exit 2) a batch the store does not know."""
    ctx = connect(settings)
    if ctx.store.batch(batch) is None:
        known = ", ".join(ctx.store.batches()) or "none"
        raise ManifestError(f"no batch named {batch!r}; known: {known}", field="BATCH")
    return ctx

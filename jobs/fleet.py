"""Which providers the live workers serve: each worker's heartbeat also lists the providers whose
queues it consumes (those it has a key for), so `status` can say "no worker has a key for oxen"
while that provider's items wait untouched in its queue."""

from __future__ import annotations

import time
from collections.abc import Iterable

import redis

from reelbatch.jobs import keys


def mark_serving(r: redis.Redis, worker: str, providers: Iterable[str], ttl_s: float) -> None:
    """``worker`` serves ``providers`` for the next ``ttl_s`` seconds (renewed with its heartbeat)."""
    until = time.time() + ttl_s
    pipe = r.pipeline(transaction=False)
    for provider in providers:
        pipe.zadd(keys.serving(provider), {worker: until})
    pipe.execute()


def forget_serving(r: redis.Redis, worker: str, providers: Iterable[str]) -> None:
    pipe = r.pipeline(transaction=False)
    for provider in providers:
        pipe.zrem(keys.serving(provider), worker)
    pipe.execute()


def serving(r: redis.Redis, provider: str) -> int:
    """How many live workers consume the provider's queue."""
    return int(r.zcount(keys.serving(provider), time.time(), "+inf"))


def unserved(r: redis.Redis, providers: Iterable[str]) -> list[str]:
    """The providers no live worker serves (none has its key)."""
    return [p for p in providers if not serving(r, p)]

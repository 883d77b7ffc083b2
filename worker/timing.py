"""Generation times learned from finished items, per provider, model and duration, kept in Redis so
every worker polls with what all of them have seen."""

from __future__ import annotations

import redis

from reelbatch.jobs.item import Item

KEEP = 500        # the most recent samples kept per model and duration
MIN_SAMPLES = 5   # fewer than this: fall back to the manifest's or the catalogue's defaults


def _key(item: Item) -> str:
    return f"rb:times:{item.provider}:{item.model}:{item.params.duration or 0}"


def record(client: redis.Redis, item: Item, seconds: float) -> None:
    if seconds > 0:
        pipe = client.pipeline(transaction=False)
        pipe.lpush(_key(item), round(seconds, 3))
        pipe.ltrim(_key(item), 0, KEEP - 1)
        pipe.execute()


def quantiles(client: redis.Redis, item: Item, qs: tuple[float, ...] = (0.1, 0.5)) -> tuple[float, ...] | None:
    """The learned quantiles of generation time, or None while too little is known."""
    samples = sorted(float(x) for x in client.lrange(_key(item), 0, -1))
    if len(samples) < MIN_SAMPLES:
        return None
    return tuple(samples[min(len(samples) - 1, int(q * len(samples)))] for q in qs)

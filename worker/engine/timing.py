"""Generation times learned from finished items, per provider, model and video length, kept in the
state store so every worker polls with what all of them have seen.

Learning starts with the first finished item: with fewer than ``MIN_SAMPLES`` the fastest one seen
stands for the early part and their median for the expected time, and the late part is left to
the policy's guess (the first to finish are the fast ones, so this errs towards polling early).
Each process keeps what it read for a few seconds (``CACHE_S``; ``FEW_CACHE_S`` while little is
known), so a poll does not read up to ``KEEP`` samples from Redis."""

from __future__ import annotations

import threading
import time

from reelbatch.jobs.item import Item
from reelbatch.jobs.store import Store
from reelbatch.jobs.tuning import (
    TIMES_CACHE_S as CACHE_S,
    TIMES_FEW_CACHE_S as FEW_CACHE_S,
    TIMES_KEPT as KEEP,
    TIMES_MIN_SAMPLES as MIN_SAMPLES,
)

Learned = tuple[float | None, ...]
_cache: dict[tuple[str, int, tuple[float, ...]], tuple[float, Learned | None]] = {}
_lock = threading.Lock()


def record(store: Store, item: Item, seconds: float) -> None:
    if seconds > 0:
        store.record_time(item, seconds, KEEP)


def quantiles(store: Store, item: Item, qs: tuple[float, ...] = (0.1, 0.5)) -> Learned | None:
    """The learned quantiles of generation time (None while nothing is known). With fewer than
    MIN_SAMPLES, the lowest quantile is the fastest sample, the middle ones the median and any
    above the median None (unknown yet)."""
    key = (item.provider + "\x1f" + item.model, item.video_seconds, qs)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    learned = estimate(store.times(item), qs)
    few = learned is None or any(q is None for q in learned)
    with _lock:
        _cache[key] = (now + (FEW_CACHE_S if few else CACHE_S), learned)
    return learned


def estimate(times: list[float], qs: tuple[float, ...]) -> Learned | None:
    samples = sorted(times)
    if not samples:
        return None
    if len(samples) >= MIN_SAMPLES:
        return tuple(samples[min(len(samples) - 1, int(q * len(samples)))] for q in qs)
    median = samples[len(samples) // 2]
    return tuple(samples[0] if q == min(qs) else (median if q <= 0.5 else None) for q in qs)


def forget() -> None:
    """Drop this process's cached quantiles (tests that change the samples under it)."""
    with _lock:
        _cache.clear()

"""Generation times learned from finished items, per provider, model and video length, kept in the
state store so every worker polls with what all of them have seen."""

from __future__ import annotations

from reelbatch.jobs.item import Item
from reelbatch.jobs.store import Store

KEEP = 500        # the most recent samples kept per model and length
MIN_SAMPLES = 5   # fewer than this: fall back to the manifest's or the catalogue's defaults


def record(store: Store, item: Item, seconds: float) -> None:
    if seconds > 0:
        store.record_time(item, seconds, KEEP)


def quantiles(store: Store, item: Item, qs: tuple[float, ...] = (0.1, 0.5)) -> tuple[float, ...] | None:
    """The learned quantiles of generation time, or None while too little is known."""
    samples = sorted(store.times(item))
    if len(samples) < MIN_SAMPLES:
        return None
    return tuple(samples[min(len(samples) - 1, int(q * len(samples)))] for q in qs)

"""What a plan costs in time and money before it starts: subtotals per duration, the expected wall
time at the manifest's ``max_concurrency`` from the catalogue's typical generation times, and
whether ``max_cost_usd`` covers it. Pure functions of the plan's items."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePosixPath

from reelbatch.jobs.catalog import ModelSpec
from reelbatch.jobs.item import Item
from reelbatch.jobs.manifest import Manifest

INPUT_FIELDS = ("start_image", "end_image", "video")


@dataclass(frozen=True)
class Subtotal:
    seconds: int
    items: int
    cost_usd: float


def per_duration(items: list[Item]) -> list[Subtotal]:
    counts: Counter[int] = Counter()
    costs: dict[int, float] = {}
    for item in items:
        counts[item.video_seconds] += 1
        costs[item.video_seconds] = costs.get(item.video_seconds, 0.0) + item.estimated_cost_usd
    return [Subtotal(s, counts[s], round(costs[s], 2)) for s in sorted(counts)]


def wall_time_s(count: int, manifest: Manifest, spec: ModelSpec) -> tuple[float, float]:
    """The range of hours a batch of ``count`` generations takes: waves of ``max_concurrency``
    generations, each the catalogue's typical range long, and never faster than the request rate."""
    if count == 0:
        return 0.0, 0.0
    low, high = spec.typical_range_s or (spec.expected_seconds, spec.expected_seconds)
    waves = math.ceil(count / manifest.limits.max_concurrency)
    by_rate = count / manifest.limits.requests_per_minute * 60
    return max(waves * low, by_rate), max(waves * high, by_rate)


def duration_text(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes / 60:.1f} h"


def wall_time_line(count: int, manifest: Manifest, spec: ModelSpec) -> str:
    low, high = wall_time_s(count, manifest, spec)
    span = duration_text(low) if duration_text(low) == duration_text(high) else \
        f"{duration_text(low)} to {duration_text(high)}"
    typical = spec.typical_range_s or (spec.expected_seconds, spec.expected_seconds)
    note = " (nominal: the simulator divides by its time scale)" if manifest.provider == "simulator" else ""
    return (f"wall time: about {span} for {count:,} generations at max_concurrency "
            f"{manifest.limits.max_concurrency}, {duration_text(typical[0])} to {duration_text(typical[1])} "
            f"each on {manifest.provider}{note}")


def affordable(items: list[Item], budget: float) -> int:
    """How many items, in order, a run makes before the budget stops it."""
    spent, made = 0.0, 0
    for item in items:
        if spent + item.estimated_cost_usd > budget + 1e-9:
            break
        spent += item.estimated_cost_usd
        made += 1
    return made


def budget_line(items: list[Item], cost: float, budget: float | None) -> tuple[str, bool]:
    """The budget's verdict, and whether it covers the plan."""
    if budget is None:
        return "budget: none set (limits.max_cost_usd)", True
    if cost <= budget + 1e-9:
        return f"budget: ${budget:,.2f} covers the plan (${cost:,.2f})", True
    made = affordable(items, budget)
    return (f"budget: ${budget:,.2f} does NOT cover the plan (${cost:,.2f}): `run` would make {made:,} of "
            f"{len(items):,} items and park the rest; raise limits.max_cost_usd to {math.ceil(cost * 100) / 100:.2f}"
            ), False


def varying_inputs(items: list[Item]) -> list[str]:
    """The input fields whose value differs between items (a column worth showing)."""
    return [name for name in INPUT_FIELDS
            if len({getattr(item.params, name) for item in items}) > 1]


def short_ref(ref: str | None) -> str:
    """A file's name, or the last part of a URL's path."""
    if not ref:
        return ""
    if ref.startswith("data:"):
        return "data: URI"
    return PurePosixPath(ref.split("?", 1)[0]).name or ref

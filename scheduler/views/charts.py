"""The batch at a glance, as figures: what the report's summary draws (``scheduler/svg.py``).

Everything comes from what the store already holds per item (submitted, detected and completed
times, cost and its source, error kind, provider, model, duration), read once with the cards, so
the summary costs no extra round trip. Totals are the ones `status --json` prints: spend from the
batch's counters, done = terminal items, failures by kind (``error`` when a failure has none).
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

from reelbatch.jobs.money import Spend
from reelbatch.jobs.state import TERMINAL, ItemState as S
from reelbatch.jobs.store import BatchMeta, ItemRecord

BUCKETS_S = (10, 60, 300, 600, 1800, 3600, 3 * 3600)   # throughput bars: the first giving <= MAX_BARS
MAX_BARS = 36
MAX_POINTS = 200   # the spend line: enough steps to draw it, at any batch size


@dataclass(frozen=True)
class Timing:
    """Generation times (submit to seen finished) of one model and duration, in seconds."""

    label: str
    count: int
    p10: float
    p50: float
    p90: float
    worst: float


@dataclass(frozen=True)
class ProviderShare:
    provider: str
    items: int
    cost_usd: float
    median_s: float | None


@dataclass(frozen=True)
class Summary:
    start: float | None                             # the first submit (unix s): every x axis starts here
    spend: Spend                                    # the batch's counters, as `status` shows them
    spend_steps: list[tuple[float, float, float]]   # (s since start, charged so far, estimated so far)
    max_cost_usd: float | None
    total: int
    done: int
    bucket_s: int
    done_per_bucket: list[int]
    bound_per_hour: float | None                    # max_concurrency generations at the median time
    timings: list[Timing]
    failure_kinds: dict[str, int]
    providers: list[ProviderShare]


def generation_s(rec: ItemRecord) -> float | None:
    """Submit to the generation seen finished; None for items that did not get there."""
    end = rec.detected_at or rec.remote_completed_at
    if rec.submitted_at is None or end is None or end < rec.submitted_at:
        return None
    return end - rec.submitted_at


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timings(records: list[ItemRecord]) -> list[Timing]:
    groups: dict[str, list[float]] = {}
    for rec in records:
        took = generation_s(rec)
        if took is not None:
            label = f"{rec.item.model} · {rec.item.video_seconds} s"
            groups.setdefault(label, []).append(took)
    return [Timing(label, len(v), _quantile(v, .1), _quantile(v, .5), _quantile(v, .9), max(v))
            for label, v in sorted(groups.items())]


def spend_steps(records: list[ItemRecord], start: float) -> list[tuple[float, float, float]]:
    """Cumulative charged and estimated cost at each generation's finish (a running sum over
    time; the batch's total is the store's spend)."""
    made = sorted((rec for rec in records if rec.detected_at and rec.cost_usd is not None),
                  key=lambda rec: rec.detected_at or 0.0)
    charged = estimated = 0.0
    steps = []
    for rec in made:
        if rec.cost_source == "charged":
            charged += rec.cost_usd or 0.0
        else:
            estimated += rec.cost_usd or 0.0
        steps.append(((rec.detected_at or start) - start, charged, estimated))
    return thin(steps)


def thin(steps: list, most: int = MAX_POINTS) -> list:
    """At most ``most`` evenly spaced steps, the last one always kept (the total)."""
    if len(steps) <= most:
        return steps
    every = len(steps) / (most - 1)
    return [steps[int(i * every)] for i in range(most - 1)] + [steps[-1]]


def throughput(records: list[ItemRecord], start: float | None) -> tuple[int, list[int]]:
    """(bucket seconds, items finished in each bucket since the first submit)."""
    ends = [rec.completed_at for rec in records if rec.state in TERMINAL and rec.completed_at]
    if start is None or not ends:
        return 3600, []
    span = max(1.0, max(ends) - start)
    bucket = next((b for b in BUCKETS_S if span / b <= MAX_BARS), BUCKETS_S[-1])
    bars = [0] * (int(span // bucket) + 1)
    for end in ends:
        bars[max(0, int((end - start) // bucket))] += 1
    return bucket, bars


def bound_per_hour(meta: BatchMeta, times: list[Timing]) -> float | None:
    """Items per hour the batch could reach: its concurrency, each slot busy a median generation."""
    medians = [t.p50 for t in times for _ in range(t.count)]
    if not medians:
        return None
    return meta.max_concurrency * 3600 / max(1.0, statistics.median(medians))


def providers(records: list[ItemRecord]) -> list[ProviderShare]:
    by: dict[str, list[ItemRecord]] = {}
    for rec in records:
        by.setdefault(rec.item.provider, []).append(rec)
    shares = []
    for name, recs in sorted(by.items()):
        took = [t for t in map(generation_s, recs) if t is not None]
        shares.append(ProviderShare(name, len(recs), sum(r.cost_usd or 0.0 for r in recs if r.detected_at),
                                    statistics.median(took) if took else None))
    return shares


def summarise(meta: BatchMeta, records: list[ItemRecord], spend: Spend) -> Summary:
    starts = [rec.submitted_at for rec in records if rec.submitted_at]
    start = min(starts) if starts else None
    times = timings(records)
    bucket, bars = throughput(records, start)
    kinds = Counter(rec.error_kind or "error" for rec in records if rec.state is S.FAILED)
    return Summary(start=start, spend=spend, spend_steps=spend_steps(records, start or 0.0),
                   max_cost_usd=meta.max_cost_usd, total=len(records),
                   done=sum(rec.state in TERMINAL for rec in records), bucket_s=bucket,
                   done_per_bucket=bars, bound_per_hour=bound_per_hour(meta, times), timings=times,
                   failure_kinds=dict(kinds.most_common()), providers=providers(records))

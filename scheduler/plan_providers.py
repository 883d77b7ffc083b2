"""`plan` of a batch over several providers: per provider its price, the items it can make and its
limit, and the wall time of the whole batch at their combined capacity (each provider works off
items at its ``max_concurrency`` over its typical generation time)."""

from __future__ import annotations

from reelbatch.jobs.catalog import ModelSpec, catalog
from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.item import Item
from reelbatch.jobs.manifest import Manifest
from reelbatch.scheduler.sizing import duration_text


def spec_of(manifest: Manifest, provider: str) -> ModelSpec | None:
    try:
        return catalog().model_for(provider, manifest.model)
    except ManifestError:
        return None


def price_per_second(items: list[Item], provider: str) -> float | None:
    """USD per video second at ``provider`` over the items it can make."""
    seconds = cost = 0.0
    for item in items:
        for offer in item.offers:
            if offer.provider == provider:
                seconds += item.video_seconds
                cost += offer.estimated_cost_usd
    return cost / seconds if seconds else None


def provider_line(manifest: Manifest, items: list[Item], provider: str) -> str:
    spec = spec_of(manifest, provider)
    if spec is None:
        return f"  {provider}: does not serve {manifest.model}: no items"
    takes = sum(item.can_go_to(provider) for item in items)
    price = price_per_second(items, provider)
    concurrency, per_minute = manifest.limits.of(provider)
    low, high = spec.typical_range_s or (spec.expected_seconds, spec.expected_seconds)
    return (f"  {provider}: ${price or 0:.3f}/video second, can make {takes:,} of {len(items):,} items, "
            f"max_concurrency {concurrency}, {per_minute}/min, {duration_text(low)} to "
            f"{duration_text(high)} each")


def combined_wall_time_s(manifest: Manifest, count: int) -> tuple[float, float]:
    """The range a batch of ``count`` items takes at every serving provider's capacity together:
    count over the summed rate (generations a second), never less than one generation."""
    rates_low = rates_high = 0.0
    longest = (0.0, 0.0)
    for provider in manifest.providers:
        spec = spec_of(manifest, provider)
        if spec is None:
            continue
        low, high = spec.typical_range_s or (spec.expected_seconds, spec.expected_seconds)
        concurrency, per_minute = manifest.limits.of(provider)
        rates_low += min(concurrency / low, per_minute / 60)
        rates_high += min(concurrency / high, per_minute / 60)
        longest = (max(longest[0], low), max(longest[1], high))
    if count == 0 or not rates_low:
        return 0.0, 0.0
    return max(count / rates_low, longest[0]), max(count / rates_high, longest[1])


def provider_lines(manifest: Manifest, items: list[Item], to_generate: int) -> list[str]:
    low, high = combined_wall_time_s(manifest, to_generate)
    span = duration_text(low) if duration_text(low) == duration_text(high) else \
        f"{duration_text(low)} to {duration_text(high)}"
    note = " (nominal for the simulator)" if "simulator" in manifest.providers else ""
    return [f"providers ({manifest.route}):",
            *(provider_line(manifest, items, p) for p in manifest.providers),
            f"wall time: about {span} for {to_generate:,} generations at their combined capacity{note}"]

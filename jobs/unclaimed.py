"""Generations the provider lists for a batch's model, made since the batch started, that no item
claims: kept beside the batch's orphans (``rb:{b}:orphans``, marked ``unclaimed``) for `status`,
the run's summary and the report. Not counted in the batch's cost: one may be another client's."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def unclaimed(orphans: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The unclaimed generations among a batch's orphans."""
    return {g: o for g, o in orphans.items() if o.get("unclaimed")}


def unclaimed_lines(orphans: dict[str, dict[str, Any]]) -> list[str]:
    """One line per unclaimed generation: its id, model, when it was made, how it ended, its cost
    where the provider said (for the run's summary, `status` and the report)."""
    lines = []
    for generation_id, o in sorted(unclaimed(orphans).items()):
        cost = f"${o['cost_usd']:.2f}" if o.get("cost_usd") is not None else "cost unknown"
        lines.append(f"unclaimed generation {generation_id}: {o.get('model')}, made {_local(o.get('created_at'))}, "
                     f"{o.get('status')}, {cost} (no item claims it; not counted in the cost)")
    return lines


def _local(when: float | None) -> str:
    return datetime.fromtimestamp(when).astimezone().isoformat(timespec="seconds") if when else "at an unknown time"

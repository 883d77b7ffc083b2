"""`reelbatch plan`: validate and expand a manifest, then show the items, seconds and cost."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from reelbatch.jobs.expand import expand
from reelbatch.jobs.item import Item
from reelbatch.jobs.manifest import Manifest, load_manifest
from reelbatch.jobs.settings import Settings, get_settings
from reelbatch.scheduler.notify import check_urls
from reelbatch.worker.pricing import with_provider_prices

TABLE_EDGE_ROWS = 20  # a large plan shows this many rows at each end
PROMPT_CHARS = 48


@dataclass(frozen=True)
class Plan:
    manifest: Manifest
    items: list[Item]
    total_video_seconds: int
    estimated_cost_usd: float


def plan_batch(path: str | Path, settings: Settings) -> Plan:
    """Load, validate and expand the manifest at ``path``; raises ManifestError on bad input."""
    return plan_manifest(load_manifest(path, settings.max_manifest_bytes), settings)


def plan_manifest(manifest: Manifest, settings: Settings) -> Plan:
    """Expand a loaded manifest into items with their estimated cost (ManifestError on bad input)."""
    check_urls(manifest)
    items = expand(manifest, with_provider_prices(settings, manifest.provider, manifest.model))
    return Plan(manifest, items, sum(i.video_seconds for i in items),
                round(sum(i.estimated_cost_usd for i in items), 2))


def _print_json(items: list[Item]) -> None:
    write = sys.stdout.write
    for item in items:
        write(item.model_dump_json() + "\n")


def _shown_rows(items: list[Item]) -> tuple[list[Item], int, list[Item]]:
    if len(items) <= 2 * TABLE_EDGE_ROWS + 1:
        return items, 0, []
    return items[:TABLE_EDGE_ROWS], len(items) - 2 * TABLE_EDGE_ROWS, items[-TABLE_EDGE_ROWS:]


def _row(item: Item) -> tuple[str, ...]:
    p = item.params
    prompt = p.prompt if len(p.prompt) <= PROMPT_CHARS else p.prompt[:PROMPT_CHARS - 1] + "…"
    return (item.item_id, str(p.duration or item.video_seconds), p.aspect_ratio or "",
            prompt, f"${item.estimated_cost_usd:.2f}")


def plan_table(plan: Plan):
    from rich.table import Table

    m = plan.manifest
    table = Table(title=f"{m.name}: {m.provider} {m.model}", title_justify="left")
    head, hidden, tail = _shown_rows(plan.items)
    id_width = min(60, max(len(i.item_id) for i in head + tail))
    table.add_column("id", min_width=id_width, overflow="fold")
    table.add_column("s", justify="right", min_width=2, no_wrap=True)
    table.add_column("aspect", min_width=6, no_wrap=True)
    table.add_column("prompt", max_width=PROMPT_CHARS, overflow="ellipsis")
    table.add_column("cost", justify="right", min_width=6, no_wrap=True)
    for item in head:
        table.add_row(*_row(item))
    if hidden:
        table.add_row("…", "", "", f"{hidden:,} more items", "", style="dim")
    for item in tail:
        table.add_row(*_row(item))
    return table


def plan_summary(plan: Plan) -> str:
    m, budget = plan.manifest, plan.manifest.limits.max_cost_usd
    text = (f"{len(plan.items):,} items, {plan.total_video_seconds:,} video seconds, "
            f"estimated ${plan.estimated_cost_usd:,.2f}")
    if budget is not None:
        text += f" (budget ${budget:,.2f})"
    return text + f"\noutput: {m.output}"


def show_plan(path: str | Path, as_json: bool = False) -> int:
    """Print the plan (a table, or JSON lines with ``as_json``); 0 on success."""
    plan = plan_batch(path, get_settings())
    if as_json:
        _print_json(plan.items)
        return 0
    from rich.console import Console

    console = Console()
    console.print(plan_table(plan))
    console.print(plan_summary(plan), highlight=False)
    return 0

"""`reelbatch plan`: validate and expand a manifest, then show the items, seconds and cost, and size
the night: subtotals per duration, the wall time at ``max_concurrency``, the budget's verdict, and
what the store already holds of it (``scheduler/history.py``).

Exit codes: 0 the plan is valid (and ``max_cost_usd``, when set, covers it); 1 the plan is valid but
``max_cost_usd`` does not cover it (``run`` would stop early and park the rest); 2 bad input, every
bad value on its own line."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from reelbatch.jobs.catalog import catalog
from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.item import Item
from reelbatch.jobs.manifest import Manifest, load_manifest
from reelbatch.jobs.offers import expand_items
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.store import Store
from reelbatch.scheduler import history, plan_providers, sizing
from reelbatch.scheduler.views.notify import check_urls
from reelbatch.worker import folder
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
    try:
        folder.check_owner(manifest.output, manifest.name)
    except ManifestError as exc:
        raise manifest.error(exc.message, ("output",)) from None
    for provider in manifest.providers:
        settings = with_provider_prices(settings, provider, manifest.model)
    items = expand_items(manifest, settings)
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


def visible(text: str) -> str:
    """``text`` with control characters (an escape sequence, a bell, a newline) written as escapes,
    so a prompt from a file never drives the terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _row(item: Item, inputs: list[str]) -> tuple[Text, ...]:
    p = item.params
    prompt = visible(p.prompt)
    prompt = prompt if len(prompt) <= PROMPT_CHARS else prompt[:PROMPT_CHARS - 1] + "…"
    return tuple(Text(cell) for cell in (
        visible(item.item_id), str(p.duration or item.video_seconds), p.aspect_ratio or "",
        *(visible(sizing.short_ref(getattr(p, name))) for name in inputs), prompt,
        f"${item.estimated_cost_usd:.2f}"))


def plan_table(plan: Plan):

    m = plan.manifest
    table = Table(title=Text(f"{m.name}: {', '.join(m.providers)} {m.model}"), title_justify="left")
    head, hidden, tail = _shown_rows(plan.items)
    id_width = min(60, max(len(i.item_id) for i in head + tail))
    table.add_column("id", min_width=id_width, overflow="fold")
    table.add_column("s", justify="right", min_width=2, no_wrap=True)
    table.add_column("aspect", min_width=6, no_wrap=True)
    inputs = sizing.varying_inputs(plan.items)      # the input that changes from row to row
    for name in inputs:
        table.add_column(name, max_width=32, overflow="ellipsis")
    table.add_column("prompt", max_width=PROMPT_CHARS, overflow="ellipsis")
    table.add_column("cost", justify="right", min_width=6, no_wrap=True)
    for item in head:
        table.add_row(*_row(item, inputs))
    if hidden:
        table.add_row("…", "", "", *([""] * len(inputs)), f"{hidden:,} more items", "", style="dim")
    for item in tail:
        table.add_row(*_row(item, inputs))
    return table


def plan_summary(plan: Plan) -> str:
    m, budget = plan.manifest, plan.manifest.limits.max_cost_usd
    text = (f"{len(plan.items):,} items, {plan.total_video_seconds:,} video seconds, "
            f"estimated ${plan.estimated_cost_usd:,.2f}")
    if budget is not None:
        text += f" (budget ${budget:,.2f})"
    if m.providers == ("simulator",):
        text += " at the catalogue's price, to be charged by the simulator: not real money"
    return text + f"\noutput: {m.output}"


def sizing_lines(plan: Plan, to_generate: list[Item] | None = None) -> tuple[list[str], bool]:
    """Subtotals per duration, the wall time, the budget's verdict (and whether it covers the plan);
    with a batch seen before, for what is left to generate."""
    items = plan.items if to_generate is None else to_generate
    m = plan.manifest
    subtotals = "   ".join(f"{t.seconds} s: {t.items:,} items, ${t.cost_usd:,.2f}"
                           for t in sizing.per_duration(plan.items))
    verdict, covered = sizing.budget_line(items, history.cost(items), m.limits.max_cost_usd)
    if m.fanout:
        return [subtotals, *plan_providers.provider_lines(m, plan.items, len(items)), verdict], covered
    spec = catalog().model_for(m.provider, m.model)
    return [subtotals, sizing.wall_time_line(len(items), m, spec), verdict], covered


def history_lines(plan: Plan, store: Store | None, why: str = "") -> tuple[list[str], list[Item] | None]:
    """What the store knows of this plan; and the items left to generate (None: not looked)."""
    if store is None:
        return [f"seen before: {why}"], None
    lines, left = [], None
    seen = history.seen_before(store, plan.manifest.name, plan.items)
    if seen is None:
        lines.append(f"seen before: no batch named {plan.manifest.name!r} yet: every item is new")
    else:
        left = seen.to_generate
        lines.append(f"seen before: {len(seen.made):,} items already made, {len(left):,} to generate "
                     f"(${history.cost(left):,.2f}); paid again: {len(seen.paid_again):,} items "
                     f"(${history.cost(seen.paid_again):,.2f}) whose paid video had other content")
    for other, same in history.identical_elsewhere(store, plan.manifest.name, left or plan.items).items():
        lines.append(f"identical requests in batch {other!r}: {len(same):,} (${history.cost(same):,.2f}); "
                     f"`reuse: [{other}]` in the manifest takes those videos instead of paying again")
    return lines, left


def show_plan(plan: Plan, settings: Settings, console: Console, as_json: bool = False) -> int:
    """Print the plan (a table, or JSON lines with ``as_json``); 0, or 1 when the budget does not
    cover it."""
    if as_json:
        _print_json(plan.items)
        return 0
    console.print(plan_table(plan))
    with history.known_store(settings) as (store, why):
        seen, left = history_lines(plan, store, why)
    sized, covered = sizing_lines(plan, left)
    for text in [plan_summary(plan), *sized, *seen]:
        console.print(text, highlight=False, markup=False)
    return 0 if covered else 1

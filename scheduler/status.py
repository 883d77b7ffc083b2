"""`reelbatch status`: per-state counts, progress, cost so far and projected, throughput, time left,
failures grouped by reason; `--watch` refreshes, `--json` for scripts."""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import click
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table

from reelbatch.jobs.settings import Settings
from reelbatch.jobs.state import TERMINAL, ItemState as S
from reelbatch.jobs.store import ItemRecord, Store
from reelbatch.scheduler.broker import connect, connect_batch
from reelbatch.scheduler.progress import PlainProgress, hms, settled


def summary(store: Store, batch: str, now: float | None = None) -> dict:
    now = now or time.time()
    meta = store.batch(batch)
    records = list(store.items(batch))
    counts = Counter(rec.state.value for rec in records)
    done = sum(counts[s.value] for s in TERMINAL)
    spend = store.spend(batch)
    open_estimate = sum(r.item.estimated_cost_usd for r in records if r.state not in TERMINAL
                        and r.state is not S.DOWNLOADING)
    rate = _throughput(records, now)
    failed = [r for r in records if r.state is S.FAILED]
    return {
        "batch": batch, "total": len(records), "done": done,
        "counts": {s.value: counts[s.value] for s in S},
        "videos": counts[S.SUCCEEDED.value],
        **spend.as_dict(), "spend": spend.label(),
        "projected_usd": round(spend.total_usd + open_estimate, 4),
        "items_per_hour": round(rate * 3600, 1) if rate else None,
        "eta_s": round((len(records) - done) / rate) if rate and done < len(records) else None,
        "waiting_for_budget": sum(1 for r in records if r.state is S.PENDING and r.error_kind == "budget"),
        "failure_kinds": dict(Counter(r.error_kind or "error" for r in failed).most_common()),
        "failures": _failures(failed),
        "manifest": meta.manifest if meta else None,
        "paused": meta.paused if meta else None,
        "workers": len(store.workers()),
    }


def _throughput(records: list[ItemRecord], now: float) -> float | None:
    """Finished items per second over the batch's active time: from the first submit to the last
    completion once nothing is open (so the pace does not decay after the batch ends), to now
    while it runs."""
    starts = [r.submitted_at for r in records if r.submitted_at]
    ends = [r.completed_at for r in records if r.completed_at]
    if not starts or not ends:
        return None
    running = any(r.state not in TERMINAL for r in records)
    return len(ends) / max(1.0, (now if running else max(ends)) - min(starts))


_IDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(:[\w./-]+)?|[0-9a-f]{16,}")


def reason(rec: ItemRecord) -> str:
    """An item's failure, with generation ids blanked so alike failures group together."""
    return f"{rec.error_kind}: {_IDS.sub('<id>', rec.error or '')}"


def _failures(failed: list[ItemRecord]) -> list[dict]:
    groups: dict[str, list[str]] = {}
    for rec in failed:
        groups.setdefault(reason(rec), []).append(rec.item_id)
    ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    return [{"reason": reason, "count": len(ids), "examples": ids[:3]} for reason, ids in ordered]


def one_line(info: dict) -> str:
    counts = " ".join(f"{k} {v}" for k, v in info["counts"].items() if v)
    paused = f" · paused: {info['paused']}" if info.get("paused") else ""
    manifest = f" · {info['manifest']}" if info.get("manifest") else ""
    return f"{info['batch']}: {info['done']}/{info['total']} done · {counts} · {info['spend']}{paused}{manifest}"


def render(info: dict) -> Group:
    bar = ProgressBar(total=max(1, info["total"]), completed=info["done"], width=50)
    table = Table.grid(padding=(0, 2))
    table.add_row("progress", bar)
    table.add_row("videos", f"{info['videos']} of {info['total']}")
    table.add_row("states", " · ".join(f"{k} {v}" for k, v in info["counts"].items() if v))
    table.add_row("cost", f"{info['spend']} so far, ${info['projected_usd']:,.2f} projected (estimated)")
    table.add_row("pace", f"{info['items_per_hour'] or '?'} items/h · {hms(info['eta_s'])} left")
    if info["paused"]:
        table.add_row("[yellow]paused", escape(info["paused"]))
    if info["done"] < info["total"] and not info["workers"]:
        table.add_row("[yellow]workers", "none is consuming the queue: start one with `reelbatch worker`")
    if info["failure_kinds"]:
        table.add_row("kinds", " · ".join(f"{k} {n}" for k, n in info["failure_kinds"].items()))
    if info["waiting_for_budget"]:
        table.add_row("budget", f"{info['waiting_for_budget']} items wait: raise limits.max_cost_usd "
                                "and run again")
    for failure in info["failures"]:
        table.add_row("[red]failed", escape(f"{failure['count']} × {failure['reason']} "
                                            f"(e.g. {', '.join(failure['examples'])})"))
    return Group(f"[bold]{escape(info['batch'])}[/]  {info['done']}/{info['total']} done", table)


def show_status(settings: Settings, batch: str | None, as_json: bool, watch: bool = False) -> int:
    store = (connect_batch(settings, batch) if batch else connect(settings)).store
    if not batch:
        infos = [summary(store, name) for name in store.batches()]
        click.echo(json.dumps(infos, indent=2) if as_json else "\n".join(map(one_line, infos)) or
                   "no batches")
        return 0
    if as_json:
        click.echo(json.dumps(summary(store, batch), indent=2))
        return 0
    if not watch:
        Console().print(render(summary(store, batch)))
        return 0
    return watch_status(store, batch, Console(), settings.progress_every_s)


def watch_status(store: Store, batch: str, console: Console, every_s: float, tick_s: float = 1.0) -> int:
    """Follow a batch until nothing in it can move: redrawn in place on a terminal, plain lines
    (every ``every_s`` and at each tenth) otherwise."""
    if not console.is_terminal:
        console.soft_wrap = True
        plain = PlainProgress(store, batch, console, every_s)
        while True:
            tally = plain.refresh()
            if settled(store, batch):
                if tally.done < tally.total:
                    console.print(f"{batch}: {tally.total - tally.done} items wait for the budget",
                                  markup=False, highlight=False)
                return 0
            time.sleep(tick_s)
    with Live(render(summary(store, batch)), console=console, refresh_per_second=2) as live:
        while not settled(store, batch):
            time.sleep(tick_s)
            live.update(render(summary(store, batch)))
        live.update(render(summary(store, batch)))
    return 0

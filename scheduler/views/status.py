"""`reelbatch status`: per-state counts, progress, cost so far and projected, throughput, time left,
failures grouped by reason; `--watch` refreshes, `--json` for scripts."""

from __future__ import annotations

import re
import shlex
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table

from reelbatch.jobs.errors import PERMANENT_KINDS
from reelbatch.jobs.manifest import load_manifest
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.state import OPEN, TERMINAL, ItemState as S
from reelbatch.jobs.store import Store
from reelbatch.jobs.unclaimed import unclaimed_lines
from reelbatch.scheduler.stack.broker import connect_batch
from reelbatch.scheduler.views import provider_status
from reelbatch.scheduler.views.progress import PlainProgress, hms, settled
from reelbatch.worker.providers import entry

SIMULATED = " by the simulator (not real money)"   # after "$5.04 charged"


def summary(store: Store, batch: str, now: float | None = None) -> dict:
    """The batch at a glance, from counters the store keeps (per-state counts and estimated cost,
    spend, first submit and last completion, items waiting for the budget) and the failed items
    only: the same cost for 100 items and for 100,000."""
    now = now or time.time()
    meta = store.batch(batch)
    if not store.estimates_tracked(batch):   # registered before the store counted estimates
        store.track_estimates(batch, store.items(batch))
    counts = store.counts(batch)
    total, done = sum(counts.values()), sum(counts[s] for s in TERMINAL)
    spend = store.spend(batch)
    open_estimate = sum(usd for state, usd in store.estimates(batch).items()
                        if state not in TERMINAL and state is not S.DOWNLOADING)
    pace = store.pace(batch)
    workers = len(store.workers())
    listed = store.providers_of(meta) if meta else ()
    unserved = store.unserved(listed) if workers and done < total else []
    rate = _throughput(pace, done, done < total, now)
    # nothing can move: no worker, none with a key for any of the batch's providers, or paused
    stuck = done < total and (not workers or len(unserved) == len(listed) or bool(meta and meta.paused))
    failed = store.failures(batch)
    return {
        "batch": batch, "total": total, "done": done,
        "counts": {s.value: counts[s] for s in S},
        "videos": counts[S.SUCCEEDED],
        **spend.as_dict(), "spend": spend.label(),
        "projected_usd": round(spend.total_usd + max(0.0, open_estimate), 4),
        "items_per_hour": round(rate * 3600, 1) if rate else None,
        "eta_s": round((total - done) / rate) if rate and done < total and not stuck else None,
        "waiting_for_budget": store.budget_waiting(batch),
        "failure_kinds": dict(Counter(kind or "error" for _, kind, _ in failed).most_common()),
        "failures": _failures(failed),
        "manifest": meta.manifest if meta else None,
        "paused": meta.paused if meta else None,
        "workers": workers,
        "unserved": unserved,   # providers of the batch no live worker has a key for
        **batch_times(meta.created_at if meta else None, pace, _ended(counts, store.budget_waiting(batch))),
        "orphans": [{"generation_id": g, **o} for g, o in sorted(store.orphans(batch).items())],
        **({"providers": found} if meta and (found := provider_status.providers(store, batch, meta.model)) else {}),
    }


def _ended(counts: dict[S, int], parked: int) -> bool:
    """Nothing can move: every item terminal, or only pending items parked by the budget."""
    return not any(counts[s] for s in OPEN if s is not S.PENDING) and parked >= counts[S.PENDING]


def iso(when: float | None) -> str | None:
    return datetime.fromtimestamp(when).astimezone().isoformat(timespec="seconds") if when else None


def batch_times(created: float | None, pace: tuple[float | None, float | None], ended: bool) -> dict:
    """When the batch was created, started (its first submit) and finished (its last completion,
    once nothing can move), as ISO 8601 local times."""
    first, last = pace
    return {"created_at": iso(created), "started_at": iso(first), "finished_at": iso(last) if ended else None}


def ran(started: float | None, finished: float | None) -> str:
    """``ran 1:35, 06:39-06:41``: how long from the first submit to the last completion."""
    if not started or not finished:
        return ""
    took = int(finished - started)
    clock = "%H:%M" if took < 86_400 else "%Y-%m-%d %H:%M"
    span = f"{time.strftime(clock, time.localtime(started))}-{time.strftime(clock, time.localtime(finished))}"
    length = hms(took) if took >= 3600 else f"{took // 60}:{took % 60:02d}"
    return f"ran {length}, {span}"


def rerun_command(batch: str, manifest: str | None, kinds: Iterable[str | None]) -> str:
    """The command that sends the failed items back to work and carries them out; a batch whose
    every failure is permanent (content policy, no credits, ...) needs --include-permanent."""
    kinds = list(kinds)
    flag = " --include-permanent" if kinds and all(k in PERMANENT_KINDS for k in kinds) else ""
    then = f" && reelbatch run {shlex.quote(manifest)}" if manifest else ""
    return f"reelbatch retry {shlex.quote(batch)}{flag}{then}"


def waiting_line(info: dict, fleet: bool) -> str | None:
    """What to do when items are open and no worker consumes them (or none has their key)."""
    waiting = info["total"] - info["done"] - info["waiting_for_budget"]
    if waiting <= 0 or info["paused"]:
        return None
    if info["workers"]:
        return no_key_line(info.get("unserved") or [], waiting)
    where = info.get("manifest")
    run = f"run `reelbatch run {where}`" if where else "run its manifest with `reelbatch run`"
    fleet_hint = " (or start a worker with `reelbatch worker`)" if fleet else ""
    return f"{waiting} items wait: {run}{fleet_hint}"


def no_key_line(unserved: list[str], waiting: int) -> str | None:
    """``no worker has a key for oxen``: the items wait untouched in its queue."""
    if not unserved:
        return None
    keys = ", ".join(entry(p).key_variable for p in unserved)
    return (f"no worker has a key for {', '.join(unserved)}: {waiting} items wait untouched; "
            f"start a worker with {keys}")


def _throughput(pace: tuple[float | None, float | None], done: int, running: bool,
                now: float) -> float | None:
    """Finished items per second over the batch's active time: from the first submit to the last
    completion once nothing is open (so the pace does not decay after the batch ends), to now
    while it runs."""
    first, last = pace
    if first is None or last is None or not done:
        return None
    return done / max(1.0, (now if running else last) - first)


_IDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(:[\w./-]+)?|[0-9a-f]{16,}")


def reason(kind: str | None, error: str | None) -> str:
    """A failure, with generation ids blanked so alike failures group together."""
    return f"{kind}: {_IDS.sub('<id>', error or '')}"


def _failures(failed: list[tuple[str, str | None, str | None]]) -> list[dict]:
    groups: dict[str, list[str]] = {}
    for item_id, kind, error in sorted(failed):
        groups.setdefault(reason(kind, error), []).append(item_id)
    ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    return [{"reason": reason, "count": len(ids), "examples": ids[:3]} for reason, ids in ordered]


def one_line(info: dict) -> str:
    counts = " ".join(f"{k} {v}" for k, v in info["counts"].items() if v)
    paused = f" · paused: {info['paused']}" if info.get("paused") else ""
    paused += f" · no worker has a key for {', '.join(info['unserved'])}" if info.get("unserved") else ""
    manifest = f" · {info['manifest']}" if info.get("manifest") else ""
    return f"{info['batch']}: {info['done']}/{info['total']} done · {counts} · {info['spend']}{paused}{manifest}"


def render(info: dict, fleet: bool = False) -> Group:
    bar = ProgressBar(total=max(1, info["total"]), completed=info["done"], width=50)
    table = Table.grid(padding=(0, 2))
    table.add_row("progress", bar)
    table.add_row("videos", f"{info['videos']} of {info['total']}")
    table.add_row("states", " · ".join(f"{k} {v}" for k, v in info["counts"].items() if v))
    table.add_row("cost", f"{info['spend']} so far, ${info['projected_usd']:,.2f} projected (estimated)")
    eta = f" · {hms(info['eta_s'])} left" if info["eta_s"] is not None else ""
    table.add_row("pace", f"{info['items_per_hour'] or '?'} items/h{eta}")
    times = [f"{what} {info[f'{what}_at']}" for what in ("created", "started", "finished") if info.get(f"{what}_at")]
    if times:
        table.add_row("times", " · ".join(times))
    for per_provider in info.get("providers") or []:
        table.add_row(escape(per_provider["provider"]), escape(provider_status.line(per_provider)))
    if info["paused"]:
        table.add_row("[yellow]paused", escape(info["paused"]))
    waiting = waiting_line(info, fleet)
    if waiting:
        table.add_row("[yellow]waiting", escape(waiting))
    if info["failure_kinds"]:
        table.add_row("kinds", " · ".join(f"{k} {n}" for k, n in info["failure_kinds"].items()))
    if info["waiting_for_budget"]:
        table.add_row("budget", f"{info['waiting_for_budget']} items wait: raise limits.max_cost_usd "
                                "and run again")
    late = [o for o in info.get("orphans") or [] if not o.get("unclaimed")]
    if late:
        ids = ", ".join(o["generation_id"] for o in late[:3])
        table.add_row("[yellow]orphans", escape(f"{len(late)} paid generations no item holds "
                                                f"(an answer that came late; counted in the cost): {ids}"))
    for line in unclaimed_lines({o["generation_id"]: o for o in info.get("orphans") or []}):
        table.add_row("[yellow]unclaimed", escape(line))
    for failure in info["failures"]:
        table.add_row("[red]failed", escape(f"{failure['count']} × {failure['reason']} "
                                            f"(e.g. {', '.join(failure['examples'])})"))
    return Group(f"[bold]{escape(info['batch'])}[/]  {info['done']}/{info['total']} done", table)


def batch_of_manifest(settings: Settings, ref: str) -> str:
    """``status m.yaml``: the batch the manifest names, when ``ref`` is a manifest file."""
    path = Path(ref)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return ref
    return load_manifest(path, settings.max_manifest_bytes).name


def watch_batch(settings: Settings, batch: str, console: Console) -> int:
    """`status --watch`: follow the batch in the store until nothing in it can move."""
    return watch_status(connect_batch(settings, batch).store, batch, console, settings.progress_every_s)


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

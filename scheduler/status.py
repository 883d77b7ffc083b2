"""`reelbatch status`: per-state counts, progress, cost and failures, read from the state store."""

from __future__ import annotations

import json
from collections import Counter

import click

from jobs.settings import Settings
from jobs.state import ItemState as S
from jobs.store import Store
from scheduler.fleet import connect, connect_batch


def summary(store: Store, batch: str) -> dict:
    counts = store.counts(batch)
    total = sum(counts.values())
    failures = Counter()
    examples: dict[str, list[str]] = {}
    for rec in store.items(batch, S.FAILED):
        key = f"{rec.error_kind}: {rec.error}"
        failures[key] += 1
        examples.setdefault(key, []).append(rec.item_id)
    return {
        "batch": batch, "total": total, "counts": {s.value: n for s, n in counts.items()},
        "done": counts[S.SUCCEEDED] + counts[S.FAILED] + counts[S.CANCELLED],
        "spent_usd": round(store.spent(batch), 4),
        "failures": [{"reason": k, "count": n, "examples": examples[k][:3]}
                     for k, n in failures.most_common()],
    }


def _line(info: dict) -> str:
    counts = " ".join(f"{k} {v}" for k, v in info["counts"].items() if v)
    return f"{info['batch']}: {info['done']}/{info['total']} done · {counts} · ${info['spent_usd']:.2f}"


def show_status(settings: Settings, batch: str | None, as_json: bool) -> int:
    store = (connect_batch(settings, batch) if batch else connect(settings)).store
    names = [batch] if batch else store.batches()
    infos = [summary(store, name) for name in names]
    if as_json:
        click.echo(json.dumps(infos if not batch else infos[0], indent=2))
        return 0
    for info in infos:
        click.echo(_line(info))
        for failure in info["failures"] if batch else []:
            click.echo(f"  {failure['count']} × {failure['reason']} (e.g. {', '.join(failure['examples'])})")
    return 0

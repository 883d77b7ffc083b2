"""`status` of a batch over several providers: per provider whether it takes items (active, or
paused and why), its items in flight and done, and what they cost there, charged (the provider
said) and estimated (the catalogue's price)."""

from __future__ import annotations

from typing import Any

from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import ItemRecord, Store

ON_THE_WAY = (S.SUBMITTING, S.QUEUED, S.RUNNING, S.DOWNLOADING)


def providers(store: Store, batch: str, model: str) -> list[dict[str, Any]] | None:
    """One entry per listed provider, in the list's order; None for a batch on one provider."""
    fanout = store.fanouts.load(batch)
    if fanout is None:
        return None
    records = [r for state in (*ON_THE_WAY, S.SUCCEEDED, S.FAILED) for r in _records(store, batch, state)]
    return [{"provider": p, **_state(store, p, model), **_tally([r for r in records if r.item.provider == p])}
            for p in fanout.providers]


def _records(store: Store, batch: str, state: S) -> list[ItemRecord]:
    found = [store.item(batch, i) for i in store.item_ids(batch, state)]
    return [r for r in found if r is not None]


def _state(store: Store, provider: str, model: str) -> dict[str, Any]:
    account = store.account_problem(provider, model)
    if account:
        return {"state": "paused", "why": account.why, "since": account.since}
    down = store.provider_down(provider)
    if down:
        return {"state": "paused", "why": f"cannot be reached: {down.why}", "since": down.since}
    return {"state": "active", "why": None, "since": None}


def _tally(records: list[ItemRecord]) -> dict[str, Any]:
    charged = sum(r.cost_usd or 0.0 for r in records if r.cost_source == "charged")
    estimated = sum(r.cost_usd or 0.0 for r in records if r.cost_source == "estimated")
    estimated += sum(r.item.estimated_cost_usd for r in records
                     if r.state in ON_THE_WAY and r.cost_usd is None and r.state is not S.SUBMITTING)
    return {"in_flight": sum(r.state in ON_THE_WAY for r in records),
            "done": sum(r.state is S.SUCCEEDED for r in records),
            "charged_usd": round(charged, 4), "estimated_usd": round(estimated, 4)}


def line(entry: dict[str, Any]) -> str:
    state = "active" if entry["state"] == "active" else f"paused: {entry['why']}"
    return (f"{state} · {entry['in_flight']} in flight · {entry['done']} done · "
            f"${entry['charged_usd']:,.2f} charged, ${entry['estimated_usd']:,.2f} estimated")

"""The metrics collector's series, read from the store's counters: bounded labels (never an item id),
and the Grafana dashboard in configs/ asks only for series the collector serves."""

from __future__ import annotations

import json
import re

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from reelbatch.jobs.fanout import Fanout
from reelbatch.jobs.item import Offer
from reelbatch.jobs.store import Store
from reelbatch.scheduler.views.metrics import registry_for
from tests.batchfill import PROVIDER_MODEL, fail, make_item, new_batch, start, succeed
from tests.conftest import REPO

DASHBOARD = REPO / "configs" / "grafana" / "dashboards" / "reelbatch.json"


def samples(store: Store) -> list:
    text = generate_latest(registry_for(store)).decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def test_series_count_batches_and_states_and_never_name_an_item(redis_url, tmp_path):
    store, out = Store.from_url(redis_url), tmp_path / "out"
    items = [make_item(f"item{n}", f"shot {n}") for n in range(6)]
    new_batch(store, "night", out, items)
    succeed(store, "night", "item0", out, charged=True, cost=1.25)
    fail(store, "night", "item1")
    start(store, "night", "item2")
    store.record_time(items[0], 84.0, keep=50)
    store.pause("night", "simulator unreachable for 600 s")
    found = samples(store)
    items_by_state = {s.labels["state"]: s.value for s in found if s.name == "reelbatch_items"}
    assert items_by_state == {**{k: 0.0 for k in items_by_state}, "succeeded": 1, "failed": 1,
                              "running": 1, "pending": 3}
    spend = {s.labels["source"]: s.value for s in found if s.name == "reelbatch_spend_usd"}
    assert spend == {"charged": 1.25, "estimated": 0.0}
    paused, = [s for s in found if s.name == "reelbatch_batch_paused"]
    assert paused.value == 1 and paused.labels["reason"].startswith("simulator unreachable")
    hist = {s.labels.get("le"): s.value for s in found if s.name == "reelbatch_generation_seconds_bucket"}
    assert hist["60"] == 0 and hist["90"] == 1 and hist["+Inf"] == 1
    assert not any(v.startswith("item") for s in found for v in s.labels.values())


def test_a_batch_over_several_providers_counts_items_where_they_are_bound(redis_url, tmp_path):
    store, out = Store.from_url(redis_url), tmp_path / "out"
    offers = tuple(Offer(provider=p, provider_model=PROVIDER_MODEL, estimated_cost_usd=0.5)
                   for p in ("simulator", "aimlapi"))
    items = [make_item(f"item{n}", f"shot {n}").model_copy(update={"offers": offers}) for n in range(5)]
    new_batch(store, "fan", out, items)
    store.fanouts.save("fan", Fanout(providers=("simulator", "aimlapi")))
    for item, provider in zip(items, ("simulator", "aimlapi", "aimlapi", "aimlapi"), strict=False):
        assert store.fanouts.bind("fan", item, provider)
    start(store, "fan", "item0")
    start(store, "fan", "item1")
    succeed(store, "fan", "item2", out)
    found = {(s.labels["provider"], s.labels["state"]): s.value for s in samples(store)
             if s.name == "reelbatch_items" and s.value}
    assert found == {("simulator", "running"): 1, ("aimlapi", "running"): 1, ("aimlapi", "succeeded"): 1,
                     ("aimlapi", "pending"): 1, ("", "pending"): 1}   # item4: not bound yet
    spend = {s.labels["provider"] for s in samples(store) if s.name == "reelbatch_spend_usd"}
    assert spend == {""}   # one figure for the whole batch, not the first provider's


def test_the_dashboard_uses_only_served_series(redis_url, tmp_path):
    store = Store.from_url(redis_url)
    new_batch(store, "night", tmp_path / "out", [make_item("a", "shot")])
    store.record_time(make_item("a", "shot"), 60.0, keep=50)
    store.count_request("simulator", "ok")
    served = {s.name for s in samples(store)} | {"reelbatch_max_cost_usd"}   # served when a batch sets one
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    asked = {name for e in exprs for name in re.findall(r"reelbatch_\w+", e)}
    assert asked and asked <= served, asked - served

"""Engine rules of a batch over several providers (worker/engine/route.py, fanout.py; issue 27): an
item is bound to a provider when a slot takes it and stays bound; cheapest first without idling a
slot; in-order and spread; a paused provider's pending items go to the others at once; a failed
generation moves only with ``retry.on_other_provider`` and never when the failure is permanent;
the content key names no provider, so changing the list makes nothing again."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import yaml

from reelbatch.jobs.fanout import BOUND
from reelbatch.jobs.keys import item as item_key
from reelbatch.jobs.state import ItemState as S
from reelbatch.scheduler.plan import plan_batch
from reelbatch.scheduler.views.status import summary
from reelbatch.worker.engine import batch as batches, sweeper, timing
from reelbatch.worker.engine.line import release
from tests.engine.conftest import MODEL
from tests.engine.fakes import connect_refused, failed, processing
from tests.engine.table import rows

CHEAP = {f"aimlapi:{MODEL}": 0.05}   # the AI/ML API is the cheapest of the three here


def fan(engine, n: int, providers: list[str], limits: dict[str, int], route: str = "cheapest",
        prices: dict[str, float] | None = None, **manifest) -> str:
    engine.ctx.settings = engine.ctx.settings.model_copy(update={"price_overrides": prices or CHEAP})
    per = {p: {"max_concurrency": c} for p, c in limits.items()}
    # queue_depth 0: these rows count generations at each provider's running limit (the depth
    # kept queued past it has its own rows, test_depth_rules.py)
    return engine.batch(n, provider=providers, route=route,
                        limits={"max_concurrency": 20, "requests_per_minute": 6000, "queue_depth": 0, **per},
                        **manifest)


def providers_of(engine, n: int) -> list[str]:
    return [engine.item(f"i{k}").item.provider for k in range(n)]


def posts(engine) -> dict[str, int]:
    return {"simulator": engine.oxen.posts(), "aimlapi": engine.aiml.posts(), "fal": engine.fal.posts()}



FIRST_HANDOUT = [
    # id, providers, limits, route, items, each item's provider once the batch starts
    ("cheapest-fills-the-cheapest-first", ["simulator", "aimlapi"], {"simulator": 2, "aimlapi": 2}, "cheapest", 2,
     ["aimlapi", "aimlapi"]),
    ("cheapest-leaves-no-slot-idle", ["simulator", "aimlapi"], {"simulator": 2, "aimlapi": 2}, "cheapest", 3,
     ["aimlapi", "aimlapi", "simulator"]),
    ("in-order-keeps-to-the-first", ["simulator", "aimlapi"], {"simulator": 2, "aimlapi": 2}, "in-order", 3,
     ["simulator", "simulator", "-"]),
    ("spread-balances", ["simulator", "aimlapi", "fal"], {"simulator": 1, "aimlapi": 1, "fal": 1}, "spread", 3,
     ["simulator", "aimlapi", "fal"]),
]


@pytest.mark.parametrize("providers, limits, route, n, expected", rows(FIRST_HANDOUT))
def test_free_slots_are_handed_out_in_the_routes_order(engine, providers, limits, route, n, expected):
    fan(engine, n, providers, limits, route)
    engine.start()
    bound = engine.ctx.fanout_store.bindings("b", [f"i{k}" for k in range(n)])
    got = [bound[f"i{k}"] or "-" for k in range(n)]
    if route == "spread":
        assert sorted(got) == sorted(expected)
    else:
        assert got == expected
    for provider, limit in limits.items():
        assert len(engine.ctx.slots(provider).holders()) <= limit


NEAR_THE_END = [
    # id, items, generation times learned (s) at fal (the cheapest) and the simulator, how many
    # items each provider takes once the batch starts: 2 slots each; the simulator finishes
    # 2 + 2 x (100 - 10) / 10 = 20 items before fal would finish one
    ("the-last-items-go-to-the-faster", 2, {"fal": 100, "simulator": 10}, {"simulator": 2}),
    ("as-many-as-the-faster-finishes-sooner", 20, {"fal": 100, "simulator": 10}, {"simulator": 2}),
    ("more-than-that-fill-every-slot", 21, {"fal": 100, "simulator": 10}, {"fal": 2, "simulator": 2}),
    ("as-fast-cheapest-first", 2, {"fal": 10, "simulator": 10}, {"fal": 2}),
    ("nothing-learned-cheapest-first", 2, {}, {"fal": 2}),
]


@pytest.mark.parametrize("n, learned, expected", rows(NEAR_THE_END))
def test_near_the_end_a_slot_leaves_the_items_to_providers_that_finish_them_sooner(engine, n, learned, expected):
    fan(engine, n, ["simulator", "fal"], {"simulator": 2, "fal": 2}, prices={f"fal:{MODEL}": 0.05})
    for provider, seconds in learned.items():
        for _ in range(3):
            timing.record(engine.ctx.store, engine.item("i0").item.bound_to(provider), seconds)
    timing.forget()
    engine.start()
    bound = engine.ctx.fanout_store.bindings("b", [f"i{k}" for k in range(n)]).values()
    assert Counter(b for b in bound if b) == expected


def test_a_batch_over_three_providers_runs_to_the_end_each_item_made_once_where_it_is_bound(engine):
    fan(engine, 9, ["simulator", "aimlapi", "fal"], {"simulator": 2, "aimlapi": 1, "fal": 1})
    engine.start()
    engine.driver.run()
    recs = [engine.item(f"i{k}") for k in range(9)]
    assert [r.state for r in recs] == [S.SUCCEEDED] * 9
    made = posts(engine)
    assert sum(made.values()) == 9 and all(made.values())     # every provider made some, none twice
    for rec in recs:
        stored = engine.ctx.store.fanouts.r.hget(item_key("b", rec.item_id), BOUND)
        assert stored == rec.item.provider
        assert rec.item.provider_model == next(o.provider_model for o in rec.item.offers
                                               if o.provider == stored)
    assert {engine.ctx.slots(p).held() for p in ("simulator", "aimlapi", "fal")} == {0}


def test_a_provider_whose_key_is_refused_takes_no_items_and_its_pending_go_to_the_others(engine):
    fan(engine, 4, ["simulator", "aimlapi"], {"simulator": 1, "aimlapi": 1},
        prices={f"simulator:{MODEL}": 0.05})                # the simulator is cheapest: it goes first
    engine.oxen.refuse_key = True
    engine.start()
    engine.driver.run()
    assert [engine.item(f"i{k}").state for k in range(4)] == [S.SUCCEEDED] * 4
    assert providers_of(engine, 4) == ["aimlapi"] * 4
    assert (engine.oxen.posts(), engine.aiml.posts()) == (1, 4)     # the refused POST made nothing
    assert engine.ctx.store.account_problem("simulator", MODEL) is not None
    sweeper.sweep(engine.ctx, "b")
    assert engine.ctx.store.batch("b").paused is None             # the batch goes on elsewhere
    sim, aiml = summary(engine.ctx.store, "b")["providers"]       # status: per provider
    assert (sim["provider"], sim["state"], sim["done"]) == ("simulator", "paused", 0)
    assert "refuses the key" in sim["why"]
    assert (aiml["provider"], aiml["state"], aiml["done"], aiml["in_flight"]) == ("aimlapi", "active", 4, 0)
    assert aiml["charged_usd"] + aiml["estimated_usd"] == pytest.approx(engine.spend().total_usd)


def test_a_provider_no_worker_serves_takes_no_items_and_status_says_so(engine):
    """A fleet where no live worker has the simulator's key: a free simulator slot does not bind
    items it would leave in a queue no one consumes; they go to the served provider."""
    fan(engine, 4, ["simulator", "aimlapi"], {"simulator": 2, "aimlapi": 1},
        prices={f"simulator:{MODEL}": 0.05})                # the simulator would go first
    engine.ctx.store.forget_serving("engine", ["simulator"])
    engine.ctx.store.mark_worker("engine", 60)
    engine.start()
    assert summary(engine.ctx.store, "b")["unserved"] == ["simulator"]
    engine.driver.run()
    assert [engine.item(f"i{k}").state for k in range(4)] == [S.SUCCEEDED] * 4
    assert providers_of(engine, 4) == ["aimlapi"] * 4
    assert engine.oxen.posts() == 0
    assert summary(engine.ctx.store, "b")["unserved"] == []      # done: nothing waits on it


def test_items_wait_for_a_worker_when_no_provider_of_the_list_is_served(engine):
    fan(engine, 2, ["simulator", "aimlapi"], {"simulator": 1, "aimlapi": 1})
    engine.ctx.store.forget_serving("engine", ["simulator", "aimlapi"])
    engine.ctx.store.mark_worker("keyless", 60)                  # a live worker with neither key
    engine.start()
    engine.driver.run(until=engine.driver.now + 30)
    assert [engine.item(f"i{k}").state for k in range(2)] == [S.PENDING] * 2
    assert (engine.oxen.posts(), engine.aiml.posts()) == (0, 0)
    assert set(summary(engine.ctx.store, "b")["unserved"]) == {"simulator", "aimlapi"}
    engine.ctx.store.mark_serving("engine", ["aimlapi"], 60)     # a worker with a key comes
    time.sleep(1.1)                                               # past the process's cached flags
    engine.driver.send(sweeper.sweep(engine.ctx, "b"))
    engine.driver.run()
    assert [engine.item(f"i{k}").state for k in range(2)] == [S.SUCCEEDED] * 2
    assert providers_of(engine, 2) == ["aimlapi"] * 2 and engine.oxen.posts() == 0


def test_an_item_in_flight_stays_bound_to_a_provider_that_pauses(engine):
    fan(engine, 3, ["simulator", "aimlapi"], {"simulator": 1, "aimlapi": 1},
        prices={f"simulator:{MODEL}": 0.05})
    engine.oxen.life = [processing()]                                # it never finishes by itself
    engine.start()
    engine.driver.run_while(lambda: engine.oxen.posts() < 1 or not engine.oxen.rows)
    first = next(f"i{k}" for k in range(3) if engine.item(f"i{k}").generation_id in engine.oxen.rows)
    engine.oxen.refuse_key = True
    engine.driver.run(until=engine.driver.now + 120)
    others = [f"i{k}" for k in range(3) if f"i{k}" != first]
    assert [engine.item(i).state for i in others] == [S.SUCCEEDED] * 2
    assert [engine.item(i).item.provider for i in others] == ["aimlapi"] * 2
    rec = engine.item(first)
    assert rec.state in (S.QUEUED, S.RUNNING) and rec.item.provider == "simulator"
    assert engine.oxen.posts() == 1
    sweeper.sweep(engine.ctx, "b")   # what is left is only the stopped provider's: the batch pauses
    paused = engine.ctx.store.batch("b").paused
    assert paused is not None and "refuses the key" in paused


RETRY_ELSEWHERE = [
    # id, on_other_provider, the simulator's failure, the item's provider at the end, its state, POSTs
    ("generation-failed-moves-with-on-other-provider", True, "the model crashed", "aimlapi", S.SUCCEEDED,
     {"simulator": 1, "aimlapi": 1, "fal": 0}),
    ("generation-failed-stays-without-it", False, "the model crashed", "simulator", S.SUCCEEDED,
     {"simulator": 2, "aimlapi": 0, "fal": 0}),
    ("a-permanent-failure-is-not-moved", True, "blocked by content moderation", "simulator", S.FAILED,
     {"simulator": 1, "aimlapi": 0, "fal": 0}),
]


@pytest.mark.parametrize("other, message, provider, state, made", rows(RETRY_ELSEWHERE))
def test_a_failed_generation_moves_only_when_asked_and_not_when_permanent(engine, other, message, provider,
                                                                         state, made):
    fan(engine, 1, ["simulator", "aimlapi"], {"simulator": 1, "aimlapi": 1},
        prices={f"simulator:{MODEL}": 0.05}, retry={"max_attempts": 3, "on_other_provider": other})
    engine.oxen.lives.append([failed(message)])
    engine.start()
    engine.driver.run()
    rec = engine.item()
    assert (rec.item.provider, rec.state) == (provider, state)
    assert posts(engine) == made


@pytest.mark.parametrize("again", [["aimlapi"], ["aimlapi", "simulator", "fal"], "aimlapi"])
def test_a_succeeded_item_is_never_made_again_when_the_list_changes(engine, again):
    fan(engine, 3, ["simulator", "aimlapi"], {"simulator": 1, "aimlapi": 1})
    engine.start()
    engine.driver.run()
    before = posts(engine)
    reg = batches.register(engine.ctx.store, replanned(engine, again))
    engine.start()
    engine.driver.run()
    assert (reg.kept, reg.new, reg.changed) == (3, 0, 0)
    assert posts(engine) == before
    assert [engine.item(f"i{k}").state for k in range(3)] == [S.SUCCEEDED] * 3


def replanned(engine, providers):
    """The batch's manifest with another provider list (limits kept for the providers still in it)."""
    path = engine.folder / "b.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["provider"] = providers
    listed = providers if isinstance(providers, list) else [providers]
    doc["limits"] = {k: v for k, v in doc["limits"].items() if not isinstance(v, dict) or k in listed}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return plan_batch(path, engine.ctx.settings)


def test_release_of_a_bound_item_feeds_its_own_provider(engine):
    fan(engine, 3, ["simulator", "aimlapi"], {"simulator": 1, "aimlapi": 1},
        prices={f"simulator:{MODEL}": 0.05}, route="in-order")
    engine.start()
    bound = engine.ctx.fanout_store.bindings("b", ["i0", "i1", "i2"])
    assert bound == {"i0": "simulator", "i1": None, "i2": None}
    nexts = release(engine.ctx, "simulator", "b", "i0")
    assert [n.item_id for n in nexts] == ["i1"]


def test_a_batch_on_one_provider_that_becomes_a_list_makes_nothing_again(engine):
    engine.run(3, provider="simulator")
    before = posts(engine)
    reg = batches.register(engine.ctx.store, replanned(engine, ["aimlapi", "simulator"]))
    engine.start()
    engine.driver.run()
    assert (reg.kept, reg.new, reg.changed) == (3, 0, 0) and posts(engine) == before
    assert [engine.item(f"i{k}").item.provider for k in range(3)] == ["simulator"] * 3   # who made it


def test_an_item_held_by_a_provider_that_stays_unreachable_ends_stuck_in_bounded_time(engine):
    """Its generation stays bound there (never submitted elsewhere: it may still bill); past
    polling.give_up_after_s it fails `stuck` like any item, and the rest of the batch is made by
    the other provider."""
    fan(engine, 3, ["simulator", "aimlapi"], {"simulator": 1, "aimlapi": 1},
        prices={f"simulator:{MODEL}": 0.05},
        polling={"first_after_s": 5, "min_interval_s": 2, "max_interval_s": 10, "give_up_after_s": 600})
    engine.oxen.life = [processing()]
    engine.start()
    engine.driver.run_while(lambda: not engine.oxen.rows)
    first = next(f"i{k}" for k in range(3) if engine.item(f"i{k}").item.provider == "simulator"
                 and engine.item(f"i{k}").generation_id)
    engine.oxen.gets.extend([connect_refused()] * 50)              # the provider is gone
    engine.oxen.submits.extend([connect_refused()] * 50)
    engine.ctx.store.update("b", first, in_flight_since=time.time() - 601)
    for _ in range(40):   # the sweeper's turns (`run` sweeps every few seconds)
        engine.driver.send(sweeper.sweep(engine.ctx, "b"))
        engine.driver.run(until=engine.driver.now + 5)
    rec = engine.item(first)
    assert (rec.state, rec.error_kind, rec.item.provider) == (S.FAILED, "stuck", "simulator")
    others = [engine.item(f"i{k}") for k in range(3) if f"i{k}" != first]
    assert [(r.state, r.item.provider) for r in others] == [(S.SUCCEEDED, "aimlapi")] * 2
    assert len(engine.oxen.rows) == 1 and not engine.holds_slot(first)   # refused POSTs made nothing

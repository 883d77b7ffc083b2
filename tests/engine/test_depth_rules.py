"""Engine rules of the queue depth (worker/engine/depth.py, jobs/depth.py): how many generations are
kept queued at a provider beyond the account's running limit, one table row per rule."""

from __future__ import annotations

import pytest

from reelbatch.jobs.limits import holder
from reelbatch.jobs.policy import PollPolicy
from reelbatch.jobs.state import ItemState as S, Step
from reelbatch.worker.engine import depth, timing
from reelbatch.worker.providers import entry
from tests.engine.fakes import error
from tests.engine.table import rows

# --- how many are handed a submit when the batch starts ----------------------------------------

STARTS = [
    # id, provider, items, max_concurrency, limits.queue_depth, submits handed at the start
    ("oxen-learned-starts-small", "simulator", 20, 4, None, 4 + depth.START),
    ("fal-learned-starts-small", "fal", 20, 4, None, 4 + depth.START),
    ("aiml-unknown-tries", "aimlapi", 20, 4, None, 4 + depth.START),
    ("manifest-depth", "simulator", 20, 4, 3, 7),
    ("manifest-off", "simulator", 20, 4, 0, 4),
    ("at-most-half-the-limit-before-learning", "simulator", 20, 2, None, 3),
    # the end of a batch at its one provider: its last items are queued there too
    ("end-one-past-the-limit", "simulator", 5, 4, 2, 5),
    ("end-full-depth", "simulator", 7, 4, 2, 6),
    ("end-full-depth-more-waiting", "simulator", 8, 4, 2, 6),
]


@pytest.mark.parametrize("provider, items, running, queue_depth, handed", rows(STARTS))
def test_submits_handed_at_the_start(engine, provider, items, running, queue_depth, handed):
    limits = {"max_concurrency": running, "requests_per_minute": 6000}
    if queue_depth is not None:
        limits["queue_depth"] = queue_depth
    engine.batch(items, provider=provider, limits=limits)
    assert engine.start() == handed
    assert engine.ctx.slots(provider).held() == handed


def test_a_freed_slot_hands_one_on_and_keeps_the_depth(engine):
    """A generation that ends gives its slot to the next item: the provider keeps running + depth."""
    engine.batch(20, limits={"max_concurrency": 4, "requests_per_minute": 6000, "queue_depth": 2})
    engine.start()
    engine.driver.run(until=12)   # the submits and two polls each (5 s, then 5 s on to the early
    # part: the engine tier's virtual clock does not move time.time()): the first generations end
    assert engine.ctx.store.counts("b")[S.SUCCEEDED] >= 1 and engine.oxen.posts() > 6
    assert engine.ctx.slots("simulator").held() == 6


# --- a provider that refuses past its limit ----------------------------------------------------

REFUSALS = [
    # id, provider, refused: the item back in line with its slot freed and no depth kept from now on
    ("aiml-429-past-the-limit-turns-depth-off", "aimlapi", True),
    ("oxen-429-is-only-a-rate-limit", "simulator", False),
    ("fal-429-is-only-a-rate-limit", "fal", False),
]


def _scripted_submits(engine, provider: str) -> list:
    return {"aimlapi": engine.aiml.submits, "simulator": engine.oxen.submits,
            "fal": engine.fal.submits}[provider]


@pytest.mark.parametrize("provider, refused", rows(REFUSALS))
def test_a_429_past_the_running_limit(engine, provider, refused):
    engine.batch(10, provider=provider, limits={"max_concurrency": 2, "requests_per_minute": 6000})
    engine.start()   # 2 running + 1 past the limit
    _scripted_submits(engine, provider).extend(["accept", "accept", error(429, "Too Many Requests")])
    ran = [engine.driver.step() for _ in range(3)]
    last = ran[-1].nexts
    third = ran[-1].step.item_id
    rec = engine.item(third)
    assert rec.state is S.PENDING and rec.attempts == 0
    assert engine.ctx.store.queue_depth(provider).refused() is refused
    if refused:   # back at the front of the line, its slot freed, not retried on its own
        assert not engine.holds_slot(third, provider=provider)
        assert engine.ctx.slots(provider).held() == 2 and last == []
        assert engine.ctx.slots(provider).next_waiting() == holder("b", third)
        assert not depth.may_queue(engine.ctx, provider)
    else:         # retried after a backoff, holding its slot
        assert engine.holds_slot(third, provider=provider)
        assert [n.step for n in last] == [Step.SUBMIT] and rec.error_kind == "rate_limited"


def test_no_depth_once_refused_even_when_the_manifest_asks(engine):
    engine.ctx.store.queue_depth("aimlapi").refuse(60)
    engine.batch(20, provider="aimlapi",
                 limits={"max_concurrency": 4, "requests_per_minute": 6000, "queue_depth": 3})
    assert engine.start() == 4


def test_the_registry_says_who_queues_past_its_limit():
    assert [entry(p).queues_beyond_limit for p in ("oxen", "fal", "simulator", "aimlapi")] == \
        [True, True, True, None]


# --- the learned depth -------------------------------------------------------------------------

POLICY = PollPolicy(expected_s=120, early_s=60, late_s=180, min_interval_s=5, max_interval_s=60)
LEARNED = [
    # id, running limit, how completions are told, measured: wait to be noticed, task delay; depth
    ("polls-step-40s-of-120s-at-20", 20, "polls", None, None, 8),    # 20 x 40/120 = 6.7 -> 7 + 1
    ("lister-tick-at-20", 20, "lister", None, None, 3),    # tick 120/(0.8 x 20) = 7.5 s: 1.25 -> 2 + 1
    ("events-tell-at-once", 20, "events", None, None, 1),            # only the submit's round trip
    ("events-noticed-at-once", 20, "events", 0.01, None, 2),         # 20 x 0.02/120 -> 1 + 1
    ("at-most-half-the-limit", 4, "polls", None, None, 2),           # 4 x 40/120 = 1.3 -> 3, within 2
    ("at-least-one", 1, "polls", None, None, 1),
    # a busy machine: completions noticed later than the window says, the next steps start late
    ("polls-noticed-late", 40, "polls", 25, None, 18),               # 40 x 50/120 = 16.7 -> 17 + 1
    ("polls-noticed-within-the-step", 40, "polls", 10, None, 15),    # the step 40 s: 13.3 -> 14 + 1
    ("lister-noticed-late", 20, "lister", 10, None, 5),              # 20 x 20/120 = 3.3 -> 4 + 1
    ("lister-tasks-start-late", 20, "lister", 3.75, 12, 5),          # 20 x (7.5 + 12)/120 = 3.25 -> 4 + 1
]


@pytest.mark.parametrize("running, told_by, noticed, hop, expected", rows(LEARNED))
def test_learned_depth(running, told_by, noticed, hop, expected):
    assert depth.learned_depth(POLICY, running, told_by, noticed, hop) == expected


def test_a_sweep_learns_the_depth_from_generation_times(engine):
    engine.batch(40, limits={"max_concurrency": 20, "requests_per_minute": 6000})
    engine.start()
    engine.driver.step()   # one item in flight: its model stands for the batch
    meta = engine.ctx.store.batch("b")
    assert depth.learn(engine.ctx, meta) is None   # nothing learned yet: START stands
    for seconds in (60, 90, 120, 150, 180):
        timing.record(engine.ctx.store, engine.item("i0").item, seconds)
    timing.forget()
    learned = depth.learn(engine.ctx, meta)
    assert learned is not None and 1 < learned <= 10
    assert engine.ctx.store.queue_depth("simulator").depth() == learned


def test_a_finished_generation_records_how_long_it_waited_to_be_noticed(engine):
    engine.run(3, limits={"max_concurrency": 20, "requests_per_minute": 6000})
    assert engine.item().state is S.SUCCEEDED
    noticed, hop = engine.ctx.store.queue_depth("simulator").delays()
    assert noticed is not None and noticed >= 0 and hop is not None and hop >= 0


def test_a_manifest_depth_is_not_learned_over(engine):
    engine.batch(40, limits={"max_concurrency": 20, "requests_per_minute": 6000, "queue_depth": 4})
    engine.start()
    engine.driver.step()
    for seconds in (60, 90, 120, 150, 180):
        timing.record(engine.ctx.store, engine.item("i0").item, seconds)
    assert depth.learn(engine.ctx, engine.ctx.store.batch("b")) is None
    assert engine.ctx.store.queue_depth("simulator").depth() == 4


# --- a batch over several providers ------------------------------------------------------------

def test_each_provider_of_a_fanout_keeps_its_own_depth_and_every_item_is_made_once(engine):
    """Two providers that queue past their running limit (Oxen's simulator, fal), 2 running each and
    a depth of 2: the start hands each running + depth; the batch ends with each item made once."""
    engine.batch(20, provider=["simulator", "fal"],
                 limits={"max_concurrency": 20, "requests_per_minute": 6000, "queue_depth": 2,
                         "simulator": {"max_concurrency": 2}, "fal": {"max_concurrency": 2}})
    assert engine.start() == 8
    assert {p: engine.ctx.slots(p).held() for p in ("simulator", "fal")} == {"simulator": 4, "fal": 4}
    engine.driver.run()
    assert [engine.item(f"i{k}").state for k in range(20)] == [S.SUCCEEDED] * 20
    assert engine.oxen.posts() + engine.fal.posts() == 20 and engine.oxen.posts() and engine.fal.posts()
    assert {engine.ctx.slots(p).held() for p in ("simulator", "fal")} == {0}


FANOUT_ENDS = [
    # id, items, held at (the simulator, fal) after the start: 2 providers running 2 each with a
    # depth of 2, the simulator fed first (the cheaper); past its running limit only as far as
    # `depth` items still wait behind, so the last are left to fal (alone, the simulator took 4 of 5)
    ("none-past-the-limits", 4, (2, 2)),
    ("one-past-while-few-wait-behind", 5, (3, 2)),
    ("full-depth-once-enough-wait", 10, (4, 4)),
]


@pytest.mark.parametrize("items, held", rows(FANOUT_ENDS))
def test_the_end_of_a_fanout_is_not_held_queued_at_one_provider(engine, items, held):
    engine.batch(items, provider=["simulator", "fal"],
                 limits={"max_concurrency": 20, "requests_per_minute": 6000, "queue_depth": 2,
                         "simulator": {"max_concurrency": 2}, "fal": {"max_concurrency": 2}})
    engine.start()
    assert tuple(engine.ctx.slots(p).held() for p in ("simulator", "fal")) == held
    assert engine.ctx.store.queue_depth("simulator").shared() and engine.ctx.store.queue_depth("fal").shared()


def test_a_one_provider_batch_does_not_share_its_provider(engine):
    engine.batch(5, limits={"max_concurrency": 4, "requests_per_minute": 6000, "queue_depth": 2})
    engine.start()
    assert not engine.ctx.store.queue_depth("simulator").shared()


def test_a_provider_of_a_fanout_may_set_its_own_depth(engine):
    engine.batch(20, provider=["simulator", "fal"],
                 limits={"max_concurrency": 20, "requests_per_minute": 6000, "queue_depth": 2,
                         "simulator": {"max_concurrency": 2}, "fal": {"max_concurrency": 2, "queue_depth": 0}})
    assert engine.start() == 6
    assert {p: engine.ctx.slots(p).held() for p in ("simulator", "fal")} == {"simulator": 4, "fal": 2}

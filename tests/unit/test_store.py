"""The state store and the global limits on a real redis-server."""

from __future__ import annotations

import threading
import time

import pytest

from reelbatch.jobs.item import Item, Params
from reelbatch.jobs.limits import Slots, holder
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import BatchMeta, Store, TransitionRefused


def make_item(n: int) -> Item:
    return Item(item_id=f"it{n}", source_id="it", content_key=f"k{n}", provider="simulator",
                model="kling-o1/image-to-video", provider_model="kling-video-o1-image-to-video",
                params=Params(prompt=f"p{n}", start_image="https://e.org/a.png", duration=5),
                video_seconds=5, estimated_cost_usd=0.5)


@pytest.fixture
def store(redis_url) -> Store:
    s = Store.from_url(redis_url)
    s.save_batch(BatchMeta(name="b", provider="simulator", model="m", output="/tmp/out"))
    s.add_items("b", [make_item(n) for n in range(10)])
    return s


def test_items_start_pending_and_are_counted(store):
    counts = store.counts("b")
    assert counts[S.PENDING] == 10 and sum(counts.values()) == 10
    assert store.item("b", "it3").item.params.prompt == "p3"
    assert "it3" in store.item_ids("b") and len(store.item_ids("b")) == 10


def test_transition_moves_counts_and_writes_fields(store):
    store.transition("b", "it1", S.SUBMITTING, [S.PENDING], incr={"attempts": 1})
    store.transition("b", "it1", S.QUEUED, [S.SUBMITTING], generation_id="g-1")
    rec = store.item("b", "it1")
    assert rec.state is S.QUEUED and rec.generation_id == "g-1" and rec.attempts == 1
    counts = store.counts("b")
    assert counts[S.PENDING] == 9 and counts[S.QUEUED] == 1


def test_disallowed_transition_is_refused(store):
    with pytest.raises(TransitionRefused):
        store.transition("b", "it1", S.SUCCEEDED)  # pending -> succeeded is not a transition
    with pytest.raises(TransitionRefused):
        store.transition("b", "it1", S.QUEUED, [S.SUBMITTING])  # it is pending, not submitting
    assert store.item("b", "it1").state is S.PENDING


def test_only_one_of_many_racing_transitions_wins(store):
    wins = []

    def race():
        try:
            store.transition("b", "it2", S.SUBMITTING, [S.PENDING])
            wins.append(1)
        except TransitionRefused:
            pass

    threads = [threading.Thread(target=race) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.counts("b")[S.SUBMITTING] == 1


def test_terminal_transition_clears_due_time(store):
    store.set_due("b", "it4", time.time() - 10)
    assert store.overdue("b", time.time()) == ["it4"]
    for state in (S.SUBMITTING, S.QUEUED, S.DOWNLOADING, S.SUCCEEDED):
        store.transition("b", "it4", state)
    assert store.overdue("b", time.time()) == []


def test_slots_never_exceed_limit_under_contention(redis_client):
    slots = Slots(redis_client, "p")
    slots.set_limit(3)
    got = []
    lock = threading.Lock()

    def grab(n):
        if slots.acquire(holder("b", f"i{n}")):
            with lock:
                got.append(n)

    threads = [threading.Thread(target=grab, args=(n,)) for n in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 3 and slots.held() == 3
    assert slots.acquire(holder("b", f"i{got[0]}"))  # a holder re-acquiring keeps its one slot
    assert slots.held() == 3


def test_expired_lease_returns_the_slot(redis_client):
    slots = Slots(redis_client, "p", lease_s=0.2)
    slots.set_limit(1)
    assert slots.acquire("a")
    assert not slots.acquire("b")
    time.sleep(0.3)
    assert slots.acquire("b")


def test_waiting_line_is_fifo_and_has_no_duplicates(redis_client):
    slots = Slots(redis_client, "p")
    assert slots.wait(["a", "b", "a", "c"]) == 3
    assert slots.wait(["b"]) == 0
    slots.wait(["z"], front=True)
    assert [slots.next_waiting() for _ in range(5)] == ["z", "a", "b", "c", None]
    assert slots.wait(["a"]) == 1  # gone from the line, so it may wait again


def test_generation_times_are_learned_per_model_and_duration(store):
    from reelbatch.worker.engine import timing

    five = make_item(1)
    ten = make_item(2).model_copy(update={"params": Params(prompt="x", duration=10), "video_seconds": 10})
    unset = make_item(3).model_copy(update={"params": Params(prompt="y")})   # the model's default: 5 s
    assert timing.quantiles(store, five) is None   # nothing learned yet
    timing.record(store, five, 140)
    timing.record(store, five, 120)
    timing.forget()   # each process keeps what it read for a moment
    assert timing.quantiles(store, five, (0.2, 0.5, 0.9)) == (120.0, 140.0, None)   # learning from 2
    for seconds in range(100, 200, 10):
        timing.record(store, five, seconds)
    timing.forget()
    assert timing.quantiles(store, five) == (110.0, 140.0)
    assert timing.quantiles(store, unset) == (110.0, 140.0)   # one length, one bucket
    assert timing.quantiles(store, ten) is None     # another duration learns on its own


def test_a_resaved_batch_with_a_start_time_starts_again(store):
    meta = store.batch("b")
    assert store.mark_started("b") and not store.mark_started("b")
    store.save_batch(meta.model_copy(update={"start_at": 1e10}))   # `submit --at` once more
    assert store.mark_started("b")


def test_a_sweep_is_needed_only_when_something_is_due(store):
    """Beat sends the fleet's sweep only then (issue 14.4: Flower is not crowded by idle sweeps)."""
    now = time.time()
    assert not store.sweep_needed(now)
    store.set_due("b", "it1", now + 60)
    assert not store.sweep_needed(now)                 # due later: the poll's own task will run
    assert store.sweep_needed(now + 61)                # overdue: its task was lost
    store.clear_due("b", "it1")
    store.update_batch("b", start_at=now - 1)
    assert store.sweep_needed(now)                     # an --at batch whose time came
    assert store.mark_started("b") and not store.sweep_needed(now)
    store.mark_provider_down("simulator", "refused", 60)
    assert store.sweep_needed(now)                     # an outage to pause for (or resume from)


def test_a_due_wait_is_taken_by_one_sweeper_only(store):
    now = time.time()
    store.set_due("b", "it1", now + 10)     # a poll kept in the due set, due in 10 s
    store.set_due("b", "it2", now + 100)
    assert store.take_due("b", now + 15, now, 60) == [("it1", pytest.approx(now + 10))]
    assert store.take_due("b", now + 15, now, 60) == []              # a second sweeper finds nothing
    assert store.due_at("b", "it1") == pytest.approx(now + 70)      # resent only if it is lost


def test_the_estimated_cost_per_state_and_the_pace_are_kept_as_items_move(store):
    store.track_estimates("b", store.items("b"))   # a batch the store did not count yet
    assert store.estimates("b")[S.PENDING] == pytest.approx(5.0)     # 10 items x 0.5
    store.transition("b", "it1", S.SUBMITTING, submitted_at=100.0)
    store.transition("b", "it1", S.QUEUED)
    store.transition("b", "it1", S.DOWNLOADING, spend=(0.4, True))
    store.transition("b", "it1", S.SUCCEEDED, completed_at=130.0)
    estimates = store.estimates("b")
    assert estimates[S.PENDING] == pytest.approx(4.5) and estimates[S.SUCCEEDED] == pytest.approx(0.5)
    assert store.spend("b").charged_usd == pytest.approx(0.4)
    assert store.pace("b") == (100.0, 130.0)
    store.wait_for_budget("b", "it2", "budget", "waiting")
    assert store.budget_waiting("b") == 1
    store.transition("b", "it2", S.SUBMITTING)
    assert store.budget_waiting("b") == 0


def test_a_charged_cost_replaces_the_estimate_once(store):
    for state in (S.SUBMITTING, S.QUEUED):
        store.transition("b", "it1", state)
    store.transition("b", "it1", S.DOWNLOADING, spend=(0.5, False), cost_usd=0.5, cost_source="estimated")
    store.owe_charge("simulator", "b", "it1", 1.0)
    assert store.owed_charges("simulator") == [("b", "it1", 1.0)]
    assert store.charge("simulator", "b", "it1", 0.56)
    assert not store.charge("simulator", "b", "it1", 0.56)          # not moved twice
    rec, spend = store.item("b", "it1"), store.spend("b")
    assert (rec.cost_usd, rec.cost_source) == (0.56, "charged") and store.owed_charges("simulator") == []
    assert spend.charged_usd == pytest.approx(0.56) and spend.estimated_usd == pytest.approx(0.0)

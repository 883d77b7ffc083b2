"""Engine rules around the steps: the task boundary (worker/tasks.py: unexpected errors, poison
messages, races), the sweeper (lost tasks, --at, a provider down), pushed events, the lister."""

from __future__ import annotations

import time

import redis

from reelbatch.jobs import keys
from reelbatch.jobs.catalog import catalog
from reelbatch.jobs.limits import holder
from reelbatch.jobs.policy import INTERNAL_ERRORS
from reelbatch.jobs.state import ItemState as S, Step
from reelbatch.worker import tasks
from reelbatch.worker.engine import bulk_poll, events, sweeper
from reelbatch.worker.engine.next import Next
from reelbatch.worker.providers.base import Generation, RemoteStatus
from tests.engine.fakes import CDN, connect_refused, processing, succeeded

# --- the task boundary ---------------------------------------------------------------------------

def test_a_step_that_keeps_raising_fails_its_item_as_internal(engine):
    """A corrupt record makes every step of one item raise: it is tried again after a backoff, and
    past INTERNAL_ERRORS it fails (kind internal), its slot freed; the rest of the batch finishes.
    (tests/integration/test_liveness.py waits out these backoffs in real time.)"""
    engine.batch(4)
    engine.start()
    engine.driver.run_while(lambda: engine.item("i3").state is not S.QUEUED)
    redis.Redis.from_url(engine.ctx.settings.broker_url).hset(keys.item("b", "i0"), "spec", "{not json")
    engine.driver.run()
    raw = redis.Redis.from_url(engine.ctx.settings.broker_url, decode_responses=True).hgetall(keys.item("b", "i0"))
    assert raw["state"] == "failed" and raw["error_kind"] == "internal" and "ValidationError" in raw["error"]
    assert engine.ctx.store.counts("b")[S.SUCCEEDED] == 3 and engine.ctx.slots("simulator").holders() == []
    tries = [r for r in engine.driver.ran if r.step.item_id == "i0" and r.step.step is Step.POLL]
    assert len(tries) == INTERNAL_ERRORS + 1
    waits = [b.at - a.at for a, b in zip(tries, tries[1:], strict=False)]
    assert 62 <= sum(waits) <= 124   # backoffs of 4, 8, 16, 32, 64 s, each jittered in its upper half


def test_a_message_that_keeps_stopping_its_worker_fails_its_item(engine):
    engine.batch()
    engine.start()
    engine.driver.step()
    for _ in range(engine.ctx.settings.redelivery_cap):   # delivered, and the worker died mid-step
        engine.ctx.store.begin_task("t-poison", "b", "i0")
    nexts = engine.driver.deliver(Next(Step.POLL, "b", "i0"), "t-poison")
    rec = engine.item()
    assert (rec.state, rec.error_kind) == (S.FAILED, "internal") and "delivered more than" in rec.error
    assert nexts.reason and not engine.holds_slot()


def test_a_step_that_lost_a_race_changes_nothing(engine):
    """Another task moved the item first: the refused transition is not an error of the item."""
    engine.oxen.life = [succeeded()]
    engine.batch()
    engine.start()
    engine.driver.run_while(lambda: engine.item().state is not S.DOWNLOADING)
    stale = engine.item().model_copy(update={"state": S.QUEUED})
    engine.ctx.hand_over("b", "i0", engine.ctx.store.batch("b"), stale.to_hash())
    assert tasks._step(engine.ctx, Step.POLL, "b", "i0") == []
    assert engine.item().state is S.DOWNLOADING and engine.item().internal_errors == 0


# --- the sweeper ---------------------------------------------------------------------------------

def later(seconds: float) -> float:
    return time.time() + seconds


def test_the_sweeper_sends_again_the_step_of_a_lost_task(engine):
    engine.batch()
    engine.start()
    engine.driver.step()
    assert [n.step for n in engine.driver.drop()] == [Step.POLL]   # its worker died holding it
    assert sweeper.sweep(engine.ctx, "b", now=later(5)) == []      # not yet: it may still run
    resent = sweeper.sweep(engine.ctx, "b", now=later(5 + sweeper.lost_after_s(engine.ctx.settings) + 1))
    assert [(n.step, n.item_id) for n in resent] == [(Step.POLL, "i0")]
    engine.driver.send(resent)
    engine.driver.run()
    assert engine.item().state is S.SUCCEEDED and engine.oxen.posts() == 1


def test_a_lost_submit_goes_back_to_the_front_of_the_line(engine):
    engine.batch()
    engine.start()
    engine.driver.drop()
    resent = sweeper.sweep(engine.ctx, "b", now=later(sweeper.lost_after_s(engine.ctx.settings) + 1))
    assert [(n.step, n.item_id) for n in resent] == [(Step.SUBMIT, "i0")] and engine.holds_slot()
    engine.driver.send(resent)
    engine.driver.run()
    assert engine.item().state is S.SUCCEEDED and engine.oxen.posts() == 1


def test_a_long_poll_waits_in_the_due_set_while_a_sweeper_runs(engine):
    """No message is held in Redis for a wait the sweeper will meet: it sends the poll when due."""
    engine.ctx.store.mark_sweeper(sweeper.SWEEPER_TTL_S)
    engine.oxen.life = [succeeded()]   # done by the poll the sweeper sends
    engine.batch(polling={"first_after_s": 60, "min_interval_s": 2, "max_interval_s": 120})
    engine.start()
    engine.driver.step()
    assert engine.driver.pending == [] and engine.item().state is S.QUEUED
    assert sweeper.sweep(engine.ctx, "b", now=later(30)) == []
    due = sweeper.sweep(engine.ctx, "b", now=later(50))   # within the horizon: sent with the rest of its wait
    assert [(n.step, n.item_id) for n in due] == [(Step.POLL, "i0")] and 5 < due[0].countdown <= 10
    engine.driver.send(due)
    engine.driver.run()
    assert engine.item().state is S.SUCCEEDED


def test_a_batch_with_a_start_time_is_started_by_the_sweeper_once(engine):
    engine.batch(start_at=later(3600))
    assert engine.start() == 0 and sweeper.sweep(engine.ctx, "b") == []
    engine.ctx.store.update_batch("b", start_at=time.time() - 1)   # its time comes (enqueue reads the clock)
    started = sweeper.sweep(engine.ctx, "b")
    assert [(n.step, n.item_id) for n in started] == [(Step.SUBMIT, "i0")]
    assert sweeper.sweep(engine.ctx, "b") == []


def test_a_provider_down_too_long_pauses_the_batch_until_it_answers(engine):
    engine.batch()
    engine.start()
    engine.driver.step()
    engine.oxen.gets.append(connect_refused())
    engine.driver.step()
    assert engine.item().transient_retries == 0   # not the item's fault
    sweeper.sweep(engine.ctx, "b", now=later(engine.ctx.settings.provider_unreachable_s + 1))
    paused = engine.ctx.store.batch("b").paused
    assert paused and "simulator at http://sim.test cannot be reached since" in paused
    engine.driver.run()                            # the provider answers again
    sweeper.sweep(engine.ctx, "b")
    assert engine.ctx.store.batch("b").paused is None and engine.item().state is S.SUCCEEDED


def test_an_output_folder_that_cannot_be_written_pauses_the_batch(engine):
    engine.batch()
    engine.ctx.store.mark_output_problem("b", "No space left on device", 120)
    assert "cannot write to" in sweeper.check_health(engine.ctx, engine.ctx.store.batch("b"), time.time())
    engine.ctx.store.clear_output_problem("b")
    assert sweeper.check_health(engine.ctx, engine.ctx.store.batch("b"), time.time()) is None
    assert engine.ctx.store.batch("b").paused is None


# --- pushed events and the lister -----------------------------------------------------------------

def test_a_pushed_completion_moves_its_item_on_and_others_are_ignored(engine):
    engine.batch()
    engine.start()
    engine.driver.step()
    assert events.on_event(engine.ctx, "simulator", Generation("not-ours", RemoteStatus.SUCCEEDED, "x")) == []
    done = Generation("gen-1", RemoteStatus.SUCCEEDED, video_url=f"{CDN}/gen-1.mp4")
    nexts = events.on_event(engine.ctx, "simulator", done)
    assert nexts == [Next(Step.DOWNLOAD, "b", "i0")] and not engine.holds_slot()
    assert engine.ctx.store.owed_charges("simulator")   # an event carries no cost: read it later
    engine.driver.drop()
    engine.driver.send(nexts)
    engine.driver.run()
    assert engine.item().state is S.SUCCEEDED and engine.spend().estimated_usd == 0.56


def test_one_look_at_the_history_moves_the_finished_on_and_renews_the_running(engine):
    engine.batch(2)
    engine.start()
    engine.driver.step()
    engine.driver.step()
    engine.driver.drop()
    engine.oxen.rows["gen-1"].update(succeeded(), result_url=f"{CDN}/gen-1.mp4")
    engine.oxen.rows["gen-2"].update(processing())
    lease = engine.ctx.slots("simulator").r.zscore(engine.ctx.slots("simulator").key, holder("b", "i1"))
    model = catalog().model_for("simulator", "kling-o1/image-to-video").ids["simulator"]
    group = bulk_poll.in_flight(engine.ctx, "simulator")[model]
    nexts, requests = bulk_poll.look(engine.ctx, "simulator", model, group, None)
    assert requests == 1 and [(n.step, n.item_id) for n in nexts] == [(Step.DOWNLOAD, "i0")]
    assert engine.item("i0").state is S.DOWNLOADING and engine.spend().charged_usd == 0.56   # cost from the row
    renewed = engine.ctx.slots("simulator").r.zscore(engine.ctx.slots("simulator").key, holder("b", "i1"))
    assert renewed > lease and engine.item("i1").state is S.QUEUED   # its own poll moves it on


def test_the_sweeper_leaves_a_step_in_its_queue_while_no_worker_has_the_providers_key(engine):
    """Issue 23.1: no worker consumes the provider's queue; sending the step again would only pile
    a duplicate beside it. It is sent again once a worker serves the provider."""
    engine.batch()
    engine.start()
    engine.driver.drop()                                   # waiting in reelbatch.simulator, unconsumed
    engine.ctx.store.forget_serving("engine", ["simulator"])
    late = later(sweeper.lost_after_s(engine.ctx.settings) + 1)
    assert sweeper.sweep(engine.ctx, "b", now=late) == []
    assert engine.item().state is S.PENDING and engine.oxen.posts() == 0
    engine.ctx.store.mark_serving("keyed", ["simulator"], 60)
    resent = sweeper.sweep(engine.ctx, "b", now=late)
    assert [(n.step, n.item_id) for n in resent] == [(Step.SUBMIT, "i0")]

"""Engine rules of the account and of running tasks (worker/engine/account.py, jobs/leases.py,
worker/tasks.py, worker/engine/orphans.py, poll.py's bound in time), one table row per rule: an
account fault pauses the provider instead of failing items; a leased item is left to its task; a
late answer is adopted or kept as an orphan; an item in flight too long fails ``stuck``."""

from __future__ import annotations

import time

import httpx
import pytest

from reelbatch.jobs.state import ItemState as S, Step
from reelbatch.jobs.tuning import ACCOUNT_RECHECK_S as RECHECK_S
from reelbatch.scheduler.views.status import summary
from reelbatch.worker.engine import batch as batches, sweeper
from reelbatch.worker.engine.line import release
from reelbatch.worker.engine.next import Next
from reelbatch.worker.engine.retry import retry_items
from tests.engine.conftest import MODEL
from tests.engine.fakes import error, failed, processing, succeeded
from tests.engine.table import rows

# --- account faults: the provider (or its model there) pauses; items keep their state ------------


def refuse_key(engine) -> None:
    engine.oxen.refuse_key = True


def no_credits_on_submit(engine) -> None:
    engine.oxen.submits.append(error(402, "Insufficient credits"))


def no_credits_generation_failed(engine) -> None:
    engine.oxen.life = [failed("Insufficient credits")]


def aiml_403_no_credits(engine) -> None:
    engine.aiml.submits.append(httpx.Response(403, json={
        "message": "You've run out of credits. Please top up your balance to continue.",
        "path": "/v2/video/generations", "statusCode": "403"}))


def model_gone(engine) -> None:
    engine.oxen.submits.append(error(404, "Model not found"))


ACCOUNT = [
    # id, provider, the fault, the pause says, for the model only, the first item's kind, POSTs, made
    ("key-refused-on-submit", "simulator", refuse_key, "refuses the key", False, "key_refused", 1, 0),
    ("no-credits-on-submit", "simulator", no_credits_on_submit, "no credits left", False, "no_credits", 1, 0),
    ("no-credits-generation-failed", "simulator", no_credits_generation_failed, "no credits left", False,
     "no_credits", 1, 1),
    ("aimlapi-403-no-credits", "aimlapi", aiml_403_no_credits, "no credits left", False, "no_credits", 1, 0),
    ("model-gone-on-submit", "simulator", model_gone, "no longer has the model", True, "model_gone", 1, 0),
]


@pytest.mark.parametrize("provider, fault, says, model_only, kind, posts, made", rows(ACCOUNT))
def test_an_account_fault_pauses_the_provider_and_keeps_items_pending(engine, provider, fault, says,
                                                                       model_only, kind, posts, made):
    """The first fault marks the provider (a model gone: that model there); the item goes back to
    pending unbilled, nothing more is submitted there, no item fails, the sweeper pauses the batch."""
    fake = engine.oxen if provider == "simulator" else engine.aiml
    fault(engine)
    engine.run(3, provider=provider, limits={"max_concurrency": 1, "queue_depth": 0,
                                             "requests_per_minute": 6000})
    recs = [engine.item(i) for i in ("i0", "i1", "i2")]
    assert [r.state for r in recs] == [S.PENDING] * 3
    assert ([r.error_kind for r in recs], [r.attempts for r in recs]) == ([kind, None, None], [0, 0, 0])
    assert (fake.posts(), len(fake.rows if provider == "simulator" else fake.made)) == (posts, made)
    assert engine.ctx.slots(provider).holders() == [] and engine.spend().charged_usd == 0
    problem = engine.ctx.store.account_problem(provider, MODEL)
    assert problem is not None and says in problem.why
    assert (engine.ctx.store.account_problem(provider) is None) == model_only
    sweeper.sweep(engine.ctx, "b")
    paused = engine.ctx.store.batch("b").paused
    assert paused is not None and says in paused


def test_a_credit_failure_from_before_the_top_up_does_not_pause_the_rerun(engine):
    """A generation submitted before the rerun cleared the mark (a top-up) failed for credits while
    the account was empty: seen by the rerun, its item goes back in line unbilled and the batch goes
    on; a generation the rerun submitted that fails so pauses it again."""
    engine.oxen.life = [processing(), failed("Insufficient credits")]
    engine.batch(2, limits={"max_concurrency": 2, "queue_depth": 0, "requests_per_minute": 6000})
    engine.start()
    engine.driver.step(), engine.driver.step()      # both submitted before the top-up
    engine.ctx.store.clear_account_problem("simulator", MODEL)   # the rerun after a top-up
    engine.oxen.life = [succeeded()]
    engine.driver.run()
    assert [engine.item(i).state for i in ("i0", "i1")] == [S.SUCCEEDED] * 2
    assert engine.ctx.store.account_problem("simulator", MODEL) is None and engine.oxen.posts() == 4


def test_a_key_refused_while_polling_keeps_the_generation_and_asks_again_later(engine):
    engine.batch()
    engine.start()
    engine.driver.step()                      # submitted: gen-1
    engine.oxen.refuse_key = True
    ran = engine.driver.step()
    rec = engine.item()
    assert (rec.state, rec.generation_id) == (S.QUEUED, "gen-1") and engine.holds_slot()
    assert ran.nexts == [Next(Step.POLL, "b", "i0", RECHECK_S)] and ran.failed is None
    assert "refuses the key" in engine.ctx.store.account_problem("simulator").why


# --- task leases: a running task's item is left to it ------------------------------------------

def resumes(engine, how: str, later_s: float = 0.0) -> list[Next]:
    """What `run` (enqueue) or the sweeper, ``later_s`` after the task was lost, would send."""
    if how == "enqueue":
        return batches.enqueue(engine.ctx, "b")
    lost = sweeper.lost_after_s(engine.ctx.settings) + 10
    return sweeper.sweep(engine.ctx, "b", now=time.time() + lost + later_s)


@pytest.mark.parametrize("how", rows([("enqueue-skips-a-leased-item", "enqueue"),
                                      ("sweeper-skips-a-leased-item", "sweeper")]))
def test_a_leased_item_is_not_resumed_until_its_lease_ends(engine, how):
    engine.batch()
    engine.start()
    engine.oxen.submits.append("lost")
    engine.driver.step()
    engine.driver.drop()                      # its reconcile is gone, or still running
    token = engine.ctx.leases.take("b", "i0")
    assert token and resumes(engine, how) == []
    engine.ctx.leases.release("b", "i0", token)
    # the sweeper looks again once a dead holder's lease would have lapsed
    again = resumes(engine, how, engine.ctx.settings.task_lease_s + 1)
    assert [(n.step, n.item_id) for n in again] == [(Step.RECONCILE, "i0")]


def test_a_task_that_finds_its_item_held_sends_itself_again_later(engine):
    engine.batch()
    engine.start()
    engine.driver.step()
    token = engine.ctx.leases.take("b", "i0")   # another task runs on the item
    before = len(engine.oxen.requests)
    ran = engine.driver.step()
    assert ran.step.step is Step.POLL and len(engine.oxen.requests) == before
    assert [(n.step, n.countdown) for n in ran.nexts] == [
        (Step.POLL, sweeper.busy_recheck_s(engine.ctx.settings))]
    assert engine.item().state is S.QUEUED
    engine.ctx.leases.release("b", "i0", token)
    engine.driver.run()
    assert engine.item().state is S.SUCCEEDED and engine.oxen.posts() == 1


# --- a late answer: the submit POST returns after its item moved on ----------------------------

def moved(engine, target: S, **fields):
    """What happens while the POST runs: the item moves (an ended one gives its slot back, as fail()
    and an abandoning cancel do; one sent back to pending keeps its place in line)."""
    def move() -> None:
        engine.ctx.store.transition("b", "i0", target, [S.SUBMITTING], **fields)
        if target is not S.PENDING:
            release(engine.ctx, "simulator", "b", "i0")
    return move


LATE = [
    # id, where the item went while its POST ran, final state, its generation, orphans
    ("sent-back-to-pending-adopts", (S.PENDING, {}), S.SUCCEEDED, "gen-1", []),
    ("failed-submit-unknown-adopts", (S.FAILED, {"error_kind": "submit_unknown"}), S.SUCCEEDED, "gen-1", []),
    ("cancelled-keeps-an-orphan", (S.CANCELLED, {}), S.CANCELLED, None, ["gen-1"]),
]


@pytest.mark.parametrize("went, state, generation, orphans", rows(LATE))
def test_a_late_answer_is_adopted_or_kept_as_an_orphan(engine, went, state, generation, orphans):
    engine.oxen.submits.append(moved(engine, went[0], **went[1]))
    engine.run()
    rec = engine.item()
    assert (rec.state, rec.generation_id, engine.oxen.posts()) == (state, generation, 1)   # never paid twice
    info = summary(engine.ctx.store, "b")
    assert [o["generation_id"] for o in info["orphans"]] == orphans
    assert not engine.holds_slot()
    if orphans:   # paid for all the same: counted in the batch's spend
        assert info["estimated_usd"] == pytest.approx(rec.item.estimated_cost_usd)


# --- stuck: an item in flight past polling.give_up_after_s -------------------------------------

def test_an_item_in_flight_too_long_fails_stuck_and_retry_polls_it_again(engine):
    engine.oxen.life = [processing()]          # it never finishes
    engine.batch(polling={"first_after_s": 5, "min_interval_s": 2, "max_interval_s": 10,
                          "give_up_after_s": 600})
    engine.start()
    engine.driver.run_while(lambda: engine.item().state is not S.RUNNING)
    engine.ctx.store.update("b", "i0", in_flight_since=time.time() - 601)   # ten minutes went by
    engine.driver.run()
    rec = engine.item()
    assert (rec.state, rec.error_kind, rec.generation_id) == (S.FAILED, "stuck", "gen-1")
    assert not engine.holds_slot() and ("DELETE", "/api/ai/queue/gen-1") not in engine.oxen.requests
    engine.oxen.remaining["gen-1"] = [succeeded()]   # it finishes after all
    done, nexts = retry_items(engine.ctx, "b", kind="stuck")
    assert dict(done.moved) == {"poll": 1}
    engine.driver.send(nexts)
    engine.driver.run()
    assert engine.item().state is S.SUCCEEDED and engine.oxen.posts() == 1 and len(engine.oxen.rows) == 1


# --- the end of a run: generations no item claims (issue 23.7) ----------------------------------

def test_an_unclaimed_generation_is_adopted_by_the_pending_item_it_matches_and_the_rest_listed(engine):
    from reelbatch.jobs.catalog import catalog
    from reelbatch.worker.engine import unclaimed

    engine.batch(2)
    engine.ctx.store.update_batch("b", created_at=time.time() - 300)   # the batch started 5 min ago
    model = catalog().model_for("simulator", MODEL).ids["simulator"]
    ours = engine.oxen.make({"model": model, "prompt": "An ox walks, take 1"})      # i1's, answer lost
    other = engine.oxen.make({"model": model, "prompt": "someone else's clip"})
    for gid in (ours, other):
        engine.oxen.rows[gid]["enqueued_at"] = time.time() - 200
    nexts, recorded = unclaimed.look(engine.ctx, "b")
    assert nexts == [Next(Step.POLL, "b", "i1", 0)] and engine.item("i1").generation_id == ours
    assert [u.generation_id for u in recorded] == [other] and recorded[0].model == model
    assert unclaimed.look(engine.ctx, "b") == ([], [])                 # recorded once
    engine.driver.send(nexts)
    engine.driver.run()
    assert engine.item("i1").state is S.SUCCEEDED and engine.oxen.posts() == 0
    assert engine.item("i0").state is S.PENDING
    assert engine.spend().total_usd == pytest.approx(0.56)          # the other's cost is not the batch's


def test_in_a_batch_over_several_providers_a_pending_item_adopts_its_generation_and_is_bound_there(engine):
    from reelbatch.jobs.catalog import catalog
    from reelbatch.worker.engine import unclaimed

    engine.batch(2, provider=["simulator", "aimlapi"],
                 limits={"max_concurrency": 20, "requests_per_minute": 6000, "queue_depth": 0})
    engine.ctx.store.update_batch("b", created_at=time.time() - 300)
    model = catalog().model_for("simulator", MODEL).ids["simulator"]
    ours = engine.oxen.make({"model": model, "prompt": "An ox walks, take 1"})      # i1's, answer lost
    engine.oxen.rows[ours]["enqueued_at"] = time.time() - 200
    nexts, recorded = unclaimed.look(engine.ctx, "b")
    assert nexts == [Next(Step.POLL, "b", "i1", 0)] and recorded == []
    rec = engine.item("i1")
    assert (rec.generation_id, rec.item.provider) == (ours, "simulator")
    assert engine.ctx.fanout_store.bindings("b", ["i1"]) == {"i1": "simulator"}
    engine.driver.send(nexts)
    engine.start()
    engine.driver.run()
    assert [engine.item(f"i{k}").state for k in range(2)] == [S.SUCCEEDED] * 2
    assert engine.oxen.posts() + engine.aiml.posts() == 1            # only i0 was generated
    assert engine.item("i1").generation_id == ours

"""Engine rules of submitting and reconciling (worker/engine/submit.py, budget.py, line.py), one
table row per rule: an item's state x the provider's answer -> its next state, the step that
follows, spend and its concurrency slot."""

from __future__ import annotations

import time

import httpx
import pytest

from reelbatch.jobs.state import ItemState as S, Step
from reelbatch.worker.engine import submit
from reelbatch.worker.engine.next import Next
from tests.engine.fakes import connect_refused, error
from tests.engine.table import rows
from tests.media import png

# --- one submit: what the item is right after it --------------------------------------------

SUBMIT_ANSWERS = [
    # id, the provider's answer, state, attempts, next step, its countdown (low, high), slot held, kind
    ("accepted", "accept", S.QUEUED, 1, Step.POLL, (5, 5), True, None),
    ("429-retry-after", error(429, "Too many requests", **{"Retry-After": "7"}),
     S.PENDING, 0, Step.SUBMIT, (7, 7.25), True, "rate_limited"),
    ("503-refused", error(503), S.PENDING, 0, Step.SUBMIT, (1, 2), True, "transient"),
    ("408-refused", error(408, "Request timeout"), S.PENDING, 0, Step.SUBMIT, (1, 2), True, "transient"),
    ("connect-refused", connect_refused(), S.PENDING, 0, Step.SUBMIT, (16, 32), True, "unreachable"),
    ("200-refusal-rate-limit", httpx.Response(200, json={"generations": [], "error": "rate limit exceeded"}),
     S.PENDING, 0, Step.SUBMIT, (1, 2), True, "rate_limited"),
    ("answer-lost", "lost", S.SUBMITTING, 1, Step.RECONCILE, (3, 3), True, None),
    ("500-may-have-made-it", error(500, "Internal error"), S.SUBMITTING, 1, Step.RECONCILE, (3, 3), True, None),
    ("200-without-id", httpx.Response(200, json={"generations": []}),
     S.SUBMITTING, 1, Step.RECONCILE, (3, 3), True, None),
    ("400-content-policy", error(400, "Prompt violates the content policy"),
     S.FAILED, 1, None, None, False, "permanent"),
    ("402-no-credits", error(402, "Insufficient credits"), S.PENDING, 0, None, None, False, "no_credits"),
    ("422-invalid-input", error(422, "Model response error: 422 field required"),
     S.FAILED, 1, None, None, False, "permanent"),
    # one 401 the key check does not confirm (the fake's key is fine): the item's failure, not the account's
    ("401-key-check-passes-fails-the-item", error(401, "unauthenticated"), S.FAILED, 1, None, None, False,
     "key_refused"),
]


@pytest.mark.parametrize("answer, state, attempts, step, countdown, held, kind",
                         rows(SUBMIT_ANSWERS))
def test_submit_answer(engine, answer, state, attempts, step, countdown, held, kind):
    engine.batch(limits={"max_concurrency": 20, "requests_per_minute": 6000, "max_cost_usd": 10})
    engine.start()
    engine.oxen.submits.append(answer)
    ran = engine.driver.step()
    rec = engine.item()
    assert (rec.state, rec.attempts, engine.holds_slot()) == (state, attempts, held)
    assert [n.step for n in ran.nexts] == ([step] if step else [])
    if countdown:
        assert countdown[0] <= ran.nexts[0].countdown <= countdown[1]
    assert (rec.error_kind if state is not S.SUBMITTING else None) == kind
    # an unreachable provider is not the item's fault: it uses none of the item's retries
    assert rec.transient_retries == (1 if kind in ("rate_limited", "transient") else 0)
    assert engine.ctx.store.spend("b").total_usd == 0   # nothing is spent before a generation is made
    reserved = engine.ctx.store.commit_cost("b", 0)      # the budget reserved stays with a submit sent
    assert reserved == pytest.approx(0.56 if state in (S.QUEUED, S.SUBMITTING) else 0.0)
    assert (ran.failed is not None) == (state is S.FAILED)


def test_connect_refused_marks_the_provider_down(engine):
    engine.batch()
    engine.start()
    engine.oxen.submits.append(connect_refused())
    engine.driver.step()
    down = engine.ctx.store.provider_down("simulator")
    assert down is not None and "ConnectError" in down.why


# --- one item from pending to its end --------------------------------------------------------

OUTCOMES = [
    # id, submit answers, final state, kind, POSTs, generations made, attempts, charged, estimated
    ("happy-path", [], S.SUCCEEDED, None, 1, 1, 1, 0.56, 0.0),
    ("refusals-then-accepted", [error(429, "Too many requests")] * 3 + [error(503)],
     S.SUCCEEDED, None, 5, 1, 1, 0.56, 0.0),
    ("refused-past-12-retries", [error(503)] * 13, S.FAILED, "transient", 13, 0, 0, 0.0, 0.0),
    ("unreachable-is-waited-out", [connect_refused()] * 15, S.SUCCEEDED, None, 16, 1, 1, 0.56, 0.0),
    ("lost-answer-reconciled", ["lost"], S.SUCCEEDED, None, 1, 1, 1, 0.56, 0.0),
    ("nothing-made-resubmitted", [error(500, "Internal error")], S.SUCCEEDED, None, 2, 1, 1, 0.56, 0.0),
    ("content-policy-never-resubmitted", [error(400, "content policy violation")],
     S.FAILED, "permanent", 1, 0, 1, 0.0, 0.0),
]


@pytest.mark.parametrize("answers, state, kind, posts, made, attempts, charged, estimated",
                         rows(OUTCOMES))
def test_submit_outcome(engine, answers, state, kind, posts, made, attempts, charged, estimated):
    engine.oxen.submits.extend(answers)
    rec = engine.run()
    assert (rec.state, rec.error_kind, rec.attempts) == (state, kind, attempts)
    assert (engine.oxen.posts(), len(engine.oxen.rows)) == (posts, made)
    assert (engine.spend().charged_usd, engine.spend().estimated_usd) == (charged, estimated)
    assert not engine.holds_slot()
    assert ((engine.folder / "b" / "i0.mp4").exists()) == (state is S.SUCCEEDED)


def test_submit_is_sent_with_the_item_and_the_file_is_its_video(engine):
    rec = engine.run()
    assert engine.driver.steps_of("i0") == ["submit", "poll", "poll", "download"]
    video = engine.folder / "b" / "i0.mp4"
    assert rec.file == "i0.mp4" and rec.bytes == video.stat().st_size and video.read_bytes()[4:8] == b"ftyp"
    assert rec.cost_source == "charged" and rec.cost_usd == 0.56


# --- reconcile: a submit whose answer was lost -------------------------------------------------

RECONCILE = [
    # id, history answers, final state, kind, POSTs, generations made
    ("found-in-history", [], S.SUCCEEDED, None, 1, 1),
    ("history-404-fails-submit-unknown", [error(404, "not found")], S.FAILED, "submit_unknown", 1, 1),
    ("history-503-retried", [error(503)] * 2, S.SUCCEEDED, None, 1, 1),
    ("history-503-past-12-retries", [error(503)] * 13, S.FAILED, "submit_unknown", 1, 1),
]


@pytest.mark.parametrize("history, state, kind, posts, made", rows(RECONCILE))
def test_reconcile(engine, history, state, kind, posts, made):
    engine.oxen.submits.append("lost")
    engine.oxen.history.extend(history)
    rec = engine.run()
    assert (rec.state, rec.error_kind) == (state, kind)
    assert (engine.oxen.posts(), len(engine.oxen.rows)) == (posts, made)   # never resubmitted blindly
    assert not engine.holds_slot()


def test_a_reconcile_at_a_provider_away_ends_by_give_up_after_s(engine):
    """A lost submit at a provider that cannot be reached is in flight like any generation: it
    ends `submit_unknown` once past polling.give_up_after_s, not after a dozen backoffs (minutes)
    that keep the batch running (or paused) with an item that never ends."""
    engine.oxen.submits.append("lost")
    engine.batch(polling={"first_after_s": 5, "min_interval_s": 2, "max_interval_s": 10, "give_up_after_s": 20})
    engine.start()
    engine.driver.step()                       # the submit: made, its answer lost
    engine.oxen.away, looks = True, len(engine.oxen.requests)
    engine.ctx.store.update("b", "i0", submitted_at=time.time() - 21)
    engine.driver.run()
    rec = engine.item()
    assert (rec.state, rec.error_kind) == (S.FAILED, "submit_unknown") and "give_up_after_s" in rec.error
    assert len(engine.oxen.requests) == looks + 1 and engine.oxen.posts() == 1 and not engine.holds_slot()


def test_a_reconcile_that_finds_nothing_looks_again_over_its_window_then_submits_again(engine):
    """Nothing found is not yet nothing made: the reconcile looks again every window / LOOKS over
    the HTTP read timeout plus reconcile_margin_s (a Redis TTL), and only then submits again."""
    engine.oxen.submits.append(error(500, "Internal error"))   # nothing was made
    engine.batch()
    engine.start()
    engine.driver.run_while(lambda: engine.oxen.posts() < 2)
    window, every = submit.look_window_s(engine.ctx), submit.look_again_every_s(engine.ctx)
    assert window == engine.ctx.settings.http_read_timeout_s + engine.ctx.settings.reconcile_margin_s
    looks = [r for r in engine.driver.ran if r.step.step is Step.RECONCILE]
    assert len(looks) == submit.LOOKS + 1 and every == pytest.approx(window / submit.LOOKS)
    assert all(b.at - a.at == pytest.approx(every) for a, b in zip(looks, looks[1:], strict=False))
    resubmit = engine.driver.ran[-1]
    assert resubmit.step.step is Step.SUBMIT and resubmit.at - looks[0].at >= window
    engine.driver.run()
    assert engine.item().state is S.SUCCEEDED and len(engine.oxen.rows) == 1


RESUBMIT_CAP = [
    # id, submit answers (500: nothing made), settings.reconcile_resubmits, final state, kind, POSTs, made
    ("resubmitted-within-the-cap", [error(500, "Internal error")] * 2, 2, S.SUCCEEDED, None, 3, 1),
    ("past-the-cap-submit-unknown", [error(500, "Internal error")] * 3, 2, S.FAILED, "submit_unknown", 3, 0),
    ("cap-0-submit-unknown-after-one-window", [error(500, "Internal error")], 0, S.FAILED, "submit_unknown", 1, 0),
]


@pytest.mark.parametrize("answers, cap, state, kind, posts, made", rows(RESUBMIT_CAP))
def test_resubmits_after_nothing_found_are_capped(engine, answers, cap, state, kind, posts, made):
    engine.ctx.settings = engine.ctx.settings.model_copy(update={"reconcile_resubmits": cap})
    engine.oxen.submits.extend(answers)
    rec = engine.run()
    assert (rec.state, rec.error_kind) == (state, kind)
    assert (engine.oxen.posts(), len(engine.oxen.rows)) == (posts, made)
    assert not engine.holds_slot() and engine.ctx.store.commit_cost("b", 0) == 0


def test_reconcile_finds_the_generation_and_polls_it_at_once(engine):
    engine.batch()
    engine.start()
    engine.oxen.submits.append("lost")
    engine.driver.step()
    ran = engine.driver.step()
    assert ran.step.step is Step.RECONCILE
    rec = engine.item()
    assert (rec.state, rec.generation_id, rec.attempts) == (S.QUEUED, "gen-1", 1)
    assert ran.nexts == [Next(Step.POLL, "b", "i0", 0)] and engine.holds_slot()


def test_identical_lost_submits_each_adopt_their_own_generation(engine):
    """Repeat samples send the same request: each reconcile claims a generation no other has."""
    engine.oxen.submits.extend(["lost", "lost"])
    engine.batch(items=[{"id": "i0", "prompt": "the same ox"}], repeat=2)
    engine.start()
    engine.driver.run()
    recs = list(engine.ctx.store.items("b"))
    assert sorted(r.generation_id for r in recs) == ["gen-1", "gen-2"]
    assert {r.state for r in recs} == {S.SUCCEEDED} and engine.oxen.posts() == 2


AIML_LOST = [
    # id, request-log answers, final state, kind, POSTs, generations made
    ("aiml-lost-submit-found-in-the-log", [], S.SUCCEEDED, None, 1, 1),
    ("aiml-log-503-retried-then-found", [error(503)] * 2, S.SUCCEEDED, None, 1, 1),
    ("aiml-log-lags-found-on-a-later-look", [httpx.Response(200, json={"data": []})] * 2,
     S.SUCCEEDED, None, 1, 1),
    ("aiml-log-refuses-fails-submit-unknown", [error(400, "bad request")], S.FAILED, "submit_unknown", 1, 1),
]


@pytest.mark.parametrize("logs, state, kind, posts, made", rows(AIML_LOST))
def test_a_lost_aimlapi_submit_is_looked_for_in_the_request_log(engine, logs, state, kind, posts, made):
    """The AI/ML API's request log names each request by its client id: a lost submit is found
    there (its generation adopted, never paid twice), whatever ``retry.lost_submit`` says."""
    engine.aiml.submits.append("lost")
    engine.aiml.logs.extend(logs)
    rec = engine.run(provider="aimlapi", retry={"max_attempts": 3, "lost_submit": "resubmit"})
    assert (rec.state, rec.error_kind) == (state, kind)
    assert (engine.aiml.posts(), len(engine.aiml.made)) == (posts, made)
    assert rec.generation_id == ("aiml-1" if state is S.SUCCEEDED else None)
    assert not engine.holds_slot(provider="aimlapi")


# --- before the POST: cancelled batch, budget, request rate, stale steps ------------------------

def test_submit_of_a_cancelled_batch_cancels_the_item_without_a_request(engine):
    engine.batch()
    engine.start()
    engine.ctx.store.update_batch("b", cancelled=True)
    engine.driver.run()
    assert engine.item().state is S.CANCELLED and engine.oxen.posts() == 0 and not engine.holds_slot()


def test_budget_exceeded_parks_the_item_and_frees_its_slot(engine):
    engine.run(3, limits={"max_concurrency": 20, "requests_per_minute": 6000, "max_cost_usd": 1.0})
    states = {i: engine.item(i) for i in ("i0", "i1", "i2")}
    assert [r.state for r in states.values()] == [S.SUCCEEDED, S.PENDING, S.PENDING]
    assert [r.error_kind for r in states.values()] == [None, "budget", "budget"]
    assert engine.oxen.posts() == 1 and engine.spend().charged_usd == 0.56
    assert engine.ctx.slots("simulator").holders() == [] and engine.ctx.store.budget_waiting("b") == 2


def test_request_rate_delays_the_submit_without_a_request(engine):
    engine.batch(2, limits={"max_concurrency": 20, "requests_per_minute": 1})
    engine.start()
    first, second = engine.driver.step(), engine.driver.step()
    assert first.nexts[0].step is Step.POLL
    assert second.nexts[0].step is Step.SUBMIT and second.nexts[0].countdown > 1
    assert engine.item("i1").state is S.PENDING and engine.oxen.posts() == 1
    assert engine.holds_slot("i1")


def test_a_duplicate_submit_of_an_item_in_flight_changes_nothing(engine):
    engine.batch()
    engine.start()
    engine.driver.step()
    nexts = engine.driver.deliver(Next(Step.SUBMIT, "b", "i0"), "dup")
    assert nexts == [] and engine.item().state is S.QUEUED and engine.holds_slot()
    assert engine.oxen.posts() == 1


def test_a_stale_submit_of_a_finished_item_frees_the_slot_it_was_handed(engine):
    engine.run()
    engine.ctx.slots("simulator").acquire("b\x1fi0")
    assert engine.holds_slot()
    engine.driver.deliver(Next(Step.SUBMIT, "b", "i0"), "stale")
    assert not engine.holds_slot() and engine.oxen.posts() == 1


def test_concurrency_holds_and_a_freed_slot_goes_to_the_next_in_line(engine):
    engine.batch(5, limits={"max_concurrency": 2, "queue_depth": 0, "requests_per_minute": 6000})
    engine.start()
    most = 0
    while engine.driver.pending:
        engine.driver.step()
        most = max(most, len(engine.ctx.slots("simulator").holders()))
    assert most == 2
    assert engine.ctx.store.counts("b")[S.SUCCEEDED] == 5 and engine.oxen.posts() == 5


def test_an_input_that_cannot_be_sent_fails_the_item_without_a_request(engine):
    """A local image is inlined at submit time; one grown past the inline limit since the plan fails
    its item (kind manifest) and gives its slot and its reserved budget back."""
    image = engine.folder / "ox.png"
    image.write_bytes(png(1024, 576))
    engine.batch(defaults={"duration": 5, "start_image": str(image)},
                 limits={"max_concurrency": 20, "requests_per_minute": 6000, "max_cost_usd": 5})
    engine.start()
    engine.ctx.settings = engine.ctx.settings.model_copy(update={"max_data_uri_bytes": 1000})
    image.write_bytes(png(1024, 576, shade=7))
    engine.driver.run()
    rec = engine.item()
    assert (rec.state, rec.error_kind, engine.oxen.posts()) == (S.FAILED, "manifest", 0)
    assert not engine.holds_slot() and engine.ctx.store.commit_cost("b", 0) == 0

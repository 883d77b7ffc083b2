"""Engine rules of polling and downloading (worker/engine/poll.py, download.py, outcome.py), one
table row per rule: the provider's answer about a generation (or the result host's) -> the item's
state, its spend and its slot."""

from __future__ import annotations

import time

import httpx
import pytest

from reelbatch.jobs.state import ItemState as S, Step
from reelbatch.worker.engine import timing
from reelbatch.worker.engine.bulk_poll import collect_charges
from reelbatch.worker.engine.next import Next
from tests.engine.fakes import CDN, connect_refused, error, failed, processing, succeeded
from tests.engine.table import rows

# --- a generation's life at the provider -> the item's end -----------------------------------

POLL_OUTCOMES = [
    # id, lives of the generations made (the last repeats), status answers first, final state,
    # kind, generations made, attempts, charged, estimated
    ("running-then-succeeded", [[processing(), succeeded()]], [], S.SUCCEEDED, None, 1, 1, 0.56, 0.0),
    ("succeeded-at-once", [[succeeded("0.70")]], [], S.SUCCEEDED, None, 1, 1, 0.70, 0.0),
    ("no-cost-is-estimated", [[succeeded(None)]], [], S.SUCCEEDED, None, 1, 1, 0.0, 0.56),
    ("remote-failure-resubmitted", [[failed()], [succeeded()]], [], S.SUCCEEDED, None, 2, 2, 0.56, 0.0),
    ("remote-failure-past-max-attempts", [[failed()]], [], S.FAILED, "generation_failed", 3, 3, 0.0, 0.0),
    ("content-policy-not-resubmitted", [[failed("Blocked by the content moderation filter")]], [],
     S.FAILED, "content_policy", 1, 1, 0.0, 0.0),
    # failed unbilled for the account: back to pending without its generation (the provider pauses)
    ("no-credits-back-to-pending", [[failed("Insufficient credits")]], [],
     S.PENDING, "no_credits", 1, 0, 0.0, 0.0),
    ("invalid-input-not-resubmitted", [[failed("Model response error: 422 field required")]], [],
     S.FAILED, "invalid_input", 1, 1, 0.0, 0.0),
    ("cancelled-at-provider", [[{"status": "cancelled"}]], [], S.CANCELLED, None, 1, 1, 0.0, 0.0),
    ("undocumented-status-polled-on", [[{"status": "warming_up"}, processing(), succeeded()]], [],
     S.SUCCEEDED, None, 1, 1, 0.56, 0.0),
    ("poll-503-retried", [[processing(), succeeded()]], [error(503)] * 3, S.SUCCEEDED, None, 1, 1, 0.56, 0.0),
    ("poll-503-past-30-retries", [[processing()]], [error(503)] * 31, S.FAILED, "transient", 1, 1, 0.0, 0.0),
    ("poll-401-key-check-passes-fails-the-item", [[processing()]], [error(401, "unauthenticated")],
     S.FAILED, "key_refused", 1, 1, 0.0, 0.0),
    ("poll-404-reads-the-history", [[processing(), succeeded()]], [error(404, "not found")],
     S.SUCCEEDED, None, 1, 1, 0.56, 0.0),
    ("poll-unreachable-waited-out", [[processing(), succeeded()]], [connect_refused()] * 40,
     S.SUCCEEDED, None, 1, 1, 0.56, 0.0),
]


@pytest.mark.parametrize("lives, gets, state, kind, made, attempts, charged, estimated", rows(POLL_OUTCOMES))
def test_generation_outcome(engine, lives, gets, state, kind, made, attempts, charged, estimated):
    engine.oxen.lives.extend(lives)
    engine.oxen.life = lives[-1]
    engine.oxen.gets.extend(gets)
    rec = engine.run()
    assert (rec.state, rec.error_kind, len(engine.oxen.rows), rec.attempts) == (state, kind, made, attempts)
    assert (engine.spend().charged_usd, engine.spend().estimated_usd) == (charged, estimated)
    assert not engine.holds_slot()
    assert (engine.folder / "b" / "i0.mp4").exists() == (state is S.SUCCEEDED)


def test_a_cost_not_given_is_owed_and_read_from_the_history_later(engine):
    engine.oxen.life = [succeeded(None)]
    rec = engine.run()
    assert rec.cost_source == "estimated" and [o[:2] for o in engine.ctx.store.owed_charges("simulator")] == [
        ("b", "i0")]
    engine.oxen.rows["gen-1"]["cost"] = "0.61"
    assert collect_charges(engine.ctx, "simulator") == 1
    assert (engine.spend().charged_usd, engine.spend().estimated_usd) == (0.61, 0.0)
    assert engine.ctx.store.owed_charges("simulator") == []


# --- one poll: what the item is right after it -----------------------------------------------

def test_first_running_answer_moves_queued_to_running_and_keeps_the_slot(engine):
    engine.batch()
    engine.start()
    engine.driver.step()
    ran = engine.driver.step()
    rec = engine.item()
    assert (rec.state, rec.remote_started_at is not None, rec.polled_at is not None) == (S.RUNNING, True, True)
    assert [n.step for n in ran.nexts] == [Step.POLL] and 2 <= ran.nexts[0].countdown <= 10
    assert engine.holds_slot()


def test_succeeded_answer_charges_frees_the_slot_and_hands_it_on_in_one_step(engine):
    engine.batch(2, limits={"max_concurrency": 1, "requests_per_minute": 6000, "queue_depth": 0})
    engine.start()
    engine.oxen.life = [succeeded()]
    engine.driver.step()                       # i0 submitted; i1 waits for the slot
    ran = engine.driver.step()                 # i0 polled: done
    assert engine.item().state is S.DOWNLOADING and engine.spend().charged_usd == 0.56
    assert ran.nexts == [Next(Step.DOWNLOAD, "b", "i0"), Next(Step.SUBMIT, "b", "i1")]
    assert not engine.holds_slot() and engine.holds_slot("i1")


def test_a_poll_of_an_item_that_moved_on_does_nothing(engine):
    engine.run()
    before = len(engine.oxen.requests)
    assert engine.driver.deliver(Next(Step.POLL, "b", "i0"), "late") == []
    assert len(engine.oxen.requests) == before and engine.item().state is S.SUCCEEDED


# --- downloading the result ---------------------------------------------------------------------

DOWNLOADS = [
    # id, result host answers, final state, kind, downloads tried, status requests after completion
    ("first-try", [], S.SUCCEEDED, None, 1, 0),
    ("404-then-fresh-url", [error(404)] * 2, S.SUCCEEDED, None, 3, 2),
    ("not-a-video-retried", [httpx.Response(200, text="<html>", headers={"Content-Type": "text/html"})],
     S.SUCCEEDED, None, 2, 1),
    ("connection-lost-retried", [httpx.ReadError("reset")], S.SUCCEEDED, None, 2, 1),
    ("404-past-12-retries", [error(404)] * 13, S.FAILED, "download", 13, 12),
]


@pytest.mark.parametrize("answers, state, kind, tries, asked", rows(DOWNLOADS))
def test_download(engine, answers, state, kind, tries, asked):
    engine.oxen.life = [succeeded()]
    engine.cdn.answers.extend(answers)
    rec = engine.run()
    assert (rec.state, rec.error_kind, len(engine.cdn.requests)) == (state, kind, tries)
    gets = engine.oxen.requests.count(("GET", "/api/ai/queue/gen-1"))
    assert gets - 1 == asked                           # the URL is asked for again before each retry
    assert engine.oxen.posts() == 1                    # never generated again for a download problem
    assert engine.spend().charged_usd == 0.56 and not engine.holds_slot()   # made, so paid
    if state is S.SUCCEEDED:
        assert (engine.folder / "b" / "i0.mp4").read_bytes()[4:8] == b"ftyp"


def until_downloading(engine) -> None:
    engine.batch()
    engine.start()
    engine.driver.run_while(lambda: engine.item().state is not S.DOWNLOADING)


FRESH_URL = [
    # id, status answer, history answer, final state, kind
    ("generation-gone-fails-missing", error(404), error(404), S.FAILED, "missing"),
    ("cannot-be-asked-tries-the-url-it-had", error(503), None, S.SUCCEEDED, None),
]


@pytest.mark.parametrize("queue, history, state, kind", rows(FRESH_URL))
def test_download_asks_the_provider_again(engine, queue, history, state, kind):
    engine.oxen.life = [succeeded()]
    until_downloading(engine)
    engine.cdn.answers.append(error(404))
    engine.oxen.gets.append(queue)
    if history is not None:
        engine.oxen.history.append(history)
    engine.driver.run()
    assert (engine.item().state, engine.item().error_kind, engine.oxen.posts()) == (state, kind, 1)


def test_a_result_url_that_is_not_https_is_refused(engine):
    engine.oxen.life = [{**succeeded(), "result_url": "http://cdn.example.org/gen-1.mp4"}]
    rec = engine.run()
    assert (rec.state, rec.error_kind, engine.cdn.requests) == (S.FAILED, "unsafe_result", [])


def test_a_download_records_the_results_line(engine):
    engine.run()
    line = (engine.folder / "b" / "results.jsonl").read_text()
    assert '"item_id": "i0"' in line or '"item_id":"i0"' in line
    assert engine.cdn.requests == [f"{CDN}/gen-1.mp4"]


# --- the poll schedule -----------------------------------------------------------------------------

SCHEDULES = [
    # id, told of completions (event stream or lister), generations finished before, first poll (s)
    ("manifest-first-after", False, 0, 5.0),
    ("relaxed-behind-events", True, 0, 15.0),          # a backstop: 3 times later
    ("learned-times-move-it-earlier", False, 1, 2.0),  # the fast ones learned: down to min_interval_s
]


@pytest.mark.parametrize("told, finished, first", rows(SCHEDULES))
def test_first_poll(engine, told, finished, first):
    if finished:
        engine.run(finished, name="earlier")
        timing.forget()
    if told:
        engine.ctx.store.mark_events_healthy("simulator", 60)
    engine.batch()
    engine.start()
    ran = engine.driver.step()
    assert [(n.step, n.countdown) for n in ran.nexts] == [(Step.POLL, first)]


ENDINGS = [
    # id, items, max_concurrency, the next poll after one that found the generation running: the
    # provider's last few in flight, none waiting in line for it, are polled four times as often
    ("many-in-flight", 8, 8, 10.0),
    ("the-last-few", 2, 8, 2.5),
    ("others-wait-in-line", 10, 2, 10.0),
]


@pytest.mark.parametrize("items, running, after", rows(ENDINGS))
def test_the_last_generations_in_flight_are_polled_more_often(engine, items, running, after):
    """The batch ends when its last generation is noticed: there a poll's step is short."""
    engine.oxen.life = [processing(), processing(), succeeded()]
    engine.batch(items, limits={"max_concurrency": running, "requests_per_minute": 6000, "queue_depth": 0},
                 polling={"first_after_s": 120, "min_interval_s": 1, "max_interval_s": 300})
    engine.start()
    while (due := engine.driver.pending[0]).step is not Step.POLL:
        engine.driver.step()
    engine.ctx.store.update("b", due.item_id, submitted_at=time.time() - 120)   # the first poll's time
    ran = engine.driver.step()
    assert [(n.step, n.countdown) for n in ran.nexts] == [(Step.POLL, after)]   # (150 - 120) / 3


def test_an_output_folder_that_cannot_be_written_holds_the_download_without_using_its_attempts(engine):
    """Not the item's fault: the batch is marked (the sweeper pauses it) and the download waits;
    once the folder takes files again it goes on and the mark goes with it. (sysfs refuses a new
    folder with EPERM, or EACCES to a user: both mean the output folder cannot be used.)"""
    engine.oxen.life = [succeeded()]
    until_downloading(engine)
    engine.ctx.store.update_batch("b", output="/sys/reelbatch-engine-tier")
    ran = engine.driver.step()
    assert [(n.step, n.countdown) for n in ran.nexts] == [(Step.DOWNLOAD, 30.0)]
    problem = engine.ctx.store.output_problem("b")
    assert problem is not None and "/sys/reelbatch-engine-tier" in problem.why
    assert engine.item().transient_retries == 0 and engine.item().state is S.DOWNLOADING
    engine.ctx.store.update_batch("b", output=str(engine.folder / "b"))
    engine.driver.run()
    assert engine.item().state is S.SUCCEEDED and engine.ctx.store.output_problem("b") is None


# --- fal: the queue's request path --------------------------------------------------------------

def test_fal_submits_follows_the_status_fetches_the_result_and_downloads(engine):
    """fal's basic path through the real client: POST the endpoint, GET .../status until COMPLETED,
    GET the result (response_url) for video.url, download it (without the key)."""
    rec = engine.run(provider="fal")
    rid = "fal-ai/kling-video/requests/r1"
    assert (rec.state, rec.generation_id, rec.cost_source) == (S.SUCCEEDED, rid, "estimated")
    assert engine.fal.requests == [("POST", "fal-ai/kling-video/o1/image-to-video"),
                                   ("GET", f"{rid}/status"), ("GET", f"{rid}/status"), ("GET", f"{rid}/status"),
                                   ("GET", rid)]
    assert set(engine.fal.keys) == {"Key fal-test-key"} and engine.cdn.requests == [f"{CDN}/r1.mp4"]
    assert (engine.folder / "b" / "i0.mp4").read_bytes()[4:8] == b"ftyp"
    assert not engine.holds_slot(provider="fal") and engine.spend().estimated_usd > 0


def test_an_unreachable_provider_is_asked_again_by_the_time_the_item_would_end_stuck(engine):
    """The unreachable provider's backoff (tens of seconds) does not carry an item past
    polling.give_up_after_s: it is polled again when its time is up, and then ends `stuck`."""
    engine.batch(polling={"first_after_s": 5, "min_interval_s": 2, "max_interval_s": 10, "give_up_after_s": 20})
    engine.start()
    engine.driver.step()                       # submitted
    engine.oxen.gets.extend([connect_refused()] * 5)
    engine.ctx.store.update("b", "i0", in_flight_since=time.time() - 15)   # 5 s before it gives up
    ran = engine.driver.step()                 # the poll: the provider cannot be reached
    assert [n.step for n in ran.nexts] == [Step.POLL] and ran.nexts[0].countdown <= 6
    engine.ctx.store.update("b", "i0", in_flight_since=time.time() - 21)
    engine.driver.deliver(Next(Step.POLL, "b", "i0"), "again")
    assert (engine.item().state, engine.item().error_kind) == (S.FAILED, "stuck")

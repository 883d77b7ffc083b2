"""Issue 21.6: one cancel request per item. A cancel task and a poll of the cancelled batch (or two
deliveries of the cancel task) used to read ``cancel_requested`` and then set it after the
request: under load 5 cancel requests went out for 4 items. The engine steps run in process here,
on the real redis-server, against a provider whose cancel answers slowly (MockTransport)."""

from __future__ import annotations

import threading
import time

import httpx

from reelbatch.jobs.settings import Settings
from reelbatch.jobs.state import ItemState as S, Step
from reelbatch.jobs.store import BatchMeta, Store
from reelbatch.worker.engine.cancel import cancel
from reelbatch.worker.providers import build_provider
from reelbatch.worker.runtime import Runtime
from reelbatch.worker.tasks import _step
from tests.unit.test_store import make_item

RACERS = 6


def slow_provider(settings: Settings, cancels: list[str], status: int = 200):
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            cancels.append(request.url.path)
            time.sleep(0.2)          # the window a check-then-set race needs
            return httpx.Response(status, json={"detail": "busy"} if status >= 500 else {})
        return httpx.Response(200, json={"id": "g-1", "status": "processing"})
    return build_provider("simulator", settings, transport=httpx.MockTransport(answer))


def queued_item_of_a_cancelled_batch(store: Store) -> None:
    store.save_batch(BatchMeta(name="b", provider="simulator", model="kling-o1/image-to-video", output="/tmp/out",
                               cancelled=True))
    store.add_items("b", [make_item(1)])
    store.transition("b", "it1", S.SUBMITTING, [S.PENDING])
    store.transition("b", "it1", S.QUEUED, [S.SUBMITTING], generation_id="g-1")


def context(redis_url: str, cancels: list[str], status: int = 200) -> Runtime:
    settings = Settings(broker_url=redis_url, simulator_key="k", simulator_url="http://sim.test")
    ctx = Runtime(settings)
    ctx._providers["simulator"] = slow_provider(settings, cancels, status)
    return ctx


def race(steps) -> list:
    start, answers = threading.Barrier(len(steps)), []

    def go(step):
        start.wait()
        answers.append(step())
    threads = [threading.Thread(target=go, args=(step,)) for step in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return answers


def test_racing_cancel_tasks_and_polls_send_one_cancel_request(redis_url):
    cancels: list[str] = []
    ctx = context(redis_url, cancels)
    queued_item_of_a_cancelled_batch(ctx.store)
    # through the task boundary (``_step``), as a worker runs them: a step whose item moved on first
    # (TransitionRefused) ends there with nothing to follow
    steps = ([lambda: _step(ctx, Step.CANCEL, "b", "it1")] * (RACERS // 2)
             + [lambda: _step(ctx, Step.POLL, "b", "it1")] * (RACERS // 2))
    answers = race(steps)
    assert len(answers) == RACERS                          # every step answered: none raised
    assert cancels == ["/api/ai/queue/g-1"]
    followed = [n for nexts in answers for n in nexts]
    assert {n.step for n in followed} == {Step.POLL}
    # the claimer polls at once for the outcome; a poll that lost the claim keeps its own chain's pace
    assert sum(n.countdown == 0 for n in followed) == 1
    assert ctx.store.item("b", "it1").cancel_requested


def test_a_cancel_refused_for_now_is_asked_again_by_its_retry(redis_url):
    cancels: list[str] = []
    ctx = context(redis_url, cancels, status=503)
    queued_item_of_a_cancelled_batch(ctx.store)
    first = cancel(ctx, "b", "it1")
    assert [n.step for n in first] == [Step.CANCEL] and not ctx.store.item("b", "it1").cancel_requested
    cancel(ctx, "b", "it1")
    assert len(cancels) == 2


def test_the_claim_is_given_once(redis_url):
    store = Store.from_url(redis_url)
    queued_item_of_a_cancelled_batch(store)
    assert store.claim_cancel("b", "it1") and not store.claim_cancel("b", "it1")
    assert not store.claim_cancel("b", "missing") and not store.item_exists("b", "missing")

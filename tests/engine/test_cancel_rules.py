"""Engine rules of cancelling (worker/engine/cancel.py, stop.py, and poll.py's cancelled batch),
one table row per rule: where the item is x what the provider can do and answers -> the item's
end, its spend and its slot."""

from __future__ import annotations

import pytest

from reelbatch.jobs.state import ItemState as S
from reelbatch.worker.engine import stop
from reelbatch.worker.engine.cancel import cancel
from reelbatch.worker.engine.poll import poll
from tests.engine.fakes import error
from tests.engine.table import rows


def submitted(engine, provider: str = "simulator") -> None:
    """One item queued at the provider, its first poll not yet run."""
    engine.batch(provider=provider)
    engine.start()
    engine.driver.step()
    assert engine.item().state is S.QUEUED


CANCELS = [
    # id, provider, abandon, DELETE answers, final state, DELETEs sent, charged
    ("oxen-cancels-at-the-provider", "simulator", False, [], S.CANCELLED, 1, 0.0),
    ("delete-503-retried", "simulator", False, [error(503)] * 2, S.CANCELLED, 3, 0.0),
    ("delete-503-past-8-retries-polls-on", "simulator", False, [error(503)] * 9, S.SUCCEEDED, 9, 0.56),
    ("delete-404-already-finished", "simulator", False, [error(404, "not found")], S.SUCCEEDED, 1, 0.56),
    ("cannot-cancel-finishes-and-downloads", "aimlapi", False, [], S.SUCCEEDED, 0, 0.3),
    ("cannot-cancel-abandoned", "aimlapi", True, [], S.CANCELLED, 0, 0.0),
]


@pytest.mark.parametrize("provider, abandon, deletes, state, sent, charged", rows(CANCELS))
def test_cancel_in_flight(engine, provider, abandon, deletes, state, sent, charged):
    submitted(engine, provider)
    engine.oxen.cancels.extend(deletes)
    out = stop.cancel_batch(engine.ctx, "b", abandon=abandon, here=False)
    assert out.done == {"sent": 1}
    engine.driver.send(out.nexts)
    engine.driver.run()
    assert engine.item().state is state
    assert engine.oxen.requests.count(("DELETE", "/api/ai/queue/gen-1")) == sent
    assert engine.spend().charged_usd == charged and not engine.holds_slot(provider=provider)


def test_cancel_of_pending_items_is_at_once_and_frees_their_slots(engine):
    engine.batch(3, limits={"max_concurrency": 2, "requests_per_minute": 6000})
    engine.start()                               # two hold a slot, one waits in line
    out = stop.cancel_batch(engine.ctx, "b", abandon=False, here=False)
    assert out.done["cancelled"] == 3 and engine.ctx.store.counts("b")[S.CANCELLED] == 3
    engine.driver.run()                          # the submits already sent find the batch cancelled
    assert engine.oxen.posts() == 0 and engine.ctx.slots("simulator").holders() == []


def test_cancel_without_workers_asks_the_provider_from_here(engine):
    submitted(engine)
    out = stop.cancel_batch(engine.ctx, "b", abandon=False, here=True)
    assert out.done == {"cancelled": 1} and engine.item().state is S.CANCELLED
    assert not engine.holds_slot()


def test_a_poll_of_a_cancelled_batch_cancels_its_generation(engine):
    """No cancel task reached the item (sent before the batch was cancelled): its next poll does it."""
    submitted(engine)
    engine.ctx.store.update_batch("b", cancelled=True)
    engine.driver.run()
    assert engine.item().state is S.CANCELLED
    assert engine.oxen.requests.count(("DELETE", "/api/ai/queue/gen-1")) == 1 and not engine.holds_slot()


def test_one_cancel_request_per_item_when_other_steps_run_while_it_is_sent(engine):
    """Issue 21.6: a cancel task and a poll of the cancelled batch (or a second delivery of the cancel
    task) that run while the first one's DELETE is on the wire must not send another: the request is
    claimed atomically before it is sent (a check-then-set sent 5 requests for 4 items under load)."""
    engine.batch(4)
    engine.start()
    for _ in range(4):
        engine.driver.step()
    assert engine.ctx.store.counts("b")[S.QUEUED] == 4
    engine.ctx.store.update_batch("b", cancelled=True)
    for n in range(4):     # while each DELETE runs, the item's cancel task comes again and a poll runs
        item_id = f"i{n}"
        engine.oxen.cancels.append(lambda item_id=item_id: (cancel(engine.ctx, "b", item_id),
                                                             poll(engine.ctx, "b", item_id)))
    for n in range(4):
        engine.driver.send(cancel(engine.ctx, "b", f"i{n}"))
    engine.driver.run()
    deletes = [path for method, path in engine.oxen.requests if method == "DELETE"]
    assert sorted(deletes) == sorted(f"/api/ai/queue/gen-{n + 1}" for n in range(4))
    assert engine.ctx.store.counts("b")[S.CANCELLED] == 4

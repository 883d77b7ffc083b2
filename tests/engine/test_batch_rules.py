"""Engine rules of whole batches (worker/engine/batch.py, retry.py, recheck.py): running a manifest
again resumes without paying twice, `retry` goes on from where each item can, a rerun downloads a
lost video again from its generation."""

from __future__ import annotations

import pytest
import yaml

from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.state import ItemState as S, Step
from reelbatch.scheduler.plan import plan_batch
from reelbatch.worker.engine import batch as batches
from reelbatch.worker.engine.recheck import recheck_files
from reelbatch.worker.engine.retry import retry_items
from tests.engine.fakes import error, failed, processing, succeeded
from tests.engine.table import rows

# --- `retry`: each failed item goes on from where it can ----------------------------------------

RETRIES = [
    # id, how it failed (life, status answers, result host answers), its kind, retry arguments,
    # moved, skipped, final state, POSTs in all, charged in all
    ("remote-failure-submitted-again", ([failed()], [], []), "generation_failed", {},
     {"submit": 1}, {}, S.SUCCEEDED, 4, 0.56),
    # a 401 the key check does not confirm (the key is fine) fails the item, not the account
    ("poll-error-polls-the-same-generation", ([processing(), succeeded()], [error(401, "unauthenticated")], []),
     "key_refused", {},
     {"poll": 1}, {}, S.SUCCEEDED, 1, 0.56),
    ("download-failure-downloads-again", ([succeeded()], [], [error(404)] * 13), "download", {},
     {"download": 1}, {}, S.SUCCEEDED, 1, 0.56),
    ("content-policy-left-alone", ([failed("content policy violation")], [], []), "content_policy", {},
     {}, {"content_policy": 1}, S.FAILED, 1, 0.0),
    ("content-policy-when-asked", ([failed("content policy violation")], [], []), "content_policy",
     {"include_permanent": True}, {"submit": 1}, {}, S.SUCCEEDED, 2, 0.56),
    ("by-kind", ([failed()], [], []), "generation_failed", {"kind": "generation_failed"},
     {"submit": 1}, {}, S.SUCCEEDED, 4, 0.56),
    ("another-kind-untouched", ([failed()], [], []), "generation_failed", {"kind": "download"},
     {}, {}, S.FAILED, 3, 0.0),
]


@pytest.mark.parametrize("how, kind, args, moved, skipped, state, posts, charged", rows(RETRIES))
def test_retry(engine, how, kind, args, moved, skipped, state, posts, charged):
    life, gets, cdn = how
    engine.oxen.life = life
    engine.oxen.gets.extend(gets)
    engine.cdn.answers.extend(cdn)
    assert (engine.run().state, engine.item().error_kind) == (S.FAILED, kind)
    engine.oxen.life = [processing(), succeeded()]   # what failed no longer does
    done, nexts = retry_items(engine.ctx, "b", **args)
    assert (dict(done.moved), dict(done.skipped)) == (moved, skipped)
    engine.driver.send(nexts)
    engine.driver.run()
    assert (engine.item().state, engine.oxen.posts(), engine.spend().charged_usd) == (state, posts, charged)


def test_retry_brings_cancelled_items_back_when_asked(engine):
    engine.batch()
    engine.ctx.store.update_batch("b", cancelled=True)
    engine.start()
    engine.driver.run()
    assert engine.item().state is S.CANCELLED
    done, nexts = retry_items(engine.ctx, "b", kind="cancelled")
    assert dict(done.moved) == {"submit": 1} and not engine.ctx.store.batch("b").cancelled
    engine.driver.send(nexts)
    engine.driver.run()
    assert engine.item().state is S.SUCCEEDED


# --- running the same manifest again ---------------------------------------------------------------

RESUMES = [
    # id, submit answers, state when the process died, the step that resumes it
    ("queued-is-polled", [], S.QUEUED, Step.POLL),
    ("submitting-is-reconciled", ["lost"], S.SUBMITTING, Step.RECONCILE),
]


@pytest.mark.parametrize("answers, state, step", rows(RESUMES))
def test_a_rerun_resumes_an_item_in_flight_without_submitting_it_again(engine, answers, state, step):
    engine.oxen.submits.extend(answers)
    engine.batch()
    engine.start()
    engine.driver.step()
    engine.driver.drop()                     # the process died
    assert engine.item().state is state
    reg = batches.register(engine.ctx.store, plan_batch(engine.folder / "b.yaml", engine.ctx.settings))
    assert (reg.kept, reg.new) == (1, 0)
    nexts = batches.enqueue(engine.ctx, "b")
    assert [n.step for n in nexts] == [step]
    engine.driver.send(nexts)
    engine.driver.run()
    assert engine.item().state is S.SUCCEEDED and engine.oxen.posts() == 1


def test_a_rerun_of_a_finished_batch_sends_nothing(engine):
    engine.run()
    reg = batches.register(engine.ctx.store, plan_batch(engine.folder / "b.yaml", engine.ctx.settings))
    assert reg.kept == 1 and batches.enqueue(engine.ctx, "b") == []


def edit(engine, **changes) -> None:
    path = engine.folder / "b.yaml"
    doc = yaml.safe_load(path.read_text())
    doc.update(changes)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_an_item_edited_while_in_flight_is_refused(engine):
    engine.batch()
    engine.start()
    engine.driver.step()
    edit(engine, items=[{"id": "i0", "prompt": "A cow walks"}])
    with pytest.raises(ManifestError, match="in flight"):
        batches.register(engine.ctx.store, plan_batch(engine.folder / "b.yaml", engine.ctx.settings))


def test_items_that_left_the_manifest_are_dropped_or_kept_aside_once_paid(engine):
    engine.run(1)
    engine.batch(2)                         # i1 added, never run
    edit(engine, items=[{"id": "i9", "prompt": "Another ox"}])
    reg = batches.register(engine.ctx.store, plan_batch(engine.folder / "b.yaml", engine.ctx.settings))
    assert (reg.new, reg.retired, reg.dropped) == (1, 1, 1)
    assert engine.ctx.store.item_ids("b") == ["i9"]


# --- a rerun checks the videos on disk ---------------------------------------------------------------

@pytest.mark.parametrize("damage, verify", [("delete", False), ("change", True)])
def test_a_lost_video_is_downloaded_again_from_its_generation(engine, damage, verify):
    engine.run()
    video = engine.folder / "b" / "i0.mp4"
    if damage == "delete":
        video.unlink()
    else:
        video.write_bytes(bytes(len(video.read_bytes())))
    assert recheck_files(engine.ctx, "b", verify=verify) == 1
    engine.driver.send(batches.enqueue(engine.ctx, "b"))
    engine.driver.run()
    rec = engine.item()
    assert rec.state is S.SUCCEEDED and video.read_bytes()[4:8] == b"ftyp"
    assert engine.oxen.posts() == 1 and engine.spend().charged_usd == 0.56   # neither made nor paid twice

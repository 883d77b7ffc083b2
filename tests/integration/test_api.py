"""The Python API end to end, in this process: a dict manifest run on the embedded Redis with a real
worker against the simulator over HTTP; results, retry, export and a Dataset; and a run in a
background thread that another thread cancels."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import psutil
import pytest

import reelbatch
from reelbatch.scheduler import api
from tests.conftest import SIM_KEY

pytestmark = pytest.mark.integration
IMAGE = "https://example.org/ox.png"


def manifest(name: str, n: int, **overrides) -> dict:
    doc = {"version": 1, "name": name, "provider": "simulator", "model": "kling-o1/image-to-video",
           "output": "out", "defaults": {"duration": 5, "start_image": IMAGE},
           "items": [{"id": f"clip{i}", "prompt": f"An ox walks, take {i}"} for i in range(n)],
           "limits": {"max_concurrency": 10, "requests_per_minute": 6000},
           "retry": {"max_attempts": 1},
           "polling": {"first_after_s": 0.5, "min_interval_s": 0.2, "max_interval_s": 1}}
    doc.update(overrides)
    return doc


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A clean environment: a data folder of the test's own (so the embedded Redis is the test's),
    the working folder the test's, the API's connections left afterwards."""
    for key in list(os.environ):
        if key.startswith(("REELBATCH_", "OXEN_", "AIMLAPI_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("REELBATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    api.close()


def use_simulator(monkeypatch, sim) -> None:
    monkeypatch.setenv("REELBATCH_SIMULATOR_URL", sim.base_url)
    monkeypatch.setenv("REELBATCH_SIMULATOR_KEY", SIM_KEY)


def test_run_results_retry_export_and_a_dataset(here, sim_factory, monkeypatch):
    datasets = pytest.importorskip("datasets", reason="the `datasets` extra")
    sim = sim_factory(time_scale=1 / 600, queue_delay=0.0, seed=25, fail_rate=1.0)
    use_simulator(monkeypatch, sim)
    doc = manifest("api-e2e", 3)

    batch = reelbatch.run(doc, progress=False)
    assert batch.report == reelbatch.RunReport(all_succeeded=False, paused=None)   # `run` would exit 1
    status = batch.status()
    assert (status.name, status.total, status.failed, status.finished) == ("api-e2e", 3, 3, True)
    assert status.as_json()["failure_kinds"] == status.failure_kinds and status.as_json()["done"] == 3
    assert status.paused is None and status.created_at and status.started_at and status.finished_at
    failed = batch.results()
    assert [r.id for r in failed] == ["clip0", "clip1", "clip2"]
    assert {r.state for r in failed} == {"failed"}
    assert {r.error_kind for r in failed} <= {"generation_failed", "content_policy", "no_credits", "invalid_input"}
    assert all(r.error and r.generation_id and r.file is None for r in failed)

    sim.set_knobs(fail_rate=0.0)
    with pytest.raises(reelbatch.BadInput, match="no items of kind 'download'"):
        batch.retry(kind="download")
    retried = batch.retry(include_permanent=True)
    assert (retried.total, retried.moved) == (3, {"submit": 3})
    again = reelbatch.run(doc, progress=False)
    assert again.status().succeeded == 3 and [b.name for b in reelbatch.batches()] == ["api-e2e"]
    assert again.report == reelbatch.RunReport(all_succeeded=True)

    results = reelbatch.batch("api-e2e").results()
    for r in results:
        assert r.state == "succeeded" and r.file == here / "out" / f"{r.id}.mp4" and r.file.is_file()
        assert r.file.stat().st_size == r.bytes and r.generation_id and r.url
        assert r.cost_usd and r.cost_source in ("charged", "estimated") and r.error_kind is None
        assert r.params["prompt"] == f"An ox walks, take {r.id[-1]}"

    index = batch.export()
    assert index == here / "out" / "results.jsonl"
    lines = [json.loads(line) for line in index.read_text().splitlines()]
    assert [(row["item_id"], row["status"]) for row in lines] == [(r.id, "succeeded") for r in results]
    table = batch.export(here / "results.csv", format="csv")
    assert table.read_text().count("\n") == 4
    folder = batch.export(here / "dataset", format="dataset")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["README.md", "metadata.jsonl", "clip0.mp4", "clip1.mp4", "clip2.mp4"])
    done = batch.export_report(here / "dataset", format="dataset", metadata="csv")
    assert (done.path, done.items, done.videos, done.missing) == (folder, 3, 3, ())
    assert (folder / "metadata.csv").is_file() and not (folder / "metadata.jsonl").exists()

    ds = batch.to_dataset()
    assert isinstance(ds, datasets.Dataset) and ds.num_rows == 3
    assert ds["id"] == ["clip0", "clip1", "clip2"] and set(ds["state"]) == {"succeeded"}
    assert ds["file"] == [str(r.file) for r in results] and ds["duration"] == [5, 5, 5]


def test_a_run_in_a_thread_is_cancelled_from_another(here, sim_factory, monkeypatch):
    sim = sim_factory(time_scale=1.0, gen_time_min=600, gen_time_max=900, queue_delay=0.0, seed=26)
    use_simulator(monkeypatch, sim)
    doc = manifest("api-cancel", 4, limits={"max_concurrency": 2, "requests_per_minute": 6000,
                                            "queue_depth": 0})   # two in flight, two pending
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["batch"] = reelbatch.run(doc, progress=False)
        except BaseException as exc:   # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 240
    while not _in_flight(2) and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.5)
    assert _in_flight(2), outcome

    done = reelbatch.batch("api-cancel").cancel()
    assert done.cancelled == 2 and done.sent + done.later == 2
    thread.join(timeout=240)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert outcome["batch"].report == reelbatch.RunReport(all_succeeded=False)
    workers = [p for p in psutil.Process().children(recursive=True) if "celery" in " ".join(p.cmdline())]
    assert workers == []                       # the run stopped the worker it started
    status = outcome["batch"].status()
    assert status.counts["cancelled"] == 4 and status.cancelled and status.finished
    assert sim.stats()["by_status"].get("cancelled") == 2


def _in_flight(n: int) -> bool:
    """``n`` generations submitted (the batch is known and its items are at the provider)."""
    try:
        counts = reelbatch.batch("api-cancel").status().counts
    except reelbatch.BadInput:
        return False
    return counts["queued"] + counts["running"] >= n


def test_submit_returns_at_once_and_wait_follows_the_fleet(here, sim_factory, monkeypatch, redis_url, workers):
    sim = sim_factory(time_scale=1 / 600, queue_delay=0.0, seed=27)
    use_simulator(monkeypatch, sim)
    monkeypatch.setenv("REELBATCH_BROKER_URL", redis_url)
    batch = reelbatch.submit(manifest("api-fleet", 2))
    assert batch.report == reelbatch.SubmitReport(new=2, known=0, sent=2, start_at=None, past=False,
                                                  notify_ignored=False)
    assert batch.status().done == 0          # returned before anything could finish: no worker yet
    workers(sim)
    status = batch.wait(timeout=240)
    assert status.finished and status.succeeded == 2 and status.workers == 1
    assert [r.file.name for r in batch.results()] == ["clip0.mp4", "clip1.mp4"]


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt, as in a notebook kernel (a suite started in the background
    of a non-interactive shell inherits it ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_interrupted_run_stops_its_worker_and_the_next_run_finishes(here, sim_factory, monkeypatch,
                                                                       sigint_raises):
    """Interrupting a notebook cell raises KeyboardInterrupt in the main thread, as here."""
    import _thread

    sim = sim_factory(time_scale=1 / 600, gen_time_min=4800, gen_time_max=6000, queue_delay=0.0, seed=28)
    use_simulator(monkeypatch, sim)
    doc = manifest("api-interrupt", 3)

    def interrupt_when_submitted() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not _submitted("api-interrupt", 3):
            time.sleep(0.5)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_when_submitted, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        reelbatch.run(doc, progress=False)
    workers = [p for p in psutil.Process().children(recursive=True) if "celery" in " ".join(p.cmdline())]
    assert workers == []
    kept = {r.id: r.generation_id for r in reelbatch.batch("api-interrupt").results()}
    assert all(kept.values()), kept            # every submitted generation is recorded

    batch = reelbatch.run(doc, progress=False)
    assert batch.status().succeeded == 3
    assert {r.id: r.generation_id for r in batch.results()} == kept   # none generated again


def _submitted(name: str, n: int) -> bool:
    try:
        return sum(1 for r in reelbatch.batch(name).results() if r.generation_id) >= n
    except reelbatch.BadInput:
        return False

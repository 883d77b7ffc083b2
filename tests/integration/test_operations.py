"""Steering batches: budget, retry, cancel, an overnight start, status."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta

import pytest

from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import Store
from tests.integration.helpers import (
    cli_env,
    reelbatch,
    results,
    spawn,
    status_counts,
    wait_for,
    write_manifest,
)

pytestmark = pytest.mark.integration
FAST = dict(time_scale=1 / 600, queue_delay=0.0, seed=11)


def test_budget_stops_submission_and_a_raised_limit_continues(tmp_path, sim_factory):
    sim = sim_factory(**FAST)
    env = cli_env(tmp_path / "data", sim)
    # each item is estimated at 5 s x $0.112 = $0.56: $2.00 pays for three
    manifest = write_manifest(tmp_path, "budget", 10, limits={"max_concurrency": 2,
                                                              "max_cost_usd": 2.0})
    first = reelbatch("run", str(manifest), env=env)
    assert first.returncode == 1 and "wait for the budget" in first.stdout
    assert status_counts(results(tmp_path / "out")) == {"succeeded": 3, "pending": 7}
    status = json.loads(reelbatch("status", "budget", "--json", env=env).stdout)
    made = status["charged_usd"] + status["estimated_usd"]
    assert status["waiting_for_budget"] == 7 and status["projected_usd"] > made > 0
    assert sum(sim.stats()["enqueues"].values()) == 3

    write_manifest(tmp_path, "budget", 10, limits={"max_concurrency": 2, "max_cost_usd": 100})
    second = reelbatch("run", str(manifest), env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert status_counts(results(tmp_path / "out")) == {"succeeded": 10}
    assert sum(sim.stats()["enqueues"].values()) == 10


def test_retry_sends_only_failed_items_of_a_kind_back(tmp_path, sim_factory):
    """Issue 17.2: remote failures get their kinds; `retry` alone leaves the permanent ones (content
    policy, no credits) and says so; --include-permanent takes them too."""
    sim = sim_factory(fail_rate=1.0, **FAST)
    env = cli_env(tmp_path / "data", sim)
    manifest = write_manifest(tmp_path, "flaky", 12, retry={"max_attempts": 1})
    assert reelbatch("run", str(manifest), env=env).returncode == 1
    rows = results(tmp_path / "out")
    kinds = Counter(r["error_kind"] for r in rows)
    assert status_counts(rows) == {"failed": 12} and set(kinds) <= {"generation_failed",
                                                                     "content_policy", "no_credits"}
    assert kinds["generation_failed"] and kinds["generation_failed"] < 12, kinds   # seed 11: a mix
    refused = reelbatch("retry", "flaky", "--kind", "nonsense", env=env)
    assert refused.returncode == 2 and "generation_failed" in refused.stderr
    status = reelbatch("status", "flaky", env=env).stdout
    assert all(f"{kind} {n}" in status for kind, n in kinds.items()), status
    sim.set_knobs(fail_rate=0.0)
    retried = reelbatch("retry", "flaky", env=env)
    permanent = 12 - kinds["generation_failed"]
    assert retried.returncode == 0, retried.stderr
    assert f"{kinds['generation_failed']} items sent back to work" in retried.stdout
    assert f"{permanent} left alone, failed for a permanent reason" in retried.stdout
    assert reelbatch("run", str(manifest), env=env).returncode == 1
    assert status_counts(results(tmp_path / "out")) == {"succeeded": kinds["generation_failed"],
                                                        "failed": permanent}
    everything = reelbatch("retry", "flaky", "--include-permanent", env=env)
    assert f"{permanent} items sent back to work ({permanent} to submit again)" in everything.stdout
    again = reelbatch("run", str(manifest), env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert status_counts(results(tmp_path / "out")) == {"succeeded": 12}
    assert sum(sim.stats()["enqueues"].values()) == 24   # twelve failed, twelve resubmitted: no more


def test_cancel_stops_remote_generations_and_pending_items(tmp_path, sim_factory, redis_url, workers):
    sim = sim_factory(concurrency=50, time_scale=1 / 10, queue_delay=0.0, seed=3)  # 30-90 s each
    workers(sim, concurrency=4)
    env = cli_env(tmp_path / "data", sim, REELBATCH_BROKER_URL=redis_url)
    manifest = write_manifest(tmp_path, "stopme", 12, limits={"max_concurrency": 4, "queue_depth": 0})
    assert reelbatch("submit", str(manifest), env=env).returncode == 0
    store = Store.from_url(redis_url)
    wait_for(lambda: store.counts("stopme")[S.QUEUED] + store.counts("stopme")[S.RUNNING] == 4,
             60, "four in flight")
    done = reelbatch("cancel", "stopme", env=env)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: store.counts("stopme")[S.CANCELLED] == 12, 60, "all cancelled")
    stats = sim.stats()
    assert stats["by_status"].get("cancelled") == 4
    assert stats["requests"]["DELETE /api/ai/queue/{id}"] == 4
    assert sum(stats["enqueues"].values()) == 4


def test_submit_at_waits_for_the_sweeper(tmp_path, sim_factory, redis_url, workers):
    sim = sim_factory(**FAST)
    workers(sim, concurrency=4)
    env = cli_env(tmp_path / "data", sim, REELBATCH_BROKER_URL=redis_url, REELBATCH_SWEEP_EVERY_S="1")
    manifest = write_manifest(tmp_path, "night", 5)
    start = (datetime.now().astimezone() + timedelta(seconds=4)).isoformat(timespec="seconds")
    sent = reelbatch("submit", str(manifest), "--at", start, env=env)
    assert sent.returncode == 0 and "starting at" in sent.stdout
    store = Store.from_url(redis_url)
    scheduler = spawn("scheduler", env=env)
    try:
        assert store.counts("night")[S.PENDING] == 5 and not sim.stats()["enqueues"]
        wait_for(lambda: store.counts("night")[S.SUCCEEDED] == 5, 90, "the batch to start and finish")
        first_submit = min(r.submitted_at for r in store.items("night"))
        assert first_submit >= datetime.fromisoformat(start).timestamp()
    finally:
        scheduler.terminate()
        scheduler.wait(20)


def test_bad_at_and_unknown_batch_are_bad_input(tmp_path, redis_url):
    env = cli_env(tmp_path / "data", REELBATCH_BROKER_URL=redis_url)
    manifest = write_manifest(tmp_path, "x", 1)
    bad = reelbatch("submit", str(manifest), "--at", "25:99", env=env)
    assert bad.returncode == 2 and "--at" in bad.stderr and len(bad.stderr.splitlines()) == 1
    for command in (["status", "nope"], ["retry", "nope"], ["cancel", "nope"]):
        done = reelbatch(*command, env=env)
        assert done.returncode == 2 and "no batch named 'nope'" in done.stderr


def test_a_generation_cancelled_while_running_costs_what_the_history_says(tmp_path, sim_factory, redis_url,
                                                                           workers):
    """Issue 23.10: Oxen may bill a generation cancelled while processing (the simulator's
    `cancel_billed`). Its cost is read from the history once, as a success's is, so the batch's spend
    shows it; the items cancelled before they were sent cost nothing."""
    sim = sim_factory(concurrency=50, time_scale=1 / 10, queue_delay=0.0, seed=3, cancel_billed=True,
                      cost_per_second=0.2)   # 30-90 s each; 5 s x $0.2 = $1.00 when billed
    workers(sim, concurrency=4)
    env = cli_env(tmp_path / "data", sim, REELBATCH_BROKER_URL=redis_url)
    manifest = write_manifest(tmp_path, "billed", 6, limits={"max_concurrency": 2, "queue_depth": 0})
    assert reelbatch("submit", str(manifest), env=env).returncode == 0
    store = Store.from_url(redis_url)
    wait_for(lambda: sim.stats()["by_status"].get("processing") == 2, 60, "two processing")
    assert reelbatch("cancel", "billed", env=env).returncode == 0
    wait_for(lambda: store.counts("billed")[S.CANCELLED] == 6, 60, "all cancelled")
    scheduler = spawn("scheduler", env=env)   # its lister reads the history for charged costs
    try:
        wait_for(lambda: store.spend("billed").charged_usd == pytest.approx(2.0), 60, "the charges")
    finally:
        scheduler.terminate()
        scheduler.wait(20)
    status = json.loads(reelbatch("status", "billed", "--json", env=env).stdout)
    assert status["charged_usd"] == pytest.approx(2.0) and status["estimated_usd"] == pytest.approx(0.0)
    charged = [r for r in store.items("billed") if r.cost_source == "charged"]
    assert len(charged) == 2 and {r.cost_usd for r in charged} == {1.0}

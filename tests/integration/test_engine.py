"""The execution engine end to end: the real CLI, a real redis-server, real Celery workers and the
simulator over HTTP, producing real MP4 files."""

from __future__ import annotations

import json
import os
import signal

import pytest
import redis

from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import Store
from tests.integration.helpers import (
    assert_files_match_simulator,
    assert_no_duplicate_generation,
    cli_env,
    reap,
    reelbatch,
    results,
    spawn,
    status_counts,
    wait_for,
    write_manifest,
)

pytestmark = pytest.mark.integration
FAST = dict(time_scale=1 / 600, queue_delay=0.0, seed=7)


def test_batch_with_faults_ends_terminal_with_served_files(tmp_path, sim_factory):
    sim = sim_factory(concurrency=20, fail_rate=0.1, server_error_rate=0.1, rate_limit_rate=0.05,
                      rate_limit_bare_rate=0.05, truncate_rate=0.05, expire_rate=0.05,
                      drop_before_rate=0.03, **FAST)
    manifest = write_manifest(tmp_path, "faulty", 50)
    # a submit dropped before it reached the provider is resubmitted after the look window (read
    # timeout plus margin, 75 s by default; a chain of drops cost 2-5 min): 5 s at this time scale
    env = cli_env(tmp_path / "data", sim, REELBATCH_HTTP_READ_TIMEOUT_S="3", REELBATCH_RECONCILE_MARGIN_S="2")
    done = reelbatch("run", str(manifest), env=env, timeout=600)
    assert done.returncode in (0, 1), done.stderr
    rows = results(tmp_path / "out")
    assert len(rows) == 50 and len({r["item_id"] for r in rows}) == 50
    assert set(status_counts(rows)) <= {"succeeded", "failed"}
    assert status_counts(rows)["succeeded"] >= 40
    stats = sim.stats()
    assert_files_match_simulator(rows, tmp_path / "out", stats)
    assert_no_duplicate_generation(stats)
    for row in rows:
        if row["status"] == "failed":
            assert row["error"], row


def test_killed_run_resumes_without_generating_twice(tmp_path, sim_factory):
    sim = sim_factory(concurrency=10, **{**FAST, "time_scale": 1 / 300})
    manifest = write_manifest(tmp_path, "killed", 40, limits={"max_concurrency": 10,
                                                              "requests_per_minute": 6000})
    env = cli_env(tmp_path / "data", sim)
    first = spawn("run", str(manifest), env=env)
    wait_for(lambda: sim.stats()["by_status"].get("succeeded", 0) >= 10, 120, "10 finished")
    os.killpg(first.pid, signal.SIGKILL)    # the run, its worker: everything but Redis dies
    first.wait()
    second = reelbatch("run", str(manifest), env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    rows = results(tmp_path / "out")
    assert status_counts(rows) == {"succeeded": 40}
    stats = sim.stats()
    assert sum(stats["enqueues"].values()) == 40     # nothing was generated twice
    assert_files_match_simulator(rows, tmp_path / "out", stats)
    reap(tmp_path / "data")   # the killed run's orphaned worker and the Redis it left running


def test_global_concurrency_holds_across_four_workers(tmp_path, sim_factory, redis_url, workers):
    sim = sim_factory(concurrency=50, **FAST)
    manifest = write_manifest(tmp_path, "capped", 24, limits={"max_concurrency": 3, "queue_depth": 0,
                                                              "requests_per_minute": 6000})
    for n in range(4):
        workers(sim, concurrency=4, name=f"w{n}")
    env = cli_env(tmp_path / "data", sim, REELBATCH_BROKER_URL=redis_url)
    sent = reelbatch("submit", str(manifest), env=env)
    assert sent.returncode == 0, sent.stderr
    store = Store.from_url(redis_url)
    wait_for(lambda: store.counts("capped")[S.SUCCEEDED] == 24, 180, "24 succeeded")
    stats = sim.stats()
    assert stats["peak_active"] <= 3
    assert sum(stats["enqueues"].values()) == 24


def test_a_refused_key_is_found_before_anything_is_submitted(tmp_path, sim_factory):
    """Issue 12.3: one cheap authenticated request first; a 401 is exit 2 naming the variable, no
    item changes, and the same command with the right key then runs the batch."""
    sim = sim_factory(**FAST)
    manifest = write_manifest(tmp_path, "badkey", 5)
    done = reelbatch("run", str(manifest), env=cli_env(tmp_path / "data", sim,
                                                       REELBATCH_SIMULATOR_KEY="wrong-key"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "REELBATCH_SIMULATOR_KEY" in done.stderr
    assert "refused the key (401)" in done.stderr and "Traceback" not in done.stderr
    assert "wrong-key" not in done.stdout + done.stderr
    assert sim.stats()["requests"].get("POST /api/ai/queue", 0) == 0
    spaced = reelbatch("run", str(manifest), env=cli_env(tmp_path / "data", sim,
                                                         REELBATCH_SIMULATOR_KEY="a key\twith space"))
    assert spaced.returncode == 2 and "spaces or control characters" in spaced.stderr, spaced.stderr
    again = reelbatch("run", str(manifest), env=cli_env(tmp_path / "data", sim))
    assert again.returncode == 0, again.stdout + again.stderr
    assert status_counts(results(tmp_path / "out")) == {"succeeded": 5}
    assert sum(sim.stats()["enqueues"].values()) == 5


def test_demo_example_runs_with_its_own_simulator(tmp_path):
    """The README's first command: `run` starts the embedded Redis, a worker and the simulator."""
    import shutil
    import subprocess

    import imageio_ffmpeg

    from tests.conftest import REPO

    shutil.copy(REPO / "jobs" / "examples" / "demo.yaml", tmp_path / "demo.yaml")
    done = reelbatch("run", str(tmp_path / "demo.yaml"), env=cli_env(tmp_path / "data"))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = results(tmp_path / "out" / "demo")
    assert status_counts(rows) == {"succeeded": 6}
    for row in rows:
        video = tmp_path / "out" / "demo" / row["file"]
        decoded = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(video),
                                  "-f", "null", "-"], capture_output=True, text=True)
        assert decoded.returncode == 0 and not decoded.stderr, decoded.stderr
    assert not (tmp_path / "data" / "redis.port").exists() or not _redis_alive(tmp_path / "data")


def _redis_alive(data_dir) -> bool:
    try:
        port = int((data_dir / "redis.port").read_text())
        return redis.Redis(port=port, password=(data_dir / "redis.password").read_text()).ping()
    except redis.ConnectionError:
        return False


def test_without_the_event_stream_a_lister_moves_every_item_on_in_few_requests(tmp_path, sim_factory):
    """REELBATCH_EVENT_LISTENER=false on Oxen's protocol: completions come from the lister's history
    pages (no status request per item), and each cost is the one the history charged."""
    sim = sim_factory(concurrency=10, **FAST)
    manifest = write_manifest(tmp_path, "listed", 30, limits={"max_concurrency": 10, "requests_per_minute": 6000})
    done = reelbatch("run", str(manifest), env=cli_env(tmp_path / "data", sim, REELBATCH_EVENT_LISTENER="false"))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = results(tmp_path / "out")
    assert status_counts(rows) == {"succeeded": 30}
    requests = sim.stats()["requests"]
    # a backstop poll only for an item that outlived its relaxed first poll (queued behind others)
    assert requests.get("GET /api/ai/queue/{id}", 0) <= 6, requests
    assert 0 < requests.get("GET /api/ai/generations", 0) + requests.get("GET /api/ai/queue", 0) <= 30, requests
    assert {r["cost_source"] for r in rows} == {"charged"}
    assert_files_match_simulator(rows, tmp_path / "out", sim.stats())


def test_costs_of_completions_told_by_events_are_charged_from_the_history(tmp_path, sim_factory):
    """Events carry no cost: the history pages give it afterwards, and the batch's spend moves it
    from estimated to charged, once."""
    sim = sim_factory(concurrency=10, cost_per_second=0.2, **FAST)
    manifest = write_manifest(tmp_path, "evented", 12)
    env = cli_env(tmp_path / "data", sim)
    done = reelbatch("run", str(manifest), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = results(tmp_path / "out")
    assert {(r["cost_source"], r["cost_usd"]) for r in rows} == {("charged", 1.0)}   # 5 s x $0.2
    assert sim.stats()["requests"].get("GET /api/ai/queue/{id}", 0) <= 3   # the backstop only
    status = json.loads(reelbatch("status", "evented", "--json", env=env).stdout)
    assert status["charged_usd"] == pytest.approx(12.0) and status["estimated_usd"] == pytest.approx(0.0)


def test_max_interval_bounds_the_first_poll_before_anything_is_learned(tmp_path, sim_factory):
    """Issue 15.1, as reported: the AI/ML API (no events, no list), `max_interval_s: 2`, generations of
    2-4 s. The catalogue's typical time (79 s) would put the first poll a minute out; the manifest's
    maximum bounds it, so every item is seen finished within a poll or two of its end."""
    sim = sim_factory(time_scale=1.0, gen_time_min=2, gen_time_max=4, queue_delay=0.0, seed=3)
    manifest = write_manifest(tmp_path, "bounded", 6, provider="aimlapi",
                              polling={"max_interval_s": 2, "min_interval_s": 1})
    env = cli_env(tmp_path / "data", AIMLAPI_BASE_URL=sim.base_url, AIMLAPI_KEY="sim-test-key",
                  REELBATCH_EVENT_LISTENER="false")
    done = reelbatch("run", str(manifest), env=env, timeout=50)   # a first poll at 63 s could not end in time
    assert done.returncode == 0, done.stdout + done.stderr
    assert status_counts(results(tmp_path / "out")) == {"succeeded": 6}
    polls = sim.stats()["requests"].get("GET /v2/video/generations", 0)
    assert 6 <= polls <= 6 * 4, sim.stats()["requests"]      # at most 2 s apart over 2-4 s, learned from then on


def test_a_failure_with_an_empty_message_is_never_read_as_cancelled(tmp_path, sim_factory):
    """Issue 23.6: Oxen's history rows carry no status, and a failed generation may carry an empty
    error_message. The lister (no event stream) sees a row that ended with neither result_url nor
    error_message; it asks that generation's queue row instead of guessing "cancelled", so every item
    ends failed (not cancelled, which `retry --kind cancelled` would pay for again)."""
    sim = sim_factory(concurrency=10, fail_rate=1.0, empty_failure_messages=True, **FAST)
    manifest = write_manifest(tmp_path, "silent", 6, retry={"max_attempts": 1})
    done = reelbatch("run", str(manifest), env=cli_env(tmp_path / "data", sim, REELBATCH_EVENT_LISTENER="false"))
    assert done.returncode == 1, done.stdout + done.stderr
    rows = results(tmp_path / "out")
    assert status_counts(rows) == {"failed": 6}
    assert {r["error"].split(": ", 1)[-1] for r in rows} == {"generation failed (no reason given)"}
    assert sum(sim.stats()["enqueues"].values()) == 6


def test_a_lost_aimlapi_submit_is_found_in_the_request_log(tmp_path, sim_factory):
    """Issue 23.8: the AI/ML API traces each request by our X-Client-Request-Id and lists it in
    GET /v2/logs. A submit whose answer was lost (the generation made, the connection cut) is found
    there and adopted, instead of ending `submit_unknown`; nothing is generated twice."""
    sim = sim_factory(time_scale=1 / 300, gen_time_min=300, gen_time_max=600, queue_delay=0.0, seed=5,
                      drop_after_submit_rate=0.3)
    manifest = write_manifest(tmp_path, "traced", 12, provider="aimlapi",
                              polling={"first_after_s": 0.5, "min_interval_s": 0.2, "max_interval_s": 1})
    env = cli_env(tmp_path / "data", AIMLAPI_BASE_URL=sim.base_url, AIMLAPI_KEY="sim-test-key")
    done = reelbatch("run", str(manifest), env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = results(tmp_path / "out")
    assert status_counts(rows) == {"succeeded": 12}
    stats = sim.stats()
    assert stats["faults"].get("drop_after", 0) > 0 and stats["requests"].get("GET /v2/logs", 0) > 0
    assert sum(stats["enqueues"].values()) == 12     # each lost one adopted, none sent again
    assert_files_match_simulator(rows, tmp_path / "out", stats)

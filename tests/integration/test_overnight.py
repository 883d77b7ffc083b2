"""Issue 14 points 3 and 6, and issue 17 points 1, 3 and 4: state that follows the user, files fit
for sharing, one sweeper at a time across a fleet, a run with no worker says so, and a pace that
does not decay once the batch ended."""

from __future__ import annotations

import json
import os
import stat
import threading
import time

import pytest

from reelbatch.jobs.settings import Settings
from reelbatch.jobs.store import Store
from reelbatch.worker.engine import sweeper
from reelbatch.worker.providers import REGISTRY
from reelbatch.worker.runtime import Runtime
from tests.integration.helpers import cli_env, reelbatch, results, spawn, wait_for, write_manifest

pytestmark = pytest.mark.integration
FAST = dict(time_scale=1 / 600, queue_delay=0.0, seed=13)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_videos_are_shared_with_the_umask_and_state_is_private(tmp_path, sim_factory):
    sim = sim_factory(**FAST)
    manifest = write_manifest(tmp_path, "modes", 2)
    data = tmp_path / "data"
    old = os.umask(0o022)
    try:
        assert reelbatch("run", str(manifest), env=cli_env(data, sim)).returncode == 0
    finally:
        os.umask(old)
    out = tmp_path / "out"
    for row in results(out):
        assert mode(out / row["file"]) == 0o644
        assert mode((out / row["file"]).with_suffix(".json")) == 0o644
    assert mode(out / "results.jsonl") == 0o644
    assert mode(data / "appendonly.aof") & 0o077 == 0 or all(
        mode(p) & 0o077 == 0 for p in (data / "appendonlydir").iterdir())
    assert mode(data / "logs" / "worker.log") == 0o600
    assert mode(data / "logs" / "redis.log") & 0o077 == 0
    assert mode(data / "redis.password") == 0o600
    log = (data / "logs" / "worker.log").read_text()
    assert "/media/" not in log and "sig=" not in log      # no presigned result URL at INFO


def test_state_follows_the_user_not_the_working_folder(tmp_path, sim_factory):
    """No REELBATCH_DATA_DIR: the user's data folder (platformdirs), so `status` from another
    folder sees the batch and its manifest; a .env in the working folder is read."""
    sim = sim_factory(**FAST)
    home = tmp_path / "home"
    env = cli_env(tmp_path / "unused", sim, HOME=str(home), XDG_DATA_HOME=str(home / "share"))
    env.pop("REELBATCH_DATA_DIR")
    manifest = write_manifest(tmp_path, "follows", 2)
    assert reelbatch("run", str(manifest), env=env).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listed = reelbatch("status", env=env, cwd=elsewhere)
    assert "follows" in listed.stdout and str(manifest) in listed.stdout, listed.stdout + listed.stderr
    assert (home / "share" / "reelbatch" / "redis.password").exists()
    (elsewhere / ".env").write_text("REELBATCH_WORKER_CONCURRENCY=many\n")
    bad = reelbatch("status", env=env, cwd=elsewhere)
    assert bad.returncode == 2 and "REELBATCH_WORKER_CONCURRENCY" in bad.stderr   # the .env was read


def test_aiml_api_key_is_accepted_as_an_alias(monkeypatch):
    monkeypatch.delenv("AIMLAPI_KEY", raising=False)
    monkeypatch.setenv("AIML_API_KEY", "k-alias")
    assert REGISTRY["aimlapi"].key(Settings()) == "k-alias"


def test_results_have_one_line_per_item_in_a_fleet_after_a_retry(tmp_path, sim_factory, redis_url, workers):
    sim = sim_factory(fail_rate=1.0, **FAST)
    workers(sim, concurrency=4)
    env = cli_env(tmp_path / "data", sim, REELBATCH_BROKER_URL=redis_url)
    manifest = write_manifest(tmp_path, "fleetidx", 6, retry={"max_attempts": 1})
    assert reelbatch("submit", str(manifest), env=env).returncode == 0
    store = Store.from_url(redis_url)
    wait_for(lambda: store.open_items("fleetidx") == 0, 60, "every item terminal")
    sim.set_knobs(fail_rate=0.0)
    assert reelbatch("retry", "fleetidx", "--include-permanent", env=env).returncode == 0
    wait_for(lambda: store.open_items("fleetidx") == 0 and len(results(tmp_path / "out")) == 6
             and {r["status"] for r in results(tmp_path / "out")} == {"succeeded"}, 60,
             "the index rewritten by the workers")
    rows = results(tmp_path / "out")
    assert sorted(r["item_id"] for r in rows) == [f"clip{i:03d}" for i in range(6)]


def test_two_sweepers_never_hold_the_lock_at_once(redis_url):
    """A sweep that outlives its lock must not delete the next sweeper's lock (redis-py Lock)."""
    settings = Settings(broker_url=redis_url)
    first, second, third = (Runtime(settings) for _ in range(3))
    store = Store.from_url(redis_url)
    store.r.sadd("rb:batches", "b")
    store.r.hset("rb:{b}:meta", mapping={"name": "b", "provider": "simulator", "model": "m", "output": "/x"})
    store.r.hset("rb:{b}:i:x", mapping={"spec": "{}", "state": "pending"})
    store.r.sadd("rb:{b}:s:pending", "x")
    inside = {name: threading.Event() for name in "ab"}
    go_on = {name: threading.Event() for name in "ab"}

    def slow_send(name):
        def send(nexts) -> int:
            inside[name].set()
            go_on[name].wait(10)
            return 0
        return send

    swept_by_third: list[bool] = []
    original = sweeper.LOCK_S
    sweeper.LOCK_S = 0.5
    try:
        a = threading.Thread(target=sweeper.sweep_open_batches, args=(first, slow_send("a")))
        a.start()
        assert inside["a"].wait(10)
        time.sleep(1.0)                     # A's lock expired; A still sweeps
        sweeper.LOCK_S = 30
        b = threading.Thread(target=sweeper.sweep_open_batches, args=(second, slow_send("b")))
        b.start()
        assert inside["b"].wait(10)         # B took the free lock and sweeps
        go_on["a"].set()
        a.join(10)                          # A ends: its release must not free B's lock...
        sweeper.sweep_open_batches(third, lambda nexts: swept_by_third.append(True) or 0)
        assert swept_by_third == [] and store.r.exists("rb:sweep:lock")   # ...so C did not sweep
        go_on["b"].set()
        b.join(10)
        assert not store.r.exists("rb:sweep:lock")     # B released its own lock
    finally:
        sweeper.LOCK_S = original
        for event in go_on.values():
            event.set()


def test_a_run_with_a_broker_and_no_worker_says_so(tmp_path, sim_factory, redis_url):
    sim = sim_factory(**FAST)
    env = cli_env(tmp_path / "data", sim, REELBATCH_BROKER_URL=redis_url, REELBATCH_NO_WORKER_GRACE_S="2",
                  REELBATCH_PROGRESS_EVERY_S="1")
    run = spawn("run", str(write_manifest(tmp_path, "alone", 2)), env=env)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(run.stdout.readline, "")), daemon=True)
        reader.start()
        wait_for(lambda: any("no worker is consuming the queue" in line for line in lines), 60,
                 "the no-worker message")
        assert any("reelbatch worker" in line for line in lines)
        status = reelbatch("status", "alone", env=env)
        said = " ".join(status.stdout.split())
        assert "2 items wait: run `reelbatch run" in said and "reelbatch worker" in said, status.stdout
    finally:
        run.kill()
        run.wait()


def test_status_pace_uses_the_batch_s_active_time(tmp_path, sim_factory):
    sim = sim_factory(**FAST)
    env = cli_env(tmp_path / "data", sim)
    assert reelbatch("run", str(write_manifest(tmp_path, "pace", 6)), env=env).returncode == 0
    first = json.loads(reelbatch("status", "pace", "--json", env=env).stdout)["items_per_hour"]
    time.sleep(3)
    later = json.loads(reelbatch("status", "pace", "--json", env=env).stdout)["items_per_hour"]
    assert first == later and first > 6 * 3600 / 60        # six items well within a minute


def test_no_error_lines_for_harmless_races(tmp_path, sim_factory, redis_url, workers):
    """Issue 17.6: duplicate tasks finding their item moved on log at DEBUG, not ERROR."""
    from reelbatch.jobs.state import Step
    from reelbatch.worker.app import use_broker
    from reelbatch.worker.tasks import TASKS

    sim = sim_factory(**FAST)
    worker = workers(sim, concurrency=8)
    env = cli_env(tmp_path / "data", sim, REELBATCH_BROKER_URL=redis_url)
    assert reelbatch("submit", str(write_manifest(tmp_path, "races", 10)), env=env).returncode == 0
    store = Store.from_url(redis_url)
    wait_for(lambda: store.open_items("races") == 0, 60, "every item terminal")
    use_broker(redis_url)
    for item_id in store.item_ids("races"):     # every step of every finished item, once more
        for step in Step:
            TASKS[step].apply_async(args=["races", item_id])
    wait_for(lambda: store.r.llen("reelbatch") == 0, 60, "the duplicates consumed")
    time.sleep(2)
    log = worker.logfile.read_text()
    assert " ERROR" not in log and "Traceback" not in log, log[-3000:]
    assert {r["status"] for r in results(tmp_path / "out")} == {"succeeded"}

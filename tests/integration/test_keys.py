"""Issue 23.1, no key: `run` without the provider's key is exit 2 naming the variable (and a
variable that looks meant for it) before anything is made; a key in the working folder's .env
reaches the worker `run` starts (it runs from another folder and reads no .env of the user's); a
fleet worker takes only the items of the providers it has a key for, says so when it starts, and
refuses to start when asked for a provider it has no key for."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from prometheus_client import generate_latest

from reelbatch.jobs.store import Store
from reelbatch.scheduler.stack.embedded import WorkerProcess
from reelbatch.scheduler.views.metrics import registry_for
from tests.conftest import REPO, SIM_KEY
from tests.integration.helpers import cli_env, reelbatch, results, wait_for, write_manifest

pytestmark = pytest.mark.integration
FAST = dict(time_scale=1 / 600, queue_delay=0.0, seed=13)


def test_a_key_in_the_working_folders_env_reaches_the_worker(tmp_path, sim_factory):
    sim = sim_factory(**FAST)                       # refuses requests without SIM_KEY
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text(f"REELBATCH_SIMULATOR_KEY={SIM_KEY}\n")
    manifest = write_manifest(project, "dotenv", 3)
    env = cli_env(tmp_path / "data", REELBATCH_SIMULATOR_URL=sim.base_url)   # no key in the env
    done = reelbatch("run", str(manifest), env=env, cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {row["status"] for row in results(project / "out")} == {"succeeded"}
    assert SIM_KEY not in (tmp_path / "data" / "logs" / "worker.log").read_text()


def oxen_manifest(folder):
    return write_manifest(folder, "nokey", 2, provider="oxen")


def test_no_key_is_exit_2_naming_the_variable_before_anything_is_made(tmp_path):
    done = reelbatch("run", str(oxen_manifest(tmp_path)), env=cli_env(tmp_path / "data"), cwd=tmp_path)
    assert done.returncode == 2 and "OXEN_API_KEY: is not set" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists() and not (tmp_path / "out").exists()


def test_a_near_miss_variable_is_named(tmp_path):
    env = cli_env(tmp_path / "data", OXEN_KEY="ok-123")
    done = reelbatch("run", str(oxen_manifest(tmp_path)), env=env, cwd=tmp_path)
    assert done.returncode == 2 and "OXEN_KEY is set, but reelbatch reads OXEN_API_KEY" in done.stderr
    (tmp_path / ".env").write_text("oxen_token=ok-123\n")
    done = reelbatch("run", str(oxen_manifest(tmp_path)), env=cli_env(tmp_path / "data"), cwd=tmp_path)
    assert done.returncode == 2 and "oxen_token is set" in done.stderr, done.stderr
    assert "ok-123" not in done.stderr


def test_a_fleet_worker_without_a_key_says_what_it_serves_at_start(tmp_path, redis_url):
    env = cli_env(tmp_path / "data", REELBATCH_BROKER_URL=redis_url, AIMLAPI_KEY="k-aiml")
    env.pop("FAL_KEY", None)
    worker = subprocess.Popen([sys.executable, "-m", "reelbatch", "worker"], env=env, cwd=REPO,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        while not lines or " ready." not in lines[-1]:
            lines.append(worker.stderr.readline())
            assert lines[-1], "".join(lines)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.communicate(timeout=60)
    first = lines[0]
    assert first.startswith("this worker serves aimlapi, simulator, simulator_aimlapi, simulator_fal; "
                            "it has no key for oxen, fal "
                            "(OXEN_API_KEY, FAL_KEY)"), first


def test_a_worker_asked_to_serve_a_provider_without_its_key_refuses_with_one_line(tmp_path, redis_url):
    """Issue 23.1: it does not start rather than take (and fail) that provider's items."""
    env = cli_env(tmp_path / "data", REELBATCH_BROKER_URL=redis_url)
    done = reelbatch("worker", "--providers", "oxen", env=env, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "reelbatch worker: no key for oxen: set OXEN_API_KEY or leave it out of --providers"]


def test_items_no_worker_has_a_key_for_wait_untouched_until_a_keyed_worker_joins(tmp_path, sim_factory,
                                                                                  redis_url, workers,
                                                                                  worker_env):
    """Issue 23.1: a batch on oxen (the simulator behind OXEN_BASE_URL) while the fleet's only
    worker has no Oxen key: its items stay pending, untouched, and `status` says why; a worker
    with the key joins and they run."""
    sim = sim_factory(**FAST)
    workers(sim)                                    # the simulator's key only
    oxen = dict(OXEN_BASE_URL=sim.base_url, OXEN_API_KEY=SIM_KEY)
    env = cli_env(tmp_path / "data", REELBATCH_BROKER_URL=redis_url, **oxen)
    manifest = write_manifest(tmp_path, "ox", 3, provider="oxen")
    assert reelbatch("submit", str(manifest), env=env).returncode == 0
    store = Store.from_url(redis_url)
    wait_for(lambda: store.serving("simulator"), 60, "the keyless worker's heartbeat")
    time.sleep(3)                                   # time enough for a worker to take them
    shown = json.loads(reelbatch("status", "ox", "--json", env=env).stdout)
    assert shown["unserved"] == ["oxen"] and shown["counts"]["pending"] == 3, shown
    assert "no worker has a key for oxen: 3 items wait untouched" in reelbatch("status", "ox", env=env).stdout
    assert sum(sim.stats()["enqueues"].values()) == 0
    metrics = generate_latest(registry_for(store)).decode()
    assert 'reelbatch_provider_workers{provider="oxen"} 0.0' in metrics
    assert 'reelbatch_provider_workers{provider="simulator"} 1.0' in metrics
    keyed = WorkerProcess({**worker_env, **oxen}, tmp_path / "logs" / "keyed.log", 4)
    keyed.start()
    try:
        wait_for(lambda: store.open_items("ox") == 0, 120, "the batch to finish")
    finally:
        keyed.kill()
    ended = {rec.item_id: (rec.state.value, rec.error) for rec in store.items("ox")}
    assert {state for state, _ in ended.values()} == {"succeeded"}, ended
    assert sum(sim.stats()["enqueues"].values()) == 3

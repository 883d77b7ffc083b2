"""Issue 23.1, no key: `run` without the provider's key is exit 2 naming the variable (and a
variable that looks meant for it) before anything is made; a key in the working folder's .env
reaches the worker `run` starts (it runs from another folder and reads no .env of the user's); a
fleet worker without a provider's key says so when it starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO, SIM_KEY
from tests.integration.helpers import cli_env, reelbatch, results, write_manifest

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


def test_a_fleet_worker_without_a_key_says_so_at_start(tmp_path, redis_url):
    env = cli_env(tmp_path / "data", REELBATCH_BROKER_URL=redis_url, AIMLAPI_KEY="k-aiml")
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
    assert first.startswith("warning: this worker has no key for oxen (OXEN_API_KEY)"), first
    assert "aimlapi" not in first

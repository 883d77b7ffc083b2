"""Shared fixtures: a real redis-server (the embedded binary), flushed around each test; the
simulator over real HTTP; real Celery worker processes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import redis

from reelbatch.scheduler.stack.embedded import EmbeddedRedis, WorkerProcess

REPO = Path(__file__).resolve().parent.parent
SIM_KEY = "sim-test-key"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """A `cli` test (the command line as a subprocess: exit codes, one-line errors) is an integration
    test wherever it lives: the fast tier (`-m "not integration and not compose"`) leaves it out, the
    full run keeps it."""
    for item in items:
        if item.get_closest_marker("cli") and not item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield redis_server.url
    client.flushall()


@pytest.fixture
def redis_client(redis_url):
    return redis.Redis.from_url(redis_url, decode_responses=True)


@pytest.fixture
def sim_factory():
    """Start simulators with the given knobs; all are stopped after the test."""
    from reelbatch.simulator.server import Knobs, Simulator

    started = []

    def start(**knobs):
        sim = Simulator(knobs=Knobs(**knobs), api_key=SIM_KEY, host="127.0.0.1", port=0)
        sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def worker_env(redis_url, tmp_path) -> dict[str, str]:
    """The environment a worker or `reelbatch run` needs to use the test Redis."""
    return {"REELBATCH_BROKER_URL": redis_url, "REELBATCH_DATA_DIR": str(tmp_path / "data")}


@pytest.fixture
def workers(worker_env, tmp_path):
    """Start real Celery worker processes; every one is stopped after the test."""
    started: list[WorkerProcess] = []

    def start(sim=None, concurrency: int = 8, name: str | None = None) -> WorkerProcess:
        env = dict(worker_env)
        if sim is not None:
            env.update(REELBATCH_SIMULATOR_URL=sim.base_url, REELBATCH_SIMULATOR_KEY=SIM_KEY)
        proc = WorkerProcess(env, tmp_path / "logs" / f"worker-{len(started)}.log", concurrency, name)
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture
def full_disk(tmp_path):
    """A real full disk: a 256 KiB tmpfs (mounting needs root, as in CI's container) filled to the
    last block, so writes fail with ENOSPC. ``free()`` deletes the filler."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    filler = disk / "filler"

    class FullDisk:
        path = disk

        @staticmethod
        def fill() -> None:
            try:
                with open(filler, "ab") as fh:
                    fh.write(b"x" * (1 << 20))
            except OSError:
                pass

        @staticmethod
        def free() -> None:
            filler.unlink(missing_ok=True)

    FullDisk.fill()
    yield FullDisk
    subprocess.run(["umount", "-l", str(disk)], check=False)

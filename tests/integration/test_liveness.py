"""Issue 12 end to end: an unattended run always ends and says why, and no process outlives the
command that started it. The real CLI as a subprocess (signals, exit codes, leftover processes by
pid), bounded in time."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis

from reelbatch.jobs.store import Store
from reelbatch.scheduler.stack.embedded import EmbeddedRedis, free_port
from reelbatch.simulator.server import Knobs, Simulator
from tests.conftest import SIM_KEY
from tests.integration.helpers import (
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
FAST = dict(time_scale=1 / 600, queue_delay=0.0, seed=9)
SLOW = dict(time_scale=1 / 20, queue_delay=0.0, seed=9, gen_time_min=300, gen_time_max=300)  # 15 s


@pytest.fixture
def data_dir(tmp_path):
    yield tmp_path / "data"
    reap(tmp_path / "data")


def leftovers(data_dir: Path) -> list[str]:
    """Command lines of processes started for ``data_dir`` (they carry it in their environment)."""
    marker = f"REELBATCH_DATA_DIR={data_dir}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


def no_leftovers(data_dir: Path, timeout: float = 40) -> None:
    wait_for(lambda: not leftovers(data_dir), timeout, f"no process left: {leftovers(data_dir)}", every=0.5)


def exit_code(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the command did not end in time") from None


# --- every item ends, whatever a step raises -------------------------------------------------

def test_lost_submits_that_cannot_be_reconciled_end_as_submit_unknown(tmp_path, sim_factory, data_dir):
    """Oxen's history answering 404 made every reconcile raise and the run wait forever."""
    sim = sim_factory(drop_after_submit_rate=1.0, history_404=True, **FAST)
    manifest = write_manifest(tmp_path, "lost", 4)
    done = reelbatch("run", str(manifest), env=cli_env(data_dir, sim), timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    rows = results(tmp_path / "out")
    assert {r["error_kind"] for r in rows} == {"submit_unknown"} and len(rows) == 4
    assert sum(sim.stats()["enqueues"].values()) == 4          # never resubmitted blindly


# An item whose step keeps raising fails as internal after its budget of unexpected errors: the rule
# is a row of the engine tier (tests/engine/test_boundary_rules.py), which runs its five backoffs
# (62-124 s here with real workers) on a virtual clock.


# --- a provider that cannot be reached, a refused key, a full disk ----------------------------

def test_an_unreachable_provider_pauses_the_batch_and_the_same_command_resumes(tmp_path, data_dir):
    port = free_port()
    manifest = write_manifest(tmp_path, "away", 4)
    env = cli_env(data_dir, REELBATCH_SIMULATOR_URL=f"http://127.0.0.1:{port}",
                  REELBATCH_SIMULATOR_KEY=SIM_KEY, REELBATCH_PROVIDER_UNREACHABLE_S="3")
    started = time.monotonic()
    done = reelbatch("run", str(manifest), env=env, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    assert time.monotonic() - started < 60
    line = done.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert f"simulator at http://127.0.0.1:{port} cannot be reached since" in line, line
    status = reelbatch("status", "away", env=env)
    assert "paused" in status.stdout and "cannot be reached" in status.stdout, status.stdout
    with Simulator(knobs=Knobs(**FAST), api_key=SIM_KEY, port=port) as sim:
        again = reelbatch("run", str(manifest), env=env, timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
        assert sum(sim.stats()["enqueues"].values()) == 4
    assert status_counts(results(tmp_path / "out")) == {"succeeded": 4}


def test_an_output_folder_that_cannot_be_used_is_refused_before_anything(tmp_path, sim_factory, data_dir):
    sim = sim_factory(**FAST)
    (tmp_path / "a-file").write_text("x")
    manifest = write_manifest(tmp_path, "nowhere", 2, output="a-file/out")
    done = reelbatch("run", str(manifest), env=cli_env(data_dir, sim))
    assert done.returncode == 2 and "output" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and f"{manifest}:" in done.stderr
    assert sum(sim.stats()["enqueues"].values()) == 0      # nothing submitted


def test_a_full_disk_pauses_the_batch_and_room_lets_it_go_on(tmp_path, sim_factory, data_dir):
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(out)], check=True)
    try:
        sim = sim_factory(media_pad_bytes=200_000, **FAST)       # ~230 KB a video: two fit
        manifest = write_manifest(tmp_path, "full", 6)
        env = cli_env(data_dir, sim, REELBATCH_MAX_COUNTDOWN_S="1")
        done = reelbatch("run", str(manifest), env=env, timeout=180)
        assert done.returncode == 3, done.stdout + done.stderr
        assert "cannot write to" in done.stderr and "No space left" in done.stderr, done.stderr
        subprocess.run(["mount", "-o", "remount,size=20m", str(out)], check=True)
        again = reelbatch("run", str(manifest), env=env, timeout=180)
        assert again.returncode == 0, again.stdout + again.stderr
        assert status_counts(results(out)) == {"succeeded": 6}
        assert sum(sim.stats()["enqueues"].values()) == 6        # the generation ids were kept
    finally:
        subprocess.run(["umount", "-l", str(out)], check=False)


# --- no process outlives the command that started it -------------------------------------------

@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                          (signal.SIGINT, 130)])
def test_a_signal_stops_run_and_everything_it_started(tmp_path, sim_factory, data_dir, signum, code):
    sim = sim_factory(**SLOW)
    manifest = write_manifest(tmp_path, "sig", 6)
    run = spawn("run", str(manifest), env=cli_env(data_dir, sim))
    wait_for(lambda: sum(sim.stats()["enqueues"].values()) >= 3, 60, "generations submitted")
    run.send_signal(signum)
    assert exit_code(run, 60) == code
    no_leftovers(data_dir)


def test_a_second_ctrl_c_stops_at_once(tmp_path, sim_factory, data_dir):
    sim = sim_factory(**SLOW)
    manifest = write_manifest(tmp_path, "twice", 4)
    run = spawn("run", str(manifest), env=cli_env(data_dir, sim))
    wait_for(lambda: sum(sim.stats()["enqueues"].values()) >= 2, 60, "generations submitted")
    run.send_signal(signal.SIGINT)
    time.sleep(0.3)
    run.send_signal(signal.SIGINT)
    assert exit_code(run, 20) == 130
    no_leftovers(data_dir, 20)


def test_a_killed_run_leaves_no_worker_and_the_next_run_reuses_what_is_left(tmp_path, sim_factory, data_dir):
    sim = sim_factory(**SLOW)
    manifest = write_manifest(tmp_path, "killed", 4)
    env = cli_env(data_dir, sim)
    run = spawn("run", str(manifest), env=env)
    wait_for(lambda: sum(sim.stats()["enqueues"].values()) >= 4, 60, "generations submitted")
    run.send_signal(signal.SIGKILL)
    run.wait()
    wait_for(lambda: not [c for c in leftovers(data_dir) if "celery" in c], 40, "the worker gone")
    again = reelbatch("run", str(manifest), env=env, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sum(sim.stats()["enqueues"].values()) == 4
    no_leftovers(data_dir)


def test_worker_without_a_broker_leaves_no_redis_behind(tmp_path, data_dir):
    worker = spawn("worker", env=cli_env(data_dir))
    wait_for(lambda: (data_dir / "redis.port").exists(), 30, "the embedded redis")
    server = EmbeddedRedis(data_dir, port=int((data_dir / "redis.port").read_text()))
    store = Store.from_url(server.url)

    def heartbeat() -> list[str]:   # the port file is written a moment before Redis answers
        try:
            return store.workers()
        except redis.ConnectionError:
            return []

    wait_for(heartbeat, 60, "the worker's heartbeat")
    worker.send_signal(signal.SIGTERM)
    assert exit_code(worker, 60) == 143
    no_leftovers(data_dir)


def test_two_runs_share_one_data_dir(tmp_path, sim_factory, data_dir):
    """The second attaches to the first's Redis and simulator; the first to finish stops nothing
    the other still uses."""
    long_dir, short_dir = tmp_path / "long", tmp_path / "short"
    long_dir.mkdir(), short_dir.mkdir()
    env = cli_env(data_dir, REELBATCH_SIMULATOR_TIME_SCALE=str(1 / 100))
    long_run = spawn("run", str(write_manifest(long_dir, "long", 8, limits={"max_concurrency": 2})),
                     env=env)
    wait_for(lambda: (data_dir / "simulator.json").exists(), 60, "the first run's simulator")
    short = reelbatch("run", str(write_manifest(short_dir, "short", 3)), env=env, timeout=180)
    assert short.returncode == 0, short.stdout + short.stderr
    assert exit_code(long_run, 240) == 0, long_run.stderr.read()
    assert status_counts(results(long_dir / "out")) == {"succeeded": 8}
    assert status_counts(results(short_dir / "out")) == {"succeeded": 3}
    no_leftovers(data_dir)


def test_status_watch_ends_on_sigterm_without_leftovers(tmp_path, sim_factory, data_dir):
    sim = sim_factory(**FAST)
    manifest = write_manifest(tmp_path, "watched", 1)
    env = cli_env(data_dir, sim)
    assert reelbatch("submit", str(manifest), env=env).returncode == 0   # nobody runs it
    watch = spawn("status", "watched", "--watch", env=env)
    time.sleep(3)
    watch.send_signal(signal.SIGTERM)
    assert exit_code(watch, 30) == 143
    no_leftovers(data_dir)


# --- bad environment, one line each -------------------------------------------------------------

@pytest.mark.parametrize("variable, value, code, says", [
    ("REELBATCH_BROKER_URL", "notaurl", 2, "expected a Redis URL"),
    ("REELBATCH_BROKER_URL", "http://127.0.0.1:1/0", 2, "expected a Redis URL"),
    ("REELBATCH_DATA_DIR", "", 2, "is empty"),
    ("REELBATCH_WORKER_CONCURRENCY", "many", 2, "valid integer"),
])
def test_a_bad_setting_is_one_line(tmp_path, variable, value, code, says):
    env = cli_env(tmp_path / "data", **{variable: value})
    done = reelbatch("status", env=env, timeout=60)
    assert done.returncode == code and says in done.stderr and variable in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_a_broker_that_is_not_redis_or_out_of_range_is_one_line(tmp_path, redis_url, sim_factory):
    sim = sim_factory(**FAST)     # an HTTP server: it answers, but not as Redis
    port = sim.base_url.rsplit(":", 1)[1]
    for url, code in ((f"redis://127.0.0.1:{port}/0", 3), (redis_url.rsplit("/", 1)[0] + "/99999", 2)):
        done = reelbatch("status", env=cli_env(tmp_path / "data", REELBATCH_BROKER_URL=url), timeout=60)
        assert done.returncode == code, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    done = reelbatch("status", env=cli_env(tmp_path / "file"), timeout=60)
    assert done.returncode == 2 and "REELBATCH_DATA_DIR" in done.stderr and "Traceback" not in done.stderr


def test_run_starts_its_worker_processes_and_stops_them_all(tmp_path, sim_factory, data_dir):
    """A threads-pool worker runs Python on one core at a time, so `run` starts
    REELBATCH_WORKER_PROCESSES of them (default: one per usable core): each takes tasks, each logs
    to its own file, and none outlives the run."""
    sim = sim_factory(**FAST)
    manifest = write_manifest(tmp_path, "cores", 16)
    run = spawn("run", str(manifest), env=cli_env(data_dir, sim, REELBATCH_WORKER_PROCESSES="2"))
    wait_for(lambda: len([c for c in leftovers(data_dir) if "celery" in c]) == 2, 60, "two workers")
    assert exit_code(run, 120) == 0
    logs = data_dir / "logs"
    for log in ("worker.log", "worker-2.log"):
        assert "succeeded in" in (logs / log).read_text(), log   # both took tasks
    no_leftovers(data_dir)

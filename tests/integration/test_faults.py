"""The fault suite: batches of 200 items on the simulator while things break, each ending with the
same checks (helpers.assert_batch_whole): every item terminal with exactly one results line, every
succeeded file is what the simulator served, no working generation was submitted twice, no
concurrency slot left held. Each scenario prints one `FAULTS |` summary line (pytest -s shows it).

Bounded in time: each scenario takes well under three minutes on two busy cores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from reelbatch.jobs.state import TERMINAL, ItemState as S
from reelbatch.jobs.store import Store
from reelbatch.scheduler.embedded import EmbeddedRedis, WorkerProcess, free_port
from tests.conftest import REPO
from tests.integration.helpers import (
    IMAGE,
    as_from_a_terminal,
    assert_batch_whole,
    batch_figures,
    cli_env,
    reap,
    reelbatch,
    summary_line,
    wait_for,
    write_manifest,
)

pytestmark = pytest.mark.integration
N = 200
# a generation takes 1 to 3 s: long enough for faults to land in the middle of the batch
TIMING = dict(time_scale=1 / 300, queue_delay=0.0, concurrency=40)
SCENARIO_TIMEOUT_S = 170


def start_logged(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A `reelbatch` command in its own process group, its output in a file (never a full pipe)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "reelbatch", *args], env=env, cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=as_from_a_terminal)


def end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture
def data_dir(tmp_path):
    """REELBATCH_DATA_DIR for a `reelbatch run` with the embedded stack; whatever that run started
    is stopped afterwards, even when the run was killed or timed out."""
    yield tmp_path / "data"
    reap(tmp_path / "data")


@contextmanager
def embedded_client(data_dir: Path):
    """The embedded Redis `reelbatch run` left behind in ``data_dir``, started again from its
    append-only file for the closing checks, and stopped after."""
    server = EmbeddedRedis(data_dir)
    server.start()
    try:
        yield redis.Redis.from_url(server.url, decode_responses=True)
    finally:
        server.stop()


def open_items(store: Store, batch: str) -> int:
    return sum(n for state, n in store.counts(batch).items() if state not in TERMINAL)


def finish(scenario: str, tmp_path: Path, stats: dict, client, faults: dict, started: float) -> None:
    out = tmp_path / "out"
    figures = batch_figures(out, N, stats, client)
    print("\n" + summary_line(scenario, faults, figures, time.monotonic() - started))
    for row in figures["rows"]:
        if row["status"] == "failed":
            print(f"  failed {row['item_id']}: [{row['error_kind']}] {row['error']}")
    assert_batch_whole(figures, out, stats)


def sim_faults(stats: dict) -> dict:
    """The simulator's fault counters, plus the generations it failed on purpose."""
    return {**stats["faults"], "remote_failed": stats["by_status"].get("failed", 0)}


# --- 1. workers SIGKILLed every few seconds (the fleet path: submit, scheduler, workers) -------

KILL_EVERY_S = 4.0
KILL_FOR_S = 40.0


def test_workers_sigkilled_every_few_seconds(tmp_path, sim_factory, redis_url, workers):
    sim = sim_factory(seed=21, **TIMING)
    manifest = write_manifest(tmp_path, "killed-workers", N)
    env = cli_env(tmp_path / "data", sim, REELBATCH_BROKER_URL=redis_url, REELBATCH_SWEEP_EVERY_S="2")
    started = time.monotonic()
    fleet = [workers(sim, concurrency=4, name=f"w{n}") for n in range(2)]
    scheduler = start_logged(["scheduler"], env, tmp_path / "logs" / "scheduler.log")
    try:
        sent = reelbatch("submit", str(manifest), env=env)
        assert sent.returncode == 0, sent.stderr
        store, kills = Store.from_url(redis_url), 0
        while open_items(store, "killed-workers") and time.monotonic() - started < KILL_FOR_S:
            time.sleep(KILL_EVERY_S)
            victim = fleet[kills % len(fleet)]
            victim.kill()
            victim.start()
            kills += 1
        wait_for(lambda: open_items(store, "killed-workers") == 0, SCENARIO_TIMEOUT_S - KILL_FOR_S,
                 "every item terminal after the kills", every=1)
    finally:
        end(scheduler)
    exported = reelbatch("export", "killed-workers", env=env)
    assert exported.returncode == 0, exported.stderr
    finish("worker SIGKILL", tmp_path, sim.stats(), store.r, {"worker SIGKILLs": kills}, started)


# --- 2. Redis killed halfway, started again from its append-only file ------------------------
# A killed redis-server loses nothing it acknowledged: it writes the AOF before it answers, and the
# OS keeps what was written. appendfsync everysec loses up to a second only when the host goes
# down; 2b simulates that by cutting the AOF back to its size one second before the kill.

class AofSizes:
    """Samples the append-only file's size, to cut it back as a host crash would."""

    def __init__(self, aof: Path):
        self.aof, self.sizes, self._stop = aof, [], threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            if self.aof.exists():
                self.sizes.append((time.monotonic(), self.aof.stat().st_size))

    def lose_last(self, seconds: float) -> int:
        """Stop sampling and cut the file to its size ``seconds`` ago; returns the bytes lost."""
        self._stop.set()
        self._thread.join()
        cut = max((size for at, size in self.sizes if at <= time.monotonic() - seconds), default=0)
        lost = self.aof.stat().st_size - cut
        with open(self.aof, "r+b") as fh:
            fh.truncate(cut)
        return lost


def redis_restart(tmp_path: Path, sim, batch: str, lose_last_s: float = 0.0) -> tuple[dict, Store, dict]:
    """Run a batch on a Redis that is SIGKILLed when half the items succeeded and started again
    from its append-only file (less its last ``lose_last_s`` seconds)."""
    manifest = write_manifest(tmp_path, batch, N)
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    server.start()
    aof = AofSizes(tmp_path / "redis" / "appendonly.aof")
    env = cli_env(tmp_path / "data", sim, REELBATCH_BROKER_URL=server.url)
    worker = WorkerProcess(env, tmp_path / "logs" / "worker.log", 8)
    started, run = time.monotonic(), None
    try:
        worker.start()
        run = start_logged(["run", str(manifest)], env, tmp_path / "logs" / "run.log")
        store = Store.from_url(server.url)
        wait_for(lambda: store.counts(batch)[S.SUCCEEDED] >= N // 2, 120,
                 "half the items succeeded", every=0.5)
        server.kill()
        faults = {"Redis SIGKILLs": 1}
        if lose_last_s:
            faults["AOF bytes cut"] = aof.lose_last(lose_last_s)
        time.sleep(3)
        server.start()
        faults["worker restarts"] = supervise(worker, run, started + SCENARIO_TIMEOUT_S)
        assert run.returncode in (0, 1), (tmp_path / "logs" / "run.log").read_text()[-3000:]
        stats = sim.stats()
        figures = batch_figures(tmp_path / "out", N, stats, store.r)
        scenario = f"host crash: AOF less its last {lose_last_s:g} s" if lose_last_s else "Redis SIGKILL"
        print("\n" + summary_line(scenario, faults, figures, time.monotonic() - started))
        return figures, store, stats
    finally:
        worker.kill()
        if run is not None:
            end(run)
        server.stop()


def test_redis_killed_halfway_and_restarted_from_its_aof(tmp_path, sim_factory):
    sim = sim_factory(seed=22, **TIMING)
    figures, _, stats = redis_restart(tmp_path, sim, "redis-restart")
    assert_batch_whole(figures, tmp_path / "out", stats)


def test_host_crash_loses_the_last_second_of_the_aof(tmp_path, sim_factory):
    """The everysec window, measured: every item still ends (the sweeper resends what the lost
    second held, a rolled-back submit is made again), but an item submitted in that second is
    submitted twice: the record of it is gone. Bounded by a second of submits."""
    sim = sim_factory(seed=27, **TIMING)
    figures, _, stats = redis_restart(tmp_path, sim, "host-crash", lose_last_s=1.0)
    assert figures["duplicates"] <= 2 * 20, figures["duplicates"]      # max_concurrency 20
    assert_batch_whole({**figures, "duplicates": 0}, tmp_path / "out", stats)


def supervise(worker: WorkerProcess, run: subprocess.Popen, deadline: float) -> int:
    """Restart the worker whenever it exits, as the fleet's `restart: unless-stopped` does, until
    the run ends; returns how many restarts it took. (Celery 5.7's consumer can die of an
    AttributeError while closing a connection the broker dropped, instead of reconnecting.)"""
    revived = 0
    while run.poll() is None:
        assert time.monotonic() < deadline, "the run did not finish in time"
        if not worker.alive():
            worker.start()
            revived += 1
        time.sleep(1)
    return revived


# --- 3. a provider storm -------------------------------------------------------------------

STORM = dict(server_error_rate=0.20, rate_limit_rate=0.05, rate_limit_bare_rate=0.05, fail_rate=0.05,
             truncate_rate=0.03, expire_rate=0.02, drop_before_rate=0.03, drop_after_rate=0.05)


STORM_FOR_S = 45.0


def test_provider_storm(tmp_path, sim_factory, data_dir):
    """The storm blows until 90% of the items are done (or STORM_FOR_S), then passes: a straggler's
    backoff after a long streak of refusals (capped at 120 s) would otherwise set the wall time."""
    sim = sim_factory(seed=23, retry_after=1, **STORM, **TIMING)
    manifest = write_manifest(tmp_path, "storm", N)
    data = data_dir
    started = time.monotonic()
    # a submit that created nothing is resubmitted after the reconcile's look-again window (the read
    # timeout plus a margin, 75 s by default): 15 s here, so the storm stays within its bound
    env = cli_env(data, sim, REELBATCH_HTTP_READ_TIMEOUT_S="10", REELBATCH_RECONCILE_MARGIN_S="5")
    run = start_logged(["run", str(manifest)], env, tmp_path / "logs" / "run.log")
    try:
        wait_for(lambda: run.poll() is not None or time.monotonic() - started > STORM_FOR_S
                 or sim.stats()["by_status"].get("succeeded", 0) >= 0.9 * N, STORM_FOR_S + 10,
                 "the storm to pass", every=1)
        sim.set_knobs(**{knob: 0.0 for knob in STORM})
        code = run.wait(timeout=SCENARIO_TIMEOUT_S - (time.monotonic() - started))
        assert code in (0, 1), (tmp_path / "logs" / "run.log").read_text()[-3000:]
    finally:
        end(run)
    stats = sim.stats()
    with embedded_client(data) as client:
        unknown = submits_unknown(Store(client), "storm")
        finish("provider storm", tmp_path, stats, client,
               {**sim_faults(stats), "submits answered by nothing": unknown}, started)
    assert stats["faults"].get("drop_after", 0) > 0 and unknown > 0
    assert orphans(stats, tmp_path / "out") == []


DOWNLOAD_FAULTS = dict(media_404_rate=0.15, media_html_rate=0.1, media_empty_rate=0.1, truncate_rate=0.05,
                       expire_rate=0.05, media_stall_rate=0.03, stall_s=4, poll_401_rate=0.02,
                       fail_rate=0.03)


def test_download_faults(tmp_path, sim_factory, data_dir):
    """Issue 11: downloads that go wrong (a 404 from a CDN that has not caught up, an HTML page or an
    empty body sent as video/mp4, a cut-off or stalled transfer, an expired URL, a 401 on a poll)
    never cost a new generation: enqueues are the items plus the remote failures, every file is
    what was served, no duplicate. A 401 on a poll fails its item with the generation kept; one
    `retry` (which polls it again, free) and a rerun bring every one home."""
    sim = sim_factory(seed=29, **DOWNLOAD_FAULTS, **TIMING)
    manifest = write_manifest(tmp_path, "cdn", N)
    env = cli_env(data_dir, sim, REELBATCH_HTTP_READ_TIMEOUT_S="2", REELBATCH_EVENT_LISTENER="false",
                  REELBATCH_MAX_COUNTDOWN_S="5")
    started = time.monotonic()
    first = reelbatch("run", str(manifest), env=env, timeout=SCENARIO_TIMEOUT_S)
    assert first.returncode in (0, 1), first.stdout[-3000:] + first.stderr
    sim.set_knobs(**{knob: 0.0 for knob in DOWNLOAD_FAULTS if knob.endswith("_rate")})
    if first.returncode == 1:
        assert reelbatch("retry", "cdn", env=env).returncode == 0
        again = reelbatch("run", str(manifest), env=env, timeout=SCENARIO_TIMEOUT_S)
        assert again.returncode in (0, 1), again.stdout[-3000:] + again.stderr
    stats = sim.stats()
    extra = sum(stats["enqueues"].values()) - N
    assert 0 <= extra <= stats["by_status"].get("failed", 0)
    by_request: dict[str, list[str]] = {}
    for g in stats["generations"].values():
        by_request.setdefault(g["request_key"], []).append(g["status"])
    for statuses in by_request.values():    # a new generation only ever follows a failed one
        assert len(statuses) - 1 <= statuses.count("failed"), statuses
    assert sum(stats["faults"].get(f, 0) for f in ("media_404", "media_html", "media_empty",
                                                   "media_stall", "truncate")) >= 20
    with embedded_client(data_dir) as client:
        finish("download faults", tmp_path, stats, client, sim_faults(stats), started)
    assert orphans(stats, tmp_path / "out") == []


def submits_unknown(store: Store, batch: str) -> int:
    """Items whose submit went out and got no answer (dropped after sending, 500/502/504)."""
    return sum(any(a["kind"] == "submit_unknown" for a in store.attempts(batch, item_id))
               for item_id in store.item_ids(batch))


def orphans(stats: dict, out: Path) -> list[str]:
    """Generations the simulator finished that no item adopted: paid for, never brought home.
    A submit whose answer was dropped must be reconciled onto its item, not abandoned."""
    from tests.integration.helpers import results

    adopted = {row["generation_id"] for row in results(out)}
    return [g["public_id"] for g in stats["generations"].values()
            if g["status"] == "succeeded" and g["public_id"] not in adopted]


# --- 4. Ctrl-C on `reelbatch run` halfway, then the same command again ---------------------------

def test_ctrl_c_halfway_then_the_same_command_again(tmp_path, sim_factory, data_dir):
    sim = sim_factory(seed=24, **TIMING)
    manifest = write_manifest(tmp_path, "ctrl-c", N)
    env = cli_env(tmp_path / "data", sim)
    started = time.monotonic()
    first = start_logged(["run", str(manifest)], env, tmp_path / "logs" / "first.log")
    try:
        wait_for(lambda: sim.stats()["by_status"].get("succeeded", 0) >= N // 2, 120,
                 "half the items generated", every=0.5)
        os.killpg(first.pid, signal.SIGINT)     # what a terminal's Ctrl-C does to the run
        assert first.wait(timeout=60) == 130, (tmp_path / "logs" / "first.log").read_text()[-3000:]
    finally:
        end(first)
    second = reelbatch("run", str(manifest), env=env, timeout=SCENARIO_TIMEOUT_S)
    assert second.returncode in (0, 1), second.stdout[-3000:] + second.stderr
    stats = sim.stats()
    with embedded_client(tmp_path / "data") as client:
        finish("Ctrl-C halfway + rerun", tmp_path, stats, client, {"SIGINT": 1}, started)
    assert sum(stats["enqueues"].values()) == N     # nothing submitted twice across the two runs


# --- 5. the event stream disconnecting over and over -----------------------------------------

def test_event_stream_disconnects_repeatedly(tmp_path, sim_factory, data_dir):
    sim = sim_factory(seed=25, sse_disconnect_every=1.5, **TIMING)
    manifest = write_manifest(tmp_path, "sse-drops", N)
    env = cli_env(tmp_path / "data", sim)
    started = time.monotonic()
    done = reelbatch("run", str(manifest), env=env, timeout=SCENARIO_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    stats = sim.stats()
    streams = stats["requests"].get("GET /api/events", 0)
    with embedded_client(tmp_path / "data") as client:
        finish("event stream drops", tmp_path, stats, client,
               {"SSE disconnects": max(0, streams - 1)}, started)
    assert streams >= 3


# --- reconcile on a busy account (why the storm once submitted an item twice) ------------------

def test_reconcile_finds_a_lost_submit_deep_in_history(sim_factory):
    """A submit whose answer was lost is reconciled seconds later; on a busy account more than a
    page of newer generations may have finished by then. The lost one must still be found."""
    from reelbatch.jobs.item import ProviderRequest
    from reelbatch.jobs.settings import Settings
    from reelbatch.worker.providers import build_provider
    from reelbatch.worker.providers.oxen import HISTORY_PAGE_SIZE
    from tests.conftest import SIM_KEY

    sim = sim_factory(time_scale=1 / 6000, queue_delay=0.0, concurrency=500, seed=26)
    client = build_provider("simulator", Settings(simulator_url=sim.base_url, simulator_key=SIM_KEY))
    model = "kling-video-o1-image-to-video"

    def request(prompt: str) -> ProviderRequest:
        return ProviderRequest(model=model, body={"prompt": prompt, "input_image": IMAGE,
                                                  "duration": 5, "aspect_ratio": "16:9"})
    since = time.time() - 5
    lost = client.submit(request("the lost one"))          # as if its answer had been dropped
    for n in range(int(1.5 * HISTORY_PAGE_SIZE)):
        client.submit(request(f"a busy account, take {n}"))
    wait_for(lambda: sim.stats()["in_flight"]["active"] == 0, 60, "all finished")
    assert [g.generation_id for g in client.find(request("the lost one"), since=since)] == [lost]
    client.close()



def test_claiming_ones_own_generation_again_is_allowed(redis_client):
    """A reconcile that claimed a generation and died before recording it adopts it next time."""
    store = Store(redis_client)
    assert store.claim_generation("simulator", "g1", "b\x1fclip001")
    assert store.claim_generation("simulator", "g1", "b\x1fclip001")
    assert not store.claim_generation("simulator", "g1", "b\x1fclip002")

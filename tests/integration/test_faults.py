"""The fault suite: batches of 200 items on the simulator while things break, each ending with the
same checks (helpers.assert_batch_whole): every item terminal with exactly one results line, every
succeeded file is what the simulator served, no working generation was submitted twice, no
concurrency slot left held. Account faults first pause the batch (`assert_paused`: exit 3 with the
reason, no item failed for it, one results line each), then the same command finishes it. Each
scenario prints one `FAULTS |` summary line (pytest -s shows it).

Bounded in time: each scenario takes well under three minutes on two busy cores."""

from __future__ import annotations

import json
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
from reelbatch.scheduler.stack.embedded import EmbeddedRedis, WorkerProcess, free_port
from tests.conftest import REPO
from tests.integration.helpers import (
    IMAGE,
    as_from_a_terminal,
    assert_batch_whole,
    batch_figures,
    cli_env,
    reap,
    reelbatch,
    results,
    status_counts,
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
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    finish("worker SIGKILL", tmp_path, sim.stats(), client, {"worker SIGKILLs": kills}, started)


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
    # the steps the kill lost (queued, or unacked in the dead worker) are sent again by the sweeper
    # sweep_grace_s after they were due: 15 s here instead of 60, so the wait stands for the
    # default's without setting the scenario's wall time on a slow machine
    env = cli_env(tmp_path / "data", sim, REELBATCH_BROKER_URL=server.url, REELBATCH_SWEEP_GRACE_S="15")
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
        figures = batch_figures(tmp_path / "out", N, stats, redis.Redis.from_url(server.url, decode_responses=True))
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


# --- the providers as their docs describe them (issue 23) ---------------------------------------

def test_aimlapi_lost_submits_are_found_in_the_request_log(tmp_path, sim_factory, data_dir):
    """23.8: on the AI/ML API 10 % of submit answers are lost after the generation was made; each is
    found again in GET /v2/logs by its X-Client-Request-Id, so none ends `submit_unknown` and none is
    made twice."""
    from tests.conftest import SIM_KEY

    sim = sim_factory(seed=27, drop_after_submit_rate=0.1, **TIMING)
    manifest = write_manifest(tmp_path, "traced", N, provider="aimlapi")
    env = cli_env(data_dir, AIMLAPI_BASE_URL=sim.base_url, AIMLAPI_KEY=SIM_KEY)
    started = time.monotonic()
    done = reelbatch("run", str(manifest), env=env, timeout=SCENARIO_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    stats = sim.stats()
    lost, lookups = stats["faults"].get("drop_after", 0), stats["requests"].get("GET /v2/logs", 0)
    with embedded_client(data_dir) as client:
        out = tmp_path / "out"
        figures = batch_figures(out, N, stats, client, provider="aimlapi")
        print("\n" + summary_line("AI/ML lost submits", {"answers lost": lost, "log lookups": lookups},
                                  figures, time.monotonic() - started))
        assert_batch_whole(figures, out, stats)
    assert lost > 0 and lookups >= lost and sum(stats["enqueues"].values()) == N


def test_oxen_failures_with_empty_messages_without_the_event_stream(tmp_path, sim_factory, data_dir):
    """23.6: history rows carry no status, and 10 % of generations fail with an empty message. The
    lister sees rows that ended with neither result_url nor error_message and confirms each by its
    queue row: they are failures (resubmitted), never cancellations."""
    sim = sim_factory(seed=28, fail_rate=0.1, empty_failure_messages=True, **TIMING)
    manifest = write_manifest(tmp_path, "silent", N)
    env = cli_env(data_dir, sim, REELBATCH_EVENT_LISTENER="false")
    started = time.monotonic()
    done = reelbatch("run", str(manifest), env=env, timeout=SCENARIO_TIMEOUT_S)
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr
    stats = sim.stats()
    failed = stats["by_status"].get("failed", 0)
    with embedded_client(data_dir) as client:
        finish("Oxen empty failure messages, no event stream", tmp_path, stats, client,
               {"failed without a message": failed,
                "queue rows asked": stats["requests"].get("GET /api/ai/queue/{id}", 0)}, started)
    statuses = [row["status"] for row in results(tmp_path / "out")]
    ended_failed = statuses.count("failed")
    assert failed > 0 and "cancelled" not in statuses
    assert sum(stats["enqueues"].values()) == N + failed - ended_failed   # only failures sent again


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


# --- 6. account faults: the batch pauses for the provider, the same command resumes (issue 23) ---
# A key refused, no credits left, a model gone are the batch's, not the items': `run` exits 3 with
# the reason on one line, no item fails for it, and the same command (a new key, a top-up, the
# model back) finishes the batch without paying twice.

OXEN_MODEL_ID = "kling-video-o1-image-to-video"
NOT_FAILED = {"succeeded", "pending", "submitting", "queued", "running", "downloading"}


def assert_paused(done: subprocess.CompletedProcess, batch: str, n: int, env: dict[str, str],
                  says: str, out: Path) -> list[dict]:
    """`run` paused (exit 3, one line naming the reason), `status` says paused since when and why,
    every item has its one results line and none failed for the account's sake."""
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "paused" in lines[0] and says in lines[0], done.stderr
    status = json.loads(reelbatch("status", batch, "--json", env=env).stdout)
    assert says in status["paused"] and "since" in status["paused"], status["paused"]
    rows = results(out)
    assert len(rows) == n and len({r["item_id"] for r in rows}) == n
    assert {r["status"] for r in rows} <= NOT_FAILED, status_counts(rows)
    return rows


def test_a_key_revoked_mid_batch_pauses_and_a_new_key_resumes(tmp_path, sim_factory, data_dir):
    """Issue 23.2: the key is refused (401) after 120 requests. The batch pauses for the provider
    instead of failing every remaining item; a submit refused by 401 goes back to pending; the
    same command with the new key finishes it, every item submitted once."""
    sim = sim_factory(seed=31, revoke_key_after=120, **TIMING)
    manifest = write_manifest(tmp_path, "revoked", N)
    env = cli_env(data_dir, sim)
    started = time.monotonic()
    first = reelbatch("run", str(manifest), env=env, timeout=SCENARIO_TIMEOUT_S)
    rows = assert_paused(first, "revoked", N, env, "refuses the key", tmp_path / "out")
    refused = sim.stats()["requests"]
    sim.rotate_key("sim-key-rotated")
    env["REELBATCH_SIMULATOR_KEY"] = "sim-key-rotated"
    again = reelbatch("run", str(manifest), env=env, timeout=SCENARIO_TIMEOUT_S)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    stats = sim.stats()
    with embedded_client(data_dir) as client:
        finish("key revoked mid-batch", tmp_path, stats, client,
               {"requests before the pause": sum(refused.values()),
                "left when paused": N - status_counts(rows)["succeeded"]}, started)
    assert sum(stats["enqueues"].values()) == N


def test_out_of_credits_pauses_once_and_a_top_up_resumes(tmp_path, sim_factory, data_dir):
    """Issue 23.3 (Oxen): credit for 60 videos. Oxen takes the next submits and fails each
    "Insufficient credits" 3 s after start. The first one pauses the batch: nothing more is
    submitted, the items that failed for it go back to pending (not billed), `run` exits 3, the
    notifier says so once; after a top-up the same command finishes the batch."""
    from tests.integration.test_notify import Receiver

    receiver = Receiver()
    sim = sim_factory(seed=32, credits_usd=60 * 5 * 0.112, **TIMING)
    manifest = write_manifest(tmp_path, "credits", N, notify=[receiver.url("/hook")])
    env = cli_env(data_dir, sim)
    started = time.monotonic()
    try:
        first = reelbatch("run", str(manifest), env=env, timeout=SCENARIO_TIMEOUT_S)
        assert_paused(first, "credits", N, env, "no credits left", tmp_path / "out")
        unbilled = sim.stats()["by_status"].get("failed", 0)
        assert 1 <= unbilled <= 2 * 20, unbilled          # at most what was in flight, not the rest
        assert sum(sim.stats()["enqueues"].values()) == 60 + unbilled
        sim.top_up(200.0)
        again = reelbatch("run", str(manifest), env=env, timeout=SCENARIO_TIMEOUT_S)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr
        paused = [m for m in receiver.at("/hook") if "paused" in m["title"]]
        assert len(paused) == 1 and "no credits left" in paused[0]["message"], receiver.received
    finally:
        receiver.stop()
    stats = sim.stats()
    with embedded_client(data_dir) as client:
        finish("out of credits (Oxen)", tmp_path, stats, client,
               {"generations failed for credit": unbilled}, started)
    assert sum(stats["enqueues"].values()) == N + unbilled
    assert all(r["cost_usd"] for r in results(tmp_path / "out"))


def test_aimlapi_out_of_credits_403_pauses_and_a_top_up_resumes(tmp_path, sim_factory, data_dir):
    """Issue 23.3 (AI/ML API): 403 "You've run out of credits" on submit creates nothing; the
    first one pauses the batch and the refused item goes back to pending."""
    n = 24
    sim = sim_factory(seed=33, credits_usd=8 * 5 * 0.112, **TIMING)
    manifest = write_manifest(tmp_path, "aiml-credits", n, provider="aimlapi")
    env = cli_env(data_dir, AIMLAPI_BASE_URL=sim.base_url, AIMLAPI_KEY="sim-test-key")
    first = reelbatch("run", str(manifest), env=env, timeout=SCENARIO_TIMEOUT_S)
    assert_paused(first, "aiml-credits", n, env, "no credits left", tmp_path / "out")
    assert sum(sim.stats()["enqueues"].values()) == 8
    sim.top_up(100.0)
    again = reelbatch("run", str(manifest), env=env, timeout=SCENARIO_TIMEOUT_S)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    stats = sim.stats()
    with embedded_client(data_dir) as client:
        assert_batch_whole(batch_figures(tmp_path / "out", n, stats, client, "aimlapi"),
                           tmp_path / "out", stats)
    assert sum(stats["enqueues"].values()) == n


def test_a_model_gone_mid_batch_pauses_and_resumes_when_it_is_back(tmp_path, sim_factory, data_dir):
    """Issue 23.4: the model answers 404 "Model not found" on submit halfway: pause with the reason,
    no item failed; the same command goes on once the model is back."""
    sim = sim_factory(seed=34, **TIMING)
    manifest = write_manifest(tmp_path, "gone", N)
    env = cli_env(data_dir, sim)
    started = time.monotonic()
    first = start_logged(["run", str(manifest)], env, tmp_path / "logs" / "first.log")
    try:
        wait_for(lambda: sim.stats()["by_status"].get("succeeded", 0) >= N // 3, 120,
                 "a third of the items generated", every=0.5)
        sim.set_knobs(vanished_models=OXEN_MODEL_ID)
        assert first.wait(timeout=SCENARIO_TIMEOUT_S) == 3, (tmp_path / "logs" / "first.log").read_text()[-3000:]
    finally:
        end(first)
    log = (tmp_path / "logs" / "first.log").read_text()
    assert "no longer has the model" in log, log[-3000:]
    assert {r["status"] for r in results(tmp_path / "out")} <= NOT_FAILED
    sim.set_knobs(vanished_models="")
    again = reelbatch("run", str(manifest), env=env, timeout=SCENARIO_TIMEOUT_S)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    stats = sim.stats()
    with embedded_client(data_dir) as client:
        finish("model gone mid-batch", tmp_path, stats, client,
               {"submits refused 404": stats["requests"].get("POST /api/ai/queue", 0) - N}, started)
    assert sum(stats["enqueues"].values()) == N


# --- 7. stuck generations end in bounded time (issue 23.5) -------------------------------------

def test_stuck_generations_fail_stuck_and_retry_polls_them_again(tmp_path, sim_factory, data_dir):
    """5 % of the generations never finish. Past polling.give_up_after_s each fails `stuck` with its
    generation kept and its slot released, so `run` ends; `retry --kind stuck` polls them again,
    never a new generation."""
    sim = sim_factory(seed=35, stuck_rate=0.05, **TIMING)
    manifest = write_manifest(tmp_path, "stuck", N, polling={"first_after_s": 0.5, "min_interval_s": 0.2,
                                                             "max_interval_s": 1, "give_up_after_s": 8})
    env = cli_env(data_dir, sim)
    started = time.monotonic()
    first = reelbatch("run", str(manifest), env=env, timeout=SCENARIO_TIMEOUT_S)
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr
    stuck_gens = {g["public_id"] for g in sim.stats()["generations"].values() if g["status"] == "processing"}
    failed = [r for r in results(tmp_path / "out") if r["status"] == "failed"]
    assert stuck_gens and {r["error_kind"] for r in failed} == {"stuck"}, failed[:3]
    assert {r["generation_id"] for r in failed} == stuck_gens
    retried = reelbatch("retry", "stuck", "--kind", "stuck", env=env)
    assert retried.returncode == 0 and f"{len(failed)} to poll their generation" in retried.stdout, retried
    again = reelbatch("run", str(manifest), env=env, timeout=SCENARIO_TIMEOUT_S)
    assert again.returncode == 1, again.stdout[-3000:] + again.stderr
    stats = sim.stats()
    with embedded_client(data_dir) as client:
        finish("stuck generations", tmp_path, stats, client, {"stuck": len(stuck_gens)}, started)
    assert sum(stats["enqueues"].values()) == N      # polled again, never generated again
    assert status_counts(results(tmp_path / "out")) == {"succeeded": N - len(stuck_gens),
                                                        "failed": len(stuck_gens)}

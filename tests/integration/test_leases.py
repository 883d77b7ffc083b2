"""Issue 22.1-2 and 23.7: a task that is still running is never taken for a lost one. A slow submit
POST, a generation the provider creates late, a slow download, a second command on a batch in
flight, a jump of the processes' wall clock: each ends with exactly one generation per item.

The real CLI, real workers and Redis, the simulator over HTTP with its slow-submit, late-row and
slow-download knobs. Times are scaled down: the sweeper takes a step for lost 1 s after it was due
(REELBATCH_SWEEP_GRACE_S), so a 6-second POST stands for one of minutes."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from reelbatch.scheduler.stack.embedded import WorkerProcess
from tests.conftest import SIM_KEY
from tests.integration.helpers import (
    assert_files_match_simulator,
    cli_env,
    reelbatch,
    results,
    spawn,
    status_counts,
    wait_for,
    write_manifest,
)

pytestmark = pytest.mark.integration
FAST = dict(time_scale=1 / 600, queue_delay=0.0, seed=7)
# every backoff clipped to a second; a sent step not started 1 s after it was due counts as lost;
# a task's lease lasts 2 s, so a slow step lives on renewals
EAGER = dict(REELBATCH_MAX_COUNTDOWN_S="1", REELBATCH_SWEEP_GRACE_S="1", REELBATCH_SWEEP_EVERY_S="1",
             REELBATCH_TASK_LEASE_S="2")
FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def generations_per_item(sim) -> Counter:
    """Generations the simulator created, per request body (one body per item)."""
    return Counter(g["request_key"] for g in sim.stats()["generations"].values())


def assert_one_generation_each(sim, n: int) -> None:
    made = generations_per_item(sim)
    print(f"\nLEASES | {sum(made.values())} generations for {n} items")
    assert sum(made.values()) == n and len(made) == n, \
        f"{sum(made.values())} generations for {n} items: {sorted(made.values())}"


def posts(sim) -> int:
    return sim.stats(detail=False)["requests"].get("POST /api/ai/queue", 0)


def counts(env: dict[str, str]) -> dict[str, int]:
    return json.loads(reelbatch("status", "retried", "--json", env=env).stdout)["counts"]


def no_partial_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".part") or ".part-" in p.name)


def test_a_second_run_while_slow_submits_are_in_flight_pays_once(tmp_path, sim_factory):
    """Issue 22.1 (12 generations for 8 items): `run` again while each POST takes seconds and the
    generation appears only when it ends."""
    sim = sim_factory(submit_delay_s=6, submit_create_late=True, **FAST)
    manifest = write_manifest(tmp_path, "twice", 4)
    env = cli_env(tmp_path / "data", sim, **EAGER)
    first = spawn("run", str(manifest), env=env)
    try:
        wait_for(lambda: posts(sim) >= 4, 60, "the first run's submits")
        second = reelbatch("run", str(manifest), env=env, timeout=120)
        assert second.returncode == 0, second.stdout + second.stderr
        assert first.wait(60) == 0
    finally:
        if first.poll() is None:
            first.kill()
    assert status_counts(results(tmp_path / "out")) == {"succeeded": 4}
    assert_one_generation_each(sim, 4)


def test_one_slow_post_with_no_second_command_pays_once(tmp_path, sim_factory):
    """Issue 22.1 (4 generations for 1 item): a POST that takes longer than the sweeper's grace
    (a 5.9 MB image over a slow uplink) is a task still running, not a lost one."""
    sim = sim_factory(submit_delay_s=8, submit_create_late=True, **FAST)
    manifest = write_manifest(tmp_path, "uplink", 1)
    done = reelbatch("run", str(manifest), env=cli_env(tmp_path / "data", sim, **EAGER), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_one_generation_each(sim, 1)


def test_a_slow_post_on_the_aiml_api_is_not_ended_as_submit_unknown(tmp_path, sim_factory):
    """Issue 22.1 on the AI/ML API, which cannot be asked about a lost submit: the sweeper's resend
    of a running submit ended a good submit `submit_unknown` (and `retry` then paid again)."""
    sim = sim_factory(submit_delay_s=6, **FAST)
    manifest = write_manifest(tmp_path, "aiml-slow", 1, provider="aimlapi")
    env = cli_env(tmp_path / "data", AIMLAPI_BASE_URL=sim.base_url, AIMLAPI_KEY="sim-test-key",
                  REELBATCH_EVENT_LISTENER="false", **EAGER)
    done = reelbatch("run", str(manifest), env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert status_counts(results(tmp_path / "out")) == {"succeeded": 1}
    assert_one_generation_each(sim, 1)


def test_a_generation_created_late_after_a_gateway_timeout_is_adopted(tmp_path, sim_factory):
    """Issue 23.7 (2 generations for 1): the POST ends in a 504 and the row shows 66 s later (here
    5 s, with a read timeout of 3 s): the reconcile looks again over the read timeout plus a margin
    before it decides nothing was made."""
    sim = sim_factory(create_late_s=5, **FAST)
    manifest = write_manifest(tmp_path, "late", 1)
    env = cli_env(tmp_path / "data", sim, REELBATCH_HTTP_READ_TIMEOUT_S="3",
                  REELBATCH_RECONCILE_MARGIN_S="3", **EAGER)
    done = reelbatch("run", str(manifest), env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    time.sleep(5.5)     # a second submit, had there been one, has made its generation by now
    assert_one_generation_each(sim, 1)


def test_a_slow_download_is_fetched_once_and_leaves_no_partial_file(tmp_path, sim_factory):
    """Issue 22.2 (a 187-second download fetched three times, two .part files left)."""
    sim = sim_factory(download_trickle_s=6, **FAST)
    manifest = write_manifest(tmp_path, "trickle", 2)
    done = reelbatch("run", str(manifest), env=cli_env(tmp_path / "data", sim, **EAGER), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    stats = sim.stats()
    downloads = sorted(g["downloads"] for g in stats["generations"].values())
    print(f"\nLEASES | downloads per generation {downloads}; .part files {no_partial_files(tmp_path / 'out')}")
    assert downloads == [1, 1], f"downloads per generation: {downloads}"
    assert no_partial_files(tmp_path / "out") == []
    assert_files_match_simulator(results(tmp_path / "out"), tmp_path / "out", stats)
    assert_one_generation_each(sim, 2)


def test_retry_while_slow_submits_are_in_flight_pays_once(tmp_path, sim_factory, redis_url, workers):
    """Issue 22.1 (17 generations for 12): `retry` of some failed items while others' submits are
    still in flight. Every generation fails at first (a seeded mix of retryable and permanent
    reasons); then the retryable ones go back with slow submits, and the permanent ones are sent
    back while those submits run."""
    sim = sim_factory(fail_rate=1.0, **FAST)
    manifest = write_manifest(tmp_path, "retried", 8, retry={"max_attempts": 1})
    env = cli_env(tmp_path / "data", sim, REELBATCH_BROKER_URL=redis_url, **EAGER)
    workers(sim, concurrency=8)
    assert reelbatch("submit", str(manifest), env=env).returncode == 0
    wait_for(lambda: counts(env).get("failed") == 8, 60, "every item failed")
    first = sum(generations_per_item(sim).values())
    sim.set_knobs(fail_rate=0.0, submit_delay_s=6, submit_create_late=True)
    soft = reelbatch("retry", "retried", env=env)
    assert soft.returncode == 0 and "sent back" in soft.stdout, soft.stdout + soft.stderr
    wait_for(lambda: posts(sim) >= first + 1, 30, "the retried submits")
    hard = reelbatch("retry", "retried", "--include-permanent", env=env)
    assert hard.returncode == 0 and "sent back" in hard.stdout, hard.stdout + hard.stderr
    try:
        wait_for(lambda: counts(env).get("succeeded") == 8, 90, "every item succeeded", every=1)
    finally:
        made = sum(generations_per_item(sim).values()) - first
        print(f"\nLEASES | {made} generations for the 8 retried items")
    assert made == 8, f"{made} generations for the 8 retried items"


@pytest.mark.skipif(not FAKETIME.exists(), reason="libfaketime is not installed (apt-get install faketime)")
def test_a_wall_clock_jump_does_not_free_every_slot(tmp_path, sim_factory, redis_url):
    """Issue 22.1 (8 generations at once with max_concurrency 4): the clock of the workers and of
    `run` jumps two hours forward in the middle of a batch (libfaketime, read from a file)."""
    sim = sim_factory(time_scale=1 / 150, queue_delay=0.0, seed=3)   # 2 to 6 s per generation
    manifest = write_manifest(tmp_path, "jump", 10, limits={"max_concurrency": 4, "queue_depth": 0,
                                                           "requests_per_minute": 6000})
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    faked = dict(LD_PRELOAD=str(FAKETIME), FAKETIME_TIMESTAMP_FILE=str(offset),
                 FAKETIME_CACHE_DURATION="1")
    env = cli_env(tmp_path / "data", sim, REELBATCH_BROKER_URL=redis_url, **faked)
    worker = WorkerProcess({**env, "REELBATCH_SIMULATOR_KEY": SIM_KEY}, tmp_path / "logs" / "w.log", 8)
    worker.start()
    try:
        run = spawn("run", str(manifest), env=env)
        wait_for(lambda: sim.stats(detail=False)["in_flight"]["active"] >= 4, 60, "4 in flight")
        offset.write_text("+2h\n")
        out, err = run.communicate(timeout=150)
        assert run.returncode == 0, out + err
    finally:
        worker.kill()
    stats = sim.stats()
    print(f"\nLEASES | {stats['peak_active']} generations at once with max_concurrency 4")
    assert stats["peak_active"] <= 4, f"{stats['peak_active']} generations at once with max_concurrency 4"
    assert_one_generation_each(sim, 10)


# --- the rules, on a real Redis: no workers needed ---------------------------------------------

def registered(tmp_path: Path, redis_url: str, sim, n: int):
    """A Runtime on the test Redis and a registered batch of ``n`` items."""
    from reelbatch.jobs.settings import Settings
    from reelbatch.scheduler.plan import plan_batch
    from reelbatch.worker.engine.batch import register
    from reelbatch.worker.runtime import Runtime

    settings = Settings(broker_url=redis_url, simulator_url=sim.base_url, simulator_key=SIM_KEY,
                        data_dir=tmp_path / "data")
    ctx = Runtime(settings)
    register(ctx.store, plan_batch(write_manifest(tmp_path, "rules", n), settings))
    return ctx


def test_an_item_held_by_a_running_task_is_not_resumed(tmp_path, redis_url, sim_factory):
    """`enqueue` (run, submit, retry) and the sweeper leave an item alone while its task's lease is
    live, and resume it once the lease is gone."""
    from reelbatch.jobs.state import ItemState as S
    from reelbatch.worker.engine.batch import enqueue
    from reelbatch.worker.engine.sweeper import sweep

    ctx = registered(tmp_path, redis_url, sim_factory(**FAST), 1)
    ctx.store.transition("rules", "clip000", S.SUBMITTING, [S.PENDING])
    ctx.store.set_due("rules", "clip000", time.time() - 100)
    token = ctx.leases.take("rules", "clip000")
    assert token and ctx.leases.take("rules", "clip000") is None
    assert [n for n in enqueue(ctx, "rules") if n.item_id == "clip000"] == []
    assert [n for n in sweep(ctx, "rules") if n.item_id == "clip000"] == []
    ctx.leases.release("rules", "clip000", token)
    assert [n.step.value for n in enqueue(ctx, "rules") if n.item_id == "clip000"] == ["reconcile"]


def test_an_answer_for_an_item_that_moved_on_is_adopted_or_kept_as_an_orphan(tmp_path, redis_url,
                                                                              sim_factory):
    """A submit's answer that comes after its item moved on: an item back in pending adopts the
    generation (no second one paid); a cancelled one's is an orphan, counted and listed."""
    from reelbatch.jobs.state import ItemState as S
    from reelbatch.scheduler.views.status import summary
    from reelbatch.worker.engine.orphans import late_answer

    ctx = registered(tmp_path, redis_url, sim_factory(**FAST), 2)
    meta = ctx.store.batch("rules")
    back, gone = ctx.store.item("rules", "clip000"), ctx.store.item("rules", "clip001")
    ctx.store.transition("rules", "clip001", S.CANCELLED, [S.PENDING])
    assert [n.step.value for n in late_answer(ctx, meta, back, "gen-a")] == ["poll"]
    adopted = ctx.store.item("rules", "clip000")
    assert adopted.state is S.QUEUED and adopted.generation_id == "gen-a"
    assert late_answer(ctx, meta, gone, "gen-b") == []
    info = summary(ctx.store, "rules")
    assert [o["generation_id"] for o in info["orphans"]] == ["gen-b"]
    assert info["estimated_usd"] == pytest.approx(gone.item.estimated_cost_usd)

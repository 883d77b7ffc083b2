"""Orchestration overhead: a zero-latency simulator (time_scale 0, queue_delay 0), 2,000 items,
2 worker processes (threads pool, 8 each): items per second through submit, poll, download and
record, against a bare Celery chain of three empty tasks per item on the same Redis, run by two
workers started the same way. Not a test: run it directly,

    python tests/benchmarks/bench_overhead.py [--items 2000] [--rounds 1]

Timing starts when the first task is sent (the batch is planned and registered before) and stops
when the last item is recorded (reelbatch: every item `succeeded`, its file and results.jsonl line
written; bare: the third task of every chain has run). reelbatch polls with first_after_s 0 and
min_interval_s 0.001, so each item is one submit, one poll and one download task.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import redis
from celery import Celery, chain

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks._common import (  # noqa: E402
    UNLIMITED_RPM,
    Sampler,
    SimProcess,
    pythonpath_env,
    role_of,
    sim_env,
    table,
    write_manifest,
)

WORKERS, THREADS = 2, 8

# --- the bare chain: three empty tasks, the last one counts ------------------------------------

bare = Celery("bare")
bare.conf.update(broker_url=os.environ.get("BENCH_BROKER_URL"), task_default_queue="bare",
                 task_serializer="json", accept_content=["json"], task_ignore_result=True,
                 task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
                 task_send_sent_event=True, worker_send_task_events=True,
                 worker_hijack_root_logger=False, broker_pool_limit=THREADS + 4)
_counter: redis.Redis | None = None


@bare.task(name="bare.one")
def one(i: int) -> None:
    pass


@bare.task(name="bare.two")
def two(i: int) -> None:
    pass


@bare.task(name="bare.three")
def three(i: int) -> None:
    global _counter
    _counter = _counter or redis.Redis.from_url(os.environ["BENCH_BROKER_URL"])
    _counter.incr("bench:bare:done")


def bare_worker_cmd(name: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "tests.benchmarks.bench_overhead:bare", "worker",
            "--pool", "threads", "--concurrency", str(THREADS), "-Q", "bare", "-n", f"{name}@%h", "-E",
            "--without-mingle", "--without-gossip", "--loglevel", "WARNING"]


# --- running either kind --------------------------------------------------------------------------

def start_workers(cmds: list[list[str]], env: dict[str, str], logdir: Path, app: Celery) -> list:
    import subprocess

    procs = []
    for n, cmd in enumerate(cmds):
        log = open(logdir / f"worker-{time.monotonic_ns()}-{n}.log", "wb")
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
    deadline = time.monotonic() + 60
    try:
        while len(app.control.ping(timeout=0.5)) < len(cmds):
            if time.monotonic() > deadline:
                raise SystemExit("the workers did not answer a ping within 60 s")
    except BaseException:
        stop_workers(procs)   # leave nothing running
        raise
    return procs


def stop_workers(procs) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(30)


def wait_done(check, total: int, timeout: float = 1200) -> None:
    deadline = time.monotonic() + timeout
    while check() < total:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {check()} of {total} done after {timeout:.0f} s")
        time.sleep(0.05)


def run_reelbatch(workdir: Path, redis_url: str, sim: SimProcess, n: int, round_no: int,
                  others: list[int]) -> dict:
    from reelbatch.jobs.settings import Settings
    from reelbatch.jobs.state import ItemState as S
    from reelbatch.scheduler.embedded import WorkerProcess
    from reelbatch.scheduler.plan import plan_batch
    from reelbatch.worker.app import app, use_broker
    from reelbatch.worker.control import register_batch as register, start_batch
    from reelbatch.worker.runtime import Runtime

    env = sim_env(sim, workdir / "data", REELBATCH_BROKER_URL=redis_url)
    name = f"overhead{round_no}"
    manifest = write_manifest(workdir, name, n, limits={"max_concurrency": n, "requests_per_minute": UNLIMITED_RPM},
                              polling={"first_after_s": 0, "min_interval_s": 0.001, "max_interval_s": 0.01})
    settings = Settings(broker_url=redis_url, simulator_url=sim.url)
    use_broker(redis_url)
    ctx = Runtime(settings)
    register(ctx.store, plan_batch(manifest, settings))
    cmds = [WorkerProcess(env, workdir / "w.log", THREADS, f"rb{round_no}-{k}").command()
            for k in range(WORKERS)]
    procs = start_workers(cmds, env, workdir, app)
    sampler = Sampler([p.pid for p in procs] + others, role_of).start()
    started = time.monotonic()
    start_batch(ctx, name)
    wait_done(lambda: ctx.store.counts(name)[S.SUCCEEDED] + ctx.store.counts(name)[S.FAILED], n)
    elapsed = time.monotonic() - started
    fig = sampler.stop()
    failed = ctx.store.counts(name)[S.FAILED]
    stop_workers(procs)
    return {"elapsed": elapsed, "cpu": fig.cpu.get("worker", 0.0), "failed": failed,
            "sim": fig.cpu.get("simulator", 0.0), "redis": fig.cpu.get("redis", 0.0)}


def run_bare(workdir: Path, redis_url: str, n: int, round_no: int, others: list[int]) -> dict:
    client = redis.Redis.from_url(redis_url)
    client.delete("bench:bare:done")
    env = pythonpath_env(BENCH_BROKER_URL=redis_url)
    bare.conf.broker_url = redis_url
    procs = start_workers([bare_worker_cmd(f"bare{round_no}-{k}") for k in range(WORKERS)], env,
                          workdir, bare)
    sampler = Sampler([p.pid for p in procs] + others, role_of).start()
    started = time.monotonic()
    for i in range(n):
        chain(one.si(i), two.si(i), three.si(i)).apply_async()
    wait_done(lambda: int(client.get("bench:bare:done") or 0), n)
    elapsed = time.monotonic() - started
    fig = sampler.stop()
    stop_workers(procs)
    return {"elapsed": elapsed, "cpu": fig.cpu.get("worker", 0.0), "failed": 0,
            "sim": fig.cpu.get("simulator", 0.0), "redis": fig.cpu.get("redis", 0.0)}


def main() -> None:
    from reelbatch.scheduler.embedded import EmbeddedRedis

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    n, rows = args.items, []
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        workdir = Path(tmp)
        with EmbeddedRedis(workdir / "redis") as server, \
                SimProcess(workdir, time_scale=0, queue_delay=0, concurrency=10**6, seed=3) as sim:
            for r in range(args.rounds):
                others = [sim.proc.pid, server.proc.pid]
                rb = run_reelbatch(workdir, server.url, sim, n, r, others)
                bc = run_bare(workdir, server.url, n, r, others)
                ratio = (n / rb["elapsed"]) / (n / bc["elapsed"])
                for label, res in (("reelbatch submit+poll+download+record", rb),
                                   ("bare Celery chain of 3 empty tasks", bc)):
                    rows.append([r + 1, label, f"{res['elapsed']:.1f} s", f"{n / res['elapsed']:.0f}",
                                 f"{res['cpu'] / n * 1000:.1f} ms", f"{res['sim'] / n * 1000:.1f} ms",
                                 f"{res['redis'] / n * 1000:.1f} ms", res["failed"]])
                rows.append([r + 1, "ratio reelbatch / bare", "", f"{ratio:.2f}", "", "", "", ""])
    print(f"\n{n} items, {WORKERS} worker processes x {THREADS} threads, zero-latency simulator, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print(table(["round", "pipeline", "elapsed", "items/s", "worker CPU/item", "simulator CPU/item",
                 "Redis CPU/item", "failed"], rows))


if __name__ == "__main__":
    main()

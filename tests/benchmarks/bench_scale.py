"""Scale: 10,000 generations in flight, held by 2 worker processes and the fleet's scheduler (beat,
the event listener, the lister), as a fleet runs them. Not a test: run it directly,

    python tests/benchmarks/bench_scale.py [--items 10000] [--hold 120] [--baseline]

The simulator runs generations of 5..15 minutes (time scale 1) with room for all of them at once
(concurrency 10**6); the batch allows max_concurrency 10000 and polls with the defaults. While a
sweeper runs (the scheduler's beat marks it), a poll that waits at least the sweeper's horizon is
kept only in the store's due set, not as a countdown message: with the event stream up every
item's backstop poll waits that long, so during the hold no item has a message in Redis.
``--baseline`` runs the same without the scheduler, so every wait is a countdown message held
unacked in Redis (the way every wait was kept before), for comparison in the same run.
Figures: worker RSS growth (sum over both workers, from connected and idle to the peak), Redis INFO
used_memory growth per item (from before the batch is registered to the end of the hold, and its
peak), how long it took to get every item in flight, and the status polls served during the hold.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks._common import (  # noqa: E402
    REPO,
    UNLIMITED_RPM,
    Sampler,
    SimProcess,
    mb,
    point_app_at,
    role_of,
    sim_env,
    status_requests,
    table,
    write_manifest,
)
from tests.benchmarks.bench_overhead import start_workers, stop_workers  # noqa: E402

WORKERS, THREADS = 2, 8


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def key_census(client: redis.Redis) -> dict[str, int]:
    """Keys by family (first two ':'-separated parts), to say where the memory went."""
    families: dict[str, int] = {}
    for key in client.scan_iter(count=5000):
        parts = key.decode(errors="replace").split(":")
        family = ":".join(parts[:2]) if parts[0] == "rb" and not parts[1].startswith("{") else \
            ":".join(parts[:3]) if parts[0] == "rb" else parts[0]
        families[family] = families.get(family, 0) + 1
    return families


def memory_breakdown(client: redis.Redis, n: int) -> dict[str, float]:
    """Bytes per item held by each structure (item hashes and counters from a sample of 200)."""
    usage = lambda key: client.memory_usage(key, samples=0) or 0
    out = {"unacked messages": (usage("unacked") + usage("unacked_index")) / n,
           "queue": usage("reelbatch") / n}
    items = list(client.scan_iter("rb:{scale}:i:*", count=5000))[:200]
    out["item hash"] = sum(usage(k) for k in items) / max(1, len(items))
    out["state sets, due, slots, generation index"] = sum(
        usage(k) for k in ("rb:{scale}:s:queued", "rb:{scale}:s:running", "rb:{scale}:due",
                           "rb:slots:simulator", "rb:gens:simulator", "rb:{scale}:ids",
                           "rb:uncharged:simulator")) / n
    deliveries = list(client.scan_iter("rb:deliv:*", count=5000))
    sample = deliveries[:200]
    out[f"delivery counters ({len(deliveries):,} keys)"] = (
        sum(usage(k) for k in sample) / max(1, len(sample)) * len(deliveries) / n)
    return out


def hold(n: int, hold_s: float, scheduler: bool) -> dict:
    from reelbatch.jobs.settings import Settings
    from reelbatch.scheduler.embedded import EmbeddedRedis, WorkerProcess
    from reelbatch.scheduler.plan import plan_batch
    from reelbatch.worker.app import app
    from reelbatch.worker.runtime import Runtime

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        workdir = Path(tmp)
        with EmbeddedRedis(workdir / "redis") as server, \
                SimProcess(workdir, time_scale=1.0, queue_delay=0, concurrency=10**6, seed=5) as sim:
            env = sim_env(sim, workdir / "data", REELBATCH_BROKER_URL=server.url)
            manifest = write_manifest(workdir, "scale", n,
                                      limits={"max_concurrency": n, "requests_per_minute": UNLIMITED_RPM})
            settings = Settings(broker_url=server.url, simulator_url=sim.url)
            point_app_at(server.url)   # a new Redis for each run
            ctx = Runtime(settings)
            plan = plan_batch(manifest, settings)
            cmds = [WorkerProcess(env, workdir / "w.log", THREADS, f"scale-{k}").command()
                    for k in range(WORKERS)]
            procs = start_workers(cmds, env, workdir, app)
            beat = subprocess.Popen([sys.executable, "-m", "reelbatch", "scheduler"], cwd=REPO, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True) if scheduler else None
            try:
                return _hold(n, hold_s, ctx, plan, procs, redis.Redis.from_url(server.url), sim)
            finally:
                if beat is not None:
                    beat.terminate()
                    beat.wait(30)
                stop_workers(procs)


def _hold(n: int, hold_s: float, ctx, plan, procs, client: redis.Redis, sim: SimProcess) -> dict:
    from reelbatch.jobs.state import ItemState as S
    from reelbatch.worker.control import register_batch as register, start_batch

    sampler = Sampler([p.pid for p in procs], role_of, every=1.0).start()
    time.sleep(5)
    sampler.sample()
    worker_idle = sampler.fig.last_rss["worker"]
    redis_before = used_memory(client)
    started = time.monotonic()
    register(ctx.store, plan)
    start_batch(ctx, "scale")
    in_flight = lambda: ctx.store.counts("scale")[S.QUEUED] + ctx.store.counts("scale")[S.RUNNING]  # noqa: E731
    while in_flight() < n and time.monotonic() - started < 1800:
        time.sleep(1)
    all_in = time.monotonic() - started
    polls_before = status_requests(sim.stats(detail=False))
    redis_peak = used_memory(client)
    hold_end = time.monotonic() + hold_s
    while time.monotonic() < hold_end:
        time.sleep(5)
        redis_peak = max(redis_peak, used_memory(client))
    redis_after = used_memory(client)
    polls = status_requests(sim.stats(detail=False)) - polls_before
    census, breakdown, held = key_census(client), memory_breakdown(client, n), in_flight()
    fig = sampler.stop()
    return {"held": held, "all_in": all_in, "polls": polls, "idle": worker_idle,
            "peak": fig.peak_rss["worker"], "after": (redis_after - redis_before) / n,
            "redis_peak": (redis_peak - redis_before) / n, "census": census, "breakdown": breakdown}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--hold", type=float, default=120.0, help="seconds to hold everything in flight")
    parser.add_argument("--baseline", action="store_true", help="also run without the scheduler")
    args = parser.parse_args()
    n = args.items
    runs = {"with the scheduler (waits kept in the due set)": hold(n, args.hold, True)}
    if args.baseline:
        runs["without a sweeper (every wait a countdown message)"] = hold(n, args.hold, False)
    rows = []
    for label, r in runs.items():
        rows += [
            [label, "", ""],
            ["items in flight at the end of the hold", f"{r['held']:,} of {n:,}", f"{n:,}"],
            ["time to get every item in flight", f"{r['all_in']:.0f} s", ""],
            ["status polls served during the hold", f"{r['polls']:,} in {args.hold:.0f} s", ""],
            ["worker RSS, idle -> peak (2 processes)", f"{mb(r['idle'])} -> {mb(r['peak'])}", ""],
            ["worker memory growth", mb(r["peak"] - r["idle"]), "<= 200 MB"],
            ["Redis used_memory growth per item, end of hold", f"{r['after']:,.0f} B", "<= 2048 B"],
            ["Redis used_memory growth per item, peak", f"{r['redis_peak']:,.0f} B", "<= 2048 B"],
        ]
    print(f"\n{n:,} generations in flight, {WORKERS} workers x {THREADS} threads, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print(table(["figure", "measured", "target"], rows))
    for label, r in runs.items():
        print(f"\n{label}: Redis keys by family at the end of the hold: "
              + ", ".join(f"{k} {v:,}" for k, v in sorted(r["census"].items(), key=lambda kv: -kv[1])[:10]))
        print("Redis memory per item by structure (MEMORY USAGE): "
              + ", ".join(f"{k} {v:,.0f} B" for k, v in r["breakdown"].items()))


if __name__ == "__main__":
    main()

"""Makespan and API calls on the simulator: 500 items, provider concurrency 20, generation times
uniform 5..15 nominal minutes at time scale 1/300 (1..3 s). Not a test: run it directly,

    python tests/benchmarks/bench_makespan.py [--items 500] [--subset 25] [--only a,b,c,c0,c3,d]

(a) the loop from the provider docs, one item after another: enqueue, then sleep 5 nominal seconds
    (5/300 s, "5 scaled seconds") and poll until terminal, then download. It takes sum(Ti), about
    1000 s at 500 items, so it runs on the first ``--subset`` items and its makespan is
    extrapolated linearly to all items (labelled as such);
(b) the same loop in a pool of 20 threads;
(c) `reelbatch run` on Oxen's protocol without its event stream (REELBATCH_EVENT_LISTENER=false):
    the lister reads the history page (and, when needed, the active queue) of the model in flight
    on a tick about two expected completions apart, within the manifest's polling intervals
    (the defaults scaled by 1/300: 5..60 nominal seconds); per-item polls are a slow backstop;
    max_concurrency 20, the provider's limit, and the queue depth learned (worker/engine/depth.py:
    a few more submitted than the provider runs, so its own queue starts the next generation the
    moment one finishes);
(c0) (c) with limits.queue_depth 0: no more submitted than the provider runs (before the depth);
(c3) (c) with limits.queue_depth 4;
(d) `reelbatch run` with the Oxen event stream (the default);
(f) `reelbatch run` on the AI/ML API's protocol (no event stream, no list: per-item polls on the
    learned-quantile schedule), max_interval_s 300 nominal seconds; the simulator queues past its
    limit, so the depth is kept (the real API may refuse: then it turns itself off);
(f0) (f) with limits.queue_depth 0; (f3) (f) with limits.queue_depth 4;
(g) `reelbatch run` on fal's queue protocol with each request's status stream (the default);
(g0) (g) without the stream (REELBATCH_EVENT_LISTENER=false): polling status_url alone;
(g00) (g0) with limits.queue_depth 0.

Every variant gets a fresh simulator with the same seed, so generation i has the same run time in
each. Figures: makespan (first enqueue to the last result's download start, simulator clock) over the
lower bound max(sum(Ti)/20, max Ti) from the simulator's actual run times; status requests per
generation (Oxen's queue or history row, the AI/ML poll, fal's status) and list requests per generation (the
active queue, history pages); median delay from remote completion to the first GET of the result;
peak RSS and CPU seconds per item of the process doing the work (the loop; reelbatch's worker plus
the `run` process). reelbatch's first poll before anything is learned comes from the catalogue's
typical time, bounded by max_interval_s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks._common import (  # noqa: E402
    REPO,
    SIM_KEY,
    UNLIMITED_RPM,
    Sampler,
    SimProcess,
    detection_delays,
    list_requests,
    lower_bound,
    makespan,
    mb,
    median,
    role_of,
    sim_env,
    status_requests,
    table,
    write_manifest,
)

SCALE = 1 / 300
CONCURRENCY = 20
KNOBS = dict(time_scale=SCALE, gen_time_min=300, gen_time_max=900, concurrency=CONCURRENCY, seed=11)
POLLING = {"min_interval_s": 5 * SCALE, "max_interval_s": 60 * SCALE}


# --- (a) and (b): the documented loop --------------------------------------------------------

def bodies(folder: Path, n: int) -> list[dict]:
    """The enqueue bodies reelbatch itself would send, so every variant asks for the same thing."""
    from reelbatch.jobs.catalog import provider_request
    from reelbatch.jobs.settings import Settings
    from reelbatch.scheduler.plan import plan_batch

    plan = plan_batch(write_manifest(folder, "bodies", n), Settings())
    return [{"model": r.model, **r.body, "num_generations": 1}
            for r in (provider_request(item, lambda ref: ref) for item in plan.items)]


def docs_loop(client: httpx.Client, body: dict, out: Path, interval: float) -> None:
    gid = client.post("/api/ai/queue", json=body).json()["generations"][0]["generation_id"]
    while True:
        time.sleep(interval)
        row = client.get(f"/api/ai/queue/{gid}").json()
        if row["status"] in ("succeeded", "failed", "cancelled"):
            break
    if row["status"] == "succeeded":
        with client.stream("GET", row["result_url"]) as response, open(out / f"{gid}.mp4", "wb") as f:
            for chunk in response.iter_bytes():
                f.write(chunk)


def run_loop(workdir: Path, all_bodies: list[dict], threads: int) -> dict:
    out = workdir / f"loop-{threads}"
    out.mkdir()
    with SimProcess(workdir, **KNOBS) as sim:
        me = os.getpid()
        sampler = Sampler([me], lambda p: "loop" if p.pid == me else None).start()
        cpu0 = psutil.Process().cpu_times()
        headers = {"Authorization": f"Bearer {SIM_KEY}"}
        with httpx.Client(base_url=sim.url, headers=headers, timeout=60,
                          limits=httpx.Limits(max_connections=threads + 5)) as client:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda b: docs_loop(client, b, out, 5 * SCALE), all_bodies))
        cpu1 = psutil.Process().cpu_times()
        fig = sampler.stop()
        stats = sim.stats()
    return {"stats": stats, "rss": fig.peak_rss.get("loop", 0),
            "cpu": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)}


# --- (c) and (d): reelbatch run ------------------------------------------------------------------

def run_reelbatch(workdir: Path, n: int, name: str, events: bool, max_interval: float = 60,
                  depth: int | None = None, protocol: str = "oxen") -> dict:
    polling = {**POLLING, "max_interval_s": max_interval * SCALE}
    provider = protocol if protocol in ("aimlapi", "fal") else "simulator"
    limits = {"max_concurrency": CONCURRENCY, "requests_per_minute": UNLIMITED_RPM}
    if depth is not None:
        limits["queue_depth"] = depth
    manifest = write_manifest(workdir, name, n, polling=polling, provider=provider, limits=limits)
    with SimProcess(workdir, **KNOBS) as sim:
        extra = {"AIMLAPI_BASE_URL": sim.url, "AIMLAPI_KEY": SIM_KEY} if provider == "aimlapi" else \
            {"FAL_QUEUE_URL": sim.url, "FAL_API_URL": sim.url, "FAL_KEY": SIM_KEY} if provider == "fal" else {}
        env = sim_env(sim, workdir / f"data-{name}", REELBATCH_EVENT_LISTENER=str(events).lower(), **extra)
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "reelbatch", "run", str(manifest)], cwd=REPO,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sampler = Sampler([proc.pid], role_of).start()
        output, _ = proc.communicate(timeout=1800)
        wall = time.monotonic() - started
        fig = sampler.stop()
        if proc.returncode != 0:
            raise SystemExit(f"reelbatch run ({name}) exited {proc.returncode}:\n{output[-3000:]}")
        stats = sim.stats()
    return {"stats": stats, "rss": fig.peak_rss.get("worker", 0), "wall": wall,
            "cpu": fig.cpu.get("worker", 0.0) + fig.cpu.get("run", 0.0),
            "cpu_split": (fig.cpu.get("worker", 0.0), fig.cpu.get("run", 0.0))}


# --- figures ---------------------------------------------------------------------------------------

def row(label: str, result: dict, n: int, bound: float, scale_to: int | None = None) -> list:
    stats = result["stats"]
    span = makespan(stats) * (scale_to / n if scale_to else 1)
    delays = detection_delays(stats)
    generations = len(stats["generations"]) or 1
    return [label, f"{span:.1f} s", f"{bound:.1f} s", f"{span / bound:.3f}",
            f"{status_requests(stats) / generations:.2f}", f"{list_requests(stats) / generations:.2f}",
            f"{median(d for d, _ in delays) * 1000:.0f} ms",
            f"{median(d / t for d, t in delays) * 100:.1f} %",
            mb(result["rss"]), f"{result['cpu'] / n * 1000:.1f} ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--subset", type=int, default=25, help="items for the sequential loop (a)")
    parser.add_argument("--only", default="b,c,c0,c3,d,f,f0,f3,g,g0,g00,a", help="variants, comma-separated")
    args = parser.parse_args()
    only = args.only.split(",")
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="bench-makespan-") as tmp:
        workdir = Path(tmp)
        all_bodies = bodies(workdir, args.items)
        runs = {"b": lambda: run_loop(workdir, all_bodies, CONCURRENCY),
                "c": lambda: run_reelbatch(workdir, args.items, "c", events=False),
                "c0": lambda: run_reelbatch(workdir, args.items, "c0", events=False, depth=0),
                "c3": lambda: run_reelbatch(workdir, args.items, "c3", events=False, depth=4),
                "d": lambda: run_reelbatch(workdir, args.items, "d", events=True),
                "f": lambda: run_reelbatch(workdir, args.items, "f", events=False, max_interval=300,
                                           protocol="aimlapi"),
                "f0": lambda: run_reelbatch(workdir, args.items, "f0", events=False, max_interval=300,
                                            depth=0, protocol="aimlapi"),
                "f3": lambda: run_reelbatch(workdir, args.items, "f3", events=False, max_interval=300,
                                            depth=4, protocol="aimlapi"),
                "g": lambda: run_reelbatch(workdir, args.items, "g", events=True, protocol="fal"),
                "g0": lambda: run_reelbatch(workdir, args.items, "g0", events=False, max_interval=300,
                                            protocol="fal"),
                "g00": lambda: run_reelbatch(workdir, args.items, "g00", events=False, max_interval=300,
                                             depth=0, protocol="fal"),
                "a": lambda: run_loop(workdir, all_bodies[:args.subset], 1)}
        results = {key: runs[key]() for key in only}
        full = next((r for k, r in results.items() if k != "a"), None)
        bound = lower_bound(full["stats"], CONCURRENCY) if full else None
        labels = {"b": "(b) docs loop, 20 threads",
                  "c": "(c) Oxen, no event stream: the lister, max interval 60 s, depth learned",
                  "c0": "(c0) = c with queue_depth 0",
                  "c3": "(c3) = c with queue_depth 4",
                  "d": "(d) Oxen, event stream",
                  "f": "(f) AI/ML API, per-item polls, max interval 300 s, depth learned",
                  "f0": "(f0) = f with queue_depth 0",
                  "f3": "(f3) = f with queue_depth 4",
                  "g": "(g) fal, status stream per request",
                  "g0": "(g0) fal, no stream: status_url polls, max interval 300 s, depth learned",
                  "g00": "(g00) = g0 with queue_depth 0"}
        if "a" in results:
            a = results["a"]
            n = args.subset
            a_bound = bound or lower_bound(a["stats"], CONCURRENCY) * args.items / n
            rows.append(row(f"(a) docs loop, sequential: {n} items, x{args.items // n} extrapolated",
                            a, n, a_bound, scale_to=args.items))
        for key in ("b", "c", "c0", "c3", "d", "f", "f0", "f3", "g", "g0", "g00"):
            if key in results:
                rows.append(row(labels[key], results[key], args.items, bound))
        for key in ("c", "c0", "c3", "d", "f", "f0", "f3", "g", "g0", "g00"):
            if key in results:
                w, r = results[key]["cpu_split"]
                notes.append(f"{labels[key]}: `reelbatch run` wall {results[key]['wall']:.1f} s "
                             f"(with Redis and worker start-up); CPU worker {w:.1f} s + run {r:.1f} s")
    print(f"\n{args.items} items, provider concurrency {CONCURRENCY}, generation 1..3 s "
          f"(5..15 min x 1/300), load average {os.getloadavg()[0]:.1f}\n")
    print(table(["variant", "makespan", "bound", "makespan/bound", "status req/generation",
                 "list req/generation",
                 "median detection", "median detection / Ti", "peak RSS", "CPU/item"], rows))
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()

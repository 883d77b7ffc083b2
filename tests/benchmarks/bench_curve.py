"""The cost curve: 1,000, 10,000 and 100,000 items through the whole pipeline on one machine. Not a
test: run it directly,

    python tests/benchmarks/bench_curve.py [--sizes 1000,10000,100000] [--workers 1,2,4]
                                           [--big-workers 2]

For each size, on a fresh embedded redis-server and a zero-latency simulator (time scale 0, no
queue delay, room for every generation), with max_concurrency 500 (a large batch with a bounded
number in flight):

- plan (``plan_batch`` of an ``items_from`` CSV) and register (``register_batch``) times;
- items/s through submit, poll, download and record with 1, 2 and 4 worker processes (8 threads
  each; the batch registered again under a new name for each), timed from the first task sent to
  the last item recorded; at the largest size only ``--big-workers`` (a 100,000-item run takes
  15-30 minutes per worker count on this machine);
- peak Redis memory (INFO used_memory_peak) and peak worker RSS (the largest process, and all of
  them) over those runs;
- after the runs, with the batch finished: ``status`` latency (``summary`` in process, and
  `reelbatch status NAME --json` as a command), `reelbatch export NAME` and `reelbatch report NAME`
  (posters already extracted: a hard link each), each as a command.

The baseline in the same run is the per-item figure at 1,000 items: every other size is also shown
as a multiple of it, so growth that is not linear stands out.
"""

from __future__ import annotations

import argparse
import os
import shutil
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
    table,
)
from tests.benchmarks.bench_overhead import start_workers, stop_workers, wait_done  # noqa: E402

THREADS = 8
LINKS_PER_INODE = 60_000
CONCURRENCY = 500
MANIFEST = """\
version: 1
name: {name}
provider: simulator
model: kling-o1/image-to-video
output: {output}
defaults: {{duration: 5, start_image: "https://example.org/ox.png"}}
items_from: rows.csv
limits: {{max_concurrency: {concurrency}, requests_per_minute: {rpm}}}
polling: {{first_after_s: 0, min_interval_s: 0.001, max_interval_s: 0.01}}
"""


def write_manifest(folder: Path, name: str, n: int) -> Path:
    rows = ["id,prompt"] + [f"clip{i:06d},An ox walks take {i}" for i in range(n)]
    (folder / "rows.csv").write_text("\n".join(rows) + "\n")
    path = folder / f"{name}.yaml"
    text = MANIFEST.format(name=name, output=folder / f"out-{name}", concurrency=CONCURRENCY, rpm=UNLIMITED_RPM)
    path.write_text(text)
    return path


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def command(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "reelbatch", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=3600)
    if done.returncode not in (0, 1):
        raise SystemExit(f"reelbatch {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - started


def run_size(workdir: Path, n: int, worker_counts: list[int]) -> dict:
    from reelbatch.jobs.settings import Settings
    from reelbatch.jobs.state import ItemState as S
    from reelbatch.scheduler.embedded import EmbeddedRedis, WorkerProcess
    from reelbatch.scheduler.plan import plan_batch
    from reelbatch.scheduler.status import summary
    from reelbatch.worker.app import app
    from reelbatch.worker.control import register_batch, start_batch
    from reelbatch.worker.runtime import Runtime

    out: dict = {"n": n, "runs": {}}
    with EmbeddedRedis(workdir / "redis") as server, \
            SimProcess(workdir, time_scale=0, queue_delay=0, concurrency=10**6, seed=7) as sim:
        client = redis.Redis.from_url(server.url)
        env = sim_env(sim, workdir / "data", REELBATCH_BROKER_URL=server.url)
        settings = Settings(broker_url=server.url, simulator_url=sim.url)
        point_app_at(server.url)   # a new Redis for each size
        ctx = Runtime(settings)
        worker_rss, name = 0, ""
        for k, workers in enumerate(worker_counts):
            name = f"curve{k}"
            manifest = write_manifest(workdir, name, n)
            out["plan_s"], plan = timed(lambda: plan_batch(manifest, settings))
            out["register_s"], _ = timed(lambda: register_batch(ctx.store, plan))
            cmds = [WorkerProcess(env, workdir / "w.log", THREADS, f"{name}-{w}").command() for w in range(workers)]
            procs = start_workers(cmds, env, workdir, app)
            try:
                sampler = Sampler([p.pid for p in procs], role_of, every=1.0).start()
                elapsed, _ = timed(lambda: (start_batch(ctx, name), wait_done(
                    lambda: ctx.store.counts(name)[S.SUCCEEDED] + ctx.store.counts(name)[S.FAILED], n, 7200)))
                fig = sampler.stop()
            finally:
                stop_workers(procs)
            out["runs"][workers] = {"items_s": n / elapsed, "failed": ctx.store.counts(name)[S.FAILED],
                                    "rss_sum": fig.peak_rss.get("worker", 0)}
            worker_rss = max(worker_rss, fig.peak_rss.get("worker", 0) // workers)
        out["redis_peak"] = int(client.info("memory")["used_memory_peak"])
        out["worker_rss"] = worker_rss
        link_posters(ctx.store, name)
        out["status_s"], _ = timed(lambda: summary(ctx.store, name))
        out["status_cmd_s"] = command(["status", name, "--json"], env)
        out["export_s"] = command(["export", name, "--format", "jsonl", "--out", str(workdir / "x.jsonl")], env)
        out["report_s"] = command(["report", name, "--out", str(workdir / "report.html")], env)
    return out


def link_posters(store, name: str) -> None:
    """Every video's poster frame, already extracted (one image, hard-linked): `report` then
    measures the page, not ffmpeg."""
    from reelbatch.worker.storage import poster_frame

    meta = store.batch(name)
    output = Path(meta.output)
    posters = output / "posters"
    posters.mkdir(exist_ok=True)
    videos = sorted(output.glob("*.mp4"))
    master = poster_frame(videos[0], output / ".master.jpg")
    for n, video in enumerate(videos):
        if n and n % LINKS_PER_INODE == 0:          # ext4 allows 65,000 links to one file
            master = shutil.copy(master, output / f".master{n}.jpg")
        target = posters / f"{video.stem}.jpg"
        if not target.exists():
            os.link(master, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--big-workers", default="2", help="worker counts at the largest size")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    counts = [int(x) for x in args.workers.split(",")]
    results = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix=f"bench-curve-{n}-") as tmp:
            workers = [int(x) for x in args.big_workers.split(",")] if n == max(sizes) and len(sizes) > 1 else counts
            results.append(run_size(Path(tmp), n, workers))
            print(f"{n:,} items done: {results[-1]}", flush=True)
    base = results[0]
    per = lambda r, key: r[key] / r["n"]   # noqa: E731
    rows = []
    for r in results:
        ratio = lambda key: f"x{per(r, key) / per(base, key):.2f}" if base[key] else ""   # noqa: E731
        speeds = " / ".join(f"{r['runs'][w]['items_s']:.0f}" if w in r["runs"] else "-" for w in counts)
        rows.append([f"{r['n']:,}", f"{r['plan_s']:.2f} s", f"{r['register_s']:.2f} s",
                     f"{r['redis_peak'] / 1e6:.0f} MB ({r['redis_peak'] / r['n']:,.0f} B/item)",
                     mb(r["worker_rss"]), speeds, f"{r['status_s']:.3f} s", f"{r['status_cmd_s']:.2f} s",
                     f"{r['export_s']:.2f} s", f"{r['report_s']:.2f} s"])
        rows.append(["  per item vs 1,000", ratio("plan_s"), ratio("register_s"), ratio("redis_peak"),
                     "", "", ratio("status_s"), "", ratio("export_s"), ratio("report_s")])
    print(f"\nzero-latency simulator, max_concurrency {CONCURRENCY}, {THREADS} threads per worker, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print(table(["items", "plan", "register", "Redis peak", "worker RSS (largest process)",
                 f"items/s with {' / '.join(map(str, counts))} workers", "status (summary)",
                 "status --json (command)", "export", "report"], rows))


if __name__ == "__main__":
    main()

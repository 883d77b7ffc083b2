"""One batch over three providers at once (issue 27). Not a test: run it directly,

    python tests/benchmarks/bench_fanout.py [--items 600] [--only run,polls,failover] [--dump DIR]

Three simulators (Oxen's protocol as `simulator`, the AI/ML API's, fal's), each its own account:
concurrency 10, 6 and 4, generation times uniform 300-900, 150-450 and 600-1200 nominal seconds at
time scale 1/300, and prices (price_overrides) $0.07, $0.112 and $0.09 per video second. `reelbatch
run` with `provider: [simulator, aimlapi, fal]`, `route: cheapest`, each provider's
`max_concurrency` equal to its account's limit.

(run)      the batch to its end, told of completions where the provider can tell: Oxen's event
           stream (the simulator), fal's status stream per request; the AI/ML API has neither
           and is polled (target 1.05x the bound);
(polls)    the same on polls alone (REELBATCH_EVENT_LISTENER=false: no stream anywhere; target 1.10x);
(failover) the same, with the fal simulator stopped once half the items are done: it cannot be
           reached, its pending items go to the others, the items it held end `stuck` after
           polling.give_up_after_s (20 s, before the 30 s after which an unreachable provider
           stops the batch): every item ends, exit 1. Only a video it had finished but not yet
           served cannot end (the stopped process served the media too; made and paid, it is not
           stuck): if one is left the batch pauses (exit 3, REELBATCH_PROVIDER_UNREACHABLE_S=30)
           and the same command would fetch it. The last column says which.

Figures: makespan (first enqueue at any provider to the last result's download start) over the
bound max(sum(Ti) / sum(limits), max Ti) from the simulators' actual run times (for failover:
the bound of the capacity that remained after the stop, added to the time of the stop); over the
fluid bound items / sum(limit / mean Ti) (every slot busy, whatever went where: sum(Ti) grows with
the items a slow provider made, so the first bound is larger, easier to meet, the more went there); items per
provider; the cost at the plan's prices over the cheapest schedule that meets the same makespan
(each provider, cheapest first, takes at most makespan x limit / its mean run time items); items
generated twice (generations at the simulators over items made).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks._common import (  # noqa: E402
    REPO,
    SIM_KEY,
    UNLIMITED_RPM,
    SimProcess,
    pythonpath_env,
    succeeded,
    table,
    write_manifest,
)

SCALE = 1 / 300
MODEL = "kling-o1/image-to-video"
SECONDS = 5
ACCOUNTS = {   # provider: (limit, nominal run time range, USD per video second)
    "simulator": (10, (300, 900), 0.07),
    "aimlapi": (6, (150, 450), 0.112),
    "fal": (4, (600, 1200), 0.09),
}
GIVE_UP_S = 20.0
UNREACHABLE_S = 30   # a provider away this long is stopped: when only its work is left, the batch pauses


def knobs(provider: str) -> dict:
    limit, (low, high), _ = ACCOUNTS[provider]
    return dict(time_scale=SCALE, gen_time_min=low, gen_time_max=high, concurrency=limit, queue_delay=0.0,
                seed=27)


def environment(sims: dict[str, SimProcess], data_dir: Path, events: bool) -> dict[str, str]:
    prices = {f"{p}:{MODEL}": price for p, (_, _, price) in ACCOUNTS.items()}
    return pythonpath_env(
        REELBATCH_DATA_DIR=str(data_dir), REELBATCH_PRICE_OVERRIDES=json.dumps(prices),
        REELBATCH_SIMULATOR_URL=sims["simulator"].url, REELBATCH_SIMULATOR_KEY=SIM_KEY,
        AIMLAPI_BASE_URL=sims["aimlapi"].url, AIMLAPI_KEY=SIM_KEY,
        FAL_QUEUE_URL=sims["fal"].url, FAL_API_URL=sims["fal"].url, FAL_KEY=SIM_KEY,
        REELBATCH_PROVIDER_UNREACHABLE_S=str(UNREACHABLE_S), REELBATCH_EVENT_LISTENER=str(events).lower())


def manifest(workdir: Path, name: str, n: int) -> Path:
    limits = {p: {"max_concurrency": limit} for p, (limit, _, _) in ACCOUNTS.items()}
    return write_manifest(workdir, name, n, provider=list(ACCOUNTS), route="cheapest",
                          limits={"requests_per_minute": UNLIMITED_RPM, **limits},
                          polling={"min_interval_s": 5 * SCALE, "max_interval_s": 60 * SCALE,   # the defaults,
                                   "give_up_after_s": GIVE_UP_S})                          # scaled


def results(workdir: Path, name: str) -> list[dict]:
    path = workdir / f"out-{name}" / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def run(workdir: Path, n: int, name: str, stop_fal_at: float | None, events: bool) -> dict:
    path = manifest(workdir, name, n)
    with SimProcess(workdir, **knobs("simulator")) as sim, SimProcess(workdir, **knobs("aimlapi")) as aiml, \
            SimProcess(workdir, **knobs("fal")) as fal:
        sims = {"simulator": sim, "aimlapi": aiml, "fal": fal}
        proc = subprocess.Popen([sys.executable, "-m", "reelbatch", "run", str(path)], cwd=REPO,
                                env=environment(sims, workdir / f"data-{name}", events), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        stopped_at = None
        if stop_fal_at is not None:
            stopped_at = stop_when_half_done(sims, n, stop_fal_at)
        output, _ = proc.communicate(timeout=3600)
        if proc.returncode not in (0, 1, 3):
            raise SystemExit(f"reelbatch run ({name}) exited {proc.returncode}:\n{output[-3000:]}")
        stats = {p: s.stats() for p, s in sims.items() if stopped_at is None or p != "fal"}
        if stopped_at is not None:
            stats["fal"] = sims["fal"].last_stats   # what it had made when it stopped
    return {"stats": stats, "rows": results(workdir, name), "stopped_at": stopped_at, "exit": proc.returncode}


def stop_when_half_done(sims: dict[str, SimProcess], n: int, fraction: float) -> float:
    """Stop the fal simulator once ``fraction`` of the items succeeded anywhere; when (monotonic)."""
    while True:
        done = sum(s.stats(detail=False)["by_status"].get("succeeded", 0) for s in sims.values())
        if done >= fraction * n:
            fal = sims["fal"]
            fal.last_stats = fal.stats()
            fal.proc.terminate()
            fal.proc.wait(15)
            return time.monotonic()
        time.sleep(0.5)


def span(stats: dict[str, dict]) -> tuple[float, float]:
    """(first enqueue, last first-download) over every simulator (one monotonic clock)."""
    gens = [g for s in stats.values() for g in s["generations"].values()]
    firsts = [t for s in stats.values() for t in s["first_download"].values()]
    return min(g["enqueued"] for g in gens), max(firsts)


def bound(stats: dict[str, dict], providers: list[str]) -> float:
    runs = [g["run_time"] for p in providers for g in succeeded(stats[p])]
    return max(sum(runs) / sum(ACCOUNTS[p][0] for p in providers), max(runs))


def fluid_bound(stats: dict[str, dict], n: int) -> float:
    """items / sum(limit / mean Ti): every slot busy to the end, whatever provider made what."""
    rate = 0.0
    for provider, (limit, _, _) in ACCOUNTS.items():
        runs = [g["run_time"] for g in succeeded(stats[provider])]
        rate += limit / (sum(runs) / len(runs)) if runs else 0.0
    return n / rate


def cheapest_cost(stats: dict[str, dict], n: int, makespan_s: float) -> float:
    """The cheapest schedule meeting ``makespan_s``: providers cheapest first, each taking at most
    makespan x limit / its mean run time items."""
    left, cost = n, 0.0
    for provider in sorted(ACCOUNTS, key=lambda p: ACCOUNTS[p][2]):
        runs = [g["run_time"] for g in succeeded(stats[provider])]
        if not runs:
            continue
        take = min(left, int(makespan_s * ACCOUNTS[provider][0] / (sum(runs) / len(runs))))
        cost, left = cost + take * SECONDS * ACCOUNTS[provider][2], left - take
    return cost


def figures(label: str, result: dict, n: int) -> list:
    stats, rows = result["stats"], result["rows"]
    start, end = span(stats)
    made = Counter(r["provider"] for r in rows if r["status"] == "succeeded")
    cost = sum(SECONDS * ACCOUNTS[p][2] * k for p, k in made.items())
    generated = sum(s["generations_total"] for s in stats.values())
    if result["stopped_at"] is not None:   # a submit may have reached fal after its last stats
        at_fal = sum(1 for r in rows if r["provider"] == "fal" and r["generation_id"])
        generated += max(0, at_fal - stats["fal"]["generations_total"])
    if result["stopped_at"] is None:
        limit = bound(stats, list(ACCOUNTS))
    else:   # the time until the stop, plus the remaining capacity's bound for what was left after it
        before = result["stopped_at"] - start
        left = [g["run_time"] for p in ("simulator", "aimlapi") for g in succeeded(stats[p])
                if g["started"] is not None and g["started"] >= result["stopped_at"]]
        limit = before + max(sum(left) / (ACCOUNTS["simulator"][0] + ACCOUNTS["aimlapi"][0]),
                             max(left, default=0.0))
    fluid = fluid_bound(stats, n) if result["stopped_at"] is None else None
    ends = Counter(r["status"] + (f" {r['error_kind']}" if r.get("error_kind") else "") for r in rows)
    return [label, n, f"{end - start:.1f} s", f"{limit:.1f} s", f"{(end - start) / limit:.3f}",
            f"{(end - start) / fluid:.3f}" if fluid else "-",
            " / ".join(f"{made[p]}" for p in ACCOUNTS), f"${cost:,.2f}",
            f"{cost / cheapest_cost(stats, made.total(), end - start):.3f}",
            f"{generated - len([r for r in rows if r['generation_id']])}",
            ", ".join(f"{k} {v}" for k, v in sorted(ends.items())), EXITS.get(result["exit"], str(result["exit"]))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--only", default="run,polls,failover")
    parser.add_argument("--dump", type=Path, help="write each variant's simulator stats and results here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        for variant in args.only.split(","):
            result = run(Path(tmp), args.items, variant, 0.5 if variant == "failover" else None,
                         events=variant != "polls")
            rows.append(figures(variant, result, args.items))
            if args.dump:
                args.dump.mkdir(parents=True, exist_ok=True)
                (args.dump / f"{variant}.json").write_text(json.dumps(result))
            print(table(HEADERS, rows[-1:]), flush=True)
    print()
    print(table(HEADERS, rows))


HEADERS = ["variant", "items", "makespan", "bound", "makespan/bound", "makespan/fluid bound", "made (sim/aiml/fal)",
           "cost", "cost/cheapest", "extra generations", "ended", "run's exit"]
EXITS = {0: "0: all made", 1: "1: ended, some failed", 3: "3: paused, the same command resumes"}

if __name__ == "__main__":
    main()

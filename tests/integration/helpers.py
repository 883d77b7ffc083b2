"""Helpers for engine tests: manifests on the simulator, running the real CLI, reading results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

from tests.conftest import REPO, SIM_KEY

IMAGE = "https://example.org/ox.png"


def write_manifest(folder: Path, name: str, n: int, **overrides) -> Path:
    """A manifest of ``n`` image-to-video items with distinct prompts, on the simulator."""
    doc = {
        "version": 1, "name": name, "provider": "simulator", "model": "kling-o1/image-to-video",
        "output": "out", "defaults": {"duration": 5, "start_image": IMAGE},
        "items": [{"id": f"clip{i:03d}", "prompt": f"An ox walks, take {i}"} for i in range(n)],
        "limits": {"max_concurrency": 20, "requests_per_minute": 6000},
        "retry": {"max_attempts": 3},
        "polling": {"first_after_s": 0.5, "min_interval_s": 0.2, "max_interval_s": 1},
    }
    doc.update(overrides)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def cli_env(data_dir: Path, sim=None, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REELBATCH_", "OXEN_", "AIMLAPI_"))}
    env.update(REELBATCH_DATA_DIR=str(data_dir))
    if sim is not None:
        env.update(REELBATCH_SIMULATOR_URL=sim.base_url, REELBATCH_SIMULATOR_KEY=SIM_KEY)
    env.update(extra)
    return env


def reelbatch(*args: str, env: dict[str, str], timeout: float = 300, cwd: Path = REPO,
              **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reelbatch", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, **kw)


def as_from_a_terminal() -> None:
    """Ctrl-C reaches a command a person starts at a terminal; a test suite run in the background of
    a non-interactive shell inherits SIGINT ignored (and Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "reelbatch", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=as_from_a_terminal)


def results(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def enqueues_per_generation_id(stats: dict) -> dict[str, dict]:
    return {g["public_id"]: g for g in stats["generations"].values()}


def assert_files_match_simulator(rows: list[dict], out: Path, stats: dict) -> None:
    """Every succeeded file is on disk and its sha256 is the one the simulator served."""
    import hashlib

    served = enqueues_per_generation_id(stats)
    for row in rows:
        if row["status"] != "succeeded":
            continue
        data = (out / row["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        assert served[row["generation_id"]]["sha256"] == row["sha256"], row["item_id"]


def assert_no_duplicate_generation(stats: dict) -> None:
    """No request body was enqueued again after a generation of it succeeded or was running."""
    by_body: dict[str, list[dict]] = {}
    for g in stats["generations"].values():
        by_body.setdefault(g.get("request_key") or g["public_id"], []).append(g)
    for body, gens in by_body.items():
        good = [g for g in gens if g["status"] in ("succeeded", "processing", "queued")]
        assert len(good) <= 1, f"request {body} has {len(good)} live or succeeded generations"


def wait_for(check, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def status_counts(rows: list[dict]) -> Counter:
    return Counter(r["status"] for r in rows)


# --- fault suite: the end-of-batch checks and their figures ----------------------------------

TERMINAL_STATUSES = {"succeeded", "failed", "cancelled"}


def duplicate_generations(stats: dict) -> dict[str, int]:
    """request key -> live or succeeded generations beyond the first (items with distinct prompts
    have one request key each, so this counts duplicate submissions of a working generation)."""
    live: Counter = Counter()
    for g in stats["generations"].values():
        if g["status"] in ("succeeded", "processing", "queued"):
            live[g.get("request_key") or g["public_id"]] += 1
    return {key: n - 1 for key, n in live.items() if n > 1}


def live_leases(client, provider: str = "simulator") -> list[str]:
    """Holders of the provider's concurrency slots whose lease has not expired."""
    return client.zrangebyscore(f"rb:slots:{provider}", time.time(), "+inf")


def batch_figures(out: Path, n: int, stats: dict, client, provider: str = "simulator") -> dict:
    """What the fault suite reports and checks at the end of a batch."""
    rows = results(out) if (out / "results.jsonl").exists() else []
    terminal = {r["item_id"] for r in rows if r["status"] in TERMINAL_STATUSES}
    return {"n": n, "rows": rows, "lines": len(rows), "ids": len({r["item_id"] for r in rows}),
            "lost": n - len(terminal), "duplicates": sum(duplicate_generations(stats).values()),
            "statuses": dict(status_counts(rows)), "leases": live_leases(client, provider)}


def assert_batch_whole(figures: dict, out: Path, stats: dict) -> None:
    """Every item terminal with exactly one results line, every succeeded file what the simulator
    served, no working generation submitted twice, no slot left held."""
    n = figures["n"]
    assert figures["lines"] == n and figures["ids"] == n, \
        f"{figures['lines']} lines for {figures['ids']} of {n} items"
    assert figures["lost"] == 0, f"{figures['lost']} items not terminal: {figures['statuses']}"
    assert_files_match_simulator(figures["rows"], out, stats)
    assert figures["duplicates"] == 0, duplicate_generations(stats)
    assert figures["leases"] == [], f"slots still held: {figures['leases'][:5]}"


def summary_line(scenario: str, faults: dict, figures: dict, wall_s: float) -> str:
    injected = ", ".join(f"{k} {v}" for k, v in sorted(faults.items())) or "none"
    return (f"FAULTS | {scenario} | {injected} | lost {figures['lost']} | duplicates "
            f"{figures['duplicates']} | {figures['statuses']} | {wall_s:.0f} s")


def reap(data_dir: Path) -> None:
    """After a `reelbatch run` that was killed or timed out: stop the worker it started (in its own
    session, found by its REELBATCH_DATA_DIR) and its embedded Redis, so nothing outlives the test."""
    import signal

    import redis

    from reelbatch.scheduler.stack.embedded import EmbeddedRedis

    marker = f"REELBATCH_DATA_DIR={data_dir}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue
    if (data_dir / "redis.port").exists():
        server = EmbeddedRedis(data_dir, port=int((data_dir / "redis.port").read_text()))
        try:
            redis.Redis.from_url(server.url, socket_timeout=2).shutdown(nosave=False)
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            pass

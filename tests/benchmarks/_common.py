"""Shared pieces of the benchmarks (not a benchmark itself, and not collected by pytest):
the simulator in its own process, psutil sampling of a process tree, tables, manifests.

The simulator runs in a child process so its event loop does not share a GIL with what is being
measured. The child wraps the simulator's media counter to note, per generation, the monotonic time
of the first GET of its result: CLOCK_MONOTONIC is machine-wide, so it compares directly with the
`enqueued`/`started`/`completed` times in GET /_sim/stats.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import yaml

from reelbatch.jobs.manifest import MAX_REQUESTS_PER_MINUTE

# The highest rate a manifest may ask for (1,000 submits a second): more than any benchmark reaches.
UNLIMITED_RPM = MAX_REQUESTS_PER_MINUTE

REPO = Path(__file__).resolve().parents[2]
SIM_KEY = "bench-key"
IMAGE = "https://example.org/ox.png"


# --- the simulator in a child process ----------------------------------------------------------

def _serve(knobs: dict, port_file: str) -> None:
    """Child process: serve the simulator, with first-download times added to its stats."""
    from reelbatch.simulator.server import Knobs, Simulator

    sim = Simulator(knobs=Knobs(**knobs), api_key=SIM_KEY, host="127.0.0.1", port=0)
    first: dict[str, float] = {}
    served, snapshot = sim.core.stats.served, sim.core.snapshot

    def noted(key, sha256, size):
        first.setdefault(key, time.monotonic())
        served(key, sha256, size)

    sim.core.stats.served = noted
    sim.core.snapshot = lambda detail=True: {**snapshot(detail), "first_download": dict(first)}
    sim.start()
    Path(port_file).write_text(str(sim.port))
    sim.wait()


class SimProcess:
    """`with SimProcess(time_scale=..., ...) as sim:` then sim.url, sim.stats()."""

    def __init__(self, workdir: Path, **knobs):
        self.knobs, self.workdir = knobs, Path(workdir)
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> SimProcess:
        port_file = self.workdir / f"sim-{os.getpid()}-{time.monotonic_ns()}.port"
        code = ("import json, sys; from tests.benchmarks._common import _serve; "
                "_serve(json.loads(sys.argv[1]), sys.argv[2])")
        self.proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(self.knobs), str(port_file)],
                                     cwd=REPO, env=pythonpath_env(), start_new_session=True)
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the simulator did not start")
            time.sleep(0.05)
        time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text()}"
        return self

    def stats(self, detail: bool = True) -> dict:
        return httpx.get(f"{self.url}/_sim/stats", params={"detail": int(detail)}, timeout=120).json()

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def point_app_at(url: str) -> None:
    """Point this process's Celery app at a new Redis (each run of a benchmark starts its own):
    the broker URL, and no connection or producer pool kept from the last one."""
    from reelbatch.worker.app import drop_pools, use_broker

    use_broker(url)
    drop_pools()


def pythonpath_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REELBATCH_", "OXEN_", "AIMLAPI_"))}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    env.update(extra)
    return env


def sim_env(sim: SimProcess, data_dir: Path, **extra: str) -> dict[str, str]:
    return pythonpath_env(REELBATCH_SIMULATOR_URL=sim.url, REELBATCH_SIMULATOR_KEY=SIM_KEY,
                          REELBATCH_DATA_DIR=str(data_dir), **extra)


# --- figures from the simulator's stats --------------------------------------------------------

def succeeded(stats: dict) -> list[dict]:
    return [g for g in stats["generations"].values() if g["status"] == "succeeded"]


def lower_bound(stats: dict, concurrency: int) -> float:
    """max(sum(Ti)/C, max Ti) over the run times the simulator actually used."""
    runs = [g["run_time"] for g in succeeded(stats)]
    return max(sum(runs) / concurrency, max(runs))


def makespan(stats: dict) -> float:
    """First enqueue to the last result's download start, on the simulator's clock."""
    first = min(g["enqueued"] for g in stats["generations"].values())
    return max(stats["first_download"].values()) - first


def detection_delays(stats: dict) -> list[tuple[float, float]]:
    """(seconds from remote completion to the first media GET, that generation's run time)."""
    got = stats["first_download"]
    return [(got[key] - g["completed"], g["run_time"])
            for key, g in stats["generations"].items() if g["status"] == "succeeded" and key in got]


ONE_GENERATION = ("GET /api/ai/queue/{id}", "GET /api/ai/generations/{id}", "GET /v2/video/generations",
                  "GET /fal-ai/{app}/requests/{id}/status")   # fal's status polls (not its streams)
MANY_GENERATIONS = ("GET /api/ai/queue", "GET /api/ai/generations")


def status_requests(stats: dict) -> int:
    """Requests about one generation: Oxen's queue row or history row, the AI/ML API's poll."""
    return sum(n for name, n in stats["requests"].items() if name in ONE_GENERATION)


def list_requests(stats: dict) -> int:
    """Requests about many generations at once: Oxen's active queue and history pages."""
    return sum(n for name, n in stats["requests"].items() if name in MANY_GENERATIONS)


def median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


# --- process sampling ---------------------------------------------------------------------------

@dataclass
class ProcFigures:
    peak_rss: dict[str, int] = field(default_factory=dict)      # role -> bytes (summed over its processes)
    first_rss: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)         # role -> user+system seconds
    last_rss: dict[str, int] = field(default_factory=dict)


class Sampler:
    """Samples RSS and CPU time (spent since `start`) of a set of root pids and their descendants
    every ``every`` s. ``classify(proc)`` names a process's role ("worker", "run", "redis", ...)
    or None to skip it."""

    def __init__(self, roots, classify, every: float = 0.2):
        self.roots, self.classify, self.every = list(roots), classify, every
        self.fig = ProcFigures()
        self._cpu: dict[int, tuple[str, float]] = {}
        self._base: dict[int, float] | None = None   # CPU already spent by processes there at start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> Sampler:
        self._base = {}
        self.sample()
        self._base = {pid: cpu for pid, (_, cpu) in self._cpu.items()}
        self._thread.start()
        return self

    def stop(self) -> ProcFigures:
        self._stop.set()
        self._thread.join()
        self.sample()
        for role, cpu in self._cpu.values():
            self.fig.cpu[role] = self.fig.cpu.get(role, 0.0) + cpu
        return self.fig

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def processes(self) -> list[psutil.Process]:
        found = []
        for pid in self.roots:
            try:
                root = psutil.Process(pid)
                found += [root] + root.children(recursive=True)
            except psutil.NoSuchProcess:
                continue
        return found

    def sample(self) -> None:
        rss: dict[str, int] = {}
        for proc in self.processes():
            try:
                role = self.classify(proc)
                if role is None:
                    continue
                with proc.oneshot():
                    mem, cpu = proc.memory_info().rss, proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            rss[role] = rss.get(role, 0) + mem
            self._cpu[proc.pid] = (role, cpu.user + cpu.system - (self._base or {}).get(proc.pid, 0.0))
        for role, value in rss.items():
            self.fig.first_rss.setdefault(role, value)
            self.fig.peak_rss[role] = max(self.fig.peak_rss.get(role, 0), value)
            self.fig.last_rss[role] = value


def role_of(proc: psutil.Process) -> str | None:
    """worker (celery), redis (redis-server), run (the reelbatch CLI), simulator, else None."""
    line = " ".join(proc.cmdline())
    if "redis-server" in line or proc.name().startswith("redis"):
        return "redis"
    if "celery" in line:
        return "worker"
    if "scheduler.commands.cli" in line or "-m reelbatch run" in line:
        return "run"
    if "_serve(" in line:
        return "simulator"
    return None


# --- manifests and tables ------------------------------------------------------------------------

def write_manifest(folder: Path, name: str, n: int, **overrides) -> Path:
    doc = {
        "version": 1, "name": name, "provider": "simulator", "model": "kling-o1/image-to-video",
        "output": str(folder / f"out-{name}"),
        "defaults": {"duration": 5, "start_image": IMAGE},
        "items": [{"id": f"clip{i:05d}", "prompt": f"An ox walks, take {i}"} for i in range(n)],
        "limits": {"max_concurrency": 20, "requests_per_minute": UNLIMITED_RPM},
        "retry": {"max_attempts": 3},
    }
    doc.update(overrides)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def table(headers: list[str], rows: list[list]) -> str:
    """A markdown table (pastes into the README as is)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in cells])


def mb(value: float) -> str:
    return f"{value / 1e6:.0f} MB"

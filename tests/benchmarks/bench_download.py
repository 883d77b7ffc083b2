"""A 1 GiB result: memory growth and throughput of reelbatch's streamed download against `curl`
from the same simulator in the same run. Not a test: run it directly,

    python tests/benchmarks/bench_download.py [--gib 1] [--rounds 3]

The simulator (its own process) pads one generation's MP4 to the size asked for with its
media_pad_bytes knob. Each round downloads it with `curl -o` and with worker.storage.download
(build_download_client, sha256 and writes in a second thread, fsync, atomic rename), alternating,
to a fresh file on the same disk; a third column adds to curl's time what reelbatch does on top of
it (`sha256sum` and `sync FILE`, run after curl): `curl -o` leaves the file in the page cache, while
reelbatch's download ends only once the file is on disk, so the disk's write speed bounds it.
Memory growth is this process's peak RSS during the download (sampled every 10 ms) less its RSS
just before; the best round of each tool gives the throughput ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks._common import SIM_KEY, SimProcess, mb, table  # noqa: E402

MiB = 1 << 20


def result_url(sim: SimProcess) -> str:
    headers = {"Authorization": f"Bearer {SIM_KEY}"}
    body = {"model": "kling-video-o1-image-to-video", "prompt": "a big one", "duration": 5,
            "aspect_ratio": "16:9", "input_image": "https://example.org/ox.png", "num_generations": 1}
    with httpx.Client(base_url=sim.url, headers=headers, timeout=30) as client:
        gid = client.post("/api/ai/queue", json=body).json()["generations"][0]["generation_id"]
        for _ in range(200):
            row = client.get(f"/api/ai/queue/{gid}").json()
            if row["status"] == "succeeded":
                return row["result_url"]
            time.sleep(0.05)
    raise SystemExit(f"the generation did not finish: {row}")


class PeakRss:
    def __init__(self, every: float = 0.01):
        self.proc, self.every = psutil.Process(), every
        self.before = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def with_curl(curl: str, url: str, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run([curl, "-sS", "--fail", "-o", str(out), url], check=True)
    return time.perf_counter() - started


def checked_after(out: Path) -> float:
    """What reelbatch does on top of curl -o, done after it: sha256 the file and fsync it."""
    started = time.perf_counter()
    subprocess.run(["sha256sum", str(out)], check=True, capture_output=True)
    subprocess.run(["sync", str(out)], check=True)
    return time.perf_counter() - started


def with_reelbatch(url: str, folder: Path) -> tuple[float, int, int]:
    from reelbatch.jobs.settings import Settings
    from reelbatch.worker.providers.http import build_download_client
    from reelbatch.worker.storage import download

    settings = Settings()
    client = build_download_client(settings)
    try:
        with PeakRss() as rss:
            started = time.perf_counter()
            stored = download(url, folder, "big.mp4", client, settings)
            elapsed = time.perf_counter() - started
    finally:
        client.close()
    return elapsed, rss.peak - rss.before, stored.bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    curl = shutil.which("curl") or sys.exit("curl is missing: apt-get install -y curl")
    size = int(args.gib * (1 << 30))
    rows, best = [], {"curl": float("inf"), "reelbatch": float("inf")}
    growth = 0
    with tempfile.TemporaryDirectory(prefix="bench-download-", dir=Path.cwd()) as tmp:
        workdir = Path(tmp)
        with SimProcess(workdir, time_scale=0, queue_delay=0, media_pad_bytes=size, seed=1) as sim:
            url = result_url(sim)
            for r in range(1, args.rounds + 1):
                out = workdir / f"curl-{r}.mp4"
                t_curl = with_curl(curl, url, out)
                t_same = t_curl + checked_after(out)
                got = out.stat().st_size
                out.unlink()
                t_rb, grew, got_rb = with_reelbatch(url, workdir / f"rb-{r}")
                shutil.rmtree(workdir / f"rb-{r}")
                if got != got_rb:
                    sys.exit(f"curl got {got} bytes, reelbatch {got_rb}")
                growth = max(growth, grew)
                best["curl"], best["reelbatch"] = min(best["curl"], t_curl), min(best["reelbatch"], t_rb)
                best["same"] = min(best.get("same", float("inf")), t_same)
                rows.append([r, f"{got / MiB:,.0f} MiB", f"{got / MiB / t_curl:,.0f} MiB/s",
                             f"{got / MiB / t_same:,.0f} MiB/s",
                             f"{got / MiB / t_rb:,.0f} MiB/s", f"{t_curl / t_rb:.0%}", mb(grew)])
    ratio = best["curl"] / best["reelbatch"]
    durable = best["same"] / best["reelbatch"]
    rows.append(["best", "", f"{size / MiB / best['curl']:,.0f} MiB/s",
                 f"{size / MiB / best['same']:,.0f} MiB/s",
                 f"{size / MiB / best['reelbatch']:,.0f} MiB/s",
                 f"{ratio:.0%} (>= 80%); {durable:.0%} of curl + sha256sum + sync",
                 f"{mb(growth)} max (<= 50 MB)"])
    print(f"\n{size / (1 << 30):g} GiB result from the simulator on loopback, {args.rounds} rounds, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print(table(["round", "size", "curl -o", "curl -o, then sha256sum + sync", "reelbatch download",
                 "reelbatch / curl -o", "reelbatch memory growth"], rows))


if __name__ == "__main__":
    main()

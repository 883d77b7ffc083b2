"""First-screen time of report.html, this tree against an earlier commit, on the same store. Not a
test: run it directly,

    python tests/benchmarks/bench_report_compare.py REF [--sources 2500] [--rounds 3]

One 10,000-item batch (as in bench_report.py) is built once; the page is written by this tree and, in
a child process, by the code of REF (``git archive`` into a temporary folder, imported ahead of the
installed package); both pages are opened in turn in headless Chromium, ``rounds`` times each, and
the page's own time to its first drawn page is printed with the write time and size.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from reelbatch.jobs.store import Store  # noqa: E402
from reelbatch.scheduler.stack.embedded import EmbeddedRedis  # noqa: E402
from reelbatch.scheduler.views.export import load_batch  # noqa: E402
from reelbatch.scheduler.views.report import write_report  # noqa: E402
from tests.batchfill import big_batch  # noqa: E402
from tests.benchmarks.bench_report import open_in_chromium  # noqa: E402

PACKAGES = ("jobs", "worker", "scheduler", "simulator", "configs")
# The child: the old tree's modules ahead of the editable install (whose finder is dropped).
CHILD = """
import sys, time
from pathlib import Path
sys.meta_path[:] = [f for f in sys.meta_path if "ditable" not in type(f).__name__]
sys.path[:0] = [sys.argv[1]]
from reelbatch.jobs.store import Store
from reelbatch.scheduler.views.export import load_batch
from reelbatch.scheduler.views.report import write_report
import reelbatch.scheduler.views.report as report
assert report.__file__.startswith(sys.argv[1]), report.__file__
store = Store.from_url(sys.argv[2])
meta, records = load_batch(store, "big")
start = time.perf_counter()
write_report(meta, records, store.spend("big"), Path(sys.argv[3]))
print(time.perf_counter() - start)
"""


def old_tree(ref: str, root: Path) -> Path:
    """REF's code laid out as the installed package (reelbatch.jobs = jobs/, ...)."""
    src, pkg = root / "src", root / "pkg"
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    shutil.copytree(src / "reelbatch", pkg / "reelbatch")
    for name in PACKAGES:
        shutil.copytree(src / name, pkg / "reelbatch" / name)
    return pkg


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("ref")
    args.add_argument("--sources", type=int, default=2500)
    args.add_argument("--rounds", type=int, default=3)
    opts = args.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-report-compare-"))
    server = EmbeddedRedis(root / "redis")
    server.start()
    try:
        store = Store.from_url(server.url)
        big_batch(store, "big", root / "out", opts.sources)
        meta, records = load_batch(store, "big")
        start = time.perf_counter()
        pages = {"this tree": (write_report(meta, records, store.spend("big"), root / "out" / "new.html"),
                               time.perf_counter() - start)}
        old = root / "out" / "old.html"
        took = subprocess.run([sys.executable, "-c", CHILD, str(old_tree(opts.ref, root / "old")), server.url,
                               str(old)], capture_output=True, text=True, check=True)
        pages[opts.ref] = (old, float(took.stdout.split()[-1]))
        drawn: dict[str, list[int]] = {name: [] for name in pages}
        for _ in range(opts.rounds):
            for name, (page, _) in pages.items():
                drawn[name].append(open_in_chromium(page, root / "profile")[1]["rendered_ms"])
        for name, (page, wrote) in pages.items():
            print(f"{name}: write {wrote:.2f} s, {page.stat().st_size / 1e6:.2f} MB, first page drawn "
                  f"{drawn[name]} ms (median {statistics.median(drawn[name]):.0f})")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

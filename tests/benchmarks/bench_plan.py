"""Plan a 100,000-item manifest and print wall time and peak RSS. Not a test: run it directly,
`python tests/benchmarks/bench_plan.py [ITEMS]`."""

from __future__ import annotations

import io
import resource
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.plan import plan_batch, plan_summary, plan_table

MANIFEST = """\
version: 1
name: bench
provider: oxen
model: kling-o1/image-to-video
defaults:
  prompt: "A {animal} in {place}, shot {n}, documentary footage"
matrix:
  duration: [5, 10]
repeat: 4
items_from: rows.csv
"""


def write_batch(folder: Path, items: int) -> Path:
    rows = ["id,animal,place,n,start_image"]
    for n in range(items // 8):
        rows.append(f"row{n},fox {n % 97},forest {n % 89},{n},https://example.org/img/{n % 500}.png")
    (folder / "rows.csv").write_text("\n".join(rows) + "\n")
    (folder / "bench.yaml").write_text(MANIFEST)
    return folder / "bench.yaml"


def main() -> None:
    items = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as folder:
        path = write_batch(Path(folder), items)
        start = time.perf_counter()
        plan = plan_batch(path, Settings())
        planned = time.perf_counter() - start
        Console(file=io.StringIO(), width=120).print(plan_table(plan), plan_summary(plan))
        total = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{len(plan.items):,} items: plan_batch {planned:.2f} s, with table {total:.2f} s, "
          f"peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()

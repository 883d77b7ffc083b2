"""The report and the dataset export of a 10,000-item batch. Not a test: run it directly,

    python tests/benchmarks/bench_report.py [--sources 2500] [--extract 200]

The batch (``sources`` x 2 aspect ratios x 2 samples, 1 in 25 failed, 1 in 97 pending) is built
through the Store API on an embedded redis-server, with real MP4s (hard links to one encoded per
ratio) and their poster frames already in place, as a rerun of `report` finds them. Figures:
writing report.html (reading the store, rendering), of which the batch summary (figures and SVG),
its size, headless Chromium's time to open it (wall time of `chromium --dump-dom`, and the page's
own time to its first drawn page), the posters the first screen loaded; poster extraction for
``extract`` videos (what a first report pays per video); `export --layout dataset` of the batch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reelbatch.jobs.store import Store  # noqa: E402
from reelbatch.scheduler.stack.embedded import EmbeddedRedis  # noqa: E402
from reelbatch.scheduler.views.charts import summarise  # noqa: E402
from reelbatch.scheduler.views.export import export_dataset, load_batch  # noqa: E402
from reelbatch.scheduler.views.report import make_posters, write_report  # noqa: E402
from reelbatch.scheduler.views.svg import summary_svg  # noqa: E402
from tests.batchfill import big_batch  # noqa: E402
from tests.integration.test_report import CHROMIUM_FLAGS, MEASURE, Cards, chromium  # noqa: E402


def timed(what, *args):
    start = time.perf_counter()
    value = what(*args)
    return value, time.perf_counter() - start


def open_in_chromium(page: Path, profile: Path) -> tuple[float, dict]:
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE), encoding="utf-8")
    command = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,900",
               "--dump-dom", probe.as_uri()]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    wall = time.perf_counter() - start
    parser = Cards()
    parser.feed(done.stdout)
    return wall, json.loads(parser.measure)


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--sources", type=int, default=2500)
    args.add_argument("--extract", type=int, default=200)
    opts = args.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-report-"))
    server = EmbeddedRedis(root / "redis")
    server.start()
    try:
        store = Store.from_url(server.url)
        items, built = timed(big_batch, store, "big", root / "out", opts.sources)
        (meta, records), loaded = timed(load_batch, store, "big")
        page, wrote = timed(write_report, meta, records, store.spend("big"))
        svg, drew = timed(lambda: summary_svg(summarise(meta, records, store.spend("big"))))
        wall, seen = open_in_chromium(page, root / "profile")
        videos = {rec.item_id: root / "out" / rec.file for rec in records if rec.file}
        sample = dict(list(videos.items())[:opts.extract])
        _, extracted = timed(make_posters, sample, root / "fresh-posters")
        done, exported = timed(export_dataset, meta, records, store.spend("big"), root / "dataset")
        rows = [
            ("items", f"{len(items):,}"),
            ("build the store state (not reelbatch's cost)", f"{built:.1f} s"),
            ("read every item from the store", f"{loaded:.2f} s"),
            ("write report.html (posters in place)", f"{wrote:.2f} s"),
            ("of which the summary: figures and SVG", f"{drew * 1000:.0f} ms ({len(svg) / 1000:.1f} kB)"),
            ("report.html size", f"{page.stat().st_size / 1e6:.2f} MB"),
            ("chromium --dump-dom, wall (start, load, 1.5 s wait, exit)", f"{wall:.1f} s"),
            ("page script: first page drawn at", f"{seen['rendered_ms']} ms"),
            ("cards in the DOM / posters loaded on the first screen",
             f"{len(seen['states'])} / {seen['posters_fetched']}"),
            (f"poster extraction, {len(sample)} videos", f"{extracted:.1f} s "
             f"({extracted / max(1, len(sample)) * 1000:.0f} ms per video)"),
            ("export --layout dataset", f"{exported:.2f} s ({done.videos:,} videos, {done.linked:,} hard links)"),
        ]
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            print(f"{key.ljust(width)}  {value}")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

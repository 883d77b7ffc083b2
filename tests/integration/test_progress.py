"""Progress without a terminal: plain lines every REELBATCH_PROGRESS_EVERY_S and at each tenth,
item outcomes from the store's outcome log (--verbose), nothing but the summary (--quiet), and
`status --watch` ending when the batch has settled. On a real redis-server; `run` and `status` as
subprocesses whose stdout is a pipe, as under nohup."""

from __future__ import annotations

import io
import re
import threading
import time

import pytest
from rich.console import Console

from reelbatch.jobs.settings import Settings
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import Store
from reelbatch.scheduler.views.progress import (
    NORMAL,
    QUIET,
    VERBOSE,
    BatchProgress,
    PlainProgress,
    Silent,
    make_progress,
    settled,
)
from tests.batchfill import fail, make_item, new_batch, start, succeed
from tests.integration.helpers import cli_env, reelbatch, results, write_manifest

pytestmark = pytest.mark.integration
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?P<batch>[\w-]+): (?P<done>\d+)/(?P<total>\d+) done · "
                  r"(?P<ok>\d+) succeeded · (?P<failed>\d+) failed · (?:\d+ cancelled · )?(?P<flight>\d+) in flight"
                  r" · (?P<waiting>\d+) waiting · (?P<spend>.+?) · ETA (?P<eta>[\d:?]+)$")
FAST = dict(time_scale=1 / 600, queue_delay=0.0, seed=7)


def plain_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=60), buffer


@pytest.fixture
def store(redis_url) -> Store:
    return Store.from_url(redis_url)


def ten_items(store: Store, tmp_path, name: str = "nightly") -> None:
    new_batch(store, name, tmp_path / "out", [make_item(f"clip{i}", f"take {i}") for i in range(10)])


def test_plain_lines_at_the_start_and_at_each_tenth_never_wrapped(store, tmp_path):
    ten_items(store, tmp_path)
    console, buffer = plain_console()
    progress = PlainProgress(store, "nightly", console, every_s=3600)
    progress.refresh()
    progress.refresh()                                   # nothing new: no line
    start(store, "nightly", "clip9")
    for i in range(8):
        succeed(store, "nightly", f"clip{i}", tmp_path / "out", charged=i % 2 == 0)
        progress.refresh()
    fail(store, "nightly", "clip8")
    progress.refresh()
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 10, lines                       # 0/10, then one per tenth
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines                            # each a whole line, though wider than 60
    assert [int(m["done"]) for m in parsed] == list(range(10))
    last = parsed[-1]
    assert (last["batch"], last["total"], last["ok"], last["failed"], last["flight"], last["waiting"]) == (
        "nightly", "10", "8", "1", "1", "0")
    assert last["spend"] == "$2.24 charged + $2.24 estimated"
    assert parsed[0]["eta"] == "?" and re.fullmatch(r"\d+:\d\d:\d\d", last["eta"])


def test_plain_lines_come_every_interval_without_news(store, tmp_path):
    ten_items(store, tmp_path)
    console, buffer = plain_console()
    progress = PlainProgress(store, "nightly", console, every_s=0.05)
    for _ in range(3):
        progress.refresh()
        time.sleep(0.06)
    assert len(buffer.getvalue().splitlines()) == 3


def test_verbose_prints_each_outcome_once_from_the_log(store, tmp_path):
    ten_items(store, tmp_path)
    succeed(store, "nightly", "clip0", tmp_path / "out")               # before the watch: not news
    console, buffer = plain_console()
    progress = PlainProgress(store, "nightly", console, every_s=3600, verbose=True)
    progress.refresh()
    succeed(store, "nightly", "clip1", tmp_path / "out")
    fail(store, "nightly", "clip2", kind="content_policy", error="refused [by] the provider")
    progress.refresh()
    progress.refresh()
    outcomes = [line for line in buffer.getvalue().splitlines() if line.startswith("  ")]
    assert outcomes == ["  clip1 succeeded -> clip1.mp4",
                        "  clip2 failed: [content_policy] refused [by] the provider"]


def test_outcome_log_is_read_from_a_cursor(store, tmp_path):
    ten_items(store, tmp_path)
    assert store.outcome_cursor("nightly") == "0-0" and store.outcomes("nightly", "0-0") == []
    succeed(store, "nightly", "clip0", tmp_path / "out")
    cursor = store.outcome_cursor("nightly")
    fail(store, "nightly", "clip1")
    store.transition("nightly", "clip1", S.FAILED, [S.FAILED], error="again")   # same state: no outcome
    assert [(i, s) for _, i, s in store.outcomes("nightly", "0-0")] == [("clip0", S.SUCCEEDED),
                                                                       ("clip1", S.FAILED)]
    assert [i for _, i, _ in store.outcomes("nightly", cursor)] == ["clip1"]


def test_make_progress_picks_the_display_for_the_console(store, tmp_path):
    ten_items(store, tmp_path)
    settings = Settings(progress_every_s=5)
    plain, _ = plain_console()
    made = make_progress(store, "nightly", plain, settings, NORMAL)
    assert isinstance(made, PlainProgress) and made.every_s == 5 and plain.soft_wrap
    assert isinstance(make_progress(store, "nightly", plain, settings, QUIET), Silent)
    tty = Console(file=io.StringIO(), force_terminal=True)
    shown = make_progress(store, "nightly", tty, settings, VERBOSE)
    assert isinstance(shown, BatchProgress) and shown.outcomes is not None and not tty.soft_wrap
    with shown:
        succeed(store, "nightly", "clip0", tmp_path / "out")
        shown.refresh()
    assert "clip0 succeeded -> clip0.mp4" in tty.file.getvalue()


def test_settled_waits_for_in_flight_items_but_not_for_the_budget(store, tmp_path):
    ten_items(store, tmp_path)
    assert not settled(store, "nightly")
    for i in range(9):
        succeed(store, "nightly", f"clip{i}", tmp_path / "out")
    start(store, "nightly", "clip9", S.SUBMITTING)
    assert not settled(store, "nightly")
    store.transition("nightly", "clip9", S.PENDING, error_kind="budget", error="over the budget")
    assert settled(store, "nightly")


def test_status_watch_without_a_terminal_prints_lines_and_ends_when_settled(store, tmp_path, redis_url):
    ten_items(store, tmp_path)
    for i in range(10):
        start(store, "nightly", f"clip{i}")

    def finish():
        for i in range(10):
            time.sleep(0.15)
            succeed(store, "nightly", f"clip{i}", tmp_path / "out")

    worker = threading.Thread(target=finish)
    worker.start()
    env = cli_env(tmp_path / "data", REELBATCH_BROKER_URL=redis_url, REELBATCH_PROGRESS_EVERY_S="3600")
    done = reelbatch("status", "nightly", "--watch", env=env, timeout=60)
    worker.join()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(LINE.match(line) for line in lines), lines
    assert LINE.match(lines[-1])["done"] == "10" and 2 <= len(lines) <= 11


def _run(tmp_path, sim_factory, *flags, n=12):
    sim = sim_factory(concurrency=20, **FAST)
    env = cli_env(tmp_path / "data", sim, REELBATCH_PROGRESS_EVERY_S="3600")
    manifest = write_manifest(tmp_path, "overnight", n)
    return reelbatch("run", str(manifest), *flags, env=env)


def test_run_verbose_in_a_log_has_progress_lines_outcomes_and_a_one_line_summary(tmp_path, sim_factory):
    done = _run(tmp_path, sim_factory, "--verbose")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    progress = [m for m in map(LINE.match, lines) if m]
    assert 2 <= len(progress) <= 12 and progress[-1]["done"] == "12" and progress[0]["done"] == "0"
    outcomes = sorted(line.split()[0] for line in lines if line.startswith("  ") and "succeeded ->" in line)
    assert outcomes == [row["item_id"] for row in results(tmp_path / "out")]
    summary = [line for line in lines if "results in" in line]
    assert len(summary) == 1 and summary[0].endswith(str(tmp_path / "out" / "results.jsonl"))
    assert "12 succeeded" in summary[0] and "charged" in summary[0]  # read back from the provider


def test_run_quiet_prints_only_the_summary(tmp_path, sim_factory):
    done = _run(tmp_path, sim_factory, "--quiet", n=4)
    assert done.returncode == 0, done.stdout + done.stderr
    [line] = done.stdout.splitlines()          # one line: money (the simulator's), when it ran, the index
    index = re.escape(str(tmp_path / "out" / "results.jsonl"))
    assert re.fullmatch(r"overnight: 4 succeeded; \$2\.24 charged by the simulator \(not real money\); "
                        r"ran 0:\d\d, \d\d:\d\d-\d\d:\d\d; results in " + index, line), line


def test_run_refuses_quiet_with_verbose(tmp_path):
    manifest = write_manifest(tmp_path, "both", 1)
    done = reelbatch("run", str(manifest), "-q", "-v", env=cli_env(tmp_path / "data"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--quiet" in done.stderr

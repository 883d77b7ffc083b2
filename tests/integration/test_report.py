"""`reelbatch report` of a real batch, rendered by a real headless Chromium: one card per item with
its state, poster frames on disk, and the state filter hiding the other cards."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.integration.helpers import cli_env, reelbatch, write_manifest

pytestmark = pytest.mark.integration
FAST = dict(time_scale=1 / 600, queue_delay=0.0, seed=7)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=5000")
GOOD, BAD = 5, 3


def chromium() -> str:
    """Debian's chromium; its absence fails the test (CI installs it with apt)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is not installed: apt-get update && apt-get install -y chromium")
    return found


def browse(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


class Cards(HTMLParser):
    """The grid cards of a dumped DOM: item id -> (state, hidden)."""

    def __init__(self):
        super().__init__()
        self.cards: dict[str, tuple[str, bool]] = {}

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if tag == "article" and "card" in (found.get("class") or "").split():
            self.cards[found["data-item"]] = (found["data-state"], "hidden" in found)


def rendered_cards(page: Path, fragment: str, profile: Path) -> dict[str, tuple[str, bool]]:
    parser = Cards()
    parser.feed(browse(page.as_uri() + fragment, profile, "--dump-dom").stdout)
    return parser.cards


def run_mixed_batch(tmp_path: Path, sim_factory) -> dict[str, str]:
    """GOOD items succeed on a healthy simulator, then BAD more fail once every generation fails;
    returns the CLI environment."""
    sim = sim_factory(concurrency=20, **FAST)
    env = cli_env(tmp_path / "data", sim)
    first = write_manifest(tmp_path, "looks", GOOD, retry={"max_attempts": 1})
    assert reelbatch("run", str(first), env=env).returncode == 0
    sim.set_knobs(fail_rate=1.0)
    both = write_manifest(tmp_path, "looks", GOOD + BAD, retry={"max_attempts": 1})
    done = reelbatch("run", str(both), env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    return env


def test_report_renders_every_item_and_filters_by_state(tmp_path, sim_factory):
    chromium()  # fail before running a batch when it is missing
    env = run_mixed_batch(tmp_path, sim_factory)
    done = reelbatch("report", "looks", env=env)
    _stop_embedded_redis(tmp_path / "data")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    page = out / "report.html"
    assert sorted(p.name for p in (out / "posters").iterdir()) == [
        f"clip{i:03d}.jpg" for i in range(GOOD)]

    cards = rendered_cards(page, "", tmp_path / "profile")
    assert Counter(state for state, _ in cards.values()) == {"succeeded": GOOD, "failed": BAD}
    assert not any(hidden for _, hidden in cards.values())
    failed_only = rendered_cards(page, "#failed", tmp_path / "profile")
    assert {i: hidden for i, (state, hidden) in failed_only.items()} == {
        i: state != "failed" for i, (state, _) in cards.items()}

    html = page.read_text()
    assert len(re.findall(r'<video controls preload="none" src="clip\d+\.mp4" '
                          r'poster="posters/clip\d+\.jpg">', html)) == GOOD
    shot = tmp_path / "report.png"
    browse(page.as_uri(), tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,900")
    assert shot.stat().st_size > 10_000


def _stop_embedded_redis(data_dir: Path) -> None:
    """`reelbatch report` starts the embedded Redis when none runs; stop it."""
    import redis

    port, password = (data_dir / "redis.port").read_text(), (data_dir / "redis.password").read_text()
    try:
        redis.Redis(port=int(port), password=password).shutdown(nosave=True)
    except redis.ConnectionError:
        pass

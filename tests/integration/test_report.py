"""`reelbatch report` of a real batch, rendered by a real headless Chromium: one card per item with
its state, poster frames on disk, and the state filter hiding the other cards."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reelbatch.jobs.store import Store
from reelbatch.scheduler.views.export import load_batch
from reelbatch.scheduler.views.report import write_report
from tests.batchfill import big_batch, fail, make_item, new_batch, succeed
from tests.integration.helpers import cli_env, reelbatch, write_manifest

pytestmark = pytest.mark.integration
FAST = dict(time_scale=1 / 600, queue_delay=0.0, seed=7)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=5000")
GOOD, BAD = 5, 3
PNG_1X1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


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
    """The cards of a dumped DOM (what the page's script drew): item id -> state; and the
    measurement a test script left in ``<pre id="measure">``."""

    def __init__(self):
        super().__init__()
        self.cards: dict[str, str] = {}
        self.measure, self._in_measure = "", False

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if tag == "article" and "card" in (found.get("class") or "").split():
            self.cards[found["data-item"]] = found["data-state"]
        self._in_measure = tag == "pre" and found.get("id") == "measure"

    def handle_data(self, data):
        if self._in_measure:
            self.measure += data


def rendered(page: Path, fragment: str, profile: Path, *extra: str) -> Cards:
    parser = Cards()
    parser.feed(browse(page.as_uri() + fragment, profile, "--dump-dom", *extra).stdout)
    return parser


def rendered_cards(page: Path, fragment: str, profile: Path) -> dict[str, str]:
    return rendered(page, fragment, profile).cards


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
    assert Counter(cards.values()) == {"succeeded": GOOD, "failed": BAD}
    failed_only = rendered_cards(page, "#failed", tmp_path / "profile")
    assert failed_only == {i: state for i, state in cards.items() if state == "failed"}

    html = page.read_text()
    assert len(re.findall(r'"v":"clip\d+\.mp4","po":"posters/clip\d+\.jpg"', html)) == GOOD
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


# --- the report at scale: 2,000 items built through the Store API, real MP4s and posters -----

MEASURE = """<pre id="measure"></pre><script>
setTimeout(function () {
  var box = function (n) { var r = n.getBoundingClientRect(); return [Math.round(r.top), Math.round(r.width),
                                                                      Math.round(r.height)]; };
  var cards = Array.from(document.querySelectorAll("main .card"));
  var out = {
    rendered_ms: Number(document.documentElement.dataset.rendered),
    pager: document.querySelector(".pager .where").textContent,
    states: cards.map(function (c) { return c.dataset.state; }),
    media: cards.map(function (c) { return box(c.querySelector(".media")); }),
    inner: cards.map(function (c) { var m = c.querySelector(".media img");
                                    return m ? box(m) : null; }),
    lazy: Array.from(document.querySelectorAll(".media img")).every(function (i) { return i.loading === "lazy"; }),
    posters_fetched: Array.from(document.querySelectorAll(".media img")).filter(function (i) {
      return i.naturalWidth > 0; }).length,
    videos: document.querySelectorAll("video").length,
    groups: Array.from(document.querySelectorAll("section.group")).map(function (g) {
      return {source: g.dataset.source, tops: Array.from(g.querySelectorAll(".card")).map(function (c) {
        return box(c)[0]; }), items: Array.from(g.querySelectorAll(".card")).map(function (c) {
        return c.dataset.item; })}; })
  };
  var play = document.querySelector(".media .play");
  if (play) { play.click(); var v = document.querySelector(".media video");
              out.played = v ? v.getAttribute("src") : null; }
  document.getElementById("measure").textContent = JSON.stringify(out);
}, 1500);
</script></body>"""


def measured(page: Path, fragment: str, profile: Path) -> dict:
    """Open ``page`` with a measuring script appended (a copy beside it, so its URLs hold)."""
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE), encoding="utf-8")
    found = rendered(probe, fragment, profile, "--window-size=1280,900")
    return json.loads(found.measure)


@pytest.fixture
def big_report(redis_url, tmp_path) -> tuple[Path, list]:
    store = Store.from_url(redis_url)
    items = big_batch(store, "wide", tmp_path / "out", 500)          # 500 sources x 2 ratios x 2 samples
    meta, records = load_batch(store, "wide")
    return write_report(meta, records, store.spend(meta.name)), items


def test_a_2000_item_report_pages_keeps_a_tidy_grid_and_loads_posters_lazily(big_report, tmp_path):
    chromium()
    page, items = big_report
    assert len(items) == 2000
    size = page.stat().st_size
    assert size < 1_500_000, size                                      # ~0.37 kB per item

    first = measured(page, "", tmp_path / "profile")
    assert first["pager"] == "page 1 of 34 · 2000 items" and len(first["states"]) == 60
    shapes = {(w, h) for _, w, h in first["media"]}
    assert len(shapes) == 1, shapes                                    # 16:9 and 9:16: one frame shape
    (width, height), = shapes
    assert abs(width - height) <= 1                                    # mixed ratios: a square frame
    for (top, w, h), inner in zip(first["media"], first["inner"], strict=True):
        assert inner is None or (inner[0] == top and inner[1] <= w and inner[2] <= h)
    rows: dict[int, list[int]] = {}
    for top, _, _ in first["media"]:
        rows.setdefault(top, []).append(top)
    assert len(rows) == 15 and all(len(r) == 4 for r in rows.values())   # 4 columns at 1280 px
    # posters: lazy images, and only the page's (Chromium's lazy margin is a few screens: paging bounds it)
    assert first["lazy"] and 0 < first["posters_fetched"] <= 60, first["posters_fetched"]
    assert first["videos"] == 0 and first["played"].endswith(".mp4")   # a video only when played
    assert first["rendered_ms"] < 5000

    failed = measured(page, "#failed&page=2", tmp_path / "profile")
    assert set(failed["states"]) == {"failed"} and failed["pager"] == "page 2 of 2 · 80 items"
    assert len(failed["states"]) == 20

    variants = measured(page, "#view=variants&page=3", tmp_path / "profile")
    assert variants["pager"] == "page 3 of 25 · 500 source items" and len(variants["groups"]) == 20
    for group in variants["groups"]:
        assert len(group["items"]) == 4 and len(set(group["tops"])) == 1   # side by side, one row
        assert all(item.startswith(group["source"] + "-") for item in group["items"])
    assert variants["groups"][0]["source"] == "src00040"


def test_a_single_ratio_batch_keeps_its_own_frame(redis_url, tmp_path):
    chromium()
    store = Store.from_url(redis_url)
    big_batch(store, "tall", tmp_path / "out", 6, aspects=("9:16",), samples=1)
    meta, records = load_batch(store, "tall")
    found = measured(write_report(meta, records, store.spend(meta.name)), "", tmp_path / "profile")
    (_, width, height), = {tuple(m) for m in found["media"][:1]}
    assert abs(height * 9 - width * 16) <= 16 and len({(w, h) for _, w, h in found["media"]}) == 1
    assert "variants" not in found["pager"] and found["groups"] == []


def test_prompts_and_errors_are_shown_as_text(redis_url, tmp_path):
    chromium()
    store, out = Store.from_url(redis_url), tmp_path / "out"
    evil = '<b id="injected">bold</b><img src=x onerror="document.title=1">'
    new_batch(store, "evil", out, [make_item("x1", evil), make_item("x2", "fine")])
    succeed(store, "evil", "x1", out)
    fail(store, "evil", "x2", error=evil)
    meta, records = load_batch(store, "evil")
    page = write_report(meta, records, store.spend(meta.name))
    dom = browse(page.as_uri(), tmp_path / "profile", "--dump-dom").stdout
    assert '<b id="injected">' not in dom and '<img src="x"' not in dom
    assert "<title>evil · reelbatch report</title>" in dom                # no onerror ran
    assert dom.count("&lt;b id=\"injected\"&gt;bold&lt;/b&gt;") == 2      # the prompt and the error, as text


# --- the batch's summary: charts drawn from the store, their figures those of `status --json` --

class Summary(HTMLParser):
    """The summary's figures in a dumped DOM: each chart's data attributes, the failure links."""

    def __init__(self):
        super().__init__()
        self.charts: dict[str, dict] = {}
        self.kinds: dict[str, tuple[int, str]] = {}

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if tag == "figure" and "data-chart" in found:
            self.charts[found["data-chart"]] = found
        if tag == "a" and "data-kind" in found:
            self.kinds[found["data-kind"]] = (int(found["data-count"]), found["href"])


def test_the_summary_shows_the_batch_as_status_counts_it(tmp_path, sim_factory):
    chromium()
    env = run_mixed_batch(tmp_path, sim_factory)
    status = json.loads(reelbatch("status", "looks", "--json", env=env).stdout)
    done = reelbatch("report", "looks", env=env)
    _stop_embedded_redis(tmp_path / "data")
    assert done.returncode == 0, done.stderr
    page = tmp_path / "out" / "report.html"
    dom = browse(page.as_uri(), tmp_path / "profile", "--dump-dom").stdout
    summary = Summary()
    summary.feed(dom)
    assert set(summary.charts) == {"spend", "throughput", "timing", "failures"}
    spend = summary.charts["spend"]
    assert float(spend["data-charged"]) == pytest.approx(status["charged_usd"], abs=1e-4)
    assert float(spend["data-estimated"]) == pytest.approx(status["estimated_usd"], abs=1e-4)
    assert int(summary.charts["throughput"]["data-done"]) == status["done"] == GOOD + BAD
    assert {k: n for k, (n, _) in summary.kinds.items()} == status["failure_kinds"]

    for kind, (count, href) in summary.kinds.items():
        assert href == f"#failed&kind={kind}"
        by_kind = rendered_cards(page, href, tmp_path / "profile")
        assert len(by_kind) == count and set(by_kind.values()) == {"failed"}
    assert sum(n for n, _ in summary.kinds.values()) == BAD
    assert rendered_cards(page, "#failed&kind=no_such_kind", tmp_path / "profile") == {}
    assert list(rendered_cards(page, "#all&q=CLIP004", tmp_path / "profile")) == ["clip004"]
    assert list(rendered_cards(page, "#all&q=take%206", tmp_path / "profile")) == ["clip006"]
    by_cost = rendered(page, "#all&sort=cost", tmp_path / "profile").cards
    assert list(by_cost.values())[:GOOD] == ["succeeded"] * GOOD    # paid generations first
    shot = tmp_path / "summary.png"
    browse(page.as_uri(), tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,900")
    assert shot.stat().st_size > 10_000


def test_variants_are_labelled_by_every_field_that_differs(redis_url, tmp_path):
    chromium()
    store, out = Store.from_url(redis_url), tmp_path / "out"
    image = tmp_path / "ox.png"                                      # a local input: linked from the page
    image.write_bytes(base64.b64decode(PNG_1X1))
    items = [make_item("ox-a", "An ox in spring", source_id="ox", duration=5, start_image=str(image)),
             make_item("ox-b", "An ox in summer", source_id="ox", duration=10)]
    new_batch(store, "mixed", out, items)
    meta, records = load_batch(store, "mixed")
    page = write_report(meta, records, store.spend(meta.name))
    cards = json.loads(re.search(r'id="card-data">(.*?)</script>', page.read_text()).group(1))
    assert [c["var"] for c in cards] == ["prompt An ox in spring · duration 5 · start_image " + str(image),
                                         "prompt An ox in summer · duration 10 · start_image https://e.org/a.png"]
    inputs = json.loads(re.search(r'id="input-data">(.*?)</script>', page.read_text()).group(1))
    assert [inputs[c["in"]] for c in cards] == ["../ox.png", "https://e.org/a.png"]   # each input once
    dom = browse(page.as_uri() + "#view=variants", tmp_path / "profile", "--dump-dom").stdout
    assert "2 prompts (each variant is labelled)" in dom
    assert re.search(r'<img class="thumb"[^>]*src="\.\./ox\.png"', dom), dom[-3000:]

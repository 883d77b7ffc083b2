"""`reelbatch export` and `reelbatch report` on a store filled through the Store API, on a real
redis-server; the CLI as a subprocess for exit codes."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from reelbatch.jobs.item import Item, Params
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import BatchMeta, Store
from reelbatch.scheduler.views.export import export_index, load_batch
from reelbatch.scheduler.views.report import write_report
from reelbatch.simulator.media import make_mp4
from tests.integration.helpers import cli_env, reelbatch

XSS = '<script>alert("x")</script> & <b>bold</b>'
SUCCEEDED, FAILED, PENDING = ("ok-1", "ok-2"), ("bad-1",), ("wait-1",)


def make_item(item_id: str, prompt: str, **params) -> Item:
    return Item(item_id=item_id, source_id=item_id, content_key=f"k-{item_id}", provider="simulator",
                model="kling-o1/image-to-video", provider_model="kling-video-o1-image-to-video",
                params=Params(prompt=prompt, start_image="https://e.org/a.png", **params),
                video_seconds=5, estimated_cost_usd=0.56)


def succeed(store: Store, batch: str, item_id: str, out: Path) -> None:
    for state in (S.SUBMITTING, S.QUEUED, S.RUNNING, S.DOWNLOADING):
        store.transition(batch, item_id, state)
    make_mp4(1, "16:9", out / f"{item_id}.mp4")
    store.transition(batch, item_id, S.SUCCEEDED, file=f"{item_id}.mp4", sha256="ab" * 32,
                     bytes=1234, cost_usd=0.56, generation_id=f"g-{item_id}", attempts=1)


def fail(store: Store, batch: str, item_id: str) -> None:
    store.transition(batch, item_id, S.SUBMITTING)
    store.transition(batch, item_id, S.FAILED, error_kind="permanent",
                     error="simulator 422: <img src=x onerror=alert(1)>", attempts=1)


@pytest.fixture
def batch(redis_url, tmp_path) -> tuple[Store, str, Path]:
    store, out = Store.from_url(redis_url), tmp_path / "out"
    out.mkdir()
    store.save_batch(BatchMeta(name="b", provider="simulator", model="kling-o1/image-to-video",
                               output=str(out)))
    store.add_items("b", [make_item("ok-1", XSS, duration=5, aspect_ratio="16:9"),
                          make_item("ok-2", "A calm, \"quoted\"\nsea", duration=10),
                          make_item("bad-1", "A storm", duration=5),
                          make_item("wait-1", "Later", duration=5)])
    for item_id in SUCCEEDED:
        succeed(store, "b", item_id, out)
    fail(store, "b", "bad-1")
    return store, "b", out


def _rows_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_index_has_one_line_per_item_matching_the_store(batch):
    store, name, out = batch
    meta, records = load_batch(store, name)
    path = export_index(meta, records, "jsonl", None)
    assert path == out / "results.jsonl"
    rows = {row["item_id"]: row for row in _rows_jsonl(path)}
    assert sorted(rows) == sorted(SUCCEEDED + FAILED + PENDING)
    assert rows["ok-1"]["params"]["prompt"] == XSS and rows["ok-1"]["file"] == "ok-1.mp4"
    assert rows["bad-1"]["status"] == "failed" and rows["bad-1"]["error_kind"] == "permanent"
    assert rows["wait-1"]["status"] == "pending" and rows["wait-1"]["file"] is None


def test_csv_round_trips_to_the_jsonl_rows(batch, tmp_path):
    store, name, _ = batch
    meta, records = load_batch(store, name)
    expected = _rows_jsonl(export_index(meta, records, "jsonl", tmp_path / "r.jsonl"))
    with open(export_index(meta, records, "csv", tmp_path / "r.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["item_id"] for r in rows] == [e["item_id"] for e in expected]
    for row, want in zip(rows, expected, strict=True):
        assert json.loads(row["params"]) == want["params"]          # params: one JSON column
        assert row["error"] == (want["error"] or "")                 # nulls are empty cells
        assert row["bytes"] == ("" if want["bytes"] is None else str(want["bytes"]))
        assert list(row) == list(want)


def report_cards(html: str) -> list[dict]:
    """The cards a report carries as JSON in its data script element."""
    data = html.split('<script type="application/json" id="card-data">', 1)[1].split("</script>", 1)[0]
    return json.loads(data)


def test_report_carries_prompts_and_errors_as_json_that_cannot_break_out(batch):
    store, name, out = batch
    meta, records = load_batch(store, name)
    html = write_report(meta, records, store.spend(meta.name)).read_text()
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>bold" not in html
    assert html.count("<script") == 3 and html.count("</script>") == 3   # cards, inputs, the page's code
    cards = {c["id"]: c for c in report_cards(html)}
    assert cards["ok-1"]["p"] == XSS
    assert cards["bad-1"]["e"] == "[permanent] simulator 422: <img src=x onerror=alert(1)>"
    assert cards["ok-2"]["p"] == 'A calm, "quoted"\nsea'


def test_report_links_videos_and_posters_made_once(batch, tmp_path):
    store, name, out = batch
    meta, records = load_batch(store, name)
    cards = {c["id"]: c for c in report_cards(write_report(meta, records, store.spend(meta.name)).read_text())}
    assert (cards["ok-1"]["v"], cards["ok-1"]["po"], cards["ok-1"]["f"]) == ("ok-1.mp4", "posters/ok-1.jpg", "ok-1.mp4")
    assert cards["bad-1"].get("v") is None and cards["wait-1"]["c"] == "~$0.56 estimated"   # empty: left out
    assert cards["ok-1"]["c"] == "$0.56 estimated"
    poster = out / "posters" / "ok-1.jpg"
    first = poster.stat().st_mtime_ns
    os.utime(poster, ns=(first + 10**9, first + 10**9))
    write_report(meta, records, store.spend(meta.name))
    assert poster.stat().st_mtime_ns == first + 10**9                 # not extracted again
    elsewhere_page = write_report(meta, records, store.spend(meta.name), tmp_path / "pages" / "r.html")
    elsewhere = {c["id"]: c for c in report_cards(elsewhere_page.read_text())}
    assert (elsewhere["ok-1"]["v"], elsewhere["ok-1"]["po"]) == ("../out/ok-1.mp4", "../out/posters/ok-1.jpg")


@pytest.mark.cli
def test_cli_unknown_batch_is_one_line_and_exit_2(redis_url, tmp_path):
    env = cli_env(tmp_path / "data", REELBATCH_BROKER_URL=redis_url)
    for command in (["export", "nope", "--format", "csv"], ["report", "nope"]):
        done = reelbatch(*command, env=env)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "no batch named 'nope'" in done.stderr


@pytest.mark.cli
def test_cli_exports_csv_and_refuses_stdout_for_a_dataset(batch, redis_url, tmp_path):
    _, name, out = batch
    env = cli_env(tmp_path / "data", REELBATCH_BROKER_URL=redis_url)
    done = reelbatch("export", name, "--format", "csv", env=env)
    assert done.returncode == 0, done.stderr
    assert len((out / "results.csv").read_text().splitlines()) >= 5
    done = reelbatch("export", name, "--layout", "dataset", "--out", "-", env=env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--out DIR" in done.stderr


# --- export safety (issue 11.12) -------------------------------------------------------------

FORMULAS = ("=cmd|' /C calc'!A0", "+1+2", "-2+3", "@SUM(A1)", "\t=1")


@pytest.fixture
def risky(redis_url, tmp_path) -> tuple[Store, str, Path]:
    store, out = Store.from_url(redis_url), tmp_path / "out"
    out.mkdir()
    store.save_batch(BatchMeta(name="r", provider="simulator", model="kling-o1/image-to-video", output=str(out)))
    store.add_items("r", [make_item(f"f{n}", "Ox in snow ❄ — été") for n in range(len(FORMULAS))])
    for n, text in enumerate(FORMULAS):
        store.transition("r", f"f{n}", S.SUBMITTING)
        store.transition("r", f"f{n}", S.FAILED, error_kind="permanent", error=text, attempts=1)
    return store, "r", out


def test_csv_defuses_formulas_and_keeps_numbers(risky, tmp_path):
    store, name, _ = risky
    meta, records = load_batch(store, name)
    with open(export_index(meta, records, "csv", tmp_path / "r.csv"), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["error"] for r in rows] == ["'" + text for text in FORMULAS]
    assert {r["attempts"] for r in rows} == {"1"} and {r["estimated_cost_usd"] for r in rows} == {"0.56"}
    assert json.loads(rows[0]["params"])["prompt"] == "Ox in snow ❄ — été"


def test_text_is_utf8_not_escapes(risky, tmp_path):
    store, name, _ = risky
    meta, records = load_batch(store, name)
    for fmt in ("jsonl", "csv"):
        raw = export_index(meta, records, fmt, tmp_path / f"r.{fmt}").read_bytes()
        assert "❄ — été".encode() in raw and b"\\u" not in raw


@pytest.mark.cli
def test_cli_out_dash_writes_standard_output(risky, redis_url, tmp_path):
    _, name, out = risky
    env = cli_env(tmp_path / "data", REELBATCH_BROKER_URL=redis_url, PYTHONIOENCODING="ascii")
    done = reelbatch("export", name, "--out", "-", env=env)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["item_id"] for r in rows] == [f"f{n}" for n in range(len(FORMULAS))]
    assert "❄" in done.stdout and "standard output" in done.stderr
    assert not (out / "results.jsonl").exists() and not (tmp_path / "-").exists()
    done = reelbatch("export", name, "--format", "csv", "--out", "-", env=env)
    assert done.returncode == 0 and done.stdout.splitlines()[1].count("'=cmd") == 1


@pytest.mark.cli
def test_cli_refuses_symlinks_devices_and_unwritable_folders(risky, redis_url, tmp_path):
    _, name, _ = risky
    env = cli_env(tmp_path / "data", REELBATCH_BROKER_URL=redis_url)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "link.csv").symlink_to(victim)
    readonly = Path("/sys") if os.geteuid() == 0 else tmp_path / "ro"   # root writes through modes
    if readonly != Path("/sys"):
        readonly.mkdir(mode=0o555)
    cases = {str(tmp_path / "link.csv"): "not a regular file", "/dev/null": "not a regular file",
             str(tmp_path / "missing" / "r.csv"): "does not exist",
             str(readonly / "r.csv"): "Permission denied"}
    for target, why in cases.items():
        for command in (["export", name, "--format", "csv", "--out", target], ["report", name, "--out", target]):
            done = reelbatch(*command, env=env)
            assert done.returncode == 2, (command, done.stderr)
            assert done.stderr.count("\n") == 1 and why in done.stderr and "Traceback" not in done.stderr
    assert victim.read_text() == "keep me" and (tmp_path / "link.csv").is_symlink()
    assert not (tmp_path / "missing").exists()


@pytest.mark.cli
def test_report_into_a_read_only_output_folder_is_one_line(risky, redis_url, tmp_path):
    store, name, out = risky
    if os.geteuid() == 0:
        store.update_batch(name, output="/sys/reelbatch-out")
    else:
        out.chmod(0o555)
    env = cli_env(tmp_path / "data", REELBATCH_BROKER_URL=redis_url)
    for command in (["report", name], ["export", name]):
        done = reelbatch(*command, env=env)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "cannot write" in done.stderr and "Traceback" not in done.stderr

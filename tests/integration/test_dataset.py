"""`reelbatch export --layout dataset`: a clean folder that Hugging Face `datasets` loads as a video
dataset. Real MP4s, a real redis-server, the real `datasets` library (a test extra).

Decoding a video with `datasets` needs torchcodec (and torch), which reelbatch does not install: the
test loads the folder as `load_dataset(DIR)` does, checks the `video` column's type, then reads the
rows with `decode=False` (the video paths) and checks them against the files and the store."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest

from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import Store
from reelbatch.scheduler.views.export import CARD, export_dataset, load_batch
from reelbatch.simulator.media import make_mp4
from tests.batchfill import fail, make_item, new_batch, succeed
from tests.integration.helpers import cli_env, reelbatch
from tests.media import png_header

datasets = pytest.importorskip("datasets", reason="the `datasets` test extra: pip install -e '.[test]'")
pytestmark = pytest.mark.integration


@pytest.fixture
def batch(redis_url, tmp_path) -> tuple[Store, Path]:
    """Variants of two source items (two aspect ratios, two samples), one failed item, one video gone
    from disk; and the output folder's other files: sidecars, results.jsonl, report.html, posters."""
    store, out = Store.from_url(redis_url), tmp_path / "out"
    items = [make_item("ox-16x9-s1", "An ox in snow ❄", "ox", 1, aspect_ratio="16:9", duration=5),
             make_item("ox-9x16-s1", "An ox in snow ❄", "ox", 1, aspect_ratio="9:16", duration=5),
             make_item("ox-9x16-s2", "An ox in snow ❄", "ox", 2, aspect_ratio="9:16", duration=5),
             make_item("sea", "=A calm sea", raw={"cfg_scale": 0.5}, video="https://e.org/in.mp4"),
             make_item("storm", "A storm"), make_item("gone", "Gone")]
    new_batch(store, "ds", out, items)
    for item_id, aspect in (("ox-16x9-s1", "16:9"), ("ox-9x16-s1", "9:16"), ("ox-9x16-s2", "9:16"),
                            ("sea", "1:1"), ("gone", "16:9")):
        succeed(store, "ds", item_id, out, aspect=aspect, charged=item_id == "sea")
    fail(store, "ds", "storm")
    (out / "gone.mp4").unlink()
    for name in ("results.jsonl", "report.html", "sea.json", "storm.json"):
        (out / name).write_text("{}\n")
    (out / "posters").mkdir()
    (out / "posters" / "sea.jpg").write_bytes(b"\xff\xd8")
    return store, out


EXPECTED = ["ox-16x9-s1", "ox-9x16-s1", "ox-9x16-s2", "sea"]


def test_the_folder_holds_only_videos_metadata_and_a_card(batch, tmp_path):
    store, out = batch
    meta, records = load_batch(store, "ds")
    done = export_dataset(meta, records, store.spend(meta.name), tmp_path / "dataset")
    folder = tmp_path / "dataset"
    assert sorted(os.listdir(folder)) == sorted([CARD, "metadata.jsonl", *(f"{i}.mp4" for i in EXPECTED)])
    assert done.videos == 4 and done.missing == ["gone"] and done.linked == 4
    for item_id in EXPECTED:                                           # hard links, not copies
        assert (folder / f"{item_id}.mp4").stat().st_ino == (out / f"{item_id}.mp4").stat().st_ino
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["file_name"] for r in rows] == [f"{i}.mp4" for i in EXPECTED]
    assert all(list(r) == list(rows[0]) for r in rows)                  # one set of columns
    sea = rows[3]
    assert (sea["prompt"], sea["input_video"], sea["raw"]) == ("=A calm sea", "https://e.org/in.mp4",
                                                               '{"cfg_scale": 0.5}')
    assert (sea["cost_usd"], sea["cost_source"]) == (0.56, "charged")
    assert [(r["source_id"], r["sample"], r["aspect_ratio"]) for r in rows[:3]] == [
        ("ox", 1, "16:9"), ("ox", 1, "9:16"), ("ox", 2, "9:16")]
    card = (folder / CARD).read_text(encoding="utf-8")
    assert card.startswith("---\npretty_name: \"ds\"\n") and "task_categories:\n- image-to-video" in card
    # the batch's spend, from the store's counters (the video gone from disk was paid for too)
    assert f"The batch's spend: {store.spend('ds').label()}." in card and "$0.56 charged" in card


def test_datasets_loads_it_with_a_video_column(batch, tmp_path):
    store, _ = batch
    meta, records = load_batch(store, "ds")
    folder = export_dataset(meta, records, store.spend(meta.name), tmp_path / "dataset").folder
    loaded = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "hf-cache"))
    train = loaded["train"]
    assert list(loaded) == ["train"] and train.num_rows == 4
    assert isinstance(train.features["video"], datasets.Video)
    assert {"prompt", "item_id", "source_id", "sample", "aspect_ratio", "cost_usd"} <= set(train.column_names)
    assert "file_name" not in train.column_names                        # it became the video column
    rows = train.cast_column("video", datasets.Video(decode=False))
    assert [Path(r["video"]["path"]).name for r in rows] == [f"{i}.mp4" for i in EXPECTED]
    assert all(Path(r["video"]["path"]).resolve().parent == folder.resolve() for r in rows)
    assert [r["item_id"] for r in rows] == EXPECTED and rows[0]["prompt"] == "An ox in snow ❄"


def test_a_new_export_replaces_the_earlier_one_and_a_foreign_folder_is_refused(batch, tmp_path, redis_url):
    store, out = batch
    meta, records = load_batch(store, "ds")
    folder = tmp_path / "dataset"
    export_dataset(meta, records, store.spend(meta.name), folder)
    store.transition("ds", "sea", S.DOWNLOADING)
    store.transition("ds", "sea", S.FAILED, error_kind="download", error="gone")
    env = cli_env(tmp_path / "data", REELBATCH_BROKER_URL=redis_url)
    done = reelbatch("export", "ds", "--layout", "dataset", "--out", str(folder), env=env)
    assert done.returncode == 0, done.stderr
    assert f"ds: 3 videos of 6 items -> {folder} (3 hard links, 0 copies)" in done.stdout
    assert "gone" in done.stderr
    assert not (folder / "sea.mp4").exists() and (out / "sea.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dataset.")]   # nothing left aside

    done = reelbatch("export", "ds", "--layout", "dataset", env=env)     # default: beside the output folder
    assert done.returncode == 0 and (tmp_path / "out-dataset" / "metadata.jsonl").is_file(), done.stderr

    for foreign in (tmp_path, out):
        done = reelbatch("export", "ds", "--layout", "dataset", "--out", str(foreign), env=env)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "not an earlier dataset export" in done.stderr
    assert (out / "results.jsonl").exists() and (out / "report.html").exists()


def test_copies_where_links_cannot_be_made(batch, tmp_path):
    store, out = batch
    elsewhere = Path("/dev/shm") / f"reelbatch-{uuid.uuid4().hex}"
    if not elsewhere.parent.is_dir():
        elsewhere = tmp_path / "same-device"
    meta, records = load_batch(store, "ds")
    elsewhere.mkdir()
    try:
        done = export_dataset(meta, records, store.spend(meta.name), elsewhere / "dataset")
        same_device = elsewhere.stat().st_dev == out.stat().st_dev
        assert done.linked == (4 if same_device else 0) and done.videos == 4
        assert (elsewhere / "dataset" / "sea.mp4").read_bytes() == (out / "sea.mp4").read_bytes()
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


def test_csv_metadata_keeps_prompts_exactly(batch, tmp_path):
    import csv

    store, _ = batch
    meta, records = load_batch(store, "ds")
    folder = export_dataset(meta, records, store.spend(meta.name), tmp_path / "dataset", "csv").folder
    assert not (folder / "metadata.jsonl").exists()
    with open(folder / "metadata.csv", newline="", encoding="utf-8") as fh:
        rows = {r["item_id"]: r for r in csv.DictReader(fh)}
    assert rows["sea"]["prompt"] == "=A calm sea" and rows["sea"]["file_name"] == "sea.mp4"
    loaded = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "hf-cache"))["train"]
    assert loaded.num_rows == 4 and isinstance(loaded.features["video"], datasets.Video)


@pytest.fixture
def local_inputs(redis_url, tmp_path) -> tuple[Store, Path]:
    """Items whose inputs are local files (two share one start image, two files share a name) and
    one whose start image is a URL."""

    store, out, images = Store.from_url(redis_url), tmp_path / "out", tmp_path / "images"
    (images / "other").mkdir(parents=True)
    (images / "ox.png").write_bytes(png_header(pad=1))
    (images / "other" / "ox.png").write_bytes(png_header(pad=2))
    (images / "end.png").write_bytes(png_header(pad=3))
    clip = images / "clip.mp4"
    make_mp4(1, "16:9", clip)
    items = [make_item("a", "A", start_image=str(images / "ox.png"), end_image=str(images / "end.png")),
             make_item("b", "B", start_image=str(images / "ox.png")),
             make_item("c", "C", start_image=str(images / "other" / "ox.png"), video=str(clip)),
             make_item("d", "D", start_image="https://e.org/remote.png")]
    new_batch(store, "ins", out, items)
    for item in items:
        succeed(store, "ins", item.item_id, out)
    return store, tmp_path


def test_local_inputs_travel_with_the_dataset(local_inputs):
    store, tmp_path = local_inputs
    meta, records = load_batch(store, "ins")
    export_dataset(meta, records, store.spend(meta.name), tmp_path / "dataset")
    moved = tmp_path / "elsewhere" / "published"
    moved.parent.mkdir()
    shutil.move(str(tmp_path / "dataset"), moved)
    shutil.rmtree(tmp_path / "images")                                  # the generating machine's files are gone
    rows = {r["item_id"]: r for r in map(json.loads, (moved / "metadata.jsonl").read_text().splitlines())}
    assert rows["a"]["start_image_file_name"] == rows["b"]["start_image_file_name"] == "inputs/ox.png"
    other = rows["c"]["start_image_file_name"]                          # same name, other content
    assert other.startswith("inputs/ox-") and other.endswith(".png") and other != "inputs/ox.png"
    assert rows["a"]["end_image_file_name"] == "inputs/end.png" and rows["b"]["end_image_file_name"] is None
    assert rows["c"]["input_video_file_name"] == "inputs/clip.mp4"
    assert rows["d"]["start_image_file_name"] is None and rows["d"]["start_image_url"] == "https://e.org/remote.png"
    assert not any(str(tmp_path) in json.dumps(r) for r in rows.values())   # no path of the machine
    assert sorted(os.listdir(moved / "inputs")) == sorted(["ox.png", "end.png", "clip.mp4",
                                                           Path(rows["c"]["start_image_file_name"]).name])
    assert (moved / rows["c"]["start_image_file_name"]).read_bytes() == png_header(pad=2)
    loaded = datasets.load_dataset(str(moved), cache_dir=str(tmp_path / "hf-cache"))["train"]
    assert {"video", "start_image", "end_image", "input_video", "start_image_url"} <= set(loaded.column_names)
    plain = loaded
    for column in ("video", "start_image", "end_image", "input_video"):   # `datasets` takes them as files
        assert isinstance(loaded.features[column], datasets.Video)
        plain = plain.cast_column(column, datasets.Video(decode=False))
    by_id = {r["item_id"]: r for r in plain}
    assert Path(by_id["a"]["start_image"]["path"]).resolve() == (moved / "inputs" / "ox.png").resolve()
    assert by_id["d"]["start_image"] is None
    export_dataset(meta, records, store.spend(meta.name), moved)   # an export with inputs is ours to replace


def test_remote_inputs_stay_urls_in_their_column(batch, tmp_path):
    store, _ = batch
    meta, records = load_batch(store, "ds")
    folder = export_dataset(meta, records, store.spend(meta.name), tmp_path / "dataset").folder
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    assert rows[0]["start_image"] == "https://e.org/a.png" and not (folder / "inputs").exists()

"""Expansion: items x vars x matrix x repeat, readable stable ids, content keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelbatch.jobs.expand import content_key, item_id
from reelbatch.jobs.manifest import load_manifest
from reelbatch.jobs.names import id_part as sanitise
from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.plan import plan_batch
from tests.media import IEND

# a PNG signature and header chunk (640x480): the plan reads an image's dimensions
PNG_HEADER = b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x02\x80\x00\x00\x01\xe0\x08\x02\x00\x00\x00\xba\xb3K\xb3'
PNG = PNG_HEADER + IEND
MANIFEST = """\
version: 1
name: ox
provider: oxen
model: kling-o1/reference-to-video
output: out/ox
defaults: {duration: 5, aspect_ratio: 16:9}
matrix:
  duration: [5, 10]
  aspect_ratio: ["16:9", "9:16"]
repeat: 2
items:
  - id: ox-zoom
    prompt: "Zoom into the ox, winter turning to {season}"
    images: [ox.png]
    vars: {season: [spring, summer]}
"""


@pytest.fixture
def manifest_path(tmp_path: Path) -> Path:
    (tmp_path / "ox.png").write_bytes(PNG)
    path = tmp_path / "ox.yaml"
    path.write_text(MANIFEST)
    return path


def test_every_combination_is_an_item(manifest_path: Path):
    plan = plan_batch(manifest_path, Settings())
    assert len(plan.items) == 2 * 2 * 2 * 2
    assert "ox-zoom.summer.d10.ar9x16.s2" in {i.item_id for i in plan.items}
    assert plan.total_video_seconds == 8 * 5 + 8 * 10


def test_item_fields(manifest_path: Path):
    item = next(i for i in plan_batch(manifest_path, Settings()).items
                if i.item_id == "ox-zoom.summer.d10.ar9x16.s2")
    assert item.params.prompt == "Zoom into the ox, winter turning to summer"
    assert item.params.images == (str(manifest_path.parent / "ox.png"),)
    assert (item.params.duration, item.params.aspect_ratio, item.sample) == (10, "9:16", 2)
    assert (item.model, item.provider_model) == ("kling-o1/reference-to-video",
                                                  "kling-video-o1-reference-to-video")
    assert item.estimated_cost_usd == pytest.approx(10 * 0.112)
    assert item.source_id == "ox-zoom"


def test_ids_and_keys_are_stable(manifest_path: Path):
    first = plan_batch(manifest_path, Settings()).items
    second = plan_batch(manifest_path, Settings()).items
    assert [(i.item_id, i.content_key) for i in first] == [(i.item_id, i.content_key) for i in second]
    assert len({i.content_key for i in first}) == len(first)


def test_edited_prompt_changes_the_key_not_the_id(manifest_path: Path):
    before = {i.item_id: i.content_key for i in plan_batch(manifest_path, Settings()).items}
    manifest_path.write_text(MANIFEST.replace("Zoom into", "Push into"))
    after = {i.item_id: i.content_key for i in plan_batch(manifest_path, Settings()).items}
    assert before.keys() == after.keys()
    assert not set(before.values()) & set(after.values())


def test_content_key_includes_sample():
    assert content_key("oxen", "m", "{}", 1) != content_key("oxen", "m", "{}", 2)


def test_unquoted_aspect_ratio_is_read_as_a_ratio(manifest_path: Path):
    manifest = load_manifest(manifest_path)
    assert manifest.defaults.aspect_ratio == "16:9"


def test_sanitised_ids_cannot_leave_output():
    assert sanitise("../../etc/passwd") == "etc-passwd"
    assert "/" not in item_id(("a", sanitise("x/y z")))
    long = item_id(("a" * 300,))
    assert len(long) <= 200 and long != item_id(("a" * 299 + "b",))


def test_output_is_relative_to_the_manifest(manifest_path: Path):
    assert load_manifest(manifest_path).output == manifest_path.parent / "out" / "ox"


def plan_rows(folder: Path, rows_name: str, rows: str, head: str) -> list:
    (folder / rows_name).write_text(rows)
    path = folder / "m.yaml"
    path.write_text(f"version: 1\n{head}items_from: {rows_name}\n")
    return plan_batch(path, Settings()).items


def test_items_from_csv_rows_become_items(tmp_path: Path):
    items = plan_rows(tmp_path, "rows.csv", "id,animal,start_image,duration,images\n"
                      "fox,red fox,https://e.org/f.png,10,\n"
                      ",heron,https://e.org/h.png,,\n",
                      "provider: oxen\nmodel: kling-o1/image-to-video\n"
                      "defaults: {prompt: 'A {animal} walks', duration: 5}\n")
    assert [(i.item_id, i.params.prompt, i.params.duration) for i in items] == [
        ("fox", "A red fox walks", 10), ("rows-2", "A heron walks", 5)]
    assert items[0].provider == "oxen"


def test_items_from_jsonl_rows(tmp_path: Path):
    items = plan_rows(
        tmp_path, "rows.jsonl",
        '{"id": "a", "prompt": "@Image1 and @Image2", "images": ["https://e.org/1.png", '
        '"https://e.org/2.png"]}\n\n{"id": "b", "prompt": "@Element1", "elements": '
        '[{"frontal_image": "https://e.org/f.png", "reference_images": ["https://e.org/r.png"]}]}\n',
        "provider: aimlapi\nmodel: kling-o1/reference-to-video\n")
    assert items[0].params.images == ("https://e.org/1.png", "https://e.org/2.png")
    assert items[1].params.elements[0].reference_images == ("https://e.org/r.png",)


def test_name_defaults_to_the_file_stem(manifest_path: Path):
    manifest_path.write_text(MANIFEST.replace("name: ox\n", ""))
    assert load_manifest(manifest_path).name == "ox"


def test_manifest_engine_fields(manifest_path: Path):
    m = load_manifest(manifest_path)
    assert (m.limits.max_concurrency, m.limits.requests_per_minute, m.limits.max_cost_usd) == (5, 60, None)
    assert m.retry.max_attempts == 3
    assert (m.polling.first_after_s, m.polling.min_interval_s, m.polling.max_interval_s) == (None, 5, 60)
    assert m.source == manifest_path


def test_price_override(manifest_path: Path):
    settings = Settings(price_overrides={"oxen:kling-o1/reference-to-video": 0.2})
    plan = plan_batch(manifest_path, settings)
    assert plan.estimated_cost_usd == pytest.approx(0.2 * plan.total_video_seconds)


def test_a_cap_at_exactly_the_count_is_allowed(manifest_path: Path):
    assert len(plan_batch(manifest_path, Settings(max_items=16)).items) == 16

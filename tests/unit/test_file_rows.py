"""Issue 24.2: `items_from` as a folder or a glob of media files, one item per file."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.plan import plan_batch
from tests.media import png


@pytest.fixture
def herd(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for shade, name in enumerate(("yak", "ox", "bison")):
        (images / f"{name}.png").write_bytes(png(shade=shade))
    (images / ".hidden.png").write_bytes(png())
    (images / "notes.txt").write_text("not an image")
    (images / "sub").mkdir()
    return tmp_path


def manifest(folder, items_from, **extra):
    doc = {"version": 1, "name": "herd", "provider": "simulator", "model": "kling-o1/image-to-video",
           "defaults": {"duration": 5, "start_image": "{file}", "prompt": "the {name} turns its head"},
           "items_from": items_from, **extra}
    path = folder / "m.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize("items_from", ["images", "images/", "images/*.png", "images/*"])
def test_a_folder_or_a_glob_is_one_item_per_media_file(herd, items_from):
    plan = plan_batch(manifest(herd, items_from), Settings())
    assert [i.item_id for i in plan.items] == ["bison", "ox", "yak"]
    ox = plan.items[1]
    assert ox.params.prompt == "the ox turns its head"
    assert ox.params.start_image == str(herd / "images" / "ox.png")


def test_a_folder_with_a_matrix_of_prompts(herd):
    matrix = {"prompt": {"turn": "the {name} turns its head", "walk": "the {name} walks"},
              "duration": [5, 10]}
    plan = plan_batch(manifest(herd, "images/", matrix=matrix), Settings())
    assert len(plan.items) == 3 * 2 * 2
    walk = next(i for i in plan.items if i.item_id == "ox.walk.d10")
    assert walk.params.prompt == "the ox walks"   # placeholders in matrix values are filled too


@pytest.mark.cli
def test_an_empty_match_is_one_line_and_exit_2(herd):
    done = subprocess.run([sys.executable, "-m", "reelbatch", "plan", str(manifest(herd, "images/*.jpg"))],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert "m.yaml:" in done.stderr and "'images/*.jpg' matches no files" in done.stderr

"""`reelbatch plan` sizes the night: subtotals per duration, the wall time at max_concurrency, the
input that varies per row, the budget's verdict (exit 1 when it does not cover the plan), every input
error at once; and, for a batch the store knows, what is made, to generate and paid again."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelbatch.jobs.settings import get_settings
from reelbatch.jobs.store import Store
from reelbatch.scheduler.plan import plan_batch
from tests.batchfill import new_batch, succeed
from tests.integration.helpers import cli_env, reelbatch
from tests.media import png_header

FOLDER_JOB = """version: 1
name: {name}
provider: oxen
model: kling-o1/image-to-video
output: out
matrix:
  duration: [5, 10]
  prompt: {{head: "the {{subject}} turns its head", up: "the {{subject}} looks up"}}   # named: an edit keeps the id
items_from: images.csv
limits: {{max_concurrency: 2, max_cost_usd: {budget}}}
"""


def plan(path: Path, **env: str):
    return reelbatch("plan", str(path), cwd=path.parent, env=cli_env(path.parent / "data", **env))


def folder_job(tmp_path: Path, budget: float = 40, name: str = "animals", images=("cat", "dog", "owl")) -> Path:
    csv = ["id,start_image,subject"]
    for stem in images:
        (tmp_path / f"{stem}.png").write_bytes(png_header())
        csv.append(f"{stem},{stem}.png,{stem}")
    (tmp_path / "images.csv").write_text("\n".join(csv) + "\n")
    path = tmp_path / "m.yaml"
    path.write_text(FOLDER_JOB.format(name=name, budget=budget))
    return path


@pytest.mark.cli
def test_plan_sizes_the_night(tmp_path):
    result = plan(folder_job(tmp_path))
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "12 items, 90 video seconds, estimated $10.08" in out
    assert "5 s: 6 items, $3.36" in out and "10 s: 6 items, $6.72" in out
    # 12 generations, 2 at a time: 6 waves of Oxen's 1-5 minutes
    assert "wall time: about 6 min to 30 min for 12 generations at max_concurrency 2" in out
    assert "start_image" in out and "cat.png" in out and "owl.png" in out   # the input that varies
    assert "budget: $40.00 covers the plan ($10.08)" in out


@pytest.mark.cli
def test_a_budget_that_does_not_cover_the_plan_is_said_and_exits_1(tmp_path):
    result = plan(folder_job(tmp_path, budget=1))
    assert result.returncode == 1, result.stderr
    out = " ".join(result.stdout.split())
    assert "budget: $1.00 does NOT cover the plan ($10.08): `run` would make 1 of 12 items" in out
    assert "raise limits.max_cost_usd to 10.08" in out


@pytest.mark.cli
def test_every_input_error_at_once_with_file_and_line(tmp_path):
    path = folder_job(tmp_path)
    (tmp_path / "cat.png").write_bytes(b"not an image")
    (tmp_path / "owl.png").unlink()
    result = plan(path)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert all(line.startswith("reelbatch: error: ") for line in lines)
    assert f"{tmp_path / 'images.csv'}:2" in lines[0] and "cat.png" in lines[0]
    assert f"{tmp_path / 'images.csv'}:4" in lines[1] and "owl.png" in lines[1]


@pytest.mark.cli
def test_a_batch_seen_before_says_made_to_generate_and_paid_again(tmp_path, redis_url):
    path = folder_job(tmp_path)
    store = Store.from_url(redis_url)
    items = plan_batch(path, get_settings()).items
    new_batch(store, "animals", tmp_path / "out", items)
    for item in items[:5]:
        succeed(store, "animals", item.item_id, tmp_path / "out")
    text = path.read_text().replace("the {subject} looks up", "the {subject} looks down")
    path.write_text(text)                                                 # an edited prompt: paid again
    result = plan(path, REELBATCH_BROKER_URL=redis_url)
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    edited = [i for i in items[:5] if "looks up" in i.params.prompt]
    made, again = 5 - len(edited), len(edited)
    assert f"seen before: {made} items already made, {12 - made} to generate" in out
    assert again and f"paid again: {again} items (${sum(i.estimated_cost_usd for i in edited):.2f})" in out


@pytest.mark.cli
def test_lines_printed_to_a_log_do_not_wrap(tmp_path):
    result = plan(folder_job(tmp_path, budget=1))            # stdout is a pipe, not a terminal
    lines = result.stdout.splitlines()
    assert any(line.startswith("wall time:") and line.endswith("each on oxen") for line in lines), lines
    assert any(line.startswith("budget:") and line.endswith("to 10.08") for line in lines), lines


def test_placeholders_in_matrix_prompts_are_filled_per_item(tmp_path):
    prompts = [item.params.prompt for item in plan_batch(folder_job(tmp_path), get_settings()).items]
    assert "the cat turns its head" in prompts and "the owl looks up" in prompts
    assert not [p for p in prompts if "{" in p]

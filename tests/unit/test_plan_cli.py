"""`reelbatch plan` end to end, as a subprocess: exit codes, one stderr line, JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cli

EXAMPLES = Path(__file__).parents[2] / "jobs" / "examples"
CLI = "from reelbatch.scheduler.commands.cli import main; main()"


def reelbatch(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_plan_prints_table_and_totals():
    result = reelbatch("plan", str(EXAMPLES / "demo.yaml"))
    assert result.returncode == 0, result.stderr
    assert "ox.spring.d10" in result.stdout
    assert "6 items, 45 video seconds, estimated $5.04" in result.stdout
    assert "charged by the simulator: not real money" in result.stdout   # demo money is not real


def test_plan_json_is_one_item_per_line():
    result = reelbatch("plan", "--json", str(EXAMPLES / "dataset-variants.yaml"))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 18
    assert rows[0]["item_id"] == "fox.d5.s1" and rows[0]["params"]["duration"] == 5
    assert {"content_key", "provider_model", "video_seconds", "estimated_cost_usd"} <= rows[0].keys()


def test_large_plan_shows_the_ends_only(tmp_path: Path):
    path = tmp_path / "big.yaml"
    path.write_text("version: 1\nprovider: oxen\nmodel: kling-o1/image-to-video\nrepeat: 500\n"
                    "items:\n  - {id: a, prompt: hi, start_image: https://e.org/a.png}\n")
    result = reelbatch("plan", str(path))
    assert result.returncode == 0, result.stderr
    assert "a.s1 " in result.stdout and "a.s500" in result.stdout and "a.s250 " not in result.stdout
    assert "460 more items" in result.stdout


@pytest.mark.parametrize("text, expected", [
    ("version: 1\nitmes: []\n", ":2: itmes: unknown key 'itmes'; did you mean items?"),
    ("version: [1\n", ": yaml: invalid YAML"),
    ("- 1\n", ":1: manifest: the manifest is a list"),
    ("version: 1\nprovider: oxen\nmodel: kling-o1/image-to-video\nitems:\n"
     "  - {id: a, prompt: hi, start_image: https://e.org/a.png, duration: 7}\n",
     ":5: items[0].duration: 7 is not allowed; expected one of 5, 10"),
    ("version: 1\nprovider: aimlapi\nmodel: kling-o1/video-edit\nitems:\n"
     "  - {id: a, prompt: hi, video: https://e.org/v.mp4, backend: fal, elements: [{frontal_image: "
     "https://e.org/f.png, reference_images: [https://e.org/1.png, https://e.org/2.png, "
     "https://e.org/3.png, https://e.org/4.png]}]}\n",
     ":5: items[0].elements: element 1 has 4 reference images; kling-o1/video-edit on aimlapi with "
     "backend fal takes 1-3 per element"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, text: str, expected: str):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    result = reelbatch("plan", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"reelbatch: error: {path}")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_manifest_is_exit_2(tmp_path: Path):
    result = reelbatch("plan", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1


def test_non_utf8_is_exit_2(tmp_path: Path):
    path = tmp_path / "m.yaml"
    path.write_bytes(b"version: 1\nname: caf\xe9\n")
    result = reelbatch("plan", str(path))
    assert result.returncode == 2
    assert ":2: encoding: not UTF-8" in result.stderr

"""Issue 22.7, the smaller cases: `--at` across a daylight-saving change, and inputs that must be
refused in one line (a lone surrogate, a FIFO, a truncated PNG) or shown escaped (control
characters in prompts)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from reelbatch.scheduler.submit import parse_at
from tests.media import png


@pytest.fixture
def paris(monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_hh_mm_is_resolved_in_the_time_zone_of_that_date(paris):
    """Saturday 24 October 2026, 23:00 in Paris (CEST, +02:00); summer time ends that night, so
    07:00 on Sunday is 07:00 CET (+01:00), 06:00 UTC, not 05:00 UTC."""
    now = datetime(2026, 10, 24, 23, 0, tzinfo=timezone(timedelta(hours=2)))   # as `now` is made
    assert datetime.fromtimestamp(parse_at("07:00", now), UTC) == datetime(2026, 10, 25, 6, 0, tzinfo=UTC)
    spring = datetime(2026, 3, 28, 23, 0, tzinfo=timezone(timedelta(hours=1)))
    assert datetime.fromtimestamp(parse_at("07:00", spring), UTC) == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)


def test_hh_mm_later_today_stays_today(paris):
    now = datetime(2026, 7, 1, 6, 0, tzinfo=timezone(timedelta(hours=2)))
    assert datetime.fromtimestamp(parse_at("07:30", now), UTC) == datetime(2026, 7, 1, 5, 30, tzinfo=UTC)


# --- inputs refused in one line, prompts shown escaped -----------------------------------------

def plan_cli(manifest, timeout: float = 60):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "reelbatch", "plan", str(manifest)], capture_output=True,
                          text=True, timeout=timeout)


def image_manifest(folder, start_image: str = "ox.png", **extra) -> Path:
    import yaml

    doc = {"version": 1, "name": "edges", "provider": "simulator", "model": "kling-o1/image-to-video",
           "defaults": {"duration": 5, "start_image": start_image},
           "items": [{"id": "a", "prompt": "an ox"}], **extra}
    path = folder / "m.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.cli
def test_a_fifo_as_start_image_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "ox.png")
    done = plan_cli(image_manifest(tmp_path), timeout=30)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "not a regular file" in done.stderr and len(done.stderr.splitlines()) == 1


@pytest.mark.cli
@pytest.mark.parametrize("cut", [1, 12, 100])
def test_a_truncated_png_is_refused(tmp_path, cut):
    whole = png()
    (tmp_path / "ox.png").write_bytes(whole[:-cut])
    done = plan_cli(image_manifest(tmp_path))
    assert done.returncode == 2 and "truncated png image" in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1
    (tmp_path / "ox.png").write_bytes(whole)
    assert plan_cli(image_manifest(tmp_path)).returncode == 0


def test_a_truncated_jpeg_gif_or_webp_is_refused(tmp_path):
    from reelbatch.jobs.errors import ManifestError
    from reelbatch.jobs.inputs import check_complete

    cases = {"jpeg": b"\xff\xd8\xff\xe0" + b"\x11" * 64, "gif": b"GIF89a" + b"\x11" * 64,
             "webp": b"RIFF" + (200).to_bytes(4, "little") + b"WEBPVP8 " + b"\x11" * 64}
    for found, data in cases.items():
        (tmp_path / "x").write_bytes(data)
        with pytest.raises(ManifestError, match=f"truncated {found}"):
            check_complete(tmp_path / "x", found)
    for found, data in {"jpeg": b"\xff\xd8\xff\xe0\x11\xff\xd9", "gif": b"GIF89a\x11;",
                        "webp": b"RIFF" + (4).to_bytes(4, "little") + b"WEBP"}.items():
        (tmp_path / "x").write_bytes(data)
        check_complete(tmp_path / "x", found)


@pytest.mark.cli
def test_a_jsonl_row_with_a_lone_surrogate_is_one_line(tmp_path):
    (tmp_path / "rows.jsonl").write_text('{"id": "a", "prompt": "ok"}\n{"id": "b", "prompt": "x \\ud800 y"}\n')
    manifest = image_manifest(tmp_path, "https://example.org/ox.png", items_from="rows.jsonl")
    done = plan_cli(manifest)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "rows.jsonl:2: prompt: a lone surrogate escape \\ud800" in done.stderr
    assert len(done.stderr.splitlines()) == 1


@pytest.mark.cli
def test_plan_shows_control_characters_in_prompts_escaped(tmp_path):
    (tmp_path / "rows.csv").write_text('id,prompt\nb,"bell\x07 then \x1b[31mred [bold]x"\n')
    done = plan_cli(image_manifest(tmp_path, "https://example.org/ox.png", items_from="rows.csv",
                                   items=[]))
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert "bell\\x07 then \\x1b[31mred [bold]x" in done.stdout

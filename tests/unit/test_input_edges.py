"""Issue 22.7, the smaller cases: `--at` across a daylight-saving change, and inputs that must be
refused in one line (a lone surrogate, a FIFO, a truncated PNG) or shown escaped (control
characters in prompts)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from reelbatch.scheduler.submit import parse_at


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

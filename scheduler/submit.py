"""`reelbatch submit`: enqueue a manifest onto the configured broker for a worker fleet and return
at once (optionally starting at a given time)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time as dtime, timedelta
from zoneinfo import ZoneInfo

from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.plan import Plan
from reelbatch.scheduler.stack.broker import connect
from reelbatch.worker.control import Registration, register_batch, start_batch


def parse_at(value: str, now: datetime | None = None) -> float:
    """HH:MM (its next occurrence, local time) or an ISO 8601 time, as a unix timestamp."""
    now = now or datetime.now().astimezone()
    try:
        if len(value) <= 5 and ":" in value:
            hour, minute = (int(x) for x in value.split(":"))
            return _next_wall_time(dtime(hour, minute), now).timestamp()
        when = datetime.fromisoformat(value)
        return (when if when.tzinfo else when.astimezone()).timestamp()
    except ValueError:
        raise ManifestError(f"{value!r}: expected HH:MM (its next occurrence) or an ISO 8601 time "
                            "such as 2026-12-01T01:30", field="--at") from None


def _next_wall_time(at: dtime, now: datetime) -> datetime:
    """The next ``at`` on the clock of the user's time zone, with that date's offset (a daylight
    saving change between now and then moves the offset, not the hour). ``now`` with a ZoneInfo
    is read in that zone; otherwise in the system's local time zone (TZ)."""
    for days in (0, 1, 2):
        day = (now + timedelta(days=days)).date()
        naive = datetime.combine(day, at)
        when = naive.replace(tzinfo=now.tzinfo) if isinstance(now.tzinfo, ZoneInfo) else naive.astimezone()
        if when > now:
            return when
    raise ValueError(at)


@dataclass(frozen=True)
class Submitted:
    """What `submit` did: the batch registered, tasks sent, and when it starts (None: now)."""

    plan: Plan
    registration: Registration
    sent: int
    start_at: float | None


def submit_plan(plan: Plan, settings: Settings, at: str | None = None, adopt: bool = False) -> Submitted:
    """Register the planned batch on the configured broker and start it (or leave it for ``at``)."""
    start_at = parse_at(at) if at else None
    ctx = connect(settings)
    reg = register_batch(ctx.store, plan, start_at, adopt)
    return Submitted(plan, reg, start_batch(ctx, plan.manifest.name), start_at)

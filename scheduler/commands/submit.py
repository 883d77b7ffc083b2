"""`reelbatch submit`: ``reelbatch.submit``, and one line saying what was sent."""

from __future__ import annotations

from pathlib import Path

import click

from reelbatch.scheduler.commands.app import adopt_option, examples, manifest_arg


@click.command(epilog=examples("reelbatch submit night.yaml", "reelbatch submit night.yaml --at 23:30"))
@manifest_arg
@click.option("--at", "at", default=None, help="Start time: HH:MM (next occurrence) or ISO 8601.")
@adopt_option
def submit(manifest: Path, at: str | None, adopt: bool) -> None:
    """Enqueue MANIFEST onto the configured broker for a worker fleet and return at once."""
    from reelbatch.scheduler import api
    from reelbatch.scheduler.records import SubmitReport

    batch = api.submit(manifest, at, adopt=adopt)
    done = batch.report
    assert isinstance(done, SubmitReport)
    when = ""
    if done.past:
        when = f"; {at} is past: starting now"
    elif done.start_at:
        local = done.start_at.astimezone().replace(tzinfo=None)
        when = f", starting at {local.isoformat(timespec='minutes')}"
    click.echo(f"{batch.name}: {done.new} new items, {done.known} known, {done.sent} tasks sent{when}")
    if done.notify_ignored:
        click.echo("note: the manifest's notify: is used by `reelbatch run` only; a fleet's scheduler "
                   "tells the URLs in its own REELBATCH_NOTIFY", err=True)

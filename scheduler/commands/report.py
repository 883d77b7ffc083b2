"""`reelbatch report`: ``Batch.write_report``; with ``--watch`` the page rewritten while the batch
runs (a view following the store)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from reelbatch.scheduler.commands.app import App, examples, pass_app


@click.command(epilog=examples("reelbatch report night", "reelbatch report night --out /tmp/night.html"))
@click.argument("batch")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the page (default: report.html in the output folder).")
@click.option("--watch", is_flag=True, help="Rewrite the page while the batch runs (an open tab "
              "reloads itself) until nothing in it can move.")
@click.option("--every", "every_s", type=click.FloatRange(min=1), default=10.0, show_default=True,
              help="Seconds between rewrites with --watch.")
@pass_app
def report(app: App, batch: str, out: Path | None, watch: bool, every_s: float) -> None:
    """Write a static HTML page of BATCH: the batch at a glance (spend, pace, generation times,
    failures), then poster frames, videos, prompts, parameters, status."""
    from reelbatch.scheduler import api
    from reelbatch.scheduler.views.report import watch_report

    if watch:
        sys.exit(watch_report(app.settings, batch, out, every_s))
    found = api.batch(batch)
    page = found.write_report(out)
    click.echo(f"{batch}: {found.status().total} items -> {page}")

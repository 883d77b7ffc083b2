"""`reelbatch status`: ``Batch.status()`` of one batch or of every batch, as a panel, one line each
or JSON; ``--watch`` follows the batch until nothing in it can move."""

from __future__ import annotations

import json
import sys

import click

from reelbatch.scheduler.commands.app import App, examples, pass_app


@click.command(epilog=examples("reelbatch status night.yaml", "reelbatch status night --json"))
@click.argument("batch", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--watch", is_flag=True, help="Refresh live until the batch is done.")
@pass_app
def status(app: App, batch: str | None, as_json: bool, watch: bool) -> None:
    """Per-state counts, progress, cost and failures of BATCH (or one line per batch)."""
    from reelbatch.scheduler import api
    from reelbatch.scheduler.views.status import batch_of_manifest, one_line, render, watch_batch

    if not batch:
        infos = [b.status().as_json() for b in api.batches()]
        click.echo(json.dumps(infos, indent=2) if as_json else "\n".join(map(one_line, infos)) or "no batches")
        return
    name = batch_of_manifest(app.settings, batch)
    if watch and not as_json:
        sys.exit(watch_batch(app.settings, name, app.console))
    info = api.batch(name).status().as_json()
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        app.console.print(render(info, app.settings.broker_url is not None))

"""`reelbatch plan`: ``reelbatch.plan``, printed as a table with its size, budget and history."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from reelbatch.scheduler.commands.app import App, examples, manifest_arg, pass_app


@click.command(epilog=examples("reelbatch plan night.yaml", "reelbatch plan night.yaml --json | head -3"))
@manifest_arg
@click.option("--json", "as_json", is_flag=True, help="Print the expanded items as JSON lines.")
@pass_app
def plan(app: App, manifest: Path, as_json: bool) -> None:
    """Validate and expand MANIFEST; print items, video seconds and estimated cost. Submits nothing.
    Exits 1 when limits.max_cost_usd does not cover the plan (`run` would stop early)."""
    from reelbatch.scheduler import api
    from reelbatch.scheduler.plan import show_plan

    sys.exit(show_plan(api.plan(manifest).internal, app.settings, app.console, as_json))

"""`reelbatch run`: ``reelbatch.run`` drawing on the command's console; its report as the exit code."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from reelbatch.scheduler.commands.app import (
    EXIT_FAILED_ITEMS,
    EXIT_OK,
    EXIT_SERVICE,
    App,
    adopt_option,
    examples,
    fail,
    manifest_arg,
    pass_app,
)


@click.command(epilog=examples("reelbatch run night.yaml", "nohup reelbatch run night.yaml > night.log 2>&1 &"))
@manifest_arg
@adopt_option
@click.option("--verify", is_flag=True, help="Check every video already downloaded against its "
              "sha256 (not only its size) and download again what changed.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary and errors.")
@click.option("--verbose", "-v", is_flag=True, help="Also print one line per item outcome.")
@click.option("--reuse", multiple=True, metavar="BATCH", help="Take the videos of identical succeeded "
              "requests from BATCH instead of generating them (as `reuse:` in the manifest).")
@pass_app
def run(app: App, manifest: Path, adopt: bool, verify: bool, quiet: bool, verbose: bool,
        reuse: tuple[str, ...]) -> None:
    """Run MANIFEST on this machine: embedded Redis and a worker unless REELBATCH_BROKER_URL is set.
    Running it again resumes; finished items are never generated again."""
    from reelbatch.scheduler import api
    from reelbatch.scheduler.records import RunReport

    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose do not go together")
    report = api.run(manifest, app.console, adopt=adopt, verify=verify, verbose=verbose, quiet=quiet,
                     reuse=reuse).report
    assert isinstance(report, RunReport)
    if report.paused:
        fail(report.paused, EXIT_SERVICE)
    sys.exit(EXIT_OK if report.all_succeeded else EXIT_FAILED_ITEMS)

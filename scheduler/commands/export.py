"""`reelbatch export`: ``Batch.export_report``, and what it wrote in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from reelbatch.scheduler.commands.app import examples


@click.command(
    epilog=examples("reelbatch export night --format csv --out night.csv",
                    "reelbatch export night --layout dataset --out night-dataset"))
@click.argument("batch")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True, help="JSON lines, or CSV (params as one JSON column).")
@click.option("--layout", type=click.Choice(["index", "dataset"]), default="index", show_default=True,
              help="index: one row per item; dataset: a folder of the succeeded videos with "
              "metadata.<format> and a dataset card, for datasets.load_dataset(DIR).")
@click.option("--out", type=click.Path(path_type=Path, allow_dash=True), default=None,
              help="index: the file to write, - for standard output (default: results.<format> in the "
              "output folder); dataset: the folder (default: <output>-dataset).")
def export(batch: str, fmt: str, layout: str, out: Path | None) -> None:
    """Write the results index of BATCH from the state store."""
    from reelbatch.scheduler import api
    from reelbatch.scheduler.views.export import INPUTS, PipeClosed

    if layout == "dataset" and out is not None and str(out) == "-":
        raise click.UsageError("--layout dataset writes a folder: --out DIR, not -")
    try:
        done = api.batch(batch).export_report(out, "dataset" if layout == "dataset" else fmt, metadata=fmt)
    except PipeClosed:    # `export --out - | head -1`: the reader has what it wanted
        sys.exit(0)
    if not done.dataset:
        click.echo(f"{batch}: {done.items} items -> {done.path or 'standard output'}", err=done.path is None)
        return
    click.echo(f"{batch}: {done.videos} videos of {done.items} items -> {done.path} "
               f"({done.linked} hard links, {done.videos - done.linked} copies)"
               + (f", {done.inputs} inputs in {INPUTS}/" if done.inputs else ""))
    if done.missing_inputs:
        click.echo(f"{batch}: {len(done.missing_inputs)} local inputs are gone and left out of the dataset "
                   f"(e.g. {done.missing_inputs[0]})", err=True)
    if done.missing:
        click.echo(f"{batch}: {len(done.missing)} succeeded videos are not in the output folder as "
                   f"downloaded (e.g. {', '.join(done.missing[:3])}); `reelbatch run` fetches them again",
                   err=True)

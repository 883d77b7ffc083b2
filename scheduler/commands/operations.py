"""`reelbatch retry` and `reelbatch cancel`: ``Batch.retry`` and ``Batch.cancel``, and what they did
in one line each."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import click

from reelbatch.jobs.errors import BadInput
from reelbatch.scheduler.commands.app import examples

if TYPE_CHECKING:
    from reelbatch.scheduler.records import CancelReport, RetryReport

WHERE = {"submit": "to submit again", "poll": "to poll their generation",
         "download": "to download from their generation"}


def describe_retry(batch: str, done: RetryReport) -> str:
    moved = ", ".join(f"{n} {WHERE[step]}" for step, n in sorted(done.moved.items()))
    text = f"{batch}: {done.total} items sent back to work" + (f" ({moved})" if moved else "")
    if done.skipped:
        kinds = ", ".join(f"{kind} {n}" for kind, n in Counter(done.skipped).most_common())
        text += (f"; {sum(done.skipped.values())} left alone, failed for a permanent reason "
                 f"({kinds}): add --include-permanent or --kind to retry them")
    return text


def describe_cancel(batch: str, done: CancelReport) -> str:
    parts = [f"{done.cancelled} items cancelled"]
    if done.sent:
        parts.append(f"{done.sent} generations being cancelled by the workers")
    if done.later:
        parts.append(f"{done.later} generations could not be cancelled from here (no provider "
                     "key or connection): the next run cancels them")
    if done.finishing:
        parts.append(f"{done.finishing} generations {done.provider} cannot cancel: they finish and are "
                     "downloaded on the next run (--abandon stops waiting for them)")
    return f"{batch}: " + "; ".join(parts) + "; `reelbatch retry --kind cancelled` brings them back"


@click.command(
    epilog=examples("reelbatch retry night && reelbatch run night.yaml", "reelbatch retry night --kind download"))
@click.argument("batch")
@click.option("--kind", default=None, help="Only items failed for this kind of reason (e.g. "
              "generation_failed, download, submit_unknown, missing, stuck); `cancelled` brings back "
              "cancelled items.")
@click.option("--include-permanent", is_flag=True, help="Also items that failed for a reason "
              "retrying cannot fix (content_policy, invalid_input, permanent, ...): each is submitted "
              "again, a new paid generation where the provider ran (and billed) the last one.")
def retry(batch: str, kind: str | None, include_permanent: bool) -> None:
    """Send the failed items of BATCH back to work, each from where it can go on: a generation that
    exists is polled or downloaded again, never paid for twice. Succeeded items are untouched."""
    from reelbatch.scheduler import api

    try:
        done = api.batch(batch).retry(kind, include_permanent)
    except BadInput as exc:
        raise BadInput(exc.message, exc.file, exc.line, "--kind" if exc.field == "kind" else exc.field) from None
    click.echo(describe_retry(batch, done))


@click.command(epilog=examples("reelbatch cancel night", "reelbatch cancel night --abandon"))
@click.argument("batch")
@click.option("--abandon", is_flag=True, help="At providers that cannot cancel, stop waiting "
              "for generations already paid for instead of downloading them.")
def cancel(batch: str, abandon: bool) -> None:
    """Stop BATCH: nothing new is submitted; remote generations are cancelled where possible."""
    from reelbatch.scheduler import api

    click.echo(describe_cancel(batch, api.batch(batch).cancel(abandon)))

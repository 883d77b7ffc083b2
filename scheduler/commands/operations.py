"""What `retry` and `cancel` say they did, in one line each."""

from __future__ import annotations

from collections import Counter

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

"""What `retry` and `cancel` say they did, in one line each."""

from __future__ import annotations

from reelbatch.worker.control import Retried

WHERE = {"submit": "to submit again", "poll": "to poll their generation",
         "download": "to download from their generation"}


def describe_retry(batch: str, done: Retried) -> str:
    moved = ", ".join(f"{n} {WHERE[step]}" for step, n in sorted(done.moved.items()))
    text = f"{batch}: {done.total} items sent back to work" + (f" ({moved})" if moved else "")
    if done.skipped:
        kinds = ", ".join(f"{kind} {n}" for kind, n in done.skipped.most_common())
        text += (f"; {sum(done.skipped.values())} left alone, failed for a permanent reason "
                 f"({kinds}): add --include-permanent or --kind to retry them")
    return text

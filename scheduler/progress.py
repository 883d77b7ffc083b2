"""Live progress of a batch with rich: a bar, counts per state, failures, cost, time left."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from reelbatch.jobs.money import Spend
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import Store

DONE = (S.SUCCEEDED, S.FAILED, S.CANCELLED)


def describe(counts: dict[S, int], spend: Spend) -> str:
    active = " ".join(f"{s.value} {counts[s]}" for s in
                      (S.PENDING, S.SUBMITTING, S.QUEUED, S.RUNNING, S.DOWNLOADING) if counts[s])
    failed = f" · [red]failed {counts[S.FAILED]}[/]" if counts[S.FAILED] else ""
    return f"videos {counts[S.SUCCEEDED]}{failed} · {active or 'idle'} · {spend.label()}"


class BatchProgress:
    def __init__(self, store: Store, batch: str, console: Console):
        self.store, self.batch = store, batch
        self.progress = Progress(TextColumn("[bold]{task.fields[batch]}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.description}"),
                                 TimeRemainingColumn(), console=console, transient=False)
        self.task = self.progress.add_task("", total=None, batch=batch)

    def refresh(self) -> None:
        counts = self.store.counts(self.batch)
        done = sum(counts[s] for s in DONE)
        self.progress.update(self.task, total=sum(counts.values()), completed=done,
                             description=describe(counts, self.store.spend(self.batch)))

    def __enter__(self) -> BatchProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

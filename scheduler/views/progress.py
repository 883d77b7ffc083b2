"""Progress of a running batch, for a person at a terminal or for a log file.

- On a terminal or in a Jupyter notebook: a rich bar with counts per state, cost and time left, redrawn in place.
- Elsewhere (``nohup reelbatch run ... > run.log``): one plain line every ``progress_every_s``
  seconds and at each completed tenth, never wrapped::

      2026-11-25 01:02:03 ox-seasons: 12/200 done · 10 succeeded · 2 failed · 5 in flight ·
      183 waiting · $1.20 charged + $2.16 estimated · ETA 0:14:05

- ``--quiet``: nothing until the summary; ``--verbose``: also one line per item outcome.

Each refresh reads two things: the per-state counts and the batch's spend. Outcomes for
``--verbose`` come from the store's bounded outcome log, read from a cursor, so a refresh costs
the same for 20 items and for 100,000.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from reelbatch.jobs.limits import RequestRate
from reelbatch.jobs.money import Spend
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.state import IN_FLIGHT, TERMINAL, ItemState as S
from reelbatch.jobs.store import Store

QUIET, NORMAL, VERBOSE = -1, 0, 1


@dataclass(frozen=True)
class Tally:
    """A batch at one moment: per-state counts and money."""

    batch: str
    counts: dict[S, int]
    spend: Spend

    @classmethod
    def read(cls, store: Store, batch: str) -> Tally:
        return cls(batch, store.counts(batch), store.spend(batch))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return sum(self.counts[s] for s in TERMINAL)

    @property
    def in_flight(self) -> int:
        return sum(self.counts[s] for s in IN_FLIGHT)


def hms(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class Pace:
    """Items finished per second since this watcher first looked, for the time left."""

    def __init__(self) -> None:
        self.start: tuple[float, int] | None = None

    def eta(self, done: int, total: int, now: float) -> float | None:
        if self.start is None:
            self.start = (now, done)
        since, done_then = self.start
        if done <= done_then or now <= since:
            return None
        return (total - done) / ((done - done_then) / (now - since))


class RateWait:
    """Whether the batch's ``requests_per_minute`` is what holds its pending items back, and until
    when: read from the shared request windows (one per provider of the batch), without taking
    from them. In a batch over several providers, only when every one of them is full."""

    def __init__(self, store: Store, batch: str, broker_url: str | None):
        meta = store.batch(batch)
        self.windows: list[tuple[str, RequestRate, int]] = []
        if meta is None or broker_url is None:
            return
        fanout = store.fanouts.load(batch)
        per_minute = ({p: fanout.limit(p)[1] for p in fanout.providers} if fanout
                      else {meta.provider: meta.requests_per_minute})
        self.windows = [(p, store.request_rate(broker_url, p), n) for p, n in per_minute.items()]

    def text(self, tally: Tally) -> str | None:
        if not self.windows or not tally.counts[S.PENDING]:
            return None
        full = [(p, n, rate.full_until(n)) for p, rate, n in self.windows]
        if any(until is None for _, _, until in full):
            return None
        named = len(full) > 1
        return "waiting: rate limit " + ", ".join(
            f"{p + ' ' if named else ''}{n}/min until {time.strftime('%H:%M:%S', time.localtime(until))}"
            for p, n, until in full if until is not None)


def plain_line(tally: Tally, eta_s: float | None, now: float | None = None, waiting: str | None = None) -> str:
    """One progress line for a log: name, done/total, outcomes, in flight, money, time left, and
    what the batch waits for (the request rate)."""
    c = tally.counts
    parts = [f"{tally.done}/{tally.total} done", f"{c[S.SUCCEEDED]} succeeded", f"{c[S.FAILED]} failed"]
    if c[S.CANCELLED]:
        parts.append(f"{c[S.CANCELLED]} cancelled")
    parts += [f"{tally.in_flight} in flight", f"{c[S.PENDING]} waiting", tally.spend.label(),
              f"ETA {hms(eta_s) if tally.done < tally.total else '0:00:00'}"]
    if waiting:
        parts.append(waiting)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    return f"{stamp} {tally.batch}: {' · '.join(parts)}"


def describe(counts: dict[S, int], spend: Spend) -> str:
    """The rich bar's text: videos, failures, what is in flight, money."""
    active = " ".join(f"{s.value} {counts[s]}" for s in (S.PENDING, *IN_FLIGHT) if counts[s])
    failed = f" · [red]failed {counts[S.FAILED]}[/]" if counts[S.FAILED] else ""
    return f"videos {counts[S.SUCCEEDED]}{failed} · {active or 'idle'} · {spend.label()}"


class Outcomes:
    """Items that became terminal since the last read, as lines (``--verbose``)."""

    def __init__(self, store: Store, batch: str):
        self.store, self.batch = store, batch
        self.cursor = store.outcome_cursor(batch)   # what ended before this watch is not news

    def lines(self) -> list[str]:
        found = self.store.outcomes(self.batch, self.cursor)
        if found:
            self.cursor = found[-1][0]
        return [self.describe(item_id, state) for _, item_id, state in found]

    def describe(self, item_id: str, state: S) -> str:
        rec = self.store.item(self.batch, item_id)
        if rec is None:
            return f"  {item_id} {state.value}"
        if rec.state is S.SUCCEEDED:
            return f"  {item_id} succeeded -> {rec.file}"
        reason = f": [{rec.error_kind}] {rec.error}" if rec.error_kind else (f": {rec.error}" if rec.error else "")
        return f"  {item_id} {rec.state.value}{reason}"


class Display(Protocol):
    def refresh(self) -> object: ...
    def __enter__(self) -> Display: ...
    def __exit__(self, *exc: object) -> None: ...


class Silent:
    """``--quiet``: nothing until the summary."""

    def refresh(self) -> None:
        pass

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class PlainProgress:
    """Plain lines for a log: at the start, every ``every_s`` seconds, and at each completed tenth."""

    def __init__(self, store: Store, batch: str, console: Console, every_s: float, verbose: bool = False,
                 broker_url: str | None = None):
        self.store, self.batch, self.console, self.every_s = store, batch, console, every_s
        self.rate_wait = RateWait(store, batch, broker_url)
        self.outcomes = Outcomes(store, batch) if verbose else None
        self.pace = Pace()
        self.last_line: float | None = None
        self.tenth = -1

    def refresh(self) -> Tally:
        tally, now = Tally.read(self.store, self.batch), time.time()
        if self.outcomes is not None:
            for line in self.outcomes.lines():
                self.say(line)
        eta = self.pace.eta(tally.done, tally.total, time.monotonic())
        tenth = tally.done * 10 // tally.total if tally.total else 10
        due = self.last_line is None or time.monotonic() - self.last_line >= self.every_s
        if due or tenth > self.tenth:
            self.say(plain_line(tally, eta, now, self.rate_wait.text(tally)))
            self.last_line, self.tenth = time.monotonic(), max(tenth, self.tenth)
        return tally

    def say(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class BatchProgress:
    """The rich display on a terminal; with ``verbose``, item outcomes are printed above the bar."""

    def __init__(self, store: Store, batch: str, console: Console, verbose: bool = False,
                 broker_url: str | None = None):
        self.store, self.batch = store, batch
        self.rate_wait = RateWait(store, batch, broker_url)
        self.outcomes = Outcomes(store, batch) if verbose else None
        self.progress = Progress(TextColumn("[bold]{task.fields[batch]}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.description}"),
                                 TimeRemainingColumn(), console=console, transient=False)
        self.task = self.progress.add_task("", total=None, batch=batch)

    def refresh(self) -> None:
        tally = Tally.read(self.store, self.batch)
        for line in self.outcomes.lines() if self.outcomes else ():
            self.progress.console.print(escape(line), highlight=False)
        waiting = self.rate_wait.text(tally)
        self.progress.update(self.task, total=tally.total, completed=tally.done,
                             description=describe(tally.counts, tally.spend) + (f" · {waiting}" if waiting else ""))

    def __enter__(self) -> BatchProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def redrawn_in_place(console: Console) -> bool:
    """A terminal, or a Jupyter notebook where rich can draw into one output widget (ipywidgets);
    a notebook without it gets the plain lines, which never flood a cell."""
    if console.is_terminal:
        return True
    if not console.is_jupyter:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def make_progress(store: Store, batch: str, console: Console, settings: Settings,
                  verbosity: int = NORMAL) -> Display:
    """The display for ``console``: rich on a terminal, plain lines otherwise, nothing when quiet.
    Off a terminal the console stops wrapping lines, so the summary's results path stays whole."""
    if not console.is_terminal:
        console.soft_wrap = True
    if verbosity <= QUIET:
        return Silent()
    if redrawn_in_place(console):
        return BatchProgress(store, batch, console, verbose=verbosity >= VERBOSE, broker_url=settings.broker_url)
    return PlainProgress(store, batch, console, settings.progress_every_s, verbose=verbosity >= VERBOSE,
                         broker_url=settings.broker_url)


def settled(store: Store, batch: str) -> bool:
    """Nothing left that can move: every item terminal, or only pending items parked by the budget."""
    counts = store.counts(batch)
    if any(counts[s] for s in IN_FLIGHT):
        return False
    if counts[S.PENDING] == 0:
        return True
    return all(rec.error_kind == "budget" for rec in store.items(batch, S.PENDING))

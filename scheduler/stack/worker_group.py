"""The worker processes `reelbatch run` starts on one machine (embedded.py's WorkerProcess, one or
several)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from reelbatch.scheduler.stack.embedded import WorkerProcess


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the platform tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


DEFAULT_MOST_PROCESSES = 4   # one per core by default, up to this many (about 100 MB each)


class WorkerGroup:
    """The workers `reelbatch run` starts: ``processes`` worker processes (0: one per usable core,
    at most DEFAULT_MOST_PROCESSES), each a threads pool of ``concurrency``. One process runs
    Python on one core at a time (the GIL); on short generations its task bodies, not the provider,
    can set the pace. The first logs to ``logfile``, the others beside it (worker-2.log, ...)."""

    def __init__(self, env: dict[str, str], logfile: Path, processes: int, concurrency: int,
                 tied: bool = False):
        logfile = Path(logfile)
        count = processes or min(usable_cores(), DEFAULT_MOST_PROCESSES)
        self.workers = [WorkerProcess(env, logfile if i == 0 else
                                      logfile.with_name(f"{logfile.stem}-{i + 1}{logfile.suffix}"),
                                      concurrency, tied=tied) for i in range(count)]

    def start(self) -> None:
        """Start every worker that is not running (all of them the first time)."""
        for worker in self.workers:
            if not worker.alive():
                worker.start()

    def alive(self) -> bool:
        return all(worker.alive() for worker in self.workers)

    def stop(self, timeout: float = 30) -> None:
        """Warm shutdown of all at once, within one ``timeout``."""
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            worker.ask_to_stop()
        try:
            for worker in self.workers:
                worker.wait_stopped(deadline - time.monotonic())
        except BaseException:   # interrupted again: leave none behind
            for worker in self.workers:
                worker.kill()
            raise

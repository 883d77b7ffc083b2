"""Who uses a data dir's embedded services (its redis-server and simulator). Every command that
needs them joins; the last one to leave stops them. A command that died without leaving (SIGKILL)
is noticed by the next one: its entry names a process that no longer exists.

    <data dir>/users/<pid>-<start time>     one file per live user (psutil's create time)
    <data dir>/services.lock                held while joining, starting, leaving, stopping

Within one process (a notebook running a batch in one thread and cancelling it from another, the
Python API's connection beside a `run`), each service counts its holders: a holder leaving stops a
service only when no other holder in this process, nor any other process, still uses it.
"""

from __future__ import annotations

import fcntl
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reelbatch.worker.tether import alive, identity

_HELD: Counter[tuple[str, str]] = Counter()   # this process's holders per (data dir, service)


class Lease:
    """This process's use of the embedded ``service`` in ``data_dir``."""

    def __init__(self, data_dir: Path, service: str = "services"):
        self.dir = Path(data_dir)
        self.users = self.dir / "users"
        self.me = identity(os.getpid()) or str(os.getpid())
        self.key = (str(self.dir.absolute()), service)
        self.holding = False    # one holder per Lease: a server started again after a crash is held once

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "services.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def join(self) -> None:
        """Call with the lock held."""
        self.users.mkdir(parents=True, exist_ok=True)
        (self.users / self.me).touch()
        if not self.holding:
            _HELD[self.key] += 1
            self.holding = True

    def leave(self) -> bool:
        """Call with the lock held; True when nobody else uses the service now."""
        if self.holding:
            _HELD[self.key] = max(0, _HELD[self.key] - 1)
            self.holding = False
        if _HELD[self.key]:
            return False                  # another holder in this process still uses it
        if not any(n for (folder, _), n in _HELD.items() if folder == self.key[0]):
            (self.users / self.me).unlink(missing_ok=True)
        return not self.others()

    def others(self) -> list[str]:
        """Live users other than this process; entries of dead ones are removed."""
        found = []
        for entry in sorted(p.name for p in self.users.glob("*")) if self.users.is_dir() else []:
            if entry == self.me:
                continue
            if alive(entry):
                found.append(entry)
            else:
                (self.users / entry).unlink(missing_ok=True)
        return found

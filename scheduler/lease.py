"""Who uses a data dir's embedded services (its redis-server and simulator). Every command that
needs them joins; the last one to leave stops them. A command that died without leaving (SIGKILL)
is noticed by the next one: its entry names a process that no longer exists.

    <data dir>/users/<pid>-<start time>     one file per live user (psutil's create time)
    <data dir>/services.lock                held while joining, starting, leaving, stopping
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reelbatch.worker.tether import alive, identity


class Lease:
    """This process's use of the embedded services in ``data_dir``."""

    def __init__(self, data_dir: Path):
        self.dir = Path(data_dir)
        self.users = self.dir / "users"
        self.me = identity(os.getpid()) or str(os.getpid())

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

    def leave(self) -> bool:
        """Call with the lock held; True when nobody else uses the services now."""
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

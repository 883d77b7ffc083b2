"""The one atomic write: a temporary file beside the target, renamed into place, with the mode the
user's umask gives (0644 under umask 022), never through a symlink or over a device."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import IO, Any


class NotARegularFile(OSError):
    """The target exists and is a symlink, a folder or a device: it is not replaced."""


@lru_cache(maxsize=1)
def file_mode() -> int:
    """0o666 less the process's umask (read from /proc, so no thread ever sees a changed umask)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return 0o666 & ~old


def check_replaceable(path: Path) -> None:
    """Refuse a target that is a symlink or exists and is not a regular file."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise NotARegularFile(f"refusing to replace {path}: it is not a regular file")


@contextmanager
def atomic_write(path: Path, binary: bool = False, fsync: bool = False,
                 mode: int | None = None) -> Iterator[IO[Any]]:
    """Write ``path`` through a temporary file that replaces it only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_replaceable(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        with _open(tmp, binary) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.chmod(tmp, file_mode() if mode is None else mode)
        check_replaceable(path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _open(tmp: str, binary: bool) -> IO[Any]:
    if binary:
        return open(tmp, "w+b")    # read back by checks made before the rename
    return open(tmp, "w", encoding="utf-8", newline="")


def write_text(path: Path, text: str, mode: int | None = None) -> Path:
    with atomic_write(path, mode=mode) as fh:
        fh.write(text)
    return Path(path)

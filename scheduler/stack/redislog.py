"""Why the embedded redis-server did not start, read from its own log, as one line with the fix.

redis-server writes the cause to its log file and exits within a moment; what it says before the
log file is open (a configuration error) goes to its stderr, which we keep beside the log."""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

from reelbatch.jobs.errors import ServiceUnavailable

AOF_NAME = "appendonly.aof"
PORT_TAKEN = "Address already in use"   # what redis-server logs
NO_SPACE = "No space left on device"


class RedisCannotStart(ServiceUnavailable):
    """The embedded redis-server exited at start; the message says why and what to do."""

    kind = "cannot_start"


class PortTaken(RedisCannotStart):
    """Another program listens on the port redis-server was given."""


def failure(log_text: str, data_dir: Path, port: int | None, binary: str) -> RedisCannotStart:
    """What redis-server (``binary``) said as it exited, as one line with the fix."""
    if "reading the append only file" in log_text:
        return RedisCannotStart(damaged_aof(data_dir, binary))
    if PORT_TAKEN in log_text:
        return PortTaken(f"the embedded Redis cannot listen on 127.0.0.1:{port}: another program "
                         "uses that port")
    if NO_SPACE in log_text:
        return RedisCannotStart(no_space(data_dir))
    if "Permission denied" in log_text:
        return RedisCannotStart(f"the embedded Redis cannot write in {data_dir}: permission denied "
                                "(REELBATCH_DATA_DIR)")
    return RedisCannotStart(f"the embedded redis-server stopped at start: {last_line(log_text)} "
                            f"(see {data_dir / 'logs'})")


def damaged_aof(data_dir: Path, binary: str) -> str:
    aof = data_dir / AOF_NAME
    return (f"the embedded Redis cannot read its append-only file {aof}: it is damaged (a crash or a "
            f"full disk while writing). Keep a copy, repair it with `{check_aof_tool(data_dir, binary)} --fix "
            f"{aof}`, then run again")


def no_space(data_dir: Path) -> str:
    return (f"no space left on the disk of {data_dir} (the embedded Redis's data dir): free some "
            "space, then run again")


def check_aof_tool(data_dir: Path, binary: str) -> str:
    """``redis-check-aof`` from PATH, else a link to our redis-server (one binary: it acts as the
    checker when started under that name) in the data dir."""
    if shutil.which("redis-check-aof"):
        return "redis-check-aof"
    link = data_dir / "bin" / "redis-check-aof"
    try:
        link.parent.mkdir(exist_ok=True)
        if not link.is_symlink():
            os.symlink(binary, link)
    except OSError:
        return "redis-check-aof"
    return str(link)


def last_line(text: str) -> str:
    """The last meaningful line of a redis log, without its pid and time stamp."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not set(ln.strip()) <= {"*", " "}]
    if not lines:
        return "no message"
    return re.sub(r"^\d+:[A-Z] \d+ \w+ \d+ [\d:.]+ [#*.-] ", "", lines[-1])


def read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def is_no_space(exc: OSError) -> bool:
    return exc.errno == errno.ENOSPC or NO_SPACE in str(exc)

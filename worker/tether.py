"""A process's identity (pid and start time, so a reused pid is not taken for the old process), and
a worker tied to the command that started it: when `reelbatch run` dies, even by SIGKILL, its
worker stops instead of working a batch alone forever.

On Linux the kernel sends the signal (``prctl(PR_SET_PDEATHSIG)``, set between fork and exec). Where
prctl is missing (macOS, the BSDs) `run` names itself in ``PARENT_VARIABLE`` and a watchdog thread
in the worker looks at it every ``CHECK_EVERY_S`` seconds. psutil reads process start times on every
platform (Linux /proc, macOS sysctl)."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

import psutil

log = logging.getLogger(__name__)

PARENT_VARIABLE = "REELBATCH_PARENT"   # "<pid>-<start time>" of the process a worker is tied to
CHECK_EVERY_S = 1.0
PR_SET_PDEATHSIG = 1


def identity(pid: int) -> str | None:
    """``<pid>-<start time>``; None when no such process runs (an exited one not yet reaped, a
    zombie, counts as gone)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return f"{pid}-{_start(proc):.2f}"
    except psutil.Error:
        return None


def _start(proc: psutil.Process) -> float:
    """When the process started, in a form a later step of the wall clock (NTP, a laptop's
    suspend) does not change. On Linux ``create_time()`` is boot time + ticks, and the boot time
    moves with the clock: every user of a lease would then look dead. psutil's own process
    identity (``Process._ident``: ticks since boot on Linux, the kernel's start stamp on macOS
    and NetBSD) is stable; where it holds no time, ``create_time()``."""
    ident = getattr(proc, "_ident", None)
    started = ident[1] if isinstance(ident, tuple) and len(ident) == 2 else None
    return float(started) if isinstance(started, (int, float)) else proc.create_time()


def alive(entry: str) -> bool:
    """The process an ``identity`` names still runs (not another one under the same pid)."""
    pid, _, _ = entry.partition("-")
    return pid.isdigit() and identity(int(pid)) == entry


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    return getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)


def kernel_ties_children() -> bool:
    """The kernel can signal a child when its parent dies (Linux prctl)."""
    return _libc_prctl() is not None


def die_with_parent() -> None:
    """In a child between fork and exec: SIGTERM it when the process that started it dies."""
    prctl = _libc_prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def tie_to_me(env: dict[str, str]) -> Callable[[], None] | None:
    """How to tie a child about to start to this process: the prctl hook for Popen, or (without
    prctl) this process's identity in the child's ``env`` for its watchdog."""
    if kernel_ties_children():
        return die_with_parent
    env[PARENT_VARIABLE] = identity(os.getpid()) or ""
    return None


def watch_parent(entry: str, on_death: Callable[[], None] | None = None,
                 every_s: float = CHECK_EVERY_S) -> threading.Thread:
    """A daemon thread that calls ``on_death`` (default: SIGTERM to this process, a warm shutdown
    for a Celery worker) once the process ``entry`` names is gone."""
    stop = on_death or (lambda: os.kill(os.getpid(), signal.SIGTERM))
    gone = threading.Event()

    def watch() -> None:
        while not gone.wait(every_s):
            if not alive(entry):
                log.warning("the command that started this worker is gone: stopping")
                gone.set()
                stop()
    thread = threading.Thread(target=watch, name="reelbatch-parent-watch", daemon=True)
    thread.start()
    return thread


def watch_parent_from_env() -> threading.Thread | None:
    """In a worker: the watchdog, when the command that started it asked for one."""
    entry = os.environ.get(PARENT_VARIABLE)
    return watch_parent(entry) if entry else None

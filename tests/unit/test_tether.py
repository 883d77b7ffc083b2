"""Issue 21.7: process identity and tied workers without Linux-only calls. The non-Linux path
(no prctl) is forced here: `run` names itself in the worker's environment and a watchdog thread
in the worker stops it when `run` is gone. Real processes; psutil reads their start times."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from reelbatch.scheduler.stack.lease import Lease
from reelbatch.worker import tether


@pytest.fixture
def without_prctl(monkeypatch):
    """As on macOS and the BSDs: the kernel cannot signal a child when its parent dies."""
    monkeypatch.setattr(tether, "_libc_prctl", lambda: None)


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_identity_tells_a_process_from_a_reused_pid(sleeper):
    entry = tether.identity(sleeper.pid)
    assert entry and tether.alive(entry)
    pid, _, started = entry.partition("-")
    assert not tether.alive(f"{pid}-{float(started) - 5:.2f}")   # same pid, another process
    sleeper.kill()
    sleeper.wait()
    assert not tether.alive(entry) and tether.identity(sleeper.pid) is None


def test_identity_survives_a_step_of_the_wall_clock(sleeper, monkeypatch):
    """A 2-hour jump (NTP, a suspend) moves Linux's boot time, and with it create_time(): a lease
    user must not look dead then. The jump is played by psutil's boot time, not the real clock."""
    before = tether.identity(sleeper.pid)
    if sys.platform.startswith("linux"):
        from psutil import _pslinux

        created = tether.psutil.Process(sleeper.pid).create_time()
        real = _pslinux.boot_time
        monkeypatch.setattr(_pslinux, "boot_time", lambda: real() + 7200)
        assert tether.psutil.Process(sleeper.pid).create_time() == pytest.approx(created + 7200, abs=1)
    assert tether.identity(sleeper.pid) == before and tether.alive(before)


def test_without_prctl_the_child_is_told_who_its_parent_is(without_prctl):
    env: dict[str, str] = {}
    assert not tether.kernel_ties_children()
    assert tether.tie_to_me(env) is None                     # no preexec hook: nothing Linux-only runs
    assert env[tether.PARENT_VARIABLE] == tether.identity(os.getpid())


def test_with_prctl_the_kernel_ties_the_child():
    if not sys.platform.startswith("linux"):
        pytest.skip("prctl is Linux's")
    env: dict[str, str] = {}
    assert tether.tie_to_me(env) is tether.die_with_parent and not env


def test_the_watchdog_acts_once_its_parent_is_gone(sleeper):
    gone = threading.Event()
    tether.watch_parent(tether.identity(sleeper.pid), on_death=gone.set, every_s=0.05)
    assert not gone.wait(0.3)
    sleeper.kill()
    assert gone.wait(10)


def test_a_lease_forgets_users_that_died(tmp_path, sleeper):
    lease = Lease(tmp_path)
    with lease.locked():
        lease.join()
        (lease.users / tether.identity(sleeper.pid)).touch()
        (lease.users / "999999999-12.00").touch()                # a user that died long ago
        assert lease.others() == [tether.identity(sleeper.pid)]
        sleeper.kill()
        sleeper.wait()
        assert lease.others() == [] and lease.leave()
    assert sorted(p.name for p in lease.users.iterdir()) == []

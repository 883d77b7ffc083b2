"""Issue 21.7, end to end on the non-Linux path: a `run`-like parent without prctl starts a tied
Celery worker and is SIGKILLed; the worker's watchdog notices and the worker stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from reelbatch.worker import tether
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration

PARENT = """
import sys, time
from pathlib import Path
from reelbatch.worker import tether
tether._libc_prctl = lambda: None          # as on macOS: no PR_SET_PDEATHSIG
from reelbatch.scheduler.stack.embedded import WorkerProcess
worker = WorkerProcess({"REELBATCH_BROKER_URL": sys.argv[1]}, Path(sys.argv[2]), 1, tied=True)
worker.start()
print(worker.proc.pid, flush=True)
time.sleep(300)
"""


def test_a_tied_worker_stops_when_its_parent_is_killed_without_prctl(redis_url, tmp_path):
    log = tmp_path / "worker.log"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, redis_url, str(log)],
                              stdout=subprocess.PIPE, text=True)
    worker_pid = int(parent.stdout.readline())
    try:
        wait_for(lambda: log.exists() and "ready" in log.read_text(), 60, "the worker started")
        assert tether.identity(worker_pid)
        parent.kill()
        parent.wait()
        wait_for(lambda: tether.identity(worker_pid) is None, 60, "the worker stopped")
        assert "the command that started this worker is gone" in log.read_text()
    finally:
        parent.kill()
        if tether.identity(worker_pid):
            os.killpg(worker_pid, signal.SIGKILL)

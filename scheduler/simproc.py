"""The provider simulator as a child process of `reelbatch run` (for `provider: simulator`)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import httpx

from jobs.settings import Settings
from scheduler.embedded import free_port, wait_until


class SimulatorProcess:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.port = free_port()
        self.key = secrets.token_urlsafe(24)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        return {"REELBATCH_SIMULATOR_URL": self.url, "REELBATCH_SIMULATOR_KEY": self.key}

    def _up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/_sim/stats", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def __enter__(self) -> SimulatorProcess:
        log = self.settings.data_dir / "logs" / "simulator.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "scheduler.cli", "simulator", "--host", "127.0.0.1",
               "--port", str(self.port), "--time-scale", str(self.settings.simulator_time_scale)]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, "REELBATCH_SIMULATOR_KEY": self.key},
                                         start_new_session=True)
        wait_until(self._up, 30, "the simulator")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


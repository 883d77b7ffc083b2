"""The provider simulator as a child process of `reelbatch run` (for `provider: simulator`)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.embedded import free_port, wait_until


class SimulatorProcess:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.port = _same_port_as_before(settings.data_dir / "simulator.port")
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
        cmd = [sys.executable, "-P", "-m", "reelbatch", "simulator", "--host", "127.0.0.1",
               "--port", str(self.port), "--time-scale", str(self.settings.simulator_time_scale),
               # generations outlive an interrupted run, as they would at a real provider
               "--state-file", str(self.settings.data_dir / "simulator-state.json")]
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



def _same_port_as_before(path: Path) -> int:
    """The port of the last run when it is free, so result URLs issued before an interruption
    keep working; else any free port."""
    if path.exists():
        try:
            port = int(path.read_text())
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port))
            return port
        except (OSError, ValueError):
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    path.write_text(str(port))
    return port

"""The provider simulator as a service of `reelbatch run` (for `provider: simulator`), shared by every
command using the same data dir like the embedded Redis: the first starts it, the last one to
finish stops it, a simulator left by a killed run is reused (its generations outlive a run, as
they would at a real provider)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import httpx

from reelbatch.jobs.files import write_text
from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.stack.embedded import free_port, port_free, wait_until
from reelbatch.scheduler.stack.lease import Lease


class SimulatorProcess:
    def __init__(self, settings: Settings):
        self.settings, self.dir = settings, Path(settings.data_dir)
        self.info = self.dir / "simulator.json"
        self.lease = Lease(self.dir, "simulator")
        self.port, self.key = 0, ""
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"REELBATCH_SIMULATOR_URL": self.url, "REELBATCH_SIMULATOR_KEY": self.key}

    def _up(self) -> bool:
        """It answers, and takes our key."""
        try:
            return httpx.get(f"{self.url}/api/ai/models", timeout=1,
                             headers={"Authorization": f"Bearer {self.key}"}).status_code == 200
        except httpx.HTTPError:
            return False

    def __enter__(self) -> SimulatorProcess:
        with self.lease.locked():
            self.lease.join()
            if not self._attach():
                self._launch()
        return self

    def _attach(self) -> bool:
        try:
            known = json.loads(self.info.read_text())
        except (OSError, ValueError):
            return False
        self.port, self.key = int(known["port"]), str(known["key"])
        return self._up()

    def _launch(self) -> None:
        # the last run's port when it is free: result URLs issued before an interruption still work
        self.port = self.port if self.port and port_free(self.port) else free_port()
        self.key = secrets.token_urlsafe(24)
        log = self.dir / "logs" / "simulator.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-P", "-m", "reelbatch", "simulator", "--host", "127.0.0.1",
               "--port", str(self.port), "--time-scale", str(self.settings.simulator_time_scale),
               "--state-file", str(self.dir / "simulator-state.json")]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.dir,
                                         env={**os.environ, "REELBATCH_SIMULATOR_KEY": self.key},
                                         start_new_session=True)
        write_text(self.info, json.dumps({"port": self.port, "key": self.key, "pid": self.proc.pid}),
                   mode=0o600)
        wait_until(self._up, 30, "the simulator")

    def __exit__(self, *exc: object) -> None:
        with self.lease.locked():
            if self.lease.leave():
                self._stop()

    def _stop(self) -> None:
        """SIGTERM (the simulator saves its state and exits); a simulator another run started is
        found by its pid."""
        pid = self.proc.pid if self.proc else _pid_of(self.info)
        if pid is None:
            return
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            return
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        else:
            wait_until(lambda: not self._up(), 10, "the simulator to stop")


def _pid_of(info: Path) -> int | None:
    try:
        return int(json.loads(info.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None

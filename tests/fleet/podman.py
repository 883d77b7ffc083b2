"""The fleet under podman: the images (built once per content hash) and a compose project driven by
podman-compose, with the exact commands the README's fleet section gives."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO
from tests.integration.helpers import wait_for as _wait_for

SETUP = "scripts/podman-setup"   # installs podman, runc, debootstrap; writes containers.conf
PROJECT_IMAGE = "localhost/reelbatch"
# what goes into the wheel and the image: a change here means a new image tag
IMAGE_INPUTS = ("Dockerfile", ".dockerignore", "constraints.txt", "pyproject.toml", "README.md",
                "reelbatch", "jobs", "worker", "scheduler", "simulator", "configs")
LABEL = "io.podman.compose.project"


def run(*args: str, timeout: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args[:4])}... exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def require_podman() -> None:
    assert os.geteuid() == 0, "the compose test runs rootful podman and debootstrap: run it as root"
    missing = [tool for tool in ("podman", "runc", "debootstrap") if not shutil.which(tool)]
    assert not missing, f"{', '.join(missing)} missing: run {SETUP} (as .ci/run does)"


# --- images --------------------------------------------------------------------------------------

def base_image() -> str:
    """localhost/reelbatch-base:<hash> (scripts/base-image: debootstrap + podman import, cached)."""
    return run(str(REPO / "scripts" / "base-image"), timeout=600).stdout.strip().splitlines()[-1]


def inputs_hash(base: str) -> str:
    """sha256 over the image's inputs (tracked and untracked, not ignored files) and its base."""
    listed = run("git", "ls-files", "-co", "--exclude-standard", "--", *IMAGE_INPUTS, cwd=REPO).stdout
    digest = hashlib.sha256(base.encode())
    for name in sorted(set(listed.split())):
        path = REPO / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def project_image(base: str) -> str:
    """The Dockerfile's image on ``base``, built from a fresh wheelhouse unless this tag exists."""
    tag = f"{PROJECT_IMAGE}:{inputs_hash(base)}"
    if run("podman", "image", "exists", tag, check=False).returncode == 0:
        return tag
    run(str(REPO / "scripts" / "wheelhouse"), env={**os.environ, "PYTHON": sys.executable}, timeout=600)
    run("podman", "build", "--build-arg", f"REELBATCH_BASE_IMAGE={base}", "-t", tag, str(REPO),
        timeout=600)
    drop_older(tag)
    return tag


def drop_older(tag: str) -> None:
    """Remove earlier builds of the project image (one per code change); one still in use stays."""
    listed = run("podman", "images", "--format", "{{.Repository}}:{{.Tag}}", PROJECT_IMAGE).stdout.split()
    for old in set(listed) - {tag}:
        run("podman", "rmi", old, check=False)


# --- a compose project ---------------------------------------------------------------------------

@dataclass
class Fleet:
    """A copy of docker-compose.yml and configs/redis.conf beside its own .env in ``folder``, run as
    the podman-compose project ``name``."""

    folder: Path
    name: str
    env: dict[str, str]

    @classmethod
    def create(cls, folder: Path, base: str, image: str, flower_port: int) -> Fleet:
        (folder / "configs").mkdir(parents=True)
        shutil.copy(REPO / "docker-compose.yml", folder)
        shutil.copy(REPO / "configs" / "redis.conf", folder / "configs")
        env = {"REDIS_PASSWORD": secrets.token_urlsafe(18),
               "FLOWER_BASIC_AUTH": f"ops:{secrets.token_urlsafe(12)}",
               "REELBATCH_SIMULATOR_KEY": secrets.token_urlsafe(12),
               "REELBATCH_BASE_IMAGE": base, "REELBATCH_REDIS_IMAGE": base, "REELBATCH_IMAGE": image,
               "FLOWER_PORT": str(flower_port), "REELBATCH_WORKER_CONCURRENCY": "4",
               "REELBATCH_SWEEP_EVERY_S": "2"}
        (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        return cls(folder, f"rbfleet{secrets.token_hex(4)}", env)

    def compose(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
        """podman-compose in the project folder, with the demo profile selected."""
        env = {**os.environ, "COMPOSE_PROFILES": "demo"}
        return run(sys.executable, "-m", "podman_compose", "-p", self.name, *args, cwd=self.folder,
                   env=env, timeout=timeout, check=check)

    def up(self, workers: int) -> None:
        self.compose("up", "-d", "--no-build", "--scale", f"worker={workers}")

    def containers(self, service: str | None = None) -> list[str]:
        """Names of this project's containers (of one service), in creation order."""
        names = run("podman", "ps", "-a", "--filter", f"label={LABEL}={self.name}",
                    "--format", "{{.Names}}").stdout.split()
        return sorted(n for n in names if service is None or n.startswith(f"{self.name}_{service}_"))

    def container(self, service: str) -> str:
        return f"{self.name}_{service}_1"

    def exec(self, service: str, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        return run("podman", "exec", self.container(service), *args, timeout=timeout, check=check)

    def inspect(self, container: str) -> dict:
        return json.loads(run("podman", "inspect", container).stdout)[0]

    def healthy(self, container: str) -> bool:
        """The container's own healthcheck, run now (podman 4.3 has no timer for it without systemd)."""
        return run("podman", "healthcheck", "run", container, check=False, timeout=60).returncode == 0

    def crash(self, container: str) -> None:
        """SIGKILL the container's init from the host: the exit a restart policy exists for.
        (`podman kill` marks a container as stopped on purpose, so podman would not restart it.)"""
        os.kill(self.inspect(container)["State"]["Pid"], signal.SIGKILL)

    def restarts(self, container: str) -> int:
        return self.inspect(container).get("RestartCount", 0)

    def running(self, container: str) -> bool:
        return self.inspect(container)["State"]["Status"] == "running"

    def logs(self, tail: int = 40) -> str:
        """The last lines of every container's output (podman logs keeps stdout and stderr apart)."""
        out = []
        for name in self.containers():
            answer = run("podman", "logs", "--tail", str(tail), name, check=False)
            out.append(f"--- {name}\n{answer.stdout}{answer.stderr}")
        return "\n".join(out)

    def down(self) -> list[str]:
        """The README's teardown, then a sweep by label of whatever it missed (podman-compose does not
        know the containers `--scale` added). Returns what is left: nothing, unless removal failed."""
        self.compose("down", "-v", "--remove-orphans", "-t", "10", check=False)
        label = f"label={LABEL}={self.name}"
        for kind, listing in (("container", ["ps", "-a"]), ("pod", ["pod", "ps"]),
                              ("volume", ["volume", "ls"]), ("network", ["network", "ls"])):
            ids = run("podman", *listing, "--filter", label, "-q", check=False).stdout.split()
            if ids:
                run("podman", kind, "rm", "-f", *ids, check=False)
        run("podman", "pod", "rm", "-f", "--ignore", f"pod_{self.name}", check=False)
        return leftovers(self.name)


def leftovers(project: str) -> list[str]:
    label = f"label={LABEL}={project}"
    found = run("podman", "pod", "ps", "--filter", f"name=^pod_{project}$", "-q", check=False).stdout.split()
    for listing in (["ps", "-a"], ["pod", "ps"], ["volume", "ls"], ["network", "ls"]):
        found += run("podman", *listing, "--filter", label, "-q", check=False).stdout.split()
    return found


def wait_for(check, timeout: float, what: str, every: float = 2.0):
    """The suite's wait_for, polling every 2 s: podman commands are slow."""
    return _wait_for(check, timeout, what, every)

"""docker-compose.yml, Dockerfile, configs/redis.conf and example.env, checked without Docker: the
Compose Specification schema, the security properties, and every service's command run as a local
process against the test Redis, so a typo in a command fails here rather than in production."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema
import pytest
import redis
import yaml

from reelbatch.scheduler.stack.embedded import free_port, redis_server_binary
from tests.conftest import REPO, SIM_KEY
from tests.integration.helpers import cli_env, wait_for

pytestmark = pytest.mark.integration

COMPOSE = REPO / "docker-compose.yml"
SCHEMA = REPO / "tests" / "data" / "compose-spec.json"
REDIS_CONF = REPO / "configs" / "redis.conf"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt}, ${NAME+alt}
VAR = re.compile(r"\$\{(\w+)(?:(:?[-?+])([^}]*))?\}")
SECRET_NAME = re.compile(r"KEY|PASSWORD|AUTH|SECRET|TOKEN", re.I)
URL_PASSWORD = re.compile(r"://[^/@\s]*:([^/@\s]+)@")
APP_SERVICES = ("worker", "scheduler", "flower", "simulator")
METRICS_SERVICES = ("prometheus", "grafana")   # the `metrics` profile
FLOWER_AUTH = ("ops", "compose-test-pass")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution (``$$`` is a literal ``$``)."""
    def one(match: re.Match) -> str:
        name, op, arg = match.groups()
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op and op.endswith("?") and unset:
            raise KeyError(f"{name}: {arg}")
        if op and op.endswith("+"):
            return "" if unset else arg
        return (arg if op and op.endswith("-") and unset else value) or ""
    return VAR.sub(one, text.replace("$$", "\0")).replace("\0", "$")


def is_reference(value: str, name: str | None = None) -> bool:
    match = VAR.fullmatch(str(value))
    return bool(match) and (name is None or match.group(1) == name)


def walk_strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from walk_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk_strings(value)
    elif isinstance(node, str):
        yield node


# -- (a) the Compose Specification ---------------------------------------------------------------

def test_compose_file_matches_the_compose_specification():
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, "\n".join(errors)
    assert set(services()) == {"redis", *APP_SERVICES, *METRICS_SERVICES}


def test_schema_rejects_a_broken_compose_file():
    """The vendored schema really checks: a misspelt key is an error."""
    broken = {"services": {"worker": {"image": "x", "comand": ["worker"]}}}
    assert list(jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).iter_errors(broken))


# -- (b) security properties ---------------------------------------------------------------------

PINNED = re.compile(r"^[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?$")   # an exact version tag


def test_redis_has_a_password_durability_and_no_published_port():
    redis_svc = services()["redis"]
    image = interpolate(redis_svc["image"], {})
    assert image.startswith("redis:7") and PINNED.match(image), image
    assert "ports" not in redis_svc
    assert redis_svc["user"] == "redis"
    assert is_reference(redis_svc["environment"]["REDISCLI_AUTH"], "REDIS_PASSWORD")
    # the password reaches redis-server on stdin, never as an argument (docker inspect, ps)
    assert "--requirepass" not in json.dumps(redis_svc["command"])
    assert "requirepass $$REDISCLI_AUTH" in redis_svc["command"][-1]
    assert "healthcheck" in redis_svc
    assert any(v.endswith(":/data") for v in redis_svc["volumes"])
    assert any(v.startswith("./configs/redis.conf:") for v in redis_svc["volumes"])


def test_every_long_running_service_has_a_healthcheck_or_is_the_demo_simulator():
    svc = services()
    for name in ("redis", "worker", "flower"):
        assert svc[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    assert all(svc[name]["restart"] == "unless-stopped" for name in svc)


def test_plain_http_downloads_only_under_the_demo_profile():
    """Workers may fetch the simulator's plain-http results only when COMPOSE_PROFILES selects demo."""
    hosts = services()["worker"]["environment"]["REELBATCH_DOWNLOAD_HTTP_HOSTS"]
    assert json.loads(interpolate(hosts, {})) == []
    assert json.loads(interpolate(hosts, {"COMPOSE_PROFILES": ""})) == []
    assert json.loads(interpolate(hosts, {"COMPOSE_PROFILES": "demo"})) == ["simulator"]
    assert services()["simulator"]["profiles"] == ["demo"]


def redis_directives() -> dict[str, str]:
    lines = [line.split(None, 1) for line in REDIS_CONF.read_text().splitlines()]
    return {parts[0].lower(): parts[1].strip() for parts in lines if parts and not parts[0].startswith("#")}


def test_redis_conf_is_durable_and_holds_no_password():
    conf = redis_directives()
    assert conf["appendonly"] == "yes" and conf["appendfsync"] == "everysec"
    assert conf["maxmemory-policy"] == "noeviction"
    assert conf["protected-mode"] == "yes"
    assert "requirepass" not in conf


def test_flower_is_local_only_and_behind_basic_auth():
    flower = services()["flower"]
    assert flower["ports"] and all(str(p).startswith("127.0.0.1:") for p in flower["ports"])
    assert is_reference(flower["environment"]["FLOWER_BASIC_AUTH"], "FLOWER_BASIC_AUTH")
    assert "--no-auth" not in flower["command"]


def test_no_secret_value_is_written_in_the_compose_file():
    for name, svc in services().items():
        for key, value in (svc.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert is_reference(value), f"{name}: {key} holds a literal value"
    for text in walk_strings(compose()):
        for password in URL_PASSWORD.findall(text):
            assert is_reference(password, "REDIS_PASSWORD"), text


def test_every_redis_client_uses_the_same_broker_url():
    """Worker, scheduler and Flower; the simulator never talks to Redis and gets no password."""
    env = {"REDIS_PASSWORD": "pw"}
    assert "REELBATCH_BROKER_URL" not in services()["simulator"]["environment"]
    for name in ("worker", "scheduler", "flower"):
        url = services()[name]["environment"].get("REELBATCH_BROKER_URL")
        assert url and interpolate(url, env) == "redis://:pw@redis:6379/0", name


def test_workers_scale_and_share_output_with_the_scheduler():
    svc = services()
    worker, scheduler = svc["worker"], svc["scheduler"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["env_file"] == ".env"
    shared = {v for v in worker["volumes"] if v.startswith("output:")}
    assert shared and shared <= set(scheduler["volumes"])
    assert "output" in compose()["volumes"]


def test_simulator_is_in_the_demo_profile_and_workers_find_it():
    svc = services()
    assert svc["simulator"]["profiles"] == ["demo"]
    assert svc["simulator"]["command"][:3] == ["simulator", "--host", "0.0.0.0"]
    assert all("profiles" not in svc[name] for name in ("redis", "worker", "scheduler", "flower"))


def test_prometheus_and_grafana_are_a_pinned_local_only_profile_on_the_scheduler_metrics():
    svc = services()
    for name in METRICS_SERVICES:
        assert svc[name]["profiles"] == ["metrics"], name       # a plain `up` is unchanged
        image = interpolate(svc[name]["image"], {})
        assert re.match(r"^[\w./-]+:v?\d+\.\d+\.\d+$", image), image
        assert all(port.startswith("127.0.0.1:") for port in svc[name]["ports"]), name
    env = svc["scheduler"]["environment"]
    assert env["REELBATCH_METRICS_PORT"] == "9464" and "ports" not in svc["scheduler"]
    scrape = yaml.safe_load((REPO / "configs" / "prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == ["scheduler:9464"]
    mounts = " ".join(svc["grafana"]["volumes"])
    assert "./configs/grafana/dashboards:" in mounts and "./configs/grafana/provisioning:" in mounts
    url = interpolate(svc["worker"]["environment"]["REELBATCH_SIMULATOR_URL"], {})
    assert url == "http://simulator:8765"


def test_dotenv_is_gitignored_and_example_env_documents_every_variable():
    ignored = lambda path: subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0
    assert ignored(".env")
    assert not ignored("example.env")
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (REPO / "example.env").read_text(), re.M))
    used = {m.group(1) for text in walk_strings(compose()) for m in VAR.finditer(text)}
    assert used <= documented, used - documented
    assert {"OXEN_API_KEY", "AIMLAPI_KEY", "REELBATCH_SIMULATOR_KEY"} <= documented


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines
            if ln and not ln.startswith("#")]


def test_dockerfile_is_slim_non_root_and_installs_offline():
    steps = dockerfile()
    assert [args for op, args in steps if op == "FROM"] == ["${REELBATCH_BASE_IMAGE}"]
    base = dict(args.split("=", 1) for op, args in steps if op == "ARG")["REELBATCH_BASE_IMAGE"]
    assert base.startswith("python:3.11.") and "slim" in base and PINNED.match(base), base
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["reelbatch"]
    installs = [args for op, args in steps if op == "RUN" and "pip install" in args]
    assert installs and all("--no-index --find-links" in args for args in installs)
    assert [args for op, args in steps if op in ("COPY", "ADD")] == ["wheelhouse/ /tmp/wheelhouse/"]
    for op, args in steps:
        if op in ("ENV", "ARG"):
            assert not SECRET_NAME.search(args), args


def dockerignored(path: str) -> bool:
    """Docker's rule for .dockerignore: the last pattern that matches the path (or a parent) wins."""
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negated, glob = pattern.startswith("!"), pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(p, glob) for p in prefixes):
            ignored = not negated
    return ignored


@pytest.mark.parametrize("path", [".git/HEAD", ".env", "prod.env", ".venv/bin/python", "venv/bin/python",
                                  "jobs/examples/out/demo/ox.mp4", "out/results.jsonl", ".reelbatch/redis.password",
                                  ".pytest_cache/v/x", "jobs/__pycache__/x.pyc", "build/lib/x.py", "dist/x.whl"])
def test_dockerignore_keeps_secrets_and_outputs_out_of_the_context(path):
    assert dockerignored(path)


def test_dockerignore_lets_the_wheelhouse_in():
    assert not dockerignored("wheelhouse/reelbatch-0.1.0-py3-none-any.whl")


# -- (c) every command, run as a local process ---------------------------------------------------

@pytest.fixture
def local(tmp_path, redis_url, sim_factory):
    """Run a compose service's command on this machine, pointed at the test Redis and simulator."""
    started: list[subprocess.Popen] = []
    sim = sim_factory()
    ports = {"5555": str(free_port()), "8765": str(free_port()), "9464": str(free_port())}
    values = {"REDIS_PASSWORD": "unused", "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH),
              "REELBATCH_SIMULATOR_KEY": SIM_KEY}

    def start(name: str, **extra) -> tuple[subprocess.Popen, dict[str, str]]:
        svc = services()[name]
        env = cli_env(tmp_path / name, **{k: interpolate(str(v), values)
                                          for k, v in svc.get("environment", {}).items()})
        env.update(REELBATCH_BROKER_URL=redis_url, REELBATCH_SIMULATOR_URL=sim.base_url, **extra)
        if "REELBATCH_METRICS_PORT" in env:     # the scheduler's metrics: a free port on loopback here
            env.update(REELBATCH_METRICS_PORT=ports[env["REELBATCH_METRICS_PORT"]],
                       REELBATCH_METRICS_ADDRESS="127.0.0.1")
        args = [ports.get(a, "127.0.0.1" if a == "0.0.0.0" else a)
                for a in (interpolate(a, values) for a in svc["command"])]
        log = open(tmp_path / f"{name}.log", "w")
        proc = subprocess.Popen(entrypoint() + args, env=env, cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        started.append(proc)
        return proc, {**env, **ports}

    yield start
    for proc in started:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """SIGKILL the process group (a worker's threads, Flower), if it still runs."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def entrypoint() -> list[str]:
    """The image's ENTRYPOINT (`reelbatch`) as this machine runs it."""
    assert json.loads(dict(dockerfile())["ENTRYPOINT"]) == ["reelbatch"]
    return [sys.executable, "-m", "reelbatch"]


def worker_answers_ping(env: dict[str, str]) -> bool:
    ping = subprocess.run([sys.executable, "-m", "celery", "-A", "reelbatch.worker.app:app", "inspect", "ping",
                           "--timeout", "2"], env=env, cwd=REPO, capture_output=True, text=True)
    return ping.returncode == 0 and "pong" in ping.stdout


def worker_serves_the_simulator(env: dict[str, str]) -> bool:
    """It answers a ping and consumes the default queue and the simulator's (issue 23.1: a compose
    worker consumes the queues of the providers it has a key for, and the simulator's)."""
    if not worker_answers_ping(env):
        return False
    queues = subprocess.run([sys.executable, "-m", "celery", "-A", "reelbatch.worker.app:app", "inspect",
                             "active_queues", "--timeout", "2"], env=env, cwd=REPO, capture_output=True, text=True)
    return "'name': 'reelbatch'" in queues.stdout and "'name': 'reelbatch.simulator'" in queues.stdout


def sweep_was_sent(env: dict[str, str]) -> bool:
    """Beat runs: with a batch due to start, it sends the sweep (it sends none while nothing is due)."""
    r = redis.Redis.from_url(env["REELBATCH_BROKER_URL"])
    r.sadd("rb:batches", "due")
    r.hset("rb:{due}:meta", mapping={"name": "due", "provider": "simulator", "model": "m",
                                     "output": "/tmp/x", "start_at": 1})
    queued = r.lrange("reelbatch", 0, -1)
    return r.exists("rb:sweep:lock") or any(b"reelbatch.sweep" in m for m in queued)


def flower_answers(env: dict[str, str]) -> bool:
    base = f"http://127.0.0.1:{env['5555']}"
    try:
        ok = httpx.get(f"{base}/api/workers", auth=FLOWER_AUTH, timeout=5).status_code == 200
        return ok and httpx.get(f"{base}/api/workers", timeout=5).status_code == 401
    except httpx.TransportError:
        return False


def simulator_answers(env: dict[str, str]) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{env['8765']}/_sim/stats", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def scheduler_ready(env: dict[str, str]) -> bool:
    """Beat sends sweeps, and the batch metrics answer (what Prometheus scrapes in compose)."""
    try:
        metrics = httpx.get(f"http://127.0.0.1:{env['9464']}/metrics", timeout=5)
    except httpx.TransportError:
        return False
    return bool(sweep_was_sent(env)) and 'reelbatch_items{batch="due"' in metrics.text


READY = {"worker": worker_serves_the_simulator, "scheduler": scheduler_ready, "flower": flower_answers,
         "simulator": simulator_answers}


@pytest.mark.parametrize("name", APP_SERVICES)
def test_service_command_starts_and_is_ready(name, local, tmp_path):
    proc, env = local(name, SWEEP_EVERY_S="1")
    wait_for(lambda: proc.poll() is not None or READY[name](env), 60, f"{name} to be ready", every=0.5)
    log = (tmp_path / f"{name}.log").read_text()
    assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{log}"
    if "healthcheck" in services()[name]:
        assert run_healthcheck(name, env).returncode == 0, f"{name}'s healthcheck failed"


def run_healthcheck(name: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The service's healthcheck as this machine runs it: `python` is this interpreter, the
    container's port 5555 is the local Flower's port."""
    test = services()[name]["healthcheck"]["test"]
    args = ["sh", "-c", interpolate(test[1], {})] if test[0] == "CMD-SHELL" else [interpolate(a, {}) for a in test[1:]]
    args = [a.replace(":5555/", f":{env['5555']}/") for a in args]
    path = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return subprocess.run(args, env={**env, "PATH": path}, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_worker_healthcheck_fails_without_a_worker(local, tmp_path):
    """The check asks this host's own worker, so it can fail: here no worker runs at all."""
    _, env = local("simulator")
    assert run_healthcheck("worker", env).returncode != 0


def local_redis_command(tmp_path: Path, port: int) -> list[str]:
    """The redis service's command for this machine: the mounted redis.conf becomes a copy that
    listens on loopback at ``port``; redis-server is the embedded binary, on PATH."""
    mounts = dict(v.split(":")[1::-1] for v in services()["redis"]["volumes"] if v.startswith("./"))
    (conf_path, source), = mounts.items()
    conf = (REPO / source).read_text().replace("bind 0.0.0.0", "bind 127.0.0.1")
    (tmp_path / "redis.conf").write_text(re.sub(r"(?m)^port .*$", f"port {port}", conf))
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "redis-server").symlink_to(redis_server_binary())
    script = interpolate(services()["redis"]["command"][-1], {}).replace(conf_path, str(tmp_path / "redis.conf"))
    return [*services()["redis"]["command"][:-1], script]


def test_redis_command_and_conf_start_a_password_protected_durable_server(tmp_path):
    port, password = free_port(), "compose-redis-pass"
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "REDISCLI_AUTH": password}
    proc = subprocess.Popen(local_redis_command(tmp_path, port), env=env, cwd=tmp_path,
                            stdout=open(tmp_path / "redis.log", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        client = redis.Redis(port=port, password=password, decode_responses=True)
        wait_for(lambda: proc.poll() is not None or _pings(client), 30, "redis-server")
        assert proc.poll() is None, (tmp_path / "redis.log").read_text()
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        # `exec`: redis-server is the process itself, and its command line holds no password
        assert password.encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert b"redis-server" in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    finally:
        stop(proc)


def _pings(client: redis.Redis) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


def test_example_env_holds_no_real_secret():
    values = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", (REPO / "example.env").read_text(), re.M))
    assert values["OXEN_API_KEY"] == "" and values["AIMLAPI_KEY"] == ""
    assert "change-me" in values["REDIS_PASSWORD"] and "change-me" in values["FLOWER_BASIC_AUTH"]
    assert Path(REPO / ".env").exists() is False or subprocess.run(
        ["git", "ls-files", "--error-unmatch", ".env"], cwd=REPO, capture_output=True).returncode != 0

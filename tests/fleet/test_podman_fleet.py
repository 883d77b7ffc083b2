"""docker-compose.yml for real, under podman: the images are built (base by debootstrap, the project
from a wheelhouse, offline), the demo profile runs with two workers, and a batch submitted with
`--at` a minute ahead survives a worker crash and a Redis restart: every item succeeds once, every
file is what the simulator served, Flower shows it behind basic auth, and nothing is left behind.

Needs root, podman with runc, debootstrap and podman-compose: `scripts/podman-setup` (run by .ci/run)
installs them. The commands are the README's fleet section."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from reelbatch.scheduler.stack.embedded import free_port
from tests.fleet.podman import Fleet, base_image, leftovers, project_image, require_podman, run, wait_for

pytestmark = [pytest.mark.compose, pytest.mark.timeout(1200)]

N = 40                 # items; 4 in flight at once, each 3 to 9 s at the demo's time scale
BATCH = "fleet"
START_AFTER_S = 60     # `--at` this far ahead
WORKERS = 2


@pytest.fixture(scope="module")
def images() -> tuple[str, str]:
    require_podman()
    started = time.monotonic()
    base = base_image()
    image = project_image(base)
    print(f"\nFLEET | images {base} {image} ready in {time.monotonic() - started:.0f} s")
    return base, image


@pytest.fixture
def fleet(tmp_path, images):
    """The demo stack, up; torn down with its volumes afterwards, whatever happened."""
    base, image = images
    stack = Fleet.create(tmp_path / "project", base, image, free_port())
    try:
        stack.up(WORKERS)
        yield stack
    finally:
        (tmp_path / "containers.log").write_text(stack.logs(tail=200))
        print(f"container logs: {tmp_path / 'containers.log'}")   # shown when the test failed
        left = stack.down()
        assert not left, f"left behind: {left}"


def manifest() -> str:
    return yaml.safe_dump({
        "version": 1, "name": BATCH, "provider": "simulator", "model": "kling-o1/image-to-video",
        "output": "out", "defaults": {"duration": 5,
                                      "start_image": "https://example.org/ox.png"},
        "items": [{"id": f"clip{i:03d}", "prompt": f"An ox walks, take {i}"} for i in range(N)],
        "limits": {"max_concurrency": 4, "requests_per_minute": 600},
        "polling": {"first_after_s": 1, "min_interval_s": 0.5, "max_interval_s": 2},
    }, sort_keys=False)


# --- reading the fleet ----------------------------------------------------------------------------

def status(stack: Fleet) -> dict:
    return json.loads(stack.exec("scheduler", "reelbatch", "status", BATCH, "--json").stdout)


def counts(stack: Fleet) -> dict | None:
    """The batch's counts, or None while the scheduler container or Redis is restarting."""
    answer = stack.exec("scheduler", "reelbatch", "status", BATCH, "--json", check=False)
    return json.loads(answer.stdout) if answer.returncode == 0 else None


def sim_stats(stack: Fleet, detail: bool = False) -> dict:
    """GET /_sim/stats from inside the compose network (the simulator is not published)."""
    url = f"http://simulator:8765/_sim/stats?detail={int(detail)}"
    code = f"import sys, urllib.request as u; sys.stdout.write(u.urlopen({url!r}, timeout=10).read().decode())"
    return json.loads(stack.exec("scheduler", "python", "-c", code).stdout)


def enqueues(stats: dict) -> int:
    return sum(n for route, n in stats["requests"].items() if route.startswith("POST") and "queue" in route)


def flower(stack: Fleet, path: str, auth: bool = True) -> httpx.Response:
    user, _, password = stack.env["FLOWER_BASIC_AUTH"].partition(":")
    return httpx.get(f"http://127.0.0.1:{stack.env['FLOWER_PORT']}{path}",
                     auth=(user, password) if auth else None, timeout=10)


def results(stack: Fleet) -> list[dict]:
    text = stack.exec("scheduler", "cat", "/work/out/results.jsonl").stdout
    return [json.loads(line) for line in text.splitlines()]


def file_hashes(stack: Fleet) -> dict[str, str]:
    """sha256 of every video on the output volume, read inside the container."""
    listing = stack.exec("scheduler", "sh", "-c", "cd /work/out && sha256sum *.mp4").stdout
    return {name: digest for digest, name in (line.split() for line in listing.splitlines())}


# --- the checks, in the order the test makes them --------------------------------------------------

def assert_secrets_off_command_lines(stack: Fleet) -> None:
    password = stack.env["REDIS_PASSWORD"]
    for name in stack.containers():
        config = stack.inspect(name)["Config"]
        assert password not in json.dumps([config.get("Cmd"), config.get("Entrypoint")]), name
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            assert password.encode() not in cmdline.read_bytes(), f"password in {cmdline}"
        except OSError:
            continue


def assert_stack_ready(stack: Fleet) -> None:
    workers = stack.containers("worker")
    assert len(workers) == WORKERS, stack.containers()
    redis = stack.container("redis")
    wait_for(lambda: stack.healthy(redis), 60, "redis healthy")
    for name in (*workers, stack.container("flower")):
        wait_for(lambda: stack.healthy(name), 120, f"{name} healthy", every=3)
    assert stack.inspect(redis)["NetworkSettings"]["Ports"] in ({}, None), "redis is published"
    assert stack.exec("redis", "redis-cli", "config", "get", "appendonly").stdout.split() == ["appendonly", "yes"]
    unauthenticated = stack.exec("redis", "sh", "-c", "REDISCLI_AUTH= redis-cli ping", check=False)
    assert "NOAUTH" in unauthenticated.stdout + unauthenticated.stderr
    wait_for(lambda: sim_stats(stack)["requests_total"] >= 0, 60, "the simulator")
    assert_secrets_off_command_lines(stack)


def submit_at(stack: Fleet) -> float:
    """Copy the manifest onto the output volume and submit it from the scheduler, to start a minute
    from now; returns that start time."""
    (stack.folder / "fleet.yaml").write_text(manifest())
    run("podman", "cp", str(stack.folder / "fleet.yaml"), f"{stack.container('scheduler')}:/work/fleet.yaml")
    start = time.time() + START_AFTER_S
    at = datetime.fromtimestamp(start, UTC).isoformat(timespec="seconds")
    sent = stack.exec("scheduler", "reelbatch", "submit", "/work/fleet.yaml", "--at", at)
    assert f"{N} new items" in sent.stdout, sent.stdout
    return datetime.fromisoformat(at).timestamp()


def assert_nothing_starts_early(stack: Fleet, start: float) -> None:
    checks = 0
    while time.time() < start - 3:
        assert enqueues(sim_stats(stack)) == 0, "a generation was submitted before --at"
        assert status(stack)["counts"]["pending"] == N
        checks += 1
        time.sleep(5)
    assert checks >= 5, checks


def assert_flower_shows_the_fleet(stack: Fleet) -> None:
    assert flower(stack, "/api/workers", auth=False).status_code == 401
    assert flower(stack, "/api/tasks", auth=False).status_code == 401
    user = stack.env["FLOWER_BASIC_AUTH"].partition(":")[0]
    wrong = httpx.get(f"http://127.0.0.1:{stack.env['FLOWER_PORT']}/api/tasks", auth=(user, "wrong"), timeout=10)
    assert wrong.status_code == 401
    bindings = stack.inspect(stack.container("flower"))["HostConfig"]["PortBindings"]["5555/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"], bindings
    wait_for(lambda: len(flower(stack, "/api/workers?refresh=1").json()) == WORKERS, 60, "Flower's 2 workers")
    tasks = flower(stack, "/api/tasks").json().values()
    items = {t["args"] for t in tasks                    # Flower's name: "reelbatch.submit batch/item"
             if t["name"].split(" ")[0] in ("reelbatch.submit", "reelbatch.download")}
    assert any("clip" in str(args) for args in items), list(tasks)[:3]


def succeeded(stack: Fleet) -> int:
    info = counts(stack)
    return info["counts"]["succeeded"] if info else 0


def done(stack: Fleet) -> bool:
    info = counts(stack)
    return bool(info) and info["done"] == N


def in_flight(stack: Fleet) -> int:
    info = counts(stack) or {"counts": {}}
    return sum(n for state, n in info["counts"].items() if state not in ("pending", "succeeded", "failed", "cancelled"))


def crash_a_worker(stack: Fleet) -> int:
    """SIGKILL one worker container with items in flight; returns how many were."""
    victim = stack.containers("worker")[0]
    before, busy = stack.restarts(victim), in_flight(stack)
    stack.crash(victim)
    wait_for(lambda: stack.restarts(victim) > before and stack.running(victim), 60, "the worker restarted")
    return busy


def restart_redis(stack: Fleet) -> int:
    """`podman-compose restart redis`; returns the items in flight just before."""
    busy = in_flight(stack)
    stack.compose("restart", "redis")
    wait_for(lambda: stack.healthy(stack.container("redis")), 60, "redis back")
    return busy


def assert_batch_whole(stack: Fleet, start: float) -> None:
    rows = results(stack)
    assert len(rows) == N and {r["item_id"] for r in rows} == {f"clip{i:03d}" for i in range(N)}
    assert {r["status"] for r in rows} == {"succeeded"}, [r for r in rows if r["status"] != "succeeded"][:3]
    assert min(datetime.fromisoformat(r["submitted_at"]).timestamp() for r in rows) >= start
    stats = sim_stats(stack, detail=True)
    served = {g["public_id"]: g for g in stats["generations"].values()}
    on_disk = file_hashes(stack)
    for row in rows:
        assert on_disk[Path(row["file"]).name] == row["sha256"] == served[row["generation_id"]]["sha256"]
    keys = [g["request_key"] for g in stats["generations"].values()]
    assert len(keys) == len(set(keys)) == N, f"{len(keys)} generations for {len(set(keys))} requests"
    assert enqueues(stats) == N


def test_the_demo_fleet_survives_a_worker_crash_and_a_redis_restart(fleet: Fleet):
    t0 = time.monotonic()
    assert_stack_ready(fleet)
    start = submit_at(fleet)
    assert_nothing_starts_early(fleet, start)
    wait_for(lambda: succeeded(fleet) >= 4, 90, "the first items after the start time", every=3)
    assert_flower_shows_the_fleet(fleet)
    wait_for(lambda: succeeded(fleet) >= N // 3, 180, "a third of the batch", every=3)
    busy_at_crash = crash_a_worker(fleet)
    wait_for(lambda: succeeded(fleet) >= N // 2, 180, "half the batch", every=3)
    busy_at_restart = restart_redis(fleet)
    wait_for(lambda: done(fleet), 300, "every item done", every=5)
    assert_batch_whole(fleet, start)
    restarts = {name: fleet.restarts(name) for name in fleet.containers()}
    print(f"\nFLEET | {N} items | worker crash with {busy_at_crash} in flight, Redis restart with "
          f"{busy_at_restart} in flight | container restarts {restarts} | {time.monotonic() - t0:.0f} s")
    assert leftovers(fleet.name)   # still up here; the fixture's teardown must remove all of it

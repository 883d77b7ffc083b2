"""`reelbatch flower` watching a real batch: a real worker, the simulator, Flower's HTTP API with basic
auth. Flower shows reelbatch.* tasks with item ids as arguments and never a key or password."""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import urlsplit

import httpx
import pytest

from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import Store
from reelbatch.scheduler.stack.embedded import free_port
from tests.conftest import REPO, SIM_KEY
from tests.integration.helpers import cli_env, reelbatch, wait_for, write_manifest
from tests.integration.test_compose import stop

pytestmark = pytest.mark.integration
FAST = dict(time_scale=1 / 600, queue_delay=0.0, seed=11)
AUTH = ("ops", "flower-test-pass")


@pytest.fixture
def flower(tmp_path, redis_url):
    """`reelbatch flower` on a free port, basic auth from the environment; yields its base URL."""
    port = free_port()
    env = cli_env(tmp_path / "data", REELBATCH_BROKER_URL=redis_url, FLOWER_BASIC_AUTH=":".join(AUTH))
    log = open(tmp_path / "flower.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "reelbatch", "flower", "--port", str(port)],
                            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get(base, "/api/workers", auth=AUTH) == 200, 60, "Flower to answer")
        yield base
    finally:
        stop(proc)
        log.close()


def _get(base: str, path: str, **kw) -> int | None:
    try:
        return httpx.get(base + path, timeout=5, **kw).status_code
    except httpx.TransportError:
        return None


def _event_workers(base: str) -> list[dict]:
    """Workers Flower knows from the event stream (so it is receiving task events)."""
    return httpx.get(f"{base}/workers?json=1", auth=AUTH, timeout=5).json()["data"]


def _tasks(base: str) -> dict[str, dict]:
    return httpx.get(f"{base}/api/tasks", auth=AUTH, timeout=10).json()


def test_flower_shows_item_tasks_and_no_secret(tmp_path, redis_url, sim_factory, workers, flower):
    sim = sim_factory(concurrency=20, **FAST)
    workers(sim, concurrency=4, name="fl")
    wait_for(lambda: any(w.get("status") for w in _event_workers(flower)), 60, "the worker's events")
    manifest = write_manifest(tmp_path, "watched", 4)
    sent = reelbatch("submit", str(manifest), env=cli_env(tmp_path / "data", sim,
                                                          REELBATCH_BROKER_URL=redis_url))
    assert sent.returncode == 0, sent.stderr
    store = Store.from_url(redis_url)
    wait_for(lambda: store.counts("watched")[S.SUCCEEDED] == 4, 120, "4 succeeded")
    item_ids = {f"clip{i:03d}" for i in range(4)}
    wait_for(lambda: _finished(_tasks(flower), "reelbatch.download") == item_ids, 30,
             "Flower to see every download succeed")
    tasks = _tasks(flower)
    assert _finished(tasks, "reelbatch.submit") == item_ids
    assert all(t["name"].startswith("reelbatch.") for t in tasks.values())
    # the name Flower lists (Celery's shadow name) says the batch and the item: its search finds them
    downloads = {t["name"] for t in tasks.values() if t["name"].startswith("reelbatch.download ")}
    assert downloads == {f"reelbatch.download watched/{item}" for item in item_ids}
    answers = json.dumps(tasks) + httpx.get(f"{flower}/api/workers?refresh=1", auth=AUTH,
                                            timeout=10).text
    for secret in (SIM_KEY, urlsplit(redis_url).password, AUTH[1]):
        assert secret not in answers


def _finished(tasks: dict[str, dict], name: str) -> set[str]:
    """Item ids in the args of the SUCCESS tasks called ``name`` (args are "['batch', 'item']"; the
    name Flower shows is ``name batch/item``)."""
    return {t["args"].split("'")[3] for t in tasks.values()
            if t["name"].split(" ")[0] == name and t["state"] == "SUCCESS"}


def test_flower_api_refuses_without_auth(flower):
    assert _get(flower, "/api/tasks") == 401
    assert _get(flower, "/api/tasks", auth=(AUTH[0], "wrong")) == 401
    assert _get(flower, "/api/tasks", auth=AUTH) == 200


def test_flower_refuses_to_start_without_credentials(tmp_path, redis_url):
    env = cli_env(tmp_path / "data", REELBATCH_BROKER_URL=redis_url)
    env.pop("FLOWER_BASIC_AUTH", None)
    refused = reelbatch("flower", env=env, timeout=60)
    assert refused.returncode == 2 and "FLOWER_BASIC_AUTH" in refused.stderr
    public = reelbatch("flower", "--no-auth", "--address", "0.0.0.0", env=env, timeout=60)
    assert public.returncode == 2 and "127.0.0.1" in public.stderr
    malformed = reelbatch("flower", env={**env, "FLOWER_BASIC_AUTH": "nopassword"}, timeout=60)
    assert malformed.returncode == 2


def test_flower_counts_failed_items_as_failed_tasks(tmp_path, redis_url, sim_factory, workers, flower):
    """Issue 14.4: a task that ends its item in failure is a FAILURE in Flower, with the reason, so
    Flower's failures match `status`; and no traceback for it in the worker log."""
    sim = sim_factory(fail_rate=1.0, **FAST)
    workers(sim, concurrency=4, name="flfail")
    wait_for(lambda: any(w.get("status") for w in _event_workers(flower)), 60, "the worker's events")
    manifest = write_manifest(tmp_path, "failing", 3, retry={"max_attempts": 1})
    env = cli_env(tmp_path / "data", sim, REELBATCH_BROKER_URL=redis_url)
    assert reelbatch("submit", str(manifest), env=env).returncode == 0
    store = Store.from_url(redis_url)
    wait_for(lambda: store.counts("failing")[S.FAILED] == 3, 120, "3 failed")
    failed = lambda: [t for t in _tasks(flower).values() if t["state"] == "FAILURE"]  # noqa: E731
    wait_for(lambda: len(failed()) == 3, 30, "Flower to see 3 failed tasks")
    reasons = {t["args"].split("'")[3]: t["exception"] for t in failed()}
    assert set(reasons) == {"clip000", "clip001", "clip002"}
    for item_id, exception in reasons.items():
        assert "ItemFailed" in exception and store.item("failing", item_id).error_kind in exception
    status = json.loads(reelbatch("status", "failing", "--json", env=env).stdout)
    assert status["counts"]["failed"] == len(reasons)
    log = (tmp_path / "logs" / "worker-0.log").read_text()
    assert "Traceback" not in log

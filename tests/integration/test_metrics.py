"""The Prometheus endpoint: `reelbatch run` serves it when REELBATCH_METRICS_PORT is set, over real
HTTP, with batch-level series read from the store; its figures are the ones `status --json` prints."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reelbatch.jobs.settings import Settings
from reelbatch.jobs.store import Store
from reelbatch.scheduler.stack.embedded import EmbeddedRedis
from reelbatch.scheduler.views.metrics import MetricsServer
from tests.integration.helpers import cli_env, reap, reelbatch, spawn, wait_for, write_manifest

pytestmark = pytest.mark.integration
N = 6


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """(series name, sorted labels) -> value, of every sample the endpoint serves."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def answering(port: int) -> dict | None:
    try:
        return scrape(port)
    except (urllib.error.URLError, ConnectionError):
        return None


def batch_items(series: dict, batch: str) -> dict[str, float]:
    return {dict(labels)["state"]: value for (name, labels), value in series.items()
            if name == "reelbatch_items" and dict(labels)["batch"] == batch}


def test_run_serves_batch_metrics_that_match_status(tmp_path, sim_factory):
    sim = sim_factory(concurrency=2, time_scale=1 / 100, queue_delay=0.0, seed=3)
    port, data = free_port(), tmp_path / "data"
    env = cli_env(data, sim, REELBATCH_METRICS_PORT=str(port))
    manifest = write_manifest(tmp_path, "watched", N, limits={"max_concurrency": 2, "max_cost_usd": 50})
    run = spawn("run", str(manifest), env=env)
    try:
        during = wait_for(lambda: batch_items(answering(port) or {}, "watched") or None, 120,
                          "the metrics endpoint of `run`", every=0.1)
        assert sum(during.values()) == N                       # every item counted in some state
        assert run.wait(timeout=300) == 0, run.stderr.read()
        status = json.loads(reelbatch("status", "watched", "--json", env=env).stdout)
        settings = Settings(metrics_port=free_port())
        with EmbeddedRedis(data) as server, MetricsServer(Store.from_url(server.url), settings):
            after = scrape(settings.metrics_port)               # the collector `scheduler` serves too
    finally:
        reap(data)
    assert batch_items(after, "watched") == {k: float(v) for k, v in status["counts"].items()}
    spend = {dict(labels)["source"]: value for (name, labels), value in after.items()
             if name == "reelbatch_spend_usd" and dict(labels)["batch"] == "watched"}
    assert spend == pytest.approx({"charged": status["charged_usd"], "estimated": status["estimated_usd"]},
                                  abs=1e-4)
    assert after[("reelbatch_max_cost_usd", (("batch", "watched"),))] == 50
    assert after[("reelbatch_generation_seconds_count", (("duration", "5"),
                  ("model", "kling-o1/image-to-video"), ("provider", "simulator")))] >= 1
    asked = after[("reelbatch_provider_requests_total", (("outcome", "ok"), ("provider", "simulator")))]
    assert asked >= N                                         # at least a submit per item, counted by the workers
    labels = {value for (_, pairs) in after for _, value in pairs}
    assert not any(value.startswith("clip") for value in labels)    # never an item id

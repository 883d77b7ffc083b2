"""A batch with ``provider: fal`` end to end against the simulator's fal mode: the real CLI, a real
redis-server and Celery worker, real MP4s. Completions come from each request's status stream
(no status poll), or, with the event listener off, from polling status_url alone."""

from __future__ import annotations

import pytest

from tests.conftest import SIM_KEY
from tests.integration.helpers import (
    assert_files_match_simulator,
    assert_no_duplicate_generation,
    cli_env,
    reelbatch,
    results,
    write_manifest,
)

pytestmark = pytest.mark.integration
FAST = dict(time_scale=1 / 600, queue_delay=0.0, seed=11)
STATUS = "GET /fal-ai/{app}/requests/{id}/status"
STREAM = "GET /fal-ai/{app}/requests/{id}/status/stream"
N = 8


def fal_batch(tmp_path, sim, name: str, **env) -> tuple[list[dict], dict]:
    manifest = write_manifest(tmp_path, name, N, provider="fal",
                              defaults={"duration": 3, "start_image": "https://example.org/ox.png"},
                              polling={"first_after_s": 3, "min_interval_s": 0.5, "max_interval_s": 2})
    environment = cli_env(tmp_path / "data", FAL_KEY=SIM_KEY, FAL_QUEUE_URL=sim.base_url,
                          FAL_API_URL=sim.base_url, **env)
    done = reelbatch("run", str(manifest), env=environment, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = results(tmp_path / "out")
    stats = sim.stats()
    print(f"{name}: {N} generations, status polls {stats['requests'].get(STATUS, 0)} "
          f"({stats['requests'].get(STATUS, 0) / N:.2f}/generation), status streams "
          f"{stats['requests'].get(STREAM, 0)}, requests {stats['requests_total']}")
    assert [r["status"] for r in rows] == ["succeeded"] * N
    assert {r["generation_id"].rsplit("/", 1)[0] for r in rows} == {"fal-ai/kling-video/requests"}
    assert_files_match_simulator(rows, tmp_path / "out", stats)
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and SIM_KEY.encode() in p.read_bytes()]
    assert not leaked, f"FAL_KEY written to {leaked}"   # logs, results, the Redis append-only file
    return rows, stats["requests"]


def test_a_fal_batch_completes_from_the_status_streams_without_a_status_poll(tmp_path, sim_factory):
    sim = sim_factory(concurrency=20, **FAST)
    _, requests = fal_batch(tmp_path, sim, "falstream")
    assert requests.get(STREAM, 0) >= N, requests
    assert requests.get(STATUS, 0) == 0, requests


def test_without_the_stream_a_fal_batch_completes_by_polling_status_url(tmp_path, sim_factory):
    sim = sim_factory(concurrency=20, **FAST)
    _, requests = fal_batch(tmp_path, sim, "falpoll", REELBATCH_EVENT_LISTENER="false")
    assert requests.get(STREAM, 0) == 0, requests
    assert requests.get(STATUS, 0) >= N, requests


def test_fal_faults_lost_submits_are_found_in_the_request_history_never_sent_twice(tmp_path, sim_factory):
    """Submits whose answer is lost after fal queued them (and 5xx, 429) on fal's protocol: the
    request history (finished requests only, so asked again until it lists them) finds each one."""
    sim = sim_factory(concurrency=20, drop_after_submit_rate=0.3, server_error_rate=0.05,
                      rate_limit_rate=0.05, **FAST)
    rows, requests = fal_batch(tmp_path, sim, "falfaults")
    stats = sim.stats()
    assert stats["faults"].get("drop_after", 0) >= 1, stats["faults"]
    assert requests.get("GET /v1/models/requests/by-endpoint", 0) >= 1, requests
    assert_no_duplicate_generation(stats)

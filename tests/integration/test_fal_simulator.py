"""The fal client against the simulator's fal mode over real HTTP: the queue's URLs, statuses,
result errors, cancel answers, the per-request status stream, result expiry, the platform API."""

from __future__ import annotations

import base64
import threading
import time
from itertools import count

import httpx
import pytest

import reelbatch.simulator.server as simulator_server
from reelbatch.jobs.errors import PermanentProviderError, TransientProviderError
from reelbatch.jobs.item import ProviderRequest
from reelbatch.jobs.settings import Settings
from reelbatch.worker.providers import build_provider
from reelbatch.worker.providers.base import RemoteStatus
from reelbatch.worker.providers.fal import FalProvider

pytestmark = pytest.mark.integration

KEY = "fal-sim-key-0123456789"
I2V = "fal-ai/kling-video/o1/image-to-video"
PROMPTS = count()
QUICK = dict(gen_time_min=300.0, gen_time_max=600.0, fail_rate=0.0, fal_result_ttl=3600.0,
             server_error_rate=0.0, concurrency=20, queue_delay=1.0)


@pytest.fixture(scope="module")
def sim():
    server = simulator_server.Simulator(knobs=simulator_server.Knobs(time_scale=0.002, seed=3), api_key=KEY)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fal(sim):
    sim.set_knobs(**QUICK)
    client = build_provider("fal", Settings(fal_key=KEY, fal_queue_url=sim.base_url,
                                            fal_api_url=sim.base_url, http_read_timeout_s=10))
    assert isinstance(client, FalProvider)
    yield client
    client.close()


def i2v(**extra) -> ProviderRequest:
    return ProviderRequest(model=I2V, body={"prompt": f"an ox, take {next(PROMPTS)}",
                                            "start_image_url": "https://i.test/ox.png", "duration": "3", **extra})


def wait_terminal(fal: FalProvider, generation_id: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        generation = fal.get(generation_id)
        if generation.terminal:
            return generation
        time.sleep(0.1)
    raise AssertionError("never finished")


def test_the_id_is_the_app_request_path_and_a_rebuilt_url_gets_405(fal, sim):
    generation_id = fal.submit(i2v())
    assert generation_id.startswith("fal-ai/kling-video/requests/")
    rebuilt = f"{sim.base_url}/{I2V}/requests/{generation_id.rsplit('/', 1)[1]}/status"
    assert httpx.get(rebuilt, headers={"Authorization": f"Key {KEY}"}).status_code == 405
    done = wait_terminal(fal, generation_id)
    assert done.status is RemoteStatus.SUCCEEDED and done.video_url


def test_a_body_fal_refuses_fails_at_the_result_fetch_with_its_detail(fal):
    generation_id = fal.submit(i2v(duration="11"))   # accepted: fal checks when the request runs
    done = wait_terminal(fal, generation_id)
    assert done.status is RemoteStatus.FAILED and "duration" in done.error


def test_typed_5xx_results_are_failures_not_transient_errors(fal, sim):
    sim.set_knobs(fail_rate=1.0)
    failures = {wait_terminal(fal, fal.submit(i2v())).error for _ in range(6)}
    assert all(f for f in failures) and any("request_timeout" in f or "runner_server_error" in f
                                            for f in failures)


def test_cancel_answers_ok_queued_and_already_completed_after(fal, sim):
    sim.set_knobs(concurrency=0)
    generation_id = fal.submit(i2v())
    fal.cancel(generation_id)
    assert wait_terminal(fal, generation_id).status is RemoteStatus.CANCELLED
    fal.cancel(generation_id)   # ALREADY_COMPLETED: no error
    fal.cancel("fal-ai/kling-video/requests/no-such-request")   # NOT_FOUND: no error


def test_a_result_kept_past_its_hour_is_missing(fal, sim):
    sim.set_knobs(fal_result_ttl=0.0)
    generation_id = fal.submit(i2v())
    time.sleep(2.5)
    with pytest.raises(PermanentProviderError, match="missing"):
        fal.get(generation_id)


def test_the_status_stream_tells_each_followed_request_without_a_status_poll(fal, sim):
    ids = [fal.submit(i2v()) for _ in range(3)]
    before = sim.stats(detail=False)["requests"].get("GET /fal-ai/{app}/requests/{id}/status", 0)
    fal.follow(lambda: ids)
    heard: list = []
    reader = threading.Thread(target=lambda: [heard.append(g) for g in fal.events()], daemon=True)
    reader.start()
    deadline = time.monotonic() + 20
    while len(heard) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    fal.close()
    assert sorted(g.generation_id for g in heard) == sorted(ids)
    assert all(g.status is RemoteStatus.SUCCEEDED and g.video_url for g in heard)
    after = sim.stats(detail=False)["requests"].get("GET /fal-ai/{app}/requests/{id}/status", 0)
    assert after == before


def test_prices_and_a_lost_submit_found_in_the_history(fal, sim):
    assert fal.model_pricing(I2V) == {"cost_per_second": 0.112}
    request = i2v()
    since = time.time() - 5
    generation_id = fal.submit(request)
    with pytest.raises(TransientProviderError, match="finished requests only"):
        fal.find(request, since)   # not finished yet: not in the history yet
    wait_terminal(fal, generation_id)
    assert [g.generation_id for g in fal.find(request, since)] == [generation_id]


def test_a_refused_key_is_found_by_the_key_check(sim):
    client = build_provider("fal", Settings(fal_key="wrong", fal_queue_url=sim.base_url,
                                            fal_api_url=sim.base_url))
    with pytest.raises(PermanentProviderError):
        client.check_key(I2V)
    client.close()


def test_a_local_input_is_uploaded_to_fal_storage_once_and_sent_as_its_url(sim, tmp_path):
    settings = Settings(fal_key=KEY, fal_queue_url=sim.base_url, fal_api_url=sim.base_url,
                        fal_rest_url=sim.base_url, data_dir=tmp_path)
    client = build_provider("fal", settings)
    sim.set_knobs(**QUICK)
    png = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n-ox-").decode()
    before = sim.stats(detail=False)["requests"].get("POST /storage/upload/initiate", 0)
    requests = [ProviderRequest(model=I2V, body={"prompt": f"an ox {n}", "start_image_url": png})
                for n in range(2)]
    ids = [client.submit(r) for r in requests]
    stats = sim.stats()
    assert stats["requests"]["POST /storage/upload/initiate"] - before == 1
    sent = {g["public_id"]: g for g in stats["generations"].values()}
    url = sim.core.clock.gens[ids[0].rsplit("/", 1)[1]].params["start_image_url"]
    assert url.startswith(f"{sim.base_url}/fal-storage/files/") and ids[0] in sent
    assert httpx.get(url).content == b"\x89PNG\r\n\x1a\n-ox-"
    wait_terminal(client, ids[0])
    assert [g.generation_id for g in client.find(requests[0], time.time() - 30)] == [ids[0]]
    client.close()
    rerun = build_provider("fal", settings)   # another process on this machine: no second upload
    rerun.submit(ProviderRequest(model=I2V, body={"prompt": "an ox again", "start_image_url": png}))
    assert sim.stats(detail=False)["requests"]["POST /storage/upload/initiate"] - before == 1
    assert KEY not in (tmp_path / "fal-uploads.json").read_text()
    rerun.close()

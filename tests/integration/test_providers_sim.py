"""Both provider clients and storage against the simulator over real HTTP: every status path and
every injected fault (each knob at rate 1.0)."""

from __future__ import annotations

import threading
import time
from itertools import count

import pytest

import reelbatch.simulator.server as simulator_server  # noqa: E402
from reelbatch.jobs.errors import (
    KeyRefused,
    ModelGone,
    PermanentProviderError,
    RateLimited,
    ResultUrlExpired,
    StorageError,
    SubmitOutcomeUnknown,
    TransientProviderError,
)
from reelbatch.jobs.item import ProviderRequest
from reelbatch.jobs.settings import Settings
from reelbatch.worker.providers import build_provider
from reelbatch.worker.providers.base import Cancels, RemoteStatus
from reelbatch.worker.providers.http import build_download_client, failure_kind
from reelbatch.worker.storage import download, poster_frame

pytestmark = pytest.mark.integration

KEY = "sim-secret-key-0123456789"
FAULTS_OFF = dict(fail_rate=0.0, rate_limit_rate=0.0, rate_limit_bare_rate=0.0, server_error_rate=0.0,
                  drop_before_rate=0.0, drop_after_rate=0.0, truncate_rate=0.0, expire_rate=0.0,
                  legacy_enqueue_processing=False, legacy_404_terminal=False, sse_disconnect_every=0.0,
                  keepalive_interval=0.2, other_event_interval=0.1, aiml_error_shape="random",
                  result_url_needs_key=False, gen_time_min=300.0, gen_time_max=900.0, cost_per_second=0.112)
PROMPTS = count()


@pytest.fixture(scope="module")
def sim():
    knobs = simulator_server.Knobs(time_scale=0.001, seed=1)
    server = simulator_server.Simulator(knobs=knobs, api_key=KEY, host="127.0.0.1", port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(sim) -> Settings:
    sim.set_knobs(**FAULTS_OFF)
    return Settings(simulator_key=KEY, simulator_url=sim.base_url, aimlapi_key=KEY,
                    aimlapi_base_url=sim.base_url, http_read_timeout_s=10)


@pytest.fixture(params=["simulator", "aimlapi"])
def provider(request, settings):
    client = build_provider(request.param, settings)
    yield client
    client.close()


@pytest.fixture
def oxen(settings):
    client = build_provider("simulator", settings)
    yield client
    client.close()


def request_for(provider) -> ProviderRequest:
    prompt = f"an ox walking, take {next(PROMPTS)}"
    if provider.name == "aimlapi":
        return ProviderRequest(model="klingai/video-o1-image-to-video",
                               body={"prompt": prompt, "image_url": "https://i.test/ox.png", "duration": 5})
    return ProviderRequest(model="kling-video-o1-image-to-video",
                           body={"prompt": prompt, "input_image": "https://i.test/ox.png", "duration": 5})


def wait_terminal(provider, generation_id: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        generation = provider.get(generation_id)
        if generation.terminal:
            return generation
        time.sleep(0.05)
    raise AssertionError(f"{generation_id} did not finish in {timeout}s")


def error_of(call) -> Exception:
    with pytest.raises((TransientProviderError, PermanentProviderError, StorageError)) as info:
        call()
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    return info.value


# --- status paths ---------------------------------------------------------------------------------

def test_success_download_and_poster(sim, provider, settings, tmp_path):
    generation = wait_terminal(provider, provider.submit(request_for(provider)))
    assert generation.status is RemoteStatus.SUCCEEDED and generation.video_url
    if provider.name == "aimlapi":
        assert generation.cost_usd and generation.cost_usd > 0
    with build_download_client(settings) as client:
        stored = download(generation.video_url, tmp_path, "clip.mp4", client, settings)
    served = sim.stats()["generations"][generation.generation_id.split(":")[0]]
    assert (stored.sha256, stored.bytes) == (served["sha256"], served["bytes"])
    assert poster_frame(stored.path, tmp_path / "clip.jpg").read_bytes()[:2] == b"\xff\xd8"


def test_remote_failure(sim, provider, settings):
    sim.set_knobs(fail_rate=1.0)
    generation = wait_terminal(provider, provider.submit(request_for(provider)))
    assert generation.status is RemoteStatus.FAILED and generation.error


@pytest.mark.parametrize("shape", ["name", "detail"])
def test_aimlapi_error_shapes_are_readable(sim, settings, shape):
    sim.set_knobs(fail_rate=1.0, aiml_error_shape=shape)
    aiml = build_provider("aimlapi", settings)
    generation = wait_terminal(aiml, aiml.submit(request_for(aiml)))
    assert generation.status is RemoteStatus.FAILED
    assert "{" not in generation.error and len(generation.error) > 5


def test_find_returns_the_history_row_with_cost(oxen):
    request = request_for(oxen)
    generation_id = oxen.submit(request)
    wait_terminal(oxen, generation_id)
    found = oxen.find(request)
    assert [g.generation_id for g in found] == [generation_id]
    assert found[0].status is RemoteStatus.SUCCEEDED and found[0].cost_usd > 0


def test_cancel(sim, oxen, settings):
    sim.set_knobs(queue_delay=2000.0)
    try:
        generation_id = oxen.submit(request_for(oxen))
        assert oxen.get(generation_id).status is RemoteStatus.QUEUED
        assert generation_id in [g.generation_id for g in oxen.list_active()]
        oxen.cancel(generation_id)
        assert oxen.get(generation_id).status is RemoteStatus.CANCELLED
    finally:
        sim.set_knobs(queue_delay=1.0)
    assert not isinstance(build_provider("aimlapi", settings), Cancels)


def test_legacy_enqueue_processing_and_404_after_terminal(sim, oxen):
    sim.set_knobs(legacy_enqueue_processing=True, legacy_404_terminal=True)
    generation = wait_terminal(oxen, oxen.submit(request_for(oxen)))
    assert generation.status is RemoteStatus.SUCCEEDED and generation.video_url
    assert generation.cost_usd is not None  # the row came from /api/ai/generations


def test_bad_key_and_unknown_model(sim, settings):
    wrong = build_provider("simulator", Settings(simulator_key="nope", simulator_url=sim.base_url))
    error = error_of(lambda: wrong.submit(request_for(wrong)))
    assert type(error) is KeyRefused and error.status_code == 401
    oxen = build_provider("simulator", settings)
    error = error_of(lambda: oxen.submit(ProviderRequest(model="no-such-model", body={"prompt": "x"})))
    assert type(error) is ModelGone and "Model not found" in str(error)


# --- SSE ------------------------------------------------------------------------------------------

class Collector:
    """Listens on /api/events in a thread until every wanted id has arrived."""

    def __init__(self, settings: Settings):
        self.listener = build_provider("simulator", settings)
        self.wanted: set[str] = set()
        self.seen: dict = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        time.sleep(0.3)  # no replay: be connected before submitting

    def _run(self):
        for generation in self.listener.events():
            self.seen[generation.generation_id] = generation
            if self.wanted and self.wanted <= self.seen.keys():
                return

    def wait(self, *ids: str, timeout: float = 20.0) -> dict:
        self.wanted.update(ids)
        deadline = time.monotonic() + timeout
        while not self.wanted <= self.seen.keys() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.listener.close()
        return self.seen


def test_events_deliver_success_and_failure(sim, oxen, settings):
    sim.set_knobs(queue_delay=300.0)
    polls = sim.stats()["requests"].get("GET /api/ai/queue/{id}", 0)
    collector = Collector(settings)
    ok_id = oxen.submit(request_for(oxen))
    sim.set_knobs(fail_rate=1.0)
    failed_id = oxen.submit(request_for(oxen))
    seen = collector.wait(ok_id, failed_id)
    sim.set_knobs(queue_delay=1.0)
    assert seen[ok_id].status is RemoteStatus.SUCCEEDED and seen[ok_id].video_url
    assert seen[failed_id].status is RemoteStatus.FAILED and seen[failed_id].error
    assert sim.stats()["requests"].get("GET /api/ai/queue/{id}", 0) == polls   # no polling needed


def test_events_survive_disconnects_and_polling_covers_the_gaps(sim, oxen, settings):
    sim.set_knobs(sse_disconnect_every=0.3)
    connects = sim.stats()["requests"].get("GET /api/events", 0)
    collector = Collector(settings)
    ids = [oxen.submit(request_for(oxen)) for _ in range(4)]
    seen = collector.wait(*ids, timeout=3.0)
    assert sim.stats()["requests"]["GET /api/events"] - connects >= 3   # it kept reconnecting
    for generation_id in ids:   # no replay: whatever fired while disconnected is polled
        generation = seen.get(generation_id) or wait_terminal(oxen, generation_id)
        assert generation.status is RemoteStatus.SUCCEEDED


# --- injected faults ------------------------------------------------------------------------------

def test_rate_limited_with_and_without_retry_after(sim, provider):
    generation_id = provider.submit(request_for(provider))
    sim.set_knobs(rate_limit_rate=1.0, retry_after=3)
    for call in (lambda: provider.get(generation_id), lambda: provider.submit(request_for(provider))):
        error = error_of(call)
        assert type(error) is RateLimited and error.retry_after == 3
    sim.set_knobs(rate_limit_rate=0.0, rate_limit_bare_rate=1.0)
    error = error_of(lambda: provider.get(generation_id))
    assert type(error) is RateLimited and error.retry_after is None


def test_server_errors(sim, provider):
    generation_id = provider.submit(request_for(provider))
    sim.set_knobs(server_error_rate=1.0)
    for _ in range(6):
        error = error_of(lambda: provider.get(generation_id))
        assert type(error) is TransientProviderError and error.status_code in (500, 502, 503)
        error = error_of(lambda: provider.submit(request_for(provider)))
        expected = TransientProviderError if error.status_code == 503 else SubmitOutcomeUnknown
        assert type(error) is expected


def test_drop_before_processing(sim, provider):
    generation_id = provider.submit(request_for(provider))
    sim.set_knobs(drop_before_rate=1.0)
    assert type(error_of(lambda: provider.get(generation_id))) is TransientProviderError
    request = request_for(provider)
    since = time.time() - 5
    assert type(error_of(lambda: provider.submit(request))) is SubmitOutcomeUnknown
    sim.set_knobs(drop_before_rate=0.0)
    if provider.name == "simulator":
        assert provider.find(request, since=since) == []   # nothing was created: safe to resubmit


def test_drop_after_processing_is_reconciled_by_find(sim, oxen):
    request, since = request_for(oxen), time.time() - 5
    before = sim.stats()["generations_total"]
    sim.set_knobs(drop_after_rate=1.0)
    assert type(error_of(lambda: oxen.submit(request))) is SubmitOutcomeUnknown
    sim.set_knobs(drop_after_rate=0.0)
    assert sim.stats()["generations_total"] == before + 1   # the paid generation exists
    found = oxen.find(request, since=since)
    assert len(found) == 1
    assert wait_terminal(oxen, found[0].generation_id).status is RemoteStatus.SUCCEEDED


def test_truncated_download(sim, provider, settings, tmp_path):
    generation = wait_terminal(provider, provider.submit(request_for(provider)))
    sim.set_knobs(truncate_rate=1.0)
    with build_download_client(settings) as client:
        error = error_of(lambda: download(generation.video_url, tmp_path, "a.mp4", client, settings))
    assert type(error) is StorageError
    assert list(tmp_path.iterdir()) == []


def test_expired_url_then_fresh_url(sim, provider, settings, tmp_path):
    generation_id = provider.submit(request_for(provider))
    wait_terminal(provider, generation_id)
    sim.set_knobs(expire_rate=1.0)
    stale = provider.get(generation_id).video_url
    with build_download_client(settings) as client:
        assert type(error_of(lambda: download(stale, tmp_path, "a.mp4", client, settings))) is ResultUrlExpired
        sim.set_knobs(expire_rate=0.0)
        fresh = provider.get(generation_id).video_url
        assert download(fresh, tmp_path, "a.mp4", client, settings).bytes > 0


# --- issue 13: what the providers publish, over the wire -----------------------------------------

def test_aimlapi_active_is_running_and_never_fails_a_generation(sim, settings):
    import httpx
    sim.set_knobs(gen_time_min=3000.0, gen_time_max=3000.0)     # 3 s runs, the first 0.3 s "active"
    aiml = build_provider("aimlapi", settings)
    generation_id = aiml.submit(request_for(aiml))
    raw, statuses = [], []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "generating" not in raw:
        answer = httpx.get(f"{sim.base_url}/v2/video/generations", params={"generation_id": generation_id},
                           headers={"Authorization": f"Bearer {KEY}"}).json()
        raw.append(answer["status"])
        statuses.append(aiml.get(generation_id).status)
        time.sleep(0.01)
    assert "active" in raw
    assert RemoteStatus.RUNNING in statuses and RemoteStatus.FAILED not in statuses


def test_oxen_validation_at_run_time_is_a_permanent_failure(oxen):
    request = ProviderRequest(model="kling-video-o1-reference-to-video",
                              body={"prompt": f"@Element1 flies, take {next(PROMPTS)}",
                                    "elements": [{"frontal_image_url": "https://i.test/f.png"}]})
    generation = wait_terminal(oxen, oxen.submit(request))        # accepted at enqueue, as Oxen does
    assert generation.status is RemoteStatus.FAILED
    assert "Field required: 'input_image'" in generation.error
    assert failure_kind(generation.error) == "invalid_input"


def test_aimlapi_schema_refusal_at_post_is_permanent(settings):
    aiml = build_provider("aimlapi", settings)
    request = ProviderRequest(model="klingai/video-o1-reference-to-video", body={
        "prompt": "p", "elements": [{"frontal_image_url": "https://i.test/f.png", "reference_image_urls": []}]})
    error = error_of(lambda: aiml.submit(request))
    assert type(error) is PermanentProviderError and error.status_code == 400
    assert "Body validation error!" in str(error)


def test_the_key_downloads_a_rest_result_url_on_the_providers_host(sim, oxen, settings, tmp_path):
    sim.set_knobs(result_url_needs_key=True)
    generation = wait_terminal(oxen, oxen.submit(request_for(oxen)))
    assert "/api/repos/" in generation.video_url
    with build_download_client(settings) as client:
        assert type(error_of(lambda: download(generation.video_url, tmp_path, "a.mp4", client, settings))) \
            is StorageError                                        # 401 without the key
        stored = download(generation.video_url, tmp_path, "a.mp4", client, settings, oxen.download_credential)
    assert stored.sha256 == sim.stats()["generations"][generation.generation_id]["sha256"]


def test_charged_cost_after_success(sim, provider):
    sim.set_knobs(cost_per_second=0.05)
    generation_id = provider.submit(request_for(provider))
    assert wait_terminal(provider, generation_id).status is RemoteStatus.SUCCEEDED
    assert provider.charged_cost(generation_id) == pytest.approx(5 * 0.05)


def test_reconcile_finds_a_lost_submit_sent_with_a_data_uri(sim, oxen):
    request = ProviderRequest(model="kling-video-o1-image-to-video", body={
        "prompt": f"an ox, take {next(PROMPTS)}", "input_image": "data:image/png;base64,iVBORw0KGgo=", "duration": 5})
    since = time.time() - 5
    sim.set_knobs(drop_after_rate=1.0)
    assert type(error_of(lambda: oxen.submit(request))) is SubmitOutcomeUnknown
    sim.set_knobs(drop_after_rate=0.0)
    assert len(oxen.find(request, since=since)) == 1

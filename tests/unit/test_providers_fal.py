"""fal's queue protocol in narrow cases (httpx.MockTransport): the key header, the id kept from
response_url, the result fetch's error shapes, the cancel answers; never the key on the CDN."""

from __future__ import annotations

import json

import httpx
import pytest

from reelbatch.jobs.errors import PermanentProviderError, SubmitOutcomeUnknown, TransientProviderError
from reelbatch.jobs.item import ProviderRequest
from reelbatch.jobs.settings import Settings
from reelbatch.worker.providers import build_provider
from reelbatch.worker.providers.base import RemoteStatus
from reelbatch.worker.providers.fal import FalProvider

KEY = "fal-unit-key-0123456789"
QUEUE = "https://queue.fal.test"
APP_URL = f"{QUEUE}/fal-ai/kling-video/requests/r1"
GID = "fal-ai/kling-video/requests/r1"
REQUEST = ProviderRequest(model="fal-ai/kling-video/o1/image-to-video",
                          body={"prompt": "an ox", "start_image_url": "https://i.test/ox.png", "duration": "5"})


def fal_with(routes: dict[tuple[str, str], httpx.Response], seen: list | None = None) -> FalProvider:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return routes[(request.method, str(request.url).split("?")[0])]
    settings = Settings(fal_key=KEY, fal_queue_url=QUEUE, fal_api_url="https://api.fal.test")
    client = build_provider("fal", settings, transport=httpx.MockTransport(handler))
    assert isinstance(client, FalProvider)
    return client


def submitted(**extra) -> httpx.Response:
    return httpx.Response(200, json={"request_id": "r1", "response_url": APP_URL, "status_url": f"{APP_URL}/status",
                                     "cancel_url": f"{APP_URL}/cancel", "queue_position": 0, **extra})


def completed() -> httpx.Response:
    return httpx.Response(200, json={"status": "COMPLETED", "request_id": "r1", "response_url": APP_URL})


def test_submit_sends_the_key_header_and_keeps_the_app_path_of_response_url():
    seen: list[httpx.Request] = []
    fal = fal_with({("POST", f"{QUEUE}/fal-ai/kling-video/o1/image-to-video"): submitted()}, seen)
    assert fal.submit(REQUEST) == GID
    assert seen[0].headers["authorization"] == f"Key {KEY}"
    assert json.loads(seen[0].content) == REQUEST.body


def test_a_submit_answer_without_a_request_id_is_an_unknown_outcome():
    fal = fal_with({("POST", f"{QUEUE}/fal-ai/kling-video/o1/image-to-video"): httpx.Response(200, json={})})
    with pytest.raises(SubmitOutcomeUnknown):
        fal.submit(REQUEST)


@pytest.mark.parametrize("status, raw", [(RemoteStatus.QUEUED, "IN_QUEUE"), (RemoteStatus.RUNNING, "IN_PROGRESS")])
def test_statuses_before_completion(status, raw):
    fal = fal_with({("GET", f"{APP_URL}/status"): httpx.Response(202, json={"status": raw})})
    assert fal.get(GID).status is status


def test_completed_reads_the_video_url_from_the_result_and_lends_no_key():
    video = {"video": {"url": "https://v3.fal.media/files/ox.mp4", "content_type": "video/mp4"}}
    fal = fal_with({("GET", f"{APP_URL}/status"): completed(), ("GET", APP_URL): httpx.Response(200, json=video)})
    done = fal.get(GID)
    assert (done.status, done.video_url) == (RemoteStatus.SUCCEEDED, "https://v3.fal.media/files/ox.mp4")
    assert fal.download_credential is None


def test_a_422_result_is_a_failed_generation_with_its_detail():
    detail = {"detail": [{"loc": ["body", "duration"], "msg": "Input should be '5' or '10'", "type": "enum"}]}
    fal = fal_with({("GET", f"{APP_URL}/status"): completed(), ("GET", APP_URL): httpx.Response(422, json=detail)})
    done = fal.get(GID)
    assert done.status is RemoteStatus.FAILED and "body.duration: Input should be" in done.error


def test_a_typed_5xx_result_is_a_failure_naming_its_type_and_an_untyped_one_is_transient():
    typed = httpx.Response(504, json={"detail": "Request timed out", "error_type": "request_timeout"},
                           headers={"X-Fal-Error-Type": "request_timeout"})
    fal = fal_with({("GET", f"{APP_URL}/status"): completed(), ("GET", APP_URL): typed})
    done = fal.get(GID)
    assert done.status is RemoteStatus.FAILED and "(request_timeout)" in done.error
    fal = fal_with({("GET", f"{APP_URL}/status"): completed(),
                    ("GET", APP_URL): httpx.Response(502, text="bad gateway")})
    with pytest.raises(TransientProviderError):
        fal.get(GID)


def test_an_expired_result_is_missing_not_resubmitted():
    fal = fal_with({("GET", f"{APP_URL}/status"): completed(),
                    ("GET", APP_URL): httpx.Response(404, json={"detail": "Request not found"})})
    with pytest.raises(PermanentProviderError, match="missing"):
        fal.get(GID)


@pytest.mark.parametrize("code, said", [(200, "OK"), (202, "CANCELLATION_REQUESTED"),
                                        (400, "ALREADY_COMPLETED"), (404, "NOT_FOUND")])
def test_every_documented_cancel_answer_is_accepted(code, said):
    fal = fal_with({("PUT", f"{APP_URL}/cancel"): httpx.Response(code, json={"status": said})})
    fal.cancel(GID)


def test_a_refused_cancel_raises():
    fal = fal_with({("PUT", f"{APP_URL}/cancel"): httpx.Response(401, json={"detail": "Unauthorized"})})
    with pytest.raises(PermanentProviderError):
        fal.cancel(GID)

"""Narrow protocol cases of issue 13 on httpx.MockTransport: failure kinds, refusals that answer 200
or 5xx, reconcile ranking, charged cost and prices, and the key on downloads."""

from __future__ import annotations

import httpx
import pytest

from reelbatch.jobs.errors import (
    NoCredits,
    PermanentProviderError,
    RateLimited,
    SubmitOutcomeUnknown,
    TransientProviderError,
)
from reelbatch.jobs.item import ProviderRequest
from reelbatch.jobs.settings import Settings
from reelbatch.worker.providers import build_provider
from reelbatch.worker.providers.http import HostCredential, failure_kind, permanent_reason
from reelbatch.worker.storage import download
from tests.media import mini_mp4

KEY = "sk-oxen-SECRET-77"
OXEN_REQUEST = ProviderRequest(model="kling-video-o1-image-to-video",
                               body={"prompt": "an ox", "input_image": "https://i.test/ox.png", "duration": 5})
AIML_REQUEST = ProviderRequest(model="klingai/video-o1-image-to-video",
                               body={"prompt": "an ox", "image_url": "https://i.test/ox.png"})
SETTINGS = Settings(oxen_api_key=KEY, aimlapi_key=KEY, oxen_base_url="https://hub.oxen.test",
                    aimlapi_base_url="https://api.aiml.test")


def provider_with(name: str, handler):
    return build_provider(name, SETTINGS, transport=httpx.MockTransport(handler))


def serving(body, status: int = 200):
    return lambda request: httpx.Response(status, json=body)


# --- 9 and issue 17.2: one classifier for failure messages --------------------------------

@pytest.mark.parametrize("text, kind", [
    ("Getting model response error: 422 - Value error, Either 'prompt' or 'multi_prompt' must be provided.",
     "invalid_input"),
    ("Getting model response error: 422 - Field required: 'input_image'", "invalid_input"),
    ("duration value '2' is invalid. Try using duration='5' instead, as duration support may vary", "invalid_input"),
    ("Body validation error! Invalid enum value. Expected 5 | 10, received '7' at duration", "invalid_input"),
    ("Input should be '1', '2', '3'", "invalid_input"),
    ("Insufficient credits", "no_credits"),
    ("You've run out of credits. Please top up", "no_credits"),
    ("Content policy violation: the generated video was flagged by the safety system", "content_policy"),
    ("NSFW content detected", "content_policy"),
    ("Getting model response error: 500 - Upstream provider error: task failed", "generation_failed"),
    ("Getting model response error: 504 - Generation timed out upstream", "generation_failed"),
    ("", "generation_failed"), (None, "generation_failed")])
def test_failure_kind(text, kind):
    assert failure_kind(text) == kind
    assert permanent_reason(text) == (kind != "generation_failed")


def test_an_oxen_validation_failure_in_an_error_body_is_permanent_on_submit_only():
    body = {"error": {"message": "Getting model response error: 422 - Value error, bad aspect_ratio"}}
    with pytest.raises(PermanentProviderError):
        provider_with("oxen", serving(body, 500)).submit(OXEN_REQUEST)
    with pytest.raises(TransientProviderError):      # a poll's 5xx never fails a running generation
        provider_with("oxen", serving(body, 500)).get("g1")


# --- 10: Oxen's 200 with no generations and an error is a refusal ----------------------------

def test_oxen_200_with_an_error_and_no_generations_is_a_refusal():
    body = {"generations": [], "error": {"type": "invalid_params", "title": "Invalid parameters",
                                         "detail": "Insufficient credits"}}
    with pytest.raises(PermanentProviderError) as info:
        provider_with("oxen", serving(body)).submit(OXEN_REQUEST)
    assert type(info.value) is NoCredits and "Insufficient credits" in str(info.value)
    assert info.value.status_code == 200


def test_oxen_200_refusal_that_says_rate_limit_is_rate_limited():
    body = {"generations": [], "error": {"message": "Rate limit exceeded"}}
    with pytest.raises(RateLimited):
        provider_with("oxen", serving(body)).submit(OXEN_REQUEST)


def test_oxen_200_without_error_and_without_generations_stays_unknown():
    with pytest.raises(SubmitOutcomeUnknown):
        provider_with("oxen", serving({"generations": []})).submit(OXEN_REQUEST)


# --- 11: the AI/ML API's documented 5xx refusals ----------------------------------------------

def aiml_envelope(status: int, message: str) -> dict:
    return {"message": message, "path": "/v2/video/generations", "requestId": "r-1",
            "statusCode": str(status), "timestamp": "2026-08-21T10:00:00Z"}


@pytest.mark.parametrize("status, message", [
    (500, "The model is under maintenance, please contact us at help@aimlapi.com."),
    (500, "Coupon code not found"), (504, "Generation timeout")])
def test_documented_5xx_refusals_on_submit_are_permanent(status, message):
    with pytest.raises(PermanentProviderError) as info:
        provider_with("aimlapi", serving(aiml_envelope(status, message), status)).submit(AIML_REQUEST)
    assert type(info.value) is PermanentProviderError and info.value.status_code == status
    # the same answer to a poll never fails a paid generation
    with pytest.raises(TransientProviderError):
        provider_with("aimlapi", serving(aiml_envelope(status, message), status)).get("g:m")


@pytest.mark.parametrize("status, message", [(500, "Internal server error"), (502, "Bad Gateway"),
                                             (504, "Gateway Timeout")])
def test_other_5xx_on_submit_stay_unknown_outcomes(status, message):
    with pytest.raises(SubmitOutcomeUnknown):
        provider_with("aimlapi", serving(aiml_envelope(status, message), status)).submit(AIML_REQUEST)


# --- 12: reconcile matches on what is certain ---------------------------------------------------

def row(generation_id: str, enqueued_at: float = 1000, **extra) -> dict:
    return {"generation_id": generation_id, "model_name": OXEN_REQUEST.model, "prompt": "an ox",
            "status": "queued", "result_url": None, "error_message": None, "enqueued_at": enqueued_at,
            "started_at": None, "completed_at": None, **extra}


def finder(active: list[dict], history: list[dict] = ()):
    def handler(request):
        rows = active if request.url.path == "/api/ai/queue" else list(history)
        return httpx.Response(200, json={"count": len(rows), "generations": rows})
    return provider_with("oxen", handler)


def test_data_uris_and_elements_echoed_otherwise_do_not_prevent_a_match():
    request = ProviderRequest(model="kling-video-o1-reference-to-video", body={
        "prompt": "an ox", "input_image": ["data:image/png;base64,AAAA"], "duration": 5,
        "elements": [{"frontal_image_url": "data:image/png;base64,BBBB"}]})
    echoed = row("g1", model_name=request.model, input_image=["https://hub.oxen.test/uploads/1.png"],
                 elements=[{"frontal_image_url": "https://hub.oxen.test/uploads/2.png"}], duration="5")
    assert [g.generation_id for g in finder([echoed]).find(request, since=900)] == ["g1"]


def test_model_prompt_and_time_are_certain():
    rows = [row("other-prompt", prompt="a cow"), row("other-model", model_name="kling-video-o1-edit"),
            row("too-old", enqueued_at=10), row("yes")]
    assert [g.generation_id for g in finder(rows).find(OXEN_REQUEST, since=900)] == ["yes"]


def test_candidates_rank_by_echoed_agreement_then_newest():
    rows = [row("newest-disagrees", enqueued_at=1003, duration=10),
            row("silent", enqueued_at=1002),
            row("agrees-older", enqueued_at=1000, duration=5, input_image="https://i.test/ox.png"),
            row("agrees-newer", enqueued_at=1001, duration="5", input_image="https://i.test/ox.png")]
    found = finder(rows).find(OXEN_REQUEST, since=900)
    assert [g.generation_id for g in found] == ["agrees-newer", "agrees-older", "silent", "newest-disagrees"]


# --- 8: the charged cost and the model's prices ---------------------------------------------------

def test_oxen_charged_cost_comes_from_the_generation_history():
    seen = []

    def handler(request):
        seen.append(request.url.path)
        return httpx.Response(200, json={"generation": {"generation_id": "g1", "cost": "0.5600"},
                                         "status": "success", "status_message": "resource_found"})
    assert provider_with("oxen", handler).charged_cost("g1") == pytest.approx(0.56)
    assert seen == ["/api/ai/generations/g1"]


@pytest.mark.parametrize("generation", [{"generation_id": "g1", "cost": None}, {"generation_id": "g1"},
                                        {"generation_id": "g1", "cost": "n/a"}])
def test_oxen_charged_cost_is_none_when_not_given(generation):
    assert provider_with("oxen", serving({"generation": generation})).charged_cost("g1") is None


def test_oxen_model_pricing():
    pricing = {"method": "per_video_output_second", "cost_per_second": 0.1, "cost_per_second_with_audio": 0.15}
    seen = []

    def handler(request):
        seen.append(request.url.path)
        return httpx.Response(200, json={"id": "kling-video-o1-image-to-video", "object": "model",
                                         "pricing": pricing})
    assert provider_with("oxen", handler).model_pricing("kling-video-o1-image-to-video") == pricing
    assert seen == ["/api/ai/models/kling-video-o1-image-to-video"]


# --- 4: the key goes to the provider's own host only ----------------------------------------------

def downloading(routes: dict[str, httpx.Response], seen: list):
    def handler(request):
        seen.append((request.url.scheme, request.url.host, request.url.port,
                     request.headers.get("Authorization")))
        return routes[str(request.url)]
    return httpx.Client(transport=httpx.MockTransport(handler))


MP4 = mini_mp4()
VIDEO = httpx.Response(200, content=MP4, headers={"Content-Type": "video/mp4"})


def moved(to: str) -> httpx.Response:
    return httpx.Response(302, headers={"Location": to})


def test_the_key_goes_to_the_providers_own_host(tmp_path):
    seen: list = []
    credential = provider_with("oxen", serving({})).download_credential
    url = "https://hub.oxen.test/api/repos/me/files/a.mp4"
    with downloading({url: VIDEO}, seen) as client:
        download(url, tmp_path, "a.mp4", client, SETTINGS, credential)
    assert seen == [("https", "hub.oxen.test", None, f"Bearer {KEY}")]


def test_the_key_is_dropped_at_a_redirect_off_the_host_and_stays_dropped(tmp_path):
    seen: list = []
    credential = HostCredential("https://hub.oxen.test", KEY)
    routes = {"https://hub.oxen.test/api/repos/a.mp4": moved("https://bucket.s3.test/a.mp4?sig=1"),
              "https://bucket.s3.test/a.mp4?sig=1": moved("https://hub.oxen.test/api/repos/b.mp4"),
              "https://hub.oxen.test/api/repos/b.mp4": VIDEO}
    with downloading(routes, seen) as client:
        download("https://hub.oxen.test/api/repos/a.mp4", tmp_path, "a.mp4", client, SETTINGS, credential)
    assert [auth for *_, auth in seen] == [f"Bearer {KEY}", None, None]


@pytest.mark.parametrize("url", ["https://cdn.oxen.test/a.mp4", "https://hub.oxen.test:8443/a.mp4",
                                 "https://evil.test/hub.oxen.test/a.mp4", "https://hub.oxen.test.evil.test/a.mp4"])
def test_no_key_for_any_other_origin(tmp_path, url):
    seen: list = []
    with downloading({url: VIDEO}, seen) as client:
        download(url, tmp_path, "a.mp4", client, SETTINGS, HostCredential("https://hub.oxen.test", KEY))
    assert seen[0][3] is None


def test_no_credential_without_a_key_and_none_shown_in_a_repr():
    assert build_provider("simulator", Settings(simulator_key=None)).download_credential is None
    credential = provider_with("aimlapi", serving({})).download_credential
    assert credential.applies_to(httpx.URL("https://api.aiml.test/x"))
    assert KEY not in repr(credential) and "redacted" in repr(credential)

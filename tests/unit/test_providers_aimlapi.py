"""AI/ML API client protocol: create, poll by query id, status table, error shapes, no cancel."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from reelbatch.jobs.errors import (
    SubmitOutcomeUnknown,
    TransientProviderError,
)
from reelbatch.jobs.item import ProviderRequest
from reelbatch.jobs.settings import Settings
from reelbatch.worker.providers import build_provider
from reelbatch.worker.providers.aimlapi import AimlapiProvider, failure_text
from reelbatch.worker.providers.base import Cancels, RemoteStatus, StreamsEvents

GEN_ID = "a3f1e246-0831-4d6e-893a-990fb5c214ea:klingai/video-o1-image-to-video"
REQUEST = ProviderRequest(model="klingai/video-o1-image-to-video",
                          body={"prompt": "an ox", "image_url": "https://i.test/ox.png", "duration": 5})


def aiml(handler) -> AimlapiProvider:
    settings = Settings(aimlapi_key="k", aimlapi_base_url="https://aiml.test")
    return build_provider("aimlapi", settings, transport=httpx.MockTransport(handler))


def serving(body, status: int = 200):
    return lambda request: httpx.Response(status, json=body)


def test_submit_posts_model_and_body():
    seen = []

    def handler(request):
        seen.append((request.method, request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={"id": GEN_ID, "status": "queued"})
    assert aiml(handler).submit(REQUEST) == GEN_ID
    assert seen == [("POST", "/v2/video/generations", {"model": REQUEST.model, **REQUEST.body})]


def test_submit_without_id_is_an_unknown_outcome():
    with pytest.raises(SubmitOutcomeUnknown):
        aiml(serving({"status": "queued"})).submit(REQUEST)


def test_get_url_encodes_the_id_in_the_query():
    seen = []

    def handler(request):
        seen.append(request.url)
        return httpx.Response(200, json={"id": GEN_ID, "status": "queued"})
    aiml(handler).get(GEN_ID)
    assert seen[0].path == "/v2/video/generations"
    assert seen[0].query == b"generation_id=a3f1e246-0831-4d6e-893a-990fb5c214ea%3Aklingai%2Fvideo-o1-image-to-video"
    assert seen[0].params["generation_id"] == GEN_ID


DONE = {"video": {"url": "https://cdn.test/o.mp4"}, "meta": {"usage": {"credits_used": 120000, "usd_spent": 0.06}}}
STATUS_TABLE = [
    ({"status": "queued"}, RemoteStatus.QUEUED, None, None),
    ({"status": "waiting"}, RemoteStatus.QUEUED, None, None),
    ({"status": "active"}, RemoteStatus.RUNNING, None, None),
    ({"status": "generating"}, RemoteStatus.RUNNING, None, None),
    ({"status": "completed", **DONE}, RemoteStatus.SUCCEEDED, "https://cdn.test/o.mp4", None),
    ({"status": "succeeded", **DONE}, RemoteStatus.SUCCEEDED, "https://cdn.test/o.mp4", None),
    ({"status": "error", "error": {"name": "ValidationError", "message": "bad image"}}, RemoteStatus.FAILED,
     None, "ValidationError: bad image"),
    ({"status": "error", "error": {"detail": [{"loc": ["body", "image_url"], "msg": "Could not detect face",
                                               "type": "face_detection_error", "input": "..."}]}},
     RemoteStatus.FAILED, None, "body.image_url: Could not detect face (face_detection_error)"),
    ({"status": "error", "error": None}, RemoteStatus.FAILED, None, "generation failed (no reason given)"),
]


@pytest.mark.parametrize("body, status, url, error", STATUS_TABLE)
def test_status_mapping(body, status, url, error):
    generation = aiml(serving({"id": GEN_ID, "video": None, "error": None, "meta": None, **body})).get(GEN_ID)
    assert (generation.generation_id, generation.status, generation.video_url, generation.error) == (
        GEN_ID, status, url, error)


def test_cost_from_usage():
    assert aiml(serving({"id": GEN_ID, "status": "completed", **DONE})).get(GEN_ID).cost_usd == 0.06
    assert aiml(serving({"id": GEN_ID, "status": "queued", "meta": {"usage": {}}})).get(GEN_ID).cost_usd is None


@pytest.mark.parametrize("usage, usd", [
    ({"credits_used": 120000}, 0.06),                      # the O1 schemas: credits only
    ({"credits_used": 120000, "usd_spent": 0.07}, 0.07),   # usd_spent wins where given
    ({"credits_used": "2000000"}, 1.0), ({"usd_spent": None, "credits_used": 1000}, 0.0005),
    ({"credits_used": None}, None), ({"credits_used": True}, None), (None, None)])
def test_cost_reads_usd_spent_else_credits(usage, usd):
    answer = {"id": GEN_ID, "status": "completed", "video": {"url": "https://cdn.test/o.mp4"},
              "meta": {"usage": usage}}
    provider = aiml(serving(answer))
    assert provider.get(GEN_ID).cost_usd == usd
    assert provider.charged_cost(GEN_ID) == usd


@pytest.mark.parametrize("status", ["cancelled", "delayed", "paused", "", None, 3])
def test_an_undocumented_status_is_unknown_and_polled_on(status, caplog):
    generation = aiml(serving({"id": GEN_ID, "status": status})).get(GEN_ID)
    assert generation.status is RemoteStatus.UNKNOWN and not generation.terminal


def test_an_unknown_status_is_logged_once_per_process(caplog):
    provider = aiml(serving({"id": GEN_ID, "status": "rebooting-once"}))
    for _ in range(3):
        provider.get(GEN_ID)
    assert sum("rebooting-once" in r.getMessage() for r in caplog.records) == 1


def test_missing_video_url():
    with pytest.raises(TransientProviderError):
        aiml(serving({"id": GEN_ID, "status": "completed", "video": None})).get(GEN_ID)


@pytest.mark.parametrize("error, text", [
    ("plain words", "plain words"),
    ({"detail": "Request timed out"}, "Request timed out"),
    ({"message": "only a message"}, "only a message"),
])
def test_failure_text_shapes(error, text):
    assert failure_text(error) == text


def test_error_envelope_with_string_status_code():
    envelope = {"message": "Too Many Requests", "path": "/v2/video/generations", "requestId": "r-1",
                "statusCode": "429", "timestamp": "2026-08-21T10:00:00Z"}
    with pytest.raises(TransientProviderError) as info:
        aiml(serving(envelope, 429)).get(GEN_ID)
    assert info.value.request_id == "r-1" and "Too Many Requests" in str(info.value)


def test_no_cancel_and_no_events():
    provider = aiml(serving({}))
    assert not isinstance(provider, Cancels) and not isinstance(provider, StreamsEvents)


# --- request tracing (issue 23.8; docs/capabilities/request-tracing-and-cost.md) --------------------

TRACED = REQUEST.model_copy(update={"client_request_id": "rb:ox-1:0123456789abcdef0123"})
TRACE_ALPHABET = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def test_submit_sends_the_client_request_id():
    seen = []

    def handler(request):
        seen.append(request.headers.get("X-Client-Request-Id"))
        return httpx.Response(200, json={"id": GEN_ID, "status": "queued"}, headers={"x-inference-id": GEN_ID})
    assert aiml(handler).submit(TRACED) == GEN_ID
    assert seen == [TRACED.client_request_id]


@pytest.mark.parametrize("answer", [b"<html>upstream mangled</html>", b'{"status": "queued"}', b""])
def test_an_unreadable_create_answer_is_named_by_its_inference_id_header(answer):
    handler = lambda r: httpx.Response(200, content=answer, headers={"x-inference-id": GEN_ID})
    assert aiml(handler).submit(TRACED) == GEN_ID
    with pytest.raises(SubmitOutcomeUnknown):
        aiml(lambda r: httpx.Response(200, content=answer)).submit(TRACED)


def log_row(client_id: str | None, inference_id: str, status: str = "succeeded",
            created: str = "2026-12-02T10:00:05.000Z") -> dict:
    """A row as logs-v2.json documents it."""
    return {"created": created, "status": status, "origin": "api", "model": REQUEST.model,
            "cost": {"usd": 0, "credits": 0}, "tokens": {"input": 0, "output": 0, "total": 0},
            "request_id": "req-1", "inference_id": inference_id, "client_request_id": client_id}


def test_find_reads_the_request_log_by_client_request_id():
    asked = []
    pages = [[log_row("someone-else", "x:m"), log_row(TRACED.client_request_id, "refused", status="failed"),
              log_row(TRACED.client_request_id, "older:m", created="2026-12-02T10:00:01.000Z")],
             [log_row(None, "y:m"), log_row(TRACED.client_request_id, GEN_ID)]]

    def handler(request):
        params = dict(request.url.params)
        asked.append(params)
        page = int(params["offset"]) // 100
        return httpx.Response(200, json={"data": pages[page], "pagination": {
            "limit": 100, "offset": page * 100, "total": 5, "has_more": page == 0}})
    since = 1_764_669_600.0   # 2025-12-02T10:00:00Z
    found = aiml(handler).find(TRACED, since=since)
    assert [g.generation_id for g in found] == [GEN_ID, "older:m"]
    assert all(not g.terminal for g in found)   # polled for what it became
    assert asked[0]["start"] == "2025-12-02T10:00:00.000Z" and asked[0]["model"] == REQUEST.model
    assert asked[0]["limit"] == "100" and [a["offset"] for a in asked] == ["0", "100"]
    assert asked[0]["end"] > asked[0]["start"]


def test_find_without_a_client_id_asks_nothing():
    assert aiml(lambda r: pytest.fail("asked")).find(REQUEST, since=0) == []


def test_the_client_request_id_is_traceable_stable_and_unique():
    from reelbatch.jobs.catalog import client_request_id
    from reelbatch.jobs.item import Item, Params

    def item(item_id: str, key: str = "k1") -> Item:
        return Item(item_id=item_id, source_id="s", content_key=key, provider="aimlapi",
                    model="kling-o1/image-to-video", provider_model=REQUEST.model,
                    params=Params(prompt="p"), video_seconds=5, estimated_cost_usd=0.5)
    odd = item("été/ox zoom" + "x" * 200)
    ids = {client_request_id(odd), client_request_id(item("a")), client_request_id(item("a", "k2")),
           client_request_id(item("a"), batch="b1"), client_request_id(item("a"), batch="b2"),
           client_request_id(item("a"), batch="b1", attempt=2)}
    assert len(ids) == 6 and all(TRACE_ALPHABET.match(i) for i in ids)
    assert client_request_id(item("a"), "b1", 2) == client_request_id(item("a"), "b1", 2)


def test_both_providers_declare_the_lost_submit_lookup():
    from reelbatch.worker.providers.base import FindsLostSubmits
    from reelbatch.worker.providers.oxen import OxenProvider

    assert isinstance(aiml(serving({})), FindsLostSubmits)
    assert issubclass(OxenProvider, FindsLostSubmits) and issubclass(AimlapiProvider, FindsLostSubmits)


def test_made_since_lists_what_the_request_log_says_was_made_with_its_cost():
    """Issue 23.7's end of a run on the AI/ML API: every request of the model that made a
    generation (a failed request made nothing), whoever's client id it carries."""
    made, other = log_row("c-1", GEN_ID), log_row(None, "y:m")
    made["cost"] = {"usd": 0.56, "credits": 1_120_000}
    rows = [made, log_row("c-2", "refused", status="failed"), other, log_row("c-1", GEN_ID)]

    def handler(request):
        return httpx.Response(200, json={"data": rows, "pagination": {"limit": 100, "offset": 0,
                                                                      "total": 4, "has_more": False}})
    found = aiml(handler).made_since(REQUEST.model, since=1_764_669_600.0)
    assert [(g.generation_id, g.cost_usd) for g in found] == [(GEN_ID, 0.56), ("y:m", 0)]
    assert found[0].enqueued_at == 1_796_205_605.0   # 2026-12-02T10:00:05Z

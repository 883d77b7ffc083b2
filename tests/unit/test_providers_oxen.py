"""Oxen client protocol: rows, statuses, 404 fallback, reconcile helper and the SSE stream."""

from __future__ import annotations

import json

import httpx
import pytest

from reelbatch.jobs.errors import PermanentProviderError, SubmitOutcomeUnknown, TransientProviderError
from reelbatch.jobs.item import ProviderRequest
from reelbatch.jobs.settings import Settings
from reelbatch.worker.providers import build_provider
from reelbatch.worker.providers.base import RemoteStatus
from reelbatch.worker.providers.http import HttpSeam, build_client
from reelbatch.worker.providers.oxen import OxenProvider

REQUEST = ProviderRequest(model="kling-video-o1-image-to-video",
                          body={"prompt": "an ox", "input_image": "https://i.test/ox.png", "duration": 5})


def oxen(handler, backoff=lambda attempt: 0.0) -> OxenProvider:
    settings = Settings(oxen_api_key="k")
    client = build_client(settings, "https://oxen.test", "k", httpx.MockTransport(handler))
    return OxenProvider(HttpSeam("oxen", client, ("k",)), backoff=backoff)


def row(status: str, **fields) -> dict:
    base = {"generation_id": "g1", "model_name": REQUEST.model, "prompt": "an ox", "media_type": "video",
            "status": status, "result_url": None, "error_message": None, "enqueued_at": 100,
            "started_at": None, "completed_at": None}
    return {**base, **fields}


def serving(body, status: int = 200):
    return lambda request: httpx.Response(status, json=body)


@pytest.mark.parametrize("answer", ["queued", "processing"])
def test_submit_sends_one_generation_and_accepts_either_status(answer):
    seen = []

    def handler(request):
        seen.append((request.method, request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={"generations": [{"generation_id": "g1", "status": answer}]})
    assert oxen(handler).submit(REQUEST) == "g1"
    assert seen == [("POST", "/api/ai/queue", {"model": REQUEST.model, "prompt": "an ox",
                                                "input_image": "https://i.test/ox.png", "duration": 5,
                                                "num_generations": 1})]


@pytest.mark.parametrize("body", [{}, {"generations": []}, {"generations": [{"status": "queued"}]}, []])
def test_submit_answer_without_an_id_is_an_unknown_outcome(body):
    with pytest.raises(SubmitOutcomeUnknown):
        oxen(serving(body)).submit(REQUEST)


def test_submit_answer_that_is_not_json_is_an_unknown_outcome():
    with pytest.raises(SubmitOutcomeUnknown):
        oxen(lambda r: httpx.Response(200, text="<html>")).submit(REQUEST)


STATUS_TABLE = [
    (row("queued"), RemoteStatus.QUEUED, None, None),
    (row("processing", started_at=101), RemoteStatus.RUNNING, None, None),
    (row("succeeded", result_url="https://v.test/a.mp4", completed_at=200, cost="0.56"),
     RemoteStatus.SUCCEEDED, "https://v.test/a.mp4", None),
    (row("failed", error_message="Insufficient credits", completed_at=104), RemoteStatus.FAILED,
     None, "Insufficient credits"),
    (row("failed"), RemoteStatus.FAILED, None, "generation failed (no reason given)"),
    (row("cancelled", completed_at=150), RemoteStatus.CANCELLED, None, None),
]


@pytest.mark.parametrize("body, status, url, error", STATUS_TABLE)
def test_status_mapping(body, status, url, error):
    generation = oxen(serving(body)).get("g1")
    assert (generation.status, generation.video_url, generation.error) == (status, url, error)
    assert generation.terminal == (status not in (RemoteStatus.QUEUED, RemoteStatus.RUNNING))


def test_row_times_and_cost():
    generation = oxen(serving(row("succeeded", result_url="u", started_at=101, completed_at=259,
                                  cost="0.56"))).get("g1")
    assert (generation.enqueued_at, generation.started_at, generation.completed_at) == (100, 101, 259)
    assert generation.cost_usd == pytest.approx(0.56)
    assert oxen(serving(row("queued", cost="n/a"))).get("g1").cost_usd is None


@pytest.mark.parametrize("status", ["expired", "pending", "running", "SUCCEEDED"])
def test_an_undocumented_status_is_unknown_and_polled_on(status):
    generation = oxen(serving(row(status))).get("g1")
    assert generation.status is RemoteStatus.UNKNOWN and not generation.terminal
    ended = oxen(serving(row(status, completed_at=150))).get("g1")   # its status said, if unknown:
    assert ended.status is RemoteStatus.UNKNOWN and not ended.unconfirmed   # no history lookup


def test_missing_url():
    with pytest.raises(TransientProviderError):
        oxen(serving(row("succeeded"))).get("g1")


NOT_FOUND = {"error": {"type": "resource_not_found", "title": "The requested resource could not be found"},
             "status": "error", "status_message": "resource_not_found"}


def test_404_falls_back_to_generation_history():
    history_row = {k: v for k, v in row("x", result_url="https://v.test/b.mp4", cost="1.12").items()
                   if k != "status"}

    def handler(request):
        if request.url.path.startswith("/api/ai/queue/"):
            return httpx.Response(404, json=NOT_FOUND)
        assert request.url.path == "/api/ai/generations/g1"
        return httpx.Response(200, json={"generation": history_row, "status": "success",
                                         "status_message": "resource_found"})
    generation = oxen(handler).get("g1")
    assert generation.status is RemoteStatus.SUCCEEDED and generation.cost_usd == pytest.approx(1.12)


def test_404_everywhere_is_permanent_with_the_envelope_text():
    with pytest.raises(PermanentProviderError, match="could not be found") as info:
        oxen(serving(NOT_FOUND, 404)).get("g1")
    assert info.value.status_code == 404


@pytest.mark.parametrize("history, status", [
    ({"result_url": "u", "completed_at": 5}, RemoteStatus.SUCCEEDED),
    ({"error_message": "x", "completed_at": 5}, RemoteStatus.FAILED),
    ({"started_at": 5}, RemoteStatus.RUNNING), ({}, RemoteStatus.QUEUED)])
def test_history_rows_without_status_are_read_from_present_fields(history, status):
    answer = {"generation": {"generation_id": "g1", **history}}
    handler = lambda r: (httpx.Response(404, json=NOT_FOUND) if "/queue/" in r.url.path
                         else httpx.Response(200, json=answer))
    assert oxen(handler).get("g1").status is status


def documented_history_row(**fields) -> dict:
    """A history row as OpenAPI 0.231.0 documents it: no status, no media_type."""
    return {"generation_id": "g1", "model_name": REQUEST.model, "prompt": "an ox", "enqueued_at": 100,
            "started_at": 101, "completed_at": 150, "cost": "0.0000", "error_message": None,
            "result_url": None, "target_directory": None, "target_namespace": "me", "target_repo": None,
            "user_id": "u", "user_image": None, "username": "me", **fields}


def legacy_oxen(listed_as: str | None, asked: list):
    """Legacy Oxen: the queue row 404s once terminal; the history row says only completed_at; the
    history listed with ``status=`` holds the row under ``listed_as``."""
    def handler(request):
        if request.url.path.startswith("/api/ai/queue/"):
            return httpx.Response(404, json=NOT_FOUND)
        if request.url.path == "/api/ai/generations/g1":
            return httpx.Response(200, json={"generation": documented_history_row()})
        asked.append(dict(request.url.params))
        rows = [documented_history_row()] if request.url.params.get("status") == listed_as else []
        return httpx.Response(200, json={"count": len(rows), "generations": rows})
    return oxen(handler)


@pytest.mark.parametrize("listed_as, status, error", [
    ("cancelled", RemoteStatus.CANCELLED, None),
    ("failed", RemoteStatus.FAILED, "generation failed (no reason given)"),
    (None, RemoteStatus.ENDED, None)])
def test_a_finished_history_row_without_status_is_confirmed_never_inferred(listed_as, status, error):
    """Issue 23.6: completed_at with neither result_url nor error_message may be cancelled or a
    failure with an empty message: the history is asked with an explicit status filter."""
    asked: list = []
    generation = legacy_oxen(listed_as, asked).get("g1")
    assert (generation.status, generation.error) == (status, error)
    assert generation.terminal == (status is not RemoteStatus.ENDED)
    assert {"status": "failed", "model": REQUEST.model, "page": "1", "page_size": "100"} in asked


def test_history_pages_never_say_cancelled_for_a_row_without_status():
    rows = [documented_history_row(generation_id="ended"),
            documented_history_row(generation_id="ok", result_url="https://v.test/a.mp4", cost="0.56"),
            documented_history_row(generation_id="bad", error_message="Insufficient credits"),
            documented_history_row(generation_id="running", completed_at=None)]
    listed = {g.generation_id: g for g in oxen(serving({"generations": rows})).list_page(REQUEST.model)}
    assert listed["ended"].status is RemoteStatus.ENDED and listed["ended"].unconfirmed
    assert not listed["ended"].terminal
    assert listed["ok"].status is RemoteStatus.SUCCEEDED and listed["bad"].status is RemoteStatus.FAILED
    assert listed["running"].status is RemoteStatus.RUNNING and not listed["running"].unconfirmed


def test_model_not_found_envelope():
    with pytest.raises(PermanentProviderError, match="Model not found: bad"):
        oxen(serving({"error": {"message": "Model not found: bad"}}, 404)).submit(REQUEST)


def test_cancel_sends_delete():
    seen = []

    def handler(request):
        seen.append((request.method, request.url.path))
        return httpx.Response(200, json={"status": "success", "generation_id": "g1"})
    oxen(handler).cancel("g1")
    assert seen == [("DELETE", "/api/ai/queue/g1")]


def test_find_matches_echoed_prompt_and_params():
    active = [row("queued", generation_id="mine", duration=5, enqueued_at=1000),
              row("queued", generation_id="other-prompt", prompt="a cow", enqueued_at=1000),
              row("queued", generation_id="other-duration", duration=10, enqueued_at=1000)]
    history = [row("failed", generation_id="old", error_message="x", enqueued_at=10),
               row("succeeded", generation_id="done", result_url="u", duration="5", enqueued_at=1001)]
    queries = []

    def handler(request):
        queries.append((request.url.path, dict(request.url.params)))
        rows = active if request.url.path == "/api/ai/queue" else history
        return httpx.Response(200, json={"count": len(rows), "generations": rows})
    found = oxen(handler).find(REQUEST, since=900)
    # echoed extras rank, never exclude: other-duration disagrees, so it comes last
    assert [g.generation_id for g in found] == ["done", "mine", "other-duration"]
    assert queries[0] == ("/api/ai/queue", {"model": REQUEST.model})
    assert queries[1][0] == "/api/ai/generations"


def test_list_active():
    body = {"count": 2, "generations": [row("queued", generation_id="a"), row("processing", generation_id="b")]}
    assert [g.status for g in oxen(serving(body)).list_active()] == [RemoteStatus.QUEUED, RemoteStatus.RUNNING]


def test_simulator_is_an_oxen_provider_named_simulator():
    provider = build_provider("simulator", Settings(simulator_key=None, simulator_url="http://127.0.0.1:1"))
    assert isinstance(provider, OxenProvider) and provider.name == "simulator"
    assert provider._http.client.auth is None


# --- SSE -----------------------------------------------------------------------------------------

def sse(*chunks: str, status: int = 200, content_type: str = "text/event-stream") -> httpx.Response:
    return httpx.Response(status, headers={"Content-Type": content_type},
                          content=iter([c.encode() for c in chunks]))


OK = '{"generation_id":"g1","status":"succeeded","media_type":"video","model":"m","url":"https://v.test/1.mp4"}'
FAIL = '{"generation_id":"g2","status":"failed","media_type":"video","error":"Insufficient credits"}'


def first_events(chunks_per_connection, count):
    """Serve one scripted response per connection; return the first ``count`` events."""
    script = list(chunks_per_connection)
    connections = []

    def handler(request):
        connections.append(request)
        item = script.pop(0) if script else sse(": keep-alive\n\n")
        if isinstance(item, Exception):
            raise item
        return item
    provider = oxen(handler)
    events = []
    for generation in provider.events():
        events.append(generation)
        if len(events) == count:
            break
    provider.close()
    return events, connections


def test_sse_with_and_without_a_space_after_data():
    events, _ = first_events([sse(f"event: media_generation_completed\ndata: {OK}\n\n",
                                  f"event:media_generation_completed\ndata:{FAIL}\n\n")], 2)
    assert [(e.generation_id, e.status, e.video_url, e.error) for e in events] == [
        ("g1", RemoteStatus.SUCCEEDED, "https://v.test/1.mp4", None),
        ("g2", RemoteStatus.FAILED, None, "Insufficient credits")]


def test_sse_skips_keepalives_other_events_and_junk():
    stream = sse(": keep-alive\n\n",
                 'event: deployment_status\ndata: {"generation_id":"x","status":"succeeded","url":"u"}\n\n',
                 "event: media_generation_completed\ndata: not json\n\n",
                 'event: media_generation_completed\ndata: {"generation_id":"c","status":"cancelled"}\n\n',
                 f"data: {OK}\n\n",  # no event line: the default type is "message"
                 f"event: media_generation_completed\r\ndata: {FAIL}\r\n\r\n")
    events, _ = first_events([stream], 1)
    assert [e.generation_id for e in events] == ["g2"]


def test_sse_event_split_across_chunks():
    text = f"event: media_generation_completed\ndata: {OK}\n\n"
    events, _ = first_events([sse(*[text[i:i + 7] for i in range(0, len(text), 7)])], 1)
    assert events[0].video_url == "https://v.test/1.mp4"


def test_sse_reconnects_after_errors_and_stream_ends():
    script = [httpx.ConnectError("refused"), sse("", status=503),
              sse("event: media_generation_completed\n", "data: " + OK + "\n\n"),  # then the stream ends
              sse("text", content_type="text/html"),
              httpx.ReadTimeout("idle"),
              sse(f"event: media_generation_completed\ndata: {FAIL}\n\n")]
    events, connections = first_events(script, 2)
    assert [e.generation_id for e in events] == ["g1", "g2"]
    assert len(connections) == 6
    assert connections[0].url.path == "/api/events"
    assert connections[0].headers["Accept"] == "text/event-stream"


def test_sse_permanent_error_propagates():
    with pytest.raises(PermanentProviderError):
        first_events([sse('{"error":{"type":"unauthenticated"}}', status=401)], 1)


def test_sse_backoff_grows_until_a_connection_succeeds():
    waits = []

    def backoff(attempt):
        waits.append(attempt)
        return 0.0
    script = [httpx.ConnectError("x"), httpx.ConnectError("x"),
              sse(f"event: media_generation_completed\ndata: {OK}\n\n")]

    def handler(request):
        item = script.pop(0) if script else sse(f"event: media_generation_completed\ndata: {FAIL}\n\n")
        if isinstance(item, Exception):
            raise item
        return item
    provider = oxen(handler, backoff=backoff)
    stream = provider.events()
    assert [next(stream).generation_id, next(stream).generation_id] == ["g1", "g2"]
    provider.close()
    assert waits == [0, 1, 0]

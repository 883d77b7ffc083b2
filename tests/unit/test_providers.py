"""Error mapping at the HTTP seam, for both providers, plus completeness and key redaction."""

from __future__ import annotations

import email.utils
import logging
import time

import httpx
import pytest
from httpx_sse import SSEError

from reelbatch.jobs.errors import (
    KeyRefused,
    ModelGone,
    NoCredits,
    PermanentProviderError,
    ProviderError,
    ProviderUnreachable,
    RateLimited,
    SubmitOutcomeUnknown,
    TransientProviderError,
)
from reelbatch.jobs.item import ProviderRequest
from reelbatch.jobs.settings import Settings
from reelbatch.worker.providers import build_provider
from reelbatch.worker.providers.http import error_for_exception, error_for_response, parse_retry_after

KEY = "sk-live-SECRET-4242"
REQUEST = ProviderRequest(model="kling-video-o1-image-to-video", body={"prompt": "an ox", "duration": 5})
HTTP_DATE = email.utils.formatdate(time.time() + 120, usegmt=True)


def settings() -> Settings:
    return Settings(oxen_api_key=KEY, aimlapi_key=KEY, simulator_key=KEY,
                    oxen_base_url="https://oxen.test", aimlapi_base_url="https://aiml.test")


def raising(exc_type: type[httpx.HTTPError]):
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)
    return handler


def answering(status: int, body: dict | None = None, headers: dict | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body or {"message": "nope"}, headers=headers)
    return handler


def oxen_error(detail: str) -> dict:
    return {"error": {"type": "invalid_params", "title": "Invalid parameters", "detail": detail},
            "status": "error", "status_message": "invalid_params"}


# (row id, handler, error on get, error on submit)
ROWS = [
    ("connect-timeout", raising(httpx.ConnectTimeout), ProviderUnreachable, ProviderUnreachable),
    ("pool-timeout", raising(httpx.PoolTimeout), TransientProviderError, TransientProviderError),
    ("connect-error", raising(httpx.ConnectError), ProviderUnreachable, ProviderUnreachable),
    ("read-timeout", raising(httpx.ReadTimeout), TransientProviderError, SubmitOutcomeUnknown),
    ("write-timeout", raising(httpx.WriteTimeout), TransientProviderError, TransientProviderError),
    ("read-error", raising(httpx.ReadError), TransientProviderError, SubmitOutcomeUnknown),
    ("write-error", raising(httpx.WriteError), TransientProviderError, TransientProviderError),
    ("remote-protocol", raising(httpx.RemoteProtocolError), TransientProviderError, SubmitOutcomeUnknown),
    ("429-seconds", answering(429, headers={"Retry-After": "7"}), RateLimited, RateLimited),
    ("429-http-date", answering(429, headers={"Retry-After": HTTP_DATE}), RateLimited, RateLimited),
    ("429-no-header", answering(429), RateLimited, RateLimited),
    ("500", answering(500), TransientProviderError, SubmitOutcomeUnknown),
    ("502", answering(502), TransientProviderError, SubmitOutcomeUnknown),
    ("503", answering(503), TransientProviderError, TransientProviderError),
    ("504", answering(504), TransientProviderError, SubmitOutcomeUnknown),
    ("400", answering(400, {"message": "Body validation error!"}), PermanentProviderError, PermanentProviderError),
    ("401", answering(401), KeyRefused, KeyRefused),
    ("403", answering(403), KeyRefused, KeyRefused),
    ("404", answering(404), PermanentProviderError, PermanentProviderError),
    ("model-not-found-404", answering(404, {"error": {"message": "Model not found: kling-video-o1"}}),
     PermanentProviderError, ModelGone),
    ("422", answering(422, {"detail": [{"loc": ["body", "duration"], "msg": "bad", "type": "enum"}]}),
     PermanentProviderError, PermanentProviderError),
    ("content-policy-500", answering(500, oxen_error("Rejected by content policy")),
     PermanentProviderError, PermanentProviderError),
    ("content-policy-400", answering(400, {"error": {"message": "NSFW content detected"}}),
     PermanentProviderError, PermanentProviderError),
    ("insufficient-credits-429", answering(429, {"error": {"message": "Insufficient credits"}}),
     NoCredits, NoCredits),
    ("run-out-of-credits-403", answering(403, {"message": "You've run out of credits", "statusCode": "403"}),
     NoCredits, NoCredits),
    ("run-out-of-credits-503", answering(503, {"message": "You've run out of credits"}),
     NoCredits, NoCredits),
]
PROVIDERS = ["oxen", "aimlapi", "simulator"]


def provider_with(name: str, handler):
    return build_provider(name, settings(), transport=httpx.MockTransport(handler))


def raised(call) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        call()
    return info.value


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize("row, handler, on_get, on_submit", ROWS, ids=[r[0] for r in ROWS])
def test_get_maps_every_failure(name, row, handler, on_get, on_submit):
    error = raised(lambda: provider_with(name, handler).get("gen-1"))
    assert type(error) is on_get, (row, error)
    assert error.provider == name


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize("row, handler, on_get, on_submit", ROWS, ids=[r[0] for r in ROWS])
def test_submit_maps_every_failure(name, row, handler, on_get, on_submit):
    error = raised(lambda: provider_with(name, handler).submit(REQUEST))
    assert type(error) is on_submit, (row, error)


@pytest.mark.parametrize("header, expected", [("7", 7.0), ("0", 0.0), ("2.5", 2.5), (None, None),
                                              ("", None), ("soon", None), ("-3", 0.0)])
def test_retry_after_seconds(header, expected):
    assert parse_retry_after(header) == expected


def test_retry_after_http_date():
    now = time.time()
    assert parse_retry_after(email.utils.formatdate(now + 120, usegmt=True), now) == pytest.approx(120, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 120, usegmt=True), now) == 0.0


def test_rate_limited_carries_retry_after():
    error = raised(lambda: provider_with("oxen", answering(429, headers={"Retry-After": "7"})).get("g"))
    assert error.retry_after == 7.0
    in_two_minutes = lambda r: httpx.Response(
        429, headers={"Retry-After": email.utils.formatdate(time.time() + 120, usegmt=True)})
    error = raised(lambda: provider_with("aimlapi", in_two_minutes).get("g"))
    assert 100 < error.retry_after <= 120
    assert raised(lambda: provider_with("oxen", answering(429)).get("g")).retry_after is None


def test_messages_come_from_each_envelope():
    oxen = raised(lambda: provider_with("oxen", answering(400, oxen_error("duration must be 5 or 10"))).get("g"))
    assert "duration must be 5 or 10" in str(oxen)
    aiml = raised(lambda: provider_with("aimlapi", answering(
        400, {"message": "Body validation error!", "requestId": "req-9", "statusCode": "400"})).get("g"))
    assert "Body validation error!" in str(aiml) and aiml.request_id == "req-9"


# --- completeness: every httpx exception and every status code lands in the tree ---------------

def _leaves(cls: type) -> set[type]:
    subs = set(cls.__subclasses__())
    return {c for c in subs if not c.__subclasses__()} | {x for c in subs for x in _leaves(c)}


SUBMIT_BUCKETS = {
    httpx.ConnectError: ProviderUnreachable, httpx.ConnectTimeout: ProviderUnreachable,
    httpx.PoolTimeout: TransientProviderError, httpx.ProxyError: ProviderUnreachable,
    httpx.UnsupportedProtocol: PermanentProviderError, httpx.LocalProtocolError: PermanentProviderError,
    httpx.ReadTimeout: SubmitOutcomeUnknown, httpx.WriteTimeout: TransientProviderError,
    httpx.ReadError: SubmitOutcomeUnknown, httpx.WriteError: TransientProviderError,
    httpx.CloseError: SubmitOutcomeUnknown, httpx.RemoteProtocolError: SubmitOutcomeUnknown,
    httpx.DecodingError: SubmitOutcomeUnknown, httpx.TooManyRedirects: SubmitOutcomeUnknown,
    SSEError: SubmitOutcomeUnknown,  # a TransportError; only raised on the event stream
}


def test_every_httpx_exception_is_classified():
    leaves = {c for c in _leaves(httpx.RequestError) if c.__module__.startswith(("httpx", "httpx_sse"))}
    assert leaves == set(SUBMIT_BUCKETS), "a new httpx exception needs a decision in error_map.py"
    request = httpx.Request("POST", "https://x.test/api/ai/queue")
    for cls, expected in SUBMIT_BUCKETS.items():
        assert type(error_for_exception("p", cls("x", request=request), request, submit=True)) is expected
        on_get = error_for_exception("p", cls("x", request=request), request)
        assert isinstance(on_get, ProviderError) and not isinstance(on_get, SubmitOutcomeUnknown)


@pytest.mark.parametrize("submit", [False, True])
def test_every_status_code_is_classified(submit):
    request = httpx.Request("GET", "https://x.test/")
    for status in range(100, 600):
        error = error_for_response("p", httpx.Response(status, request=request), submit)
        assert (error is None) == (200 <= status < 300), status
        if error is not None:
            assert isinstance(error, (TransientProviderError, PermanentProviderError))


# --- the key never leaks --------------------------------------------------------------------------

def echo_key(request: httpx.Request) -> httpx.Response:
    """A hostile proxy that echoes the Authorization header into its error body."""
    return httpx.Response(500, json={"message": f"bad auth {request.headers['Authorization']}"})


def test_the_key_appears_in_no_error_repr_or_log(caplog):
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    for name in PROVIDERS:
        for _, handler, _, _ in ROWS + [("echo", echo_key, None, None)]:
            provider = provider_with(name, handler)
            for call in (lambda: provider.get("g"), lambda: provider.submit(REQUEST)):
                error = raised(call)
                seen += [str(error), repr(error), repr(error.args), str(error.__cause__)]
            client = provider._http.client
            seen += [repr(provider), str(provider), repr(provider._http), repr(client),
                     repr(client.auth), repr(client.headers), repr(vars(provider))]
    seen += [record.getMessage() for record in caplog.records]
    leaks = [text for text in seen if KEY in text]
    assert not leaks


def test_the_key_is_sent_as_bearer():
    sent = []

    def handler(request):
        sent.append(request.headers.get("Authorization"))
        return httpx.Response(200, json={"generations": [{"generation_id": "g", "status": "queued"}]})
    provider_with("oxen", handler).submit(REQUEST)
    assert sent == [f"Bearer {KEY}"]


def test_clients_have_explicit_timeouts():
    client = provider_with("aimlapi", answering(200))._http.client
    assert client.timeout == httpx.Timeout(connect=10, read=60, write=60, pool=30)


def test_build_provider_refuses_unknown_names_and_missing_keys():
    with pytest.raises(PermanentProviderError, match="unknown provider"):
        build_provider("kling", settings())   # was "fal", a provider now (issue 26)
    with pytest.raises(PermanentProviderError, match="FAL_KEY"):
        build_provider("fal", Settings(fal_key=None))
    with pytest.raises(PermanentProviderError, match="OXEN_API_KEY"):
        build_provider("oxen", Settings(oxen_api_key=None, oxen_base_url="https://o.test"))

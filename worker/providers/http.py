"""The shared HTTP layer: client construction and the one seam where failures enter the error tree.

Every provider call goes through :class:`HttpSeam`, which maps failures like this:

    httpx exception (no response)
    ├─ ConnectError, ConnectTimeout, ProxyError     nothing was sent; the host cannot be reached
    │                                                                              -> ProviderUnreachable
    ├─ PoolTimeout                                  nothing was sent (our pool)  -> TransientProviderError
    ├─ WriteError, WriteTimeout                     the request was still being sent: the provider
    │                                               never had a whole request, nothing was created
    │                                                                            -> TransientProviderError
    ├─ UnsupportedProtocol, LocalProtocolError                 our own bug/config -> PermanentProviderError
    └─ any other TransportError / DecodingError / ...           the request may have arrived:
         submit (POST that may create a paid generation)                          -> SubmitOutcomeUnknown
         any other call                                                           -> TransientProviderError
    HTTP response
    ├─ body names missing credits (any status)          -> NoCredits (an account problem: the batch pauses)
    ├─ body names content policy (any status), or invalid input (on submit)
    │                                                    -> PermanentProviderError
    ├─ 401, 403                                          -> KeyRefused (an account problem, once confirmed)
    ├─ 404 "Model not found" on submit                   -> ModelGone (an account problem)
    ├─ 429                                               -> RateLimited(retry_after from Retry-After)
    ├─ 408, 5xx                                          -> TransientProviderError, except on submit:
    │    503 (and 429, 408) are refusals: nothing was created               -> transient, safe to retry
    │    5xx whose text the AI/ML API documents as a refusal ("The model is under maintenance",
    │    "Coupon code not found", 504 "Generation timeout")                  -> PermanentProviderError
    │    500, 502, 504 and other 5xx may hide a created generation          -> SubmitOutcomeUnknown
    ├─ 3xx                                               -> PermanentProviderError (base URL is wrong)
    └─ other 4xx (400, 401, 403, 404, 422, ...)          -> PermanentProviderError
    2xx whose body is an error envelope and carries no result (Oxen's {"generations": [], "error": ...})
                                                         -> as a 4xx: a refusal (RateLimited or NoCredits
                                                            if it says so)

A 2xx submit answer whose body cannot be read is also SubmitOutcomeUnknown: the generation probably
exists but its id is lost. The engine reconciles those with the provider's ``find`` helper.

``failure_kind`` sorts the text of any failure (an HTTP error or a generation's failure message)
into content_policy, no_credits, invalid_input (all permanent) or generation_failed (worth a retry).

Result downloads use a separate client without credentials; a ``HostCredential`` lends the provider's
key to a download only on the provider's own API host, never across a redirect to another host.

The API key never appears in a message, a log line or a repr: requests are described by method and
URL only, and every message the seam builds is scrubbed of the key in case a server echoes it.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx

from reelbatch.jobs.errors import (
    ContentRefused,
    GenerationFailed,
    InvalidInput,
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
from reelbatch.jobs.settings import Settings

log = logging.getLogger(__name__)

USER_AGENT = "reelbatch/0.1"
UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError)   # refused, DNS, no route
NOTHING_SENT = (*UNREACHABLE, httpx.PoolTimeout)
HALF_SENT = (httpx.WriteError, httpx.WriteTimeout)   # raised only while the request is written
OUR_FAULT = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)
SUBMIT_REFUSALS = frozenset({408, 429, 503})
AUTH_REFUSED = frozenset({401, 403})
FAILURE_KINDS = (   # (kind, text that means it); the first match wins
    ("content_policy", re.compile(
        r"content[ _-]?(policy|moderation|filter|safety)|safety (policy|system|filter|check)"
        r"|moderation|nsfw|policy violation|prohibited content", re.IGNORECASE)),
    ("no_credits", re.compile(
        r"insufficient (credits?|balance|funds)|run out of credits|out of credits|not enough credits",
        re.IGNORECASE)),
    ("invalid_input", re.compile(   # Oxen's run-time validation; AI/ML's 400; pydantic-style details
        r"model response error: 4(00|22)\b|value error,|field required|\bis invalid\b"
        r"|body validation error|input should be", re.IGNORECASE)),
)
GENERATION_FAILED = "generation_failed"
FAILURES: dict[str, type[GenerationFailed]] = {cls.kind: cls for cls in (
    GenerationFailed, ContentRefused, NoCredits, InvalidInput)}
# AI/ML API 5xx messages that refuse a request (errors-with-status-code-5xx.md; docs/providers.md errata)
SUBMIT_REFUSAL_TEXT = re.compile(
    r"model is under maintenance|coupon code not found|^generation timeout", re.IGNORECASE)
MODEL_GONE_TEXT = re.compile(r"model not found|no such model|unknown model", re.IGNORECASE)
RATE_LIMIT_TEXT = re.compile(r"rate limit|too many requests", re.IGNORECASE)
MAX_MESSAGE = 500


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <key>`` (fal: ``Key <key>``) on every request; the key never shows
    in a repr."""

    def __init__(self, key: str, scheme: str = "Bearer"):
        self._key, self._scheme = key, scheme

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"{self._scheme} {self._key}"
        yield request

    def __repr__(self) -> str:
        return f"BearerAuth(scheme={self._scheme!r}, key=<redacted>)"


def timeout_from(settings: Settings) -> httpx.Timeout:
    """Explicit connect/read/write/pool timeouts: no call may hang forever."""
    return httpx.Timeout(connect=settings.http_connect_timeout_s, read=settings.http_read_timeout_s,
                         write=settings.http_write_timeout_s, pool=settings.http_pool_timeout_s)


def build_client(settings: Settings, base_url: str, key: str | None,
                 transport: httpx.BaseTransport | None = None, scheme: str = "Bearer") -> httpx.Client:
    """One pooled client per provider per worker process. Redirects are never followed."""
    return httpx.Client(base_url=base_url, auth=BearerAuth(key, scheme) if key else None,
                        timeout=timeout_from(settings), follow_redirects=False,
                        headers={"User-Agent": USER_AGENT}, transport=transport)


def build_download_client(settings: Settings,
                          transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """A client without credentials, for result URLs (which live on other hosts)."""
    return httpx.Client(timeout=timeout_from(settings), follow_redirects=False,
                        headers={"User-Agent": USER_AGENT}, transport=transport)


class HostCredential:
    """A provider's key, lent to downloads on exactly one origin (scheme, host and port): the
    provider's own API host, where Oxen's REST result_url lives. Never shown in a repr."""

    def __init__(self, base_url: str, key: str):
        url = httpx.URL(base_url)
        self.origin = (url.scheme, url.host.lower(), url.port)
        self._key = key

    def applies_to(self, url: httpx.URL) -> bool:
        return (url.scheme, url.host.lower(), url.port) == self.origin

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"}

    def __repr__(self) -> str:
        scheme, host, port = self.origin
        return f"HostCredential({scheme}://{host}{f':{port}' if port else ''}, key=<redacted>)"


def host_credential(base_url: str, key: str | None) -> HostCredential | None:
    return HostCredential(base_url, key) if key else None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds (``"30"``) or an HTTP date; None when absent or unreadable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def failure_kind(text: str | None) -> str:
    """What a remote failure message means: ``content_policy``, ``no_credits``, ``invalid_input``
    (all permanent: the same request fails the same way) or ``generation_failed`` (worth
    resubmitting). Pure; used for HTTP errors and for failed generations alike."""
    for kind, pattern in FAILURE_KINDS:
        if text and pattern.search(text):
            return kind
    return GENERATION_FAILED


def permanent_reason(text: str | None) -> bool:
    """True when a message says retrying cannot help (``failure_kind`` is a permanent kind)."""
    return failure_kind(text) != GENERATION_FAILED


def generation_failure(provider: str, text: str | None) -> GenerationFailed:
    """A failed generation as the error of its kind (GenerationFailed, ContentRefused, ...)."""
    message = text or "generation failed (no reason given)"
    return FAILURES[failure_kind(message)](provider, None, None, message)


def describe(request: httpx.Request) -> str:
    """A request as method and URL: never headers, never URL credentials."""
    url = request.url.copy_with(username=None, password=None) if request.url.userinfo else request.url
    return f"{request.method} {url}"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "; ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return _detail_text(value)
    return "" if value is None else str(value)


def _detail_text(entry: dict[str, Any]) -> str:
    """``{loc, msg, type}`` (a validation detail) or any dict with a message-like key."""
    if "msg" in entry:
        loc = ".".join(str(p) for p in entry.get("loc") or [])
        kind = f" ({entry['type']})" if entry.get("type") else ""
        return f"{loc + ': ' if loc else ''}{entry['msg']}{kind}"
    for key in ("message", "detail", "title", "type", "name"):
        if entry.get(key):
            return _text(entry[key])
    return ""


def error_message(body: Any) -> str:
    """The human message in any known error envelope (Oxen's two, AI/ML API's, fal-style detail)."""
    if not isinstance(body, dict):
        return _text(body)
    err = body.get("error")
    if isinstance(err, dict):
        parts = [_text(err.get(k)) for k in ("title", "detail", "message", "name") if err.get(k)]
        return ": ".join(parts) or _text(err.get("type")) or _text(body.get("status_message"))
    if err:
        return _text(err)
    return _text(body.get("message")) or _text(body.get("detail")) or _text(body.get("status_message"))


def request_id(response: httpx.Response, body: Any) -> str | None:
    header: str | None = response.headers.get("x-request-id") or response.headers.get("request-id")
    if header:
        return header
    if isinstance(body, dict):
        rid = body.get("requestId") or body.get("request_id")
        return str(rid) if rid else None
    return None


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:MAX_MESSAGE]


def error_for_response(provider: str, response: httpx.Response, submit: bool = False,
                       secrets: Sequence[str] = ()) -> ProviderError | None:
    """The error a non-2xx response means; None for 2xx. The body must have been read."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    body = _body(response)
    message = scrub(error_message(body) or response.reason_phrase or "HTTP error", secrets)
    rid = request_id(response, body)
    args = (provider, status, rid, f"{response.request.method} {response.request.url.path}: {message}")
    kind = failure_kind(message)
    if kind == "no_credits":
        return NoCredits(*args)
    if kind == "content_policy" or (kind == "invalid_input" and submit):
        return PermanentProviderError(*args)   # a poll's 5xx never fails a running generation on its wording
    if status in AUTH_REFUSED:
        return KeyRefused(*args)
    if status == 404 and submit and MODEL_GONE_TEXT.search(message):
        return ModelGone(*args)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return RateLimited(*args, retry_after=retry_after)
    if status == 408 or status >= 500:
        if submit and SUBMIT_REFUSAL_TEXT.search(message):
            return PermanentProviderError(*args)
        if submit and status not in SUBMIT_REFUSALS:
            return SubmitOutcomeUnknown(*args)
        return TransientProviderError(*args)
    return PermanentProviderError(*args)


def error_for_body(provider: str, response: httpx.Response, body: Any,
                   secrets: Sequence[str] = ()) -> ProviderError:
    """The error a 2xx answer means whose body is an error envelope with no result: a refusal,
    nothing was created. Rate-limit wording makes it RateLimited; anything else is permanent."""
    message = scrub(error_message(body) or "refused without a reason", secrets)
    args = (provider, response.status_code, request_id(response, body),
            f"{response.request.method} {response.request.url.path}: {message}")
    if RATE_LIMIT_TEXT.search(message):
        return RateLimited(*args, retry_after=parse_retry_after(response.headers.get("Retry-After")))
    if failure_kind(message) == "no_credits":
        return NoCredits(*args)
    return PermanentProviderError(*args)


def error_for_exception(provider: str, exc: httpx.HTTPError, request: httpx.Request | None,
                        submit: bool = False, secrets: Sequence[str] = ()) -> ProviderError:
    """The error a transport failure means (no usable response came back)."""
    what = describe(request) if request is not None else "request"
    message = scrub(f"{what}: {type(exc).__name__}: {exc}", secrets)
    if isinstance(exc, UNREACHABLE):
        return ProviderUnreachable(provider, None, None, message)
    if isinstance(exc, (*NOTHING_SENT, *HALF_SENT)):   # on a submit, a refusal: safe to send again
        return TransientProviderError(provider, None, None, message)
    if isinstance(exc, OUR_FAULT):
        return PermanentProviderError(provider, None, None, message)
    if submit:
        return SubmitOutcomeUnknown(provider, None, None, message)
    return TransientProviderError(provider, None, None, message)


def check_answer(call: Callable[[], Any]) -> None:
    """Run one authenticated request for a key check: a refused key (401/403) and an unreachable
    provider raise; any other answer, error or not, means the key was accepted."""
    try:
        call()
    except PermanentProviderError as exc:
        if exc.status_code in AUTH_REFUSED:
            raise
    except ProviderUnreachable:
        raise
    except TransientProviderError:
        pass


def scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text[:MAX_MESSAGE]


def _request_of(exc: httpx.HTTPError) -> httpx.Request | None:
    try:
        return exc.request
    except RuntimeError:  # httpx raises when the exception carries no request
        return None


class HttpSeam:
    """A provider's client plus the mapping of every failure into the error tree."""

    def __init__(self, provider: str, client: httpx.Client, secrets: Sequence[str] = (),
                 tally: Callable[[str], None] | None = None):
        self.provider, self.client, self._secrets = provider, client, tuple(s for s in secrets if s)
        self._tally = tally   # told each answer's outcome: ok | transient | permanent (metrics)

    def _count(self, error: ProviderError | None) -> None:
        if self._tally is not None:
            self._tally("ok" if error is None else
                        "transient" if isinstance(error, TransientProviderError) else "permanent")

    def __repr__(self) -> str:
        return f"HttpSeam(provider={self.provider!r}, base_url={str(self.client.base_url)!r})"

    @contextmanager
    def mapped(self, submit: bool = False) -> Iterator[None]:
        """Turn httpx exceptions raised inside the block into the error tree."""
        try:
            yield
        except httpx.HTTPError as exc:
            error = error_for_exception(self.provider, exc, _request_of(exc), submit, self._secrets)
            self._count(error)
            raise error from None

    def check(self, response: httpx.Response, submit: bool = False) -> None:
        error = error_for_response(self.provider, response, submit, self._secrets)
        self._count(error)
        if error is not None:
            log.info("%s -> %s", describe(response.request), error)
            raise error

    def json(self, method: str, url: str, submit: bool = False, **kwargs: Any) -> Any:
        """Send, check the status, and return the JSON body."""
        return self.answer(method, url, submit, **kwargs)[0]

    def send(self, method: str, url: str, submit: bool = False, **kwargs: Any) -> httpx.Response:
        """Send and check the status; the body is left to the caller."""
        with self.mapped(submit):
            response = self.client.request(method, url, **kwargs)
        self.check(response, submit)
        return response

    def answer(self, method: str, url: str, submit: bool = False, **kwargs: Any) -> tuple[Any, httpx.Response]:
        """Send, check the status, and return the JSON body with its response."""
        response = self.send(method, url, submit, **kwargs)
        try:
            return response.json(), response
        except ValueError:
            cls = SubmitOutcomeUnknown if submit else TransientProviderError
            raise cls(self.provider, response.status_code, request_id(response, None),
                      f"{describe(response.request)}: answer is not JSON") from None

    def scrubbed(self, text: str) -> str:
        """``text`` with the key redacted (a server may echo it), cut to the message length."""
        return scrub(text, self._secrets)

    def refused(self, response: httpx.Response, body: Any) -> ProviderError:
        """A 2xx answer that is an error envelope, mapped like an error response."""
        error = error_for_body(self.provider, response, body, self._secrets)
        log.info("%s -> %s", describe(response.request), error)
        return error

    @contextmanager
    def stream(self, method: str, url: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed response with its status checked; errors while reading are mapped too."""
        with self.mapped(), self.client.stream(method, url, **kwargs) as response:
            if not response.is_success:
                response.read()
                self.check(response)
            yield response

    def close(self) -> None:
        self.client.close()

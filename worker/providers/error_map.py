"""Error mapping: how an httpx exception, an HTTP answer or a provider's failure text enters the
error tree (the tree is drawn in ``worker/providers/http.py``'s docstring)."""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Sequence
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
from reelbatch.worker.providers.description import describe, error_message, request_id, response_body, scrub

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


def error_for_response(provider: str, response: httpx.Response, submit: bool = False,
                       secrets: Sequence[str] = ()) -> ProviderError | None:
    """The error a non-2xx response means; None for 2xx. The body must have been read."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    body = response_body(response)
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

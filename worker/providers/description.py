"""Request description: how a request, an answer and an error envelope are put in words for a
message or a log line (method and URL only; never a header, never the key)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

MAX_MESSAGE = 500


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


def response_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:MAX_MESSAGE]


def scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text[:MAX_MESSAGE]


def request_of(exc: httpx.HTTPError) -> httpx.Request | None:
    try:
        return exc.request
    except RuntimeError:  # httpx raises when the exception carries no request
        return None

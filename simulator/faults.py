"""Fault injection and request counting, as the outermost ASGI layer.

Faults hit API calls and downloads, never /_sim/*. Dropping a connection closes the socket under
uvicorn: its `send` is a bound method of the request cycle, which holds the transport.
"""

from __future__ import annotations

import asyncio
import random

from reelbatch.simulator.envelopes import api_error
from reelbatch.simulator.knobs import Knobs
from reelbatch.simulator.stats import Stats, endpoint

# (knob, fault) in the order they are drawn; which ones apply depends on the kind of request.
_API_FAULTS = (("drop_before_rate", "drop_before"), ("rate_limit_rate", "rate_limit"),
               ("rate_limit_bare_rate", "rate_limit_bare"), ("server_error_rate", "server_error"),
               ("drop_after_rate", "drop_after"))
_STREAM_FAULTS = _API_FAULTS[:4]
_MEDIA_FAULTS = (("drop_before_rate", "drop_before"), ("server_error_rate", "server_error"),
                 ("truncate_rate", "truncate"), ("media_404_rate", "media_404"),
                 ("media_html_rate", "media_html"), ("media_empty_rate", "media_empty"),
                 ("media_stall_rate", "media_stall"))
_POLL_FAULTS = (("poll_401_rate", "poll_401"),)
_SUBMIT_FAULTS = (("drop_after_submit_rate", "drop_after"),)
SUBMITS = ("/api/ai/queue", "/v2/video/generations")
HTML_PAGE = (b"<!DOCTYPE html><html><head><title>503</title></head><body><h1>Service Temporarily "
             b"Unavailable</h1></body></html>")


class _Dropped(Exception):
    """Raised out of a response once its connection has been cut."""


async def drop_connection(send) -> None:
    """Close the socket without (the rest of) a response."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise RuntimeError("cannot reach the transport to drop a connection (is this uvicorn?)")
    transport.close()
    for _ in range(3):
        await asyncio.sleep(0)      # let connection_lost run, so uvicorn does not answer 500


class FaultMiddleware:
    """Counts every request, then maybe replaces it with a fault drawn from the knobs."""

    def __init__(self, app, knobs: Knobs, stats: Stats, rng: random.Random):
        self.app, self.knobs, self.stats, self.rng = app, knobs, stats, rng

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        self.stats.requests[endpoint(scope["method"], path)] += 1
        fault = None if path.startswith("/_sim") else self.draw(scope["method"], path)
        if fault:
            self.stats.faults[fault] += 1
        try:
            await self._serve(fault, scope, receive, send)
        except _Dropped:
            pass

    def draw(self, method: str, path: str) -> str | None:
        table: tuple[tuple[str, str], ...]
        if path.startswith("/media/"):
            table = _MEDIA_FAULTS
        elif method == "GET" and _is_poll(path):
            table = _POLL_FAULTS + _API_FAULTS
        elif method == "POST" and (path in SUBMITS or _is_fal_submit(path)):
            table = _SUBMIT_FAULTS + _API_FAULTS
        elif path == "/api/events" or path.endswith("/status/stream"):
            table = _STREAM_FAULTS
        else:
            table = _API_FAULTS
        for knob, fault in table:
            rate = getattr(self.knobs, knob)
            if rate > 0 and self.rng.random() < rate:
                return fault
        return None

    async def _serve(self, fault, scope, receive, send):
        if fault is None:
            await self.app(scope, receive, send)
        elif fault == "drop_before":
            await drop_connection(send)
        elif fault == "drop_after":
            await self.app(scope, receive, _swallow)
            await drop_connection(send)
        elif fault == "truncate":
            await self.app(scope, receive, _truncating(send))
        elif fault in _MEDIA_ANSWERS:
            await _MEDIA_ANSWERS[fault](self.knobs, send)
        elif fault == "poll_401":
            await api_error(scope["path"], 401)(scope, receive, send)
        else:
            await self._error(fault, scope, receive, send)

    async def _error(self, fault, scope, receive, send):
        if fault == "server_error":
            status, headers = self.rng.choice((500, 502, 503)), None
        else:
            status = 429
            headers = {"Retry-After": str(self.knobs.retry_after)} if fault == "rate_limit" else None
        await api_error(scope["path"], status, headers)(scope, receive, send)


def _is_poll(path: str) -> bool:
    """GET one generation: Oxen's queue row, the AI/ML API's poll, or a fal request's status."""
    return path.startswith("/api/ai/queue/") or path == "/v2/video/generations" or (
        path.startswith("/fal-ai/") and path.endswith("/status"))


def _is_fal_submit(path: str) -> bool:
    return path.startswith("/fal-ai/") and "/requests/" not in path


async def _answer(send, status: int, body: bytes, content_type: bytes = b"video/mp4") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _media_404(knobs: Knobs, send) -> None:
    await _answer(send, 404, b"NoSuchKey", b"text/plain")


async def _media_html(knobs: Knobs, send) -> None:
    await _answer(send, 200, HTML_PAGE)


async def _media_empty(knobs: Knobs, send) -> None:
    await _answer(send, 200, b"")


async def _media_stall(knobs: Knobs, send) -> None:
    """Promise 64 KiB, send half, then say nothing for stall_s and close."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"video/mp4"), (b"content-length", b"65536")]})
    await send({"type": "http.response.body", "body": bytes(32768), "more_body": True})
    await asyncio.sleep(knobs.stall_s)
    await drop_connection(send)
    raise _Dropped


_MEDIA_ANSWERS = {"media_404": _media_404, "media_html": _media_html, "media_empty": _media_empty,
                  "media_stall": _media_stall}


async def _swallow(message) -> None:
    return None


def _truncating(send):
    """A send that passes half of a 200 body's Content-Length, then cuts the connection."""
    state = {"limit": None, "sent": 0}

    async def truncating_send(message):
        if message["type"] == "http.response.start":
            if message["status"] == 200:
                length = dict(message.get("headers", [])).get(b"content-length")
                state["limit"] = int(length) // 2 if length else None
            return await send(message)
        body, limit = message.get("body", b""), state["limit"]
        if limit is None:
            return await send(message)
        room = limit - state["sent"]
        if len(body) < room:
            state["sent"] += len(body)
            return await send(message)
        await send({"type": "http.response.body", "body": body[:room], "more_body": True})
        await drop_connection(send)
        raise _Dropped

    return truncating_send

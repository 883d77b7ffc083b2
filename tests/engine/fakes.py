"""Providers and a result host over ``httpx.MockTransport``: the documented protocols with canned
answers, for the engine's in-process tier. The real provider clients (worker/providers/) talk to
them; nothing of ours is mocked.

Each fake keeps generations as rows and serves scripted answers first (a deque per endpoint:
an ``httpx.Response``, an httpx exception to raise, or a named outcome), then its default. An
Oxen submit may also be a function, run while the POST is under way (then the POST is accepted).
A generation walks through its ``life``: one row update per status request, the last one kept."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

from tests.media import mini_mp4

CDN = "https://cdn.test"
Answer = httpx.Response | Exception | str | Callable[[], None]
Life = list[dict[str, Any]]


def processing() -> dict[str, Any]:
    return {"status": "processing", "started_at": time.time()}


def succeeded(cost: str | None = "0.56") -> dict[str, Any]:
    return {"status": "succeeded", "cost": cost, "completed_at": time.time()}


def failed(message: str = "the model crashed") -> dict[str, Any]:
    return {"status": "failed", "error_message": message, "completed_at": time.time()}


def error(status: int, message: str = "Service unavailable", **headers: str) -> httpx.Response:
    """An Oxen error envelope with ``status``."""
    return httpx.Response(status, json={"error": {"type": "error", "title": message}}, headers=headers)


def connect_refused() -> Exception:
    return httpx.ConnectError("connection refused")


@dataclass
class FakeOxen:
    """Oxen's queue API (docs/providers.md section 1): POST/GET/DELETE /api/ai/queue, the active
    queue, the generation history with costs. ``lives``: each new generation's life, in order
    (then ``life``). ``submits``/``gets``/``cancels``/``history``: scripted answers; a submit may
    also be ``"lost"`` (the generation is made, the answer never comes back)."""

    life: Life = field(default_factory=lambda: [processing(), succeeded()])
    lives: deque[Life] = field(default_factory=deque)
    submits: deque[Answer] = field(default_factory=deque)
    gets: deque[Answer] = field(default_factory=deque)
    cancels: deque[Answer] = field(default_factory=deque)
    history: deque[Answer] = field(default_factory=deque)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    remaining: dict[str, Life] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    refuse_key: bool = False   # every request answers 401 (a revoked key; the key check says so too)
    away: bool = False         # no request gets through (the connection is refused)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def posts(self) -> int:
        return self.requests.count(("POST", "/api/ai/queue"))

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = unquote(request.url.path)
        self.requests.append((request.method, path))
        if self.away:
            raise connect_refused()
        if self.refuse_key:
            return error(401, "unauthenticated")
        if path == "/api/ai/queue":
            return self._submit(request) if request.method == "POST" else self._active()
        if path.startswith("/api/ai/queue/"):
            gid = path.rsplit("/", 1)[1]
            return self._cancel(request, gid) if request.method == "DELETE" else self._get(request, gid)
        if path == "/api/ai/generations":
            return _scripted(self.history, request) or self._history_page(request)
        if path.startswith("/api/ai/generations/"):
            return self._history_row(request, path.rsplit("/", 1)[1])
        return error(404, "not found")

    def make(self, body: dict[str, Any]) -> str:
        gid = f"gen-{len(self.rows) + 1}"
        self.rows[gid] = {"generation_id": gid, "model_name": body.get("model"), "prompt": body.get("prompt"),
                          "status": "queued", "enqueued_at": time.time(), "result_url": None,
                          "error_message": None, "cost": None, "started_at": None, "completed_at": None}
        self.remaining[gid] = list(self.lives.popleft() if self.lives else self.life)
        return gid

    def _submit(self, request: httpx.Request) -> httpx.Response:
        answer = self.submits.popleft() if self.submits else "accept"
        if callable(answer):   # something that happens while the POST runs; then it is accepted
            answer()
            answer = "accept"
        if answer == "lost":
            self.make(json.loads(request.content))
            raise httpx.ReadTimeout("the answer never came", request=request)
        if answer != "accept":
            return _raise_or_return(answer, request)
        gid = self.make(json.loads(request.content))
        return httpx.Response(200, json={"generations": [{"generation_id": gid, "status": "queued"}]})

    def advance(self, gid: str) -> dict[str, Any]:
        """The row after one more status request: the next step of its life."""
        life, row = self.remaining[gid], self.rows[gid]
        if life:
            row.update(life.pop(0) if len(life) > 1 else life[0])
            if row["status"] == "succeeded" and not row["result_url"]:
                row["result_url"] = f"{CDN}/{gid}.mp4"
        return row

    def _get(self, request: httpx.Request, gid: str) -> httpx.Response:
        scripted = _scripted(self.gets, request)
        if scripted is not None:
            return scripted
        if gid not in self.rows:
            return error(404, "generation not found")
        return httpx.Response(200, json=self.advance(gid))

    def _cancel(self, request: httpx.Request, gid: str) -> httpx.Response:
        answer = self.cancels.popleft() if self.cancels else None
        if callable(answer) and not isinstance(answer, Exception):
            answer()   # something that happens while the DELETE runs; then it is done
        elif answer is not None:
            return _raise_or_return(answer, request)
        row = self.rows[gid]
        if row["status"] in ("queued", "processing"):
            row.update(status="cancelled", completed_at=time.time())
            self.remaining[gid] = []
        return httpx.Response(200, json={"generation_id": gid, "status": row["status"]})

    def _active(self) -> httpx.Response:
        rows = [r for r in self.rows.values() if r["status"] in ("queued", "processing")]
        return httpx.Response(200, json={"generations": rows})

    def _history_page(self, request: httpx.Request) -> httpx.Response:
        page, size = int(request.url.params.get("page", 1)), int(request.url.params.get("page_size", 100))
        rows = sorted(self.rows.values(), key=lambda r: r["enqueued_at"], reverse=True)
        return httpx.Response(200, json={"generations": rows[(page - 1) * size:page * size]})

    def _history_row(self, request: httpx.Request, gid: str) -> httpx.Response:
        scripted = _scripted(self.history, request)
        if scripted is not None:
            return scripted
        if gid not in self.rows:
            return error(404, "generation not found")
        return httpx.Response(200, json={"generation": self.rows[gid]})


@dataclass
class FakeAimlapi:
    """The AI/ML API v2 video endpoints (docs/providers.md section 2): create, poll with
    ``generation_id``; no cancel, no list; the request log (GET /v2/logs) names each request made
    by its ``X-Client-Request-Id``. ``submits``: scripted answers (or ``"lost"``); ``logs``:
    scripted log answers."""

    usd: float = 0.3
    submits: deque[Answer] = field(default_factory=deque)
    logs: deque[Answer] = field(default_factory=deque)
    made: list[str] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def posts(self) -> int:
        return self.requests.count(("POST", "/v2/video/generations"))

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        if request.url.path == "/v2/logs":
            return _scripted(self.logs, request) or httpx.Response(
                200, json={"data": self.log[::-1], "pagination": {"has_more": False}})
        if request.method == "POST":
            answer = self.submits.popleft() if self.submits else "accept"
            if answer not in ("accept", "lost"):
                return _raise_or_return(answer, request)
            self.made.append(f"aiml-{len(self.made) + 1}")
            self.log.append({"inference_id": self.made[-1], "status": "success",
                             "client_request_id": request.headers.get("X-Client-Request-Id"),
                             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            if answer == "lost":
                raise httpx.ReadTimeout("the answer never came", request=request)
            return httpx.Response(200, json={"id": self.made[-1], "status": "queued"})
        gid = request.url.params["generation_id"]
        return httpx.Response(200, json={"id": gid, "status": "completed", "video": {"url": f"{CDN}/{gid}.mp4"},
                                         "meta": {"usage": {"usd_spent": self.usd}}})


FAL_QUEUE = "https://queue.fal.test"
FAL_APP = "fal-ai/kling-video"


@dataclass
class FakeFal:
    """fal's queue API (docs/providers.md): ``POST {queue}/{endpoint}`` answers a request id and its
    ``response_url`` under the app (``fal-ai/kling-video/requests/{id}``, without the endpoint's
    sub-path); ``GET .../status`` walks ``statuses`` (the last one kept; 202 until COMPLETED);
    ``GET response_url`` gives the result's ``video.url``. ``submits``: scripted answers first."""

    statuses: list[str] = field(default_factory=lambda: ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"])
    submits: deque[Answer] = field(default_factory=deque)
    made: list[str] = field(default_factory=list)
    remaining: dict[str, list[str]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)   # the Authorization header of each request

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def posts(self) -> int:
        return sum(1 for method, _ in self.requests if method == "POST")

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.lstrip("/")
        self.requests.append((request.method, path))
        self.keys.append(request.headers.get("Authorization"))
        if request.url.host != "queue.fal.test":
            return httpx.Response(404, json={"detail": "not found"})
        if request.method == "POST":
            answer = self.submits.popleft() if self.submits else "accept"
            if answer != "accept":
                return _raise_or_return(answer, request)
            rid = f"r{len(self.made) + 1}"
            self.made.append(rid)
            self.remaining[rid] = list(self.statuses)
            url = f"{FAL_QUEUE}/{FAL_APP}/requests/{rid}"
            return httpx.Response(200, json={"request_id": rid, "response_url": url, "status_url": f"{url}/status",
                                             "cancel_url": f"{url}/cancel", "queue_position": 0})
        rid = path.removeprefix(f"{FAL_APP}/requests/").removesuffix("/status")
        if path.endswith("/status"):
            life = self.remaining[rid]
            status = life.pop(0) if len(life) > 1 else life[0]
            return httpx.Response(200 if status == "COMPLETED" else 202, json={"status": status, "request_id": rid})
        return httpx.Response(200, json={"video": {"url": f"{CDN}/{rid}.mp4", "content_type": "video/mp4"}})


@dataclass
class FakeCdn:
    """Where result URLs point: a real small MP4 (video/mp4), after any scripted answers."""

    answers: deque[Answer] = field(default_factory=deque)
    body: Callable[[], bytes] = mini_mp4
    requests: list[str] = field(default_factory=list)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(str(request.url))
        scripted = _scripted(self.answers, request)
        if scripted is not None:
            return scripted
        return httpx.Response(200, content=self.body(), headers={"Content-Type": "video/mp4"})


def _scripted(answers: deque[Answer], request: httpx.Request) -> httpx.Response | None:
    return _raise_or_return(answers.popleft(), request) if answers else None


def _raise_or_return(answer: Answer, request: httpx.Request) -> httpx.Response:
    if isinstance(answer, httpx.RequestError):
        answer.request = request
        raise answer
    if isinstance(answer, Exception):
        raise answer
    if isinstance(answer, httpx.Response):   # a copy: the same canned answer may be served twice
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)
    raise ValueError(f"unknown scripted answer {answer!r}")

"""The AI/ML API's request tracing: the ``X-Client-Request-Id`` a create carries, the
``x-inference-id`` every answer names, and the request log ``GET /v2/logs`` that lists creates with
both ids, their outcome and cost (aimlapi/api-docs docs/capabilities/request-tracing-and-cost.md,
docs/api-references/service-endpoints/usage-logs.md and logs-v2.json).

A row shows in the log `aiml_logs_lag` real seconds after its request (the log is fed by an analytics
pipeline whose lag is undocumented). A failed request, or a generation that ended in error, is
listed as failed with a zero cost ("Failed requests are never charged")."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reelbatch.simulator import catalog
from reelbatch.simulator.clock import Generation
from reelbatch.simulator.envelopes import aiml_error

PATH = "/v2/logs"
CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")   # anything else is silently dropped
PERIOD = re.compile(r"^([1-9][0-9]*)([hd])$")
MAX_WINDOW_S = 92 * 86400


def client_request_id(request: Request) -> str | None:
    value = request.headers.get("x-client-request-id")
    return value if value is not None and CLIENT_ID.match(value) else None


def trace_headers(inference_id: str, client_id: str | None) -> dict[str, str]:
    """The answer's tracing headers: the inference id always, the client's id when it was valid."""
    return {"x-inference-id": inference_id, **({"x-client-request-id": client_id} if client_id else {})}


@dataclass
class Entry:
    at: float                    # wall-clock unix seconds
    model: str
    inference_id: str
    client_request_id: str | None
    gen: Generation | None       # None: the request was refused, nothing was made


class RequestLog:
    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def record(self, model: str, client_id: str | None, gen: Generation | None) -> str:
        """Log one create; returns its inference id (the generation id when one was made)."""
        inference_id = gen.public_id if gen is not None else str(uuid.uuid4())
        self.entries.append(Entry(time.time(), model, inference_id, client_id, gen))
        return inference_id

    def clear(self) -> None:
        self.entries.clear()

    def dump(self) -> list[dict]:
        """The entries for a state file (wall-clock times; generations by key)."""
        return [{"at": e.at, "model": e.model, "inference_id": e.inference_id,
                 "client_request_id": e.client_request_id, "gen": e.gen.key if e.gen else None}
                for e in self.entries]

    def load(self, rows: list[dict], gens: dict[str, Generation]) -> None:
        self.entries = [Entry(r["at"], r["model"], r["inference_id"], r["client_request_id"],
                              gens.get(r["gen"]) if r["gen"] else None) for r in rows]


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _time(text: str) -> float:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _window(query) -> tuple[float, float] | str:
    """(start, end) from `period` or `start`+`end`, or what is wrong with them."""
    period, start, end = query.get("period"), query.get("start"), query.get("end")
    if (period is None) == (start is None or end is None) or (period and (start or end)):
        return "Provide either period or both start and end"
    now = time.time()
    if period:
        match = PERIOD.match(period)
        if not match:
            return f"Invalid period: {period}"
        return now - int(match[1]) * (3600 if match[2] == "h" else 86400), now
    try:
        low, high = _time(start), _time(end)
    except ValueError:
        return "Invalid date"
    if high < low or high - low > MAX_WINDOW_S:
        return "end must not be earlier than start, and the window must not exceed 92 days"
    return low, high


def _row(entry: Entry, price_per_second: float) -> dict:
    gen = entry.gen
    failed = gen is None or gen.status == "failed"
    usd = catalog.cost_usd(gen.duration, price_per_second) if gen is not None and gen.status == "succeeded" else 0
    return {"created": _iso(entry.at), "status": "failed" if failed else "succeeded", "origin": "api",
            "model": entry.model, "cost": {"usd": usd, "credits": int(usd * catalog.CREDITS_PER_USD)},
            "tokens": {"input": 0, "output": 0, "total": 0}, "request_id": None,
            "inference_id": entry.inference_id, "client_request_id": entry.client_request_id}


def _page(query) -> tuple[int, int] | None:
    try:
        limit, offset = int(query.get("limit", 50)), int(query.get("offset", 0))
    except ValueError:
        return None
    return (limit, offset) if 1 <= limit <= 100 and offset >= 0 else None


async def logs(request: Request) -> Response:
    core = request.app.state.core
    if not core.authorized(request):
        return aiml_error(401, PATH)
    core.clock.advance()
    query = request.query_params
    window, paging = _window(query), _page(query)
    if isinstance(window, str) or paging is None:
        return aiml_error(400, PATH, window if isinstance(window, str) else "limit must be 1-100")
    models, statuses = query.getlist("model"), query.getlist("status")
    if any(s not in ("succeeded", "failed") for s in statuses):
        return aiml_error(400, PATH, "status must be succeeded or failed")
    visible = time.time() - core.knobs.aiml_logs_lag
    rows = [_row(e, core.knobs.cost_per_second) for e in reversed(core.aiml_log.entries)
            if window[0] <= e.at <= window[1] and e.at <= visible and (not models or e.model in models)]
    rows = [r for r in rows if not statuses or r["status"] in statuses]
    limit, offset = paging
    chosen = rows[offset: offset + limit]
    return JSONResponse({"data": chosen, "pagination": {"limit": limit, "offset": offset, "total": len(rows),
                                                        "has_more": offset + len(chosen) < len(rows)}})


ROUTES = [Route(PATH, logs, methods=["GET"])]

"""AI/ML API v2 video client (docs/providers.md section 2). No cancel, no push channel: poll only.

Statuses: the O1 schemas list queued, generating, completed and error; the docs' own polling loops
also treat waiting and active as in progress (docs/providers.md errata), and some examples end in
succeeded. Anything else is UNKNOWN: polled on, never failed.

Request tracing (aimlapi/api-docs docs/capabilities/request-tracing-and-cost.md): every submit sends
the request's ``X-Client-Request-Id``; every answer carries ``x-inference-id``, which for an async
generation is its generation id, so a 2xx submit answer whose body cannot be read still names its
generation. A submit whose answer was lost is found again in the request log (``GET /v2/logs``,
docs/api-references/service-endpoints/usage-logs.md) by that client id: ``find``. The log is fed by
an analytics pipeline whose lag is undocumented: not found yet is not "never created".
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from reelbatch.jobs.errors import SubmitOutcomeUnknown, TransientProviderError
from reelbatch.jobs.item import ProviderRequest
from reelbatch.jobs.tuning import AIMLAPI_LOG_END_SLACK_S as LOG_END_SLACK_S
from reelbatch.worker.providers.base import Generation, RemoteStatus, normalised_status
from reelbatch.worker.providers.http import HostCredential, HttpSeam, check_answer, error_message

PATH = "/v2/video/generations"
LOGS = "/v2/logs"
TRACE_HEADER = "X-Client-Request-Id"
INFERENCE_HEADER = "x-inference-id"
LOG_PAGE = 100          # the log's largest page (limit 1-100)
LOG_MAX_PAGES = 10
LOG_DEFAULT_WINDOW_S = 86400.0   # no `since`: look back a day
KEY_CHECK_ID = "reelbatch-key-check"
STATUS = {"queued": RemoteStatus.QUEUED, "waiting": RemoteStatus.QUEUED,
          "active": RemoteStatus.RUNNING, "generating": RemoteStatus.RUNNING,
          "completed": RemoteStatus.SUCCEEDED, "succeeded": RemoteStatus.SUCCEEDED,
          "error": RemoteStatus.FAILED}
CREDITS_PER_USD = 2_000_000   # the O1 schemas' examples: 120,000 credits_used = $0.06


def failure_text(error: Any) -> str:
    """``{name, message}``, ``{detail: [{loc, msg, type}]}`` or plain text, as one readable line."""
    if isinstance(error, Mapping) and error.get("name") and error.get("message"):
        return f"{error['name']}: {error['message']}"
    return error_message({"error": error}) if error else "generation failed (no reason given)"


def _number(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def cost_usd(answer: Mapping[str, Any]) -> float | None:
    """``meta.usage.usd_spent`` when given (newer schemas), else ``credits_used`` (the O1 schemas)
    at 2,000,000 credits per dollar; None when neither is there."""
    meta: Mapping[str, Any] = answer["meta"] if isinstance(answer.get("meta"), Mapping) else {}
    usage: Mapping[str, Any] = meta["usage"] if isinstance(meta.get("usage"), Mapping) else {}
    usd = _number(usage.get("usd_spent"))
    if usd is not None:
        return usd
    credits = _number(usage.get("credits_used"))
    return round(credits / CREDITS_PER_USD, 6) if credits is not None else None


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _unix(text: Any) -> float | None:
    """An ISO-8601 time (the log's ``created``) as unix seconds; None when unreadable."""
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def generation_from_answer(provider: str, answer: Mapping[str, Any]) -> Generation:
    status = normalised_status(provider, answer.get("status"), STATUS)
    url = (answer.get("video") or {}).get("url") if status is RemoteStatus.SUCCEEDED else None
    if status is RemoteStatus.SUCCEEDED and not url:
        raise TransientProviderError(provider, None, None, "completed answer has no video.url yet")
    error = failure_text(answer.get("error")) if status is RemoteStatus.FAILED else None
    return Generation(generation_id=str(answer.get("id")), status=status, video_url=url,
                      error=error, cost_usd=cost_usd(answer))


class AimlapiProvider:
    """The AI/ML API. It documents no cancel endpoint and no events, and this client says so."""

    charges_in_history = False  # the cost is on the poll answer (meta.usage)

    def __init__(self, http: HttpSeam, name: str = "aimlapi",
                 download_credential: HostCredential | None = None):
        self.name, self._http = name, http
        self.download_credential = download_credential

    def __repr__(self) -> str:
        return f"AimlapiProvider(name={self.name!r}, base_url={str(self._http.client.base_url)!r})"

    def submit(self, request: ProviderRequest) -> str:
        headers = {TRACE_HEADER: request.client_request_id} if request.client_request_id else {}
        response = self._http.send("POST", PATH, submit=True, headers=headers,
                                   json={"model": request.model, **request.body})
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict) and answer.get("id"):
            return str(answer["id"])
        inference_id: str | None = response.headers.get(INFERENCE_HEADER)
        if inference_id:   # the body is unreadable; the header names the generation all the same
            return inference_id
        raise SubmitOutcomeUnknown(self.name, response.status_code, None,
                                   "create answer carries no generation id")

    def find(self, request: ProviderRequest, since: float | None = None) -> list[Generation]:
        """Reconcile a SubmitOutcomeUnknown: the generations the request log lists under this
        request's client id, made at or after ``since`` (unix seconds), newest first. A failed
        request made nothing (and is never charged): it is left out. The log may lag behind."""
        if not request.client_request_id:
            return []
        found: dict[str, Generation] = {}
        for row in self._log_rows(request.model, since):
            inference_id = row.get("inference_id")
            if row.get("client_request_id") != request.client_request_id or not inference_id:
                continue
            if row.get("status") == "failed" or str(inference_id) in found:
                continue
            found[str(inference_id)] = Generation(str(inference_id), RemoteStatus.UNKNOWN,
                                                  enqueued_at=_unix(row.get("created")))
        return sorted(found.values(), key=lambda g: g.enqueued_at or 0, reverse=True)

    def made_since(self, model: str, since: float) -> list[Generation]:
        """The generations the request log lists for ``model`` from ``since`` on, with the cost it
        gives; a failed request made nothing and is left out. The log may lag behind."""
        found: dict[str, Generation] = {}
        for row in self._log_rows(model, since):
            inference_id = row.get("inference_id")
            if not inference_id or row.get("status") == "failed" or str(inference_id) in found:
                continue
            cost: Mapping[str, Any] = row["cost"] if isinstance(row.get("cost"), Mapping) else {}
            found[str(inference_id)] = Generation(str(inference_id), RemoteStatus.UNKNOWN,
                                                  cost_usd=_number(cost.get("usd")),
                                                  enqueued_at=_unix(row.get("created")))
        return list(found.values())

    def _log_rows(self, model: str, since: float | None) -> list[dict[str, Any]]:
        """The request log's rows for ``model`` from ``since`` on, newest first (paged)."""
        now = time.time()
        start = since if since is not None else now - LOG_DEFAULT_WINDOW_S
        params: dict[str, Any] = {"start": _iso(start), "end": _iso(max(now, start) + LOG_END_SLACK_S),
                                  "model": model, "limit": LOG_PAGE}
        rows: list[dict[str, Any]] = []
        for page in range(LOG_MAX_PAGES):
            answer = self._http.json("GET", LOGS, params={**params, "offset": page * LOG_PAGE})
            data = answer.get("data") if isinstance(answer, dict) else None
            rows += [r for r in data or [] if isinstance(r, dict)]
            paging = answer.get("pagination") if isinstance(answer, dict) else None
            if not isinstance(paging, dict) or not paging.get("has_more"):
                break
        return rows

    def get(self, generation_id: str) -> Generation:
        # httpx percent-encodes the query value, including the ':' and '/' of "<uuid>:<model>"
        answer = self._http.json("GET", PATH, params={"generation_id": generation_id})
        if not isinstance(answer, dict):
            raise TransientProviderError(self.name, None, None, "generation answer is not an object")
        return generation_from_answer(self.name, {"id": generation_id, **answer})

    def charged_cost(self, generation_id: str) -> float | None:
        """The generation's cost from its poll answer's meta.usage; None when it gives none."""
        return self.get(generation_id).cost_usd

    def check_key(self, model_id: str) -> None:
        """A poll of an id that does not exist: 401 for a refused key, 404 (fine) otherwise."""
        check_answer(lambda: self._http.json("GET", PATH, params={"generation_id": KEY_CHECK_ID}))

    def close(self) -> None:
        self._http.close()

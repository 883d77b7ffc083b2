"""fal's platform API (FAL_API_URL, https://api.fal.ai): prices and the request history.

- ``GET /v1/models/pricing?endpoint_id=`` answers ``{prices: [{endpoint_id, unit_price, unit,
  currency}]}`` (PROTOCOLS.md 2026-12-02 errata).
- ``GET /v1/models/requests/by-endpoint?endpoint_id=&expand=payloads`` answers ``{items: [{request_id,
  endpoint_id, sent_at, started_at, ended_at, status_code, json_input, json_output}], next_cursor,
  has_more}``, up to 100 per page, the last 24 hours by default (fal.ai/docs/platform-apis/v1/models/
  requests/by-endpoint). It lists finished requests only. This is the path that covers partner
  models such as Kling; the newer ``/v1/serverless/requests/by-endpoint`` is documented for
  "endpoints owned by the authenticated user" (assumed: not fal's own models).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from reelbatch.jobs.errors import TransientProviderError
from reelbatch.jobs.item import ProviderRequest
from reelbatch.jobs.tuning import FAL_HISTORY_NOT_YET_S as NOT_YET_S
from reelbatch.worker.providers.fal_storage import is_data_uri
from reelbatch.worker.providers.http import HttpSeam

PER_SECOND_UNITS = ("second", "seconds", "s", "sec")
HISTORY_PAGE = 100
HISTORY_MAX_PAGES = 10


def pricing(api: HttpSeam, endpoint_id: str) -> dict[str, Any] | None:
    """``{"cost_per_second": unit_price}`` for a per-second USD price; None otherwise."""
    answer = api.json("GET", "/v1/models/pricing", params={"endpoint_id": endpoint_id})
    for price in (answer.get("prices") or []) if isinstance(answer, dict) else []:
        if not isinstance(price, dict) or price.get("endpoint_id") not in (None, endpoint_id):
            continue
        if str(price.get("unit", "")).lower() in PER_SECOND_UNITS and price.get("currency", "USD") == "USD":
            return {"cost_per_second": price.get("unit_price")}
    return None


def _unix(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _history(api: HttpSeam, endpoint_id: str, since: float | None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"endpoint_id": endpoint_id, "expand": "payloads", "limit": HISTORY_PAGE}
    rows: list[dict[str, Any]] = []
    for _ in range(HISTORY_MAX_PAGES):
        answer = api.json("GET", "/v1/models/requests/by-endpoint", params=params)
        if not isinstance(answer, dict):
            break
        rows += [r for r in answer.get("items") or [] if isinstance(r, dict)]
        if not answer.get("has_more") or not answer.get("next_cursor"):
            break
        params["cursor"] = answer["next_cursor"]
    return [r for r in rows if since is None or (_unix(r.get("sent_at")) or 0) >= since]


def same_payload(sent: Any, logged: Any) -> bool:
    """The logged payload is the body sent; a local file (a data URI here) went as its storage URL,
    so any string stands for it."""
    if is_data_uri(sent):
        return isinstance(logged, str)
    if isinstance(sent, dict):
        return isinstance(logged, dict) and sent.keys() == logged.keys() and all(
            same_payload(v, logged[k]) for k, v in sent.items())
    if isinstance(sent, list):
        return isinstance(logged, list) and len(sent) == len(logged) and all(
            same_payload(a, b) for a, b in zip(sent, logged, strict=True))
    return bool(sent == logged)


def matching_requests(api: HttpSeam, request: ProviderRequest, since: float | None) -> list[str]:
    """Queue paths (``{owner}/{app}/requests/{id}``) of finished requests of this endpoint whose
    payload is this body, newest first. Raises TransientProviderError while none is there and the
    submit is recent: the history lists a request only once it has finished."""
    rows = [r for r in _history(api, request.model, since) if same_payload(request.body, r.get("json_input"))]
    rows.sort(key=lambda r: _unix(r.get("sent_at")) or 0, reverse=True)
    app = "/".join(request.model.split("/")[:2])
    if not rows and since is not None and time.time() - since < NOT_YET_S:
        raise TransientProviderError("fal", None, None, "the request history lists finished requests "
                                     "only; looking again later")
    return [f"{app}/requests/{r['request_id']}" for r in rows if r.get("request_id")]

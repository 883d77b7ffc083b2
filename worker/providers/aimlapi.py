"""AI/ML API v2 video client (PROTOCOLS.md section 2). No cancel, no push channel: poll only."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from reelbatch.jobs.errors import CancelNotSupported, PermanentProviderError, SubmitOutcomeUnknown, TransientProviderError
from reelbatch.jobs.item import ProviderRequest
from reelbatch.worker.providers.base import Generation, RemoteStatus
from reelbatch.worker.providers.http import HttpSeam, error_message

PATH = "/v2/video/generations"
STATUS = {"queued": RemoteStatus.QUEUED, "waiting": RemoteStatus.QUEUED,
          "generating": RemoteStatus.RUNNING, "completed": RemoteStatus.SUCCEEDED,
          "succeeded": RemoteStatus.SUCCEEDED, "error": RemoteStatus.FAILED}


def failure_text(error: Any) -> str:
    """``{name, message}``, ``{detail: [{loc, msg, type}]}`` or plain text, as one readable line."""
    if isinstance(error, Mapping) and error.get("name") and error.get("message"):
        return f"{error['name']}: {error['message']}"
    return error_message({"error": error}) if error else "generation failed (no reason given)"


def _cost(answer: Mapping[str, Any]) -> float | None:
    usage = (answer.get("meta") or {}).get("usage") or {}
    try:
        return float(usage["usd_spent"]) if usage.get("usd_spent") is not None else None
    except (TypeError, ValueError):
        return None


def generation_from_answer(provider: str, answer: Mapping[str, Any]) -> Generation:
    raw = answer.get("status")
    if raw not in STATUS:
        raise PermanentProviderError(provider, None, None, f"unknown generation status {raw!r}")
    status = STATUS[raw]
    url = (answer.get("video") or {}).get("url") if status is RemoteStatus.SUCCEEDED else None
    if status is RemoteStatus.SUCCEEDED and not url:
        raise TransientProviderError(provider, None, None, "completed answer has no video.url yet")
    error = failure_text(answer.get("error")) if status is RemoteStatus.FAILED else None
    return Generation(generation_id=str(answer.get("id")), status=status, video_url=url,
                      error=error, cost_usd=_cost(answer))


class AimlapiProvider:
    """The AI/ML API. It documents no cancel endpoint and no events, and this client says so."""

    can_cancel = False
    has_events = False

    def __init__(self, http: HttpSeam, name: str = "aimlapi"):
        self.name, self._http = name, http

    def __repr__(self) -> str:
        return f"AimlapiProvider(name={self.name!r}, base_url={str(self._http.client.base_url)!r})"

    def submit(self, request: ProviderRequest) -> str:
        answer = self._http.json("POST", PATH, submit=True, json={"model": request.model, **request.body})
        if not isinstance(answer, dict) or not answer.get("id"):
            raise SubmitOutcomeUnknown(self.name, None, None, "create answer carries no generation id")
        return str(answer["id"])

    def get(self, generation_id: str) -> Generation:
        # httpx percent-encodes the query value, including the ':' and '/' of "<uuid>:<model>"
        answer = self._http.json("GET", PATH, params={"generation_id": generation_id})
        if not isinstance(answer, dict):
            raise TransientProviderError(self.name, None, None, "generation answer is not an object")
        return generation_from_answer(self.name, {"id": generation_id, **answer})

    def cancel(self, generation_id: str) -> None:
        raise CancelNotSupported(self.name, None, None, "the AI/ML API has no cancel endpoint")

    def events(self) -> Iterator[Generation]:
        raise NotImplementedError("the AI/ML API pushes no events; poll with get()")

    def close(self) -> None:
        self._http.close()

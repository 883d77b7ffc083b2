"""AI/ML API v2 video client (docs/providers.md section 2). No cancel, no push channel: poll only.

Statuses: the O1 schemas list queued, generating, completed and error; the docs' own polling loops
also treat waiting and active as in progress (docs/providers.md errata), and some examples end in
succeeded. Anything else is UNKNOWN: polled on, never failed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from reelbatch.jobs.errors import CancelNotSupported, SubmitOutcomeUnknown, TransientProviderError
from reelbatch.jobs.item import ProviderRequest
from reelbatch.worker.providers.base import Generation, RemoteStatus, normalised_status
from reelbatch.worker.providers.http import HostCredential, HttpSeam, check_answer, error_message

PATH = "/v2/video/generations"
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
    meta = answer.get("meta") if isinstance(answer.get("meta"), Mapping) else {}
    usage = meta.get("usage") if isinstance(meta.get("usage"), Mapping) else {}
    usd = _number(usage.get("usd_spent"))
    if usd is not None:
        return usd
    credits = _number(usage.get("credits_used"))
    return round(credits / CREDITS_PER_USD, 6) if credits is not None else None


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

    can_cancel = False
    has_events = False
    lists_generations = False   # no list endpoint: each generation is polled on its own
    charges_in_history = False  # the cost is on the poll answer (meta.usage)

    def __init__(self, http: HttpSeam, name: str = "aimlapi",
                 download_credential: HostCredential | None = None):
        self.name, self._http = name, http
        self.download_credential = download_credential

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

    def charged_cost(self, generation_id: str) -> float | None:
        """The generation's cost from its poll answer's meta.usage; None when it gives none."""
        return self.get(generation_id).cost_usd

    def check_key(self, model_id: str) -> None:
        """A poll of an id that does not exist: 401 for a refused key, 404 (fine) otherwise."""
        check_answer(lambda: self._http.json("GET", PATH, params={"generation_id": KEY_CHECK_ID}))

    def cancel(self, generation_id: str) -> None:
        raise CancelNotSupported(self.name, None, None, "the AI/ML API has no cancel endpoint")

    def events(self) -> Iterator[Generation]:
        raise NotImplementedError("the AI/ML API pushes no events; poll with get()")

    def close(self) -> None:
        self._http.close()

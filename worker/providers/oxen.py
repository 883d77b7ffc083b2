"""Oxen.ai async queue client (docs/providers.md section 1); also drives the local simulator.

Completion events come from ``GET /api/events`` (SSE). Oxen buffers nothing and replays nothing, so
events missed while disconnected are lost: the engine must keep polling as the backstop.

Queue rows carry no cost: ``charged_cost`` reads it from the generation history
(``GET /api/ai/generations/{id}``), and ``model_pricing`` reads a model's prices
(``GET /api/ai/models/{id}``), both documented in inference-api/overview.mdx.

Many generations in one answer (the engine's lister, worker/history_watch.py): ``list_active`` reads the
active queue (``GET /api/ai/queue?model=``), ``list_page`` a page of up to 1,000 history rows
(``GET /api/ai/generations``, with ``cost``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from httpx_sse import EventSource, ServerSentEvent

from reelbatch.jobs.errors import PermanentProviderError, SubmitOutcomeUnknown, TransientProviderError
from reelbatch.jobs.item import ProviderRequest
from reelbatch.jobs.policy import RECONNECT
from reelbatch.worker.providers.base import Generation, RemoteStatus, normalised_status
from reelbatch.worker.providers.http import HostCredential, HttpSeam, check_answer

log = logging.getLogger(__name__)

STATUS = {"queued": RemoteStatus.QUEUED, "processing": RemoteStatus.RUNNING,
          "succeeded": RemoteStatus.SUCCEEDED, "failed": RemoteStatus.FAILED,
          "cancelled": RemoteStatus.CANCELLED}
COMPLETED_EVENT = "media_generation_completed"
SSE_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
HISTORY_PAGE_SIZE = 100
HISTORY_MAX_PAGES = 20
LIST_PAGE_SIZE = 1000   # the history's largest page (page_size 1-1000)


def _float(value: Any) -> float | None:
    """Oxen sends ``cost`` as a decimal string and times as numbers; either may be null."""
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _row_status(provider: str, row: Mapping[str, Any]) -> RemoteStatus:
    """The row's status. History rows carry none (the documented row, OpenAPI 0.231.0): only what
    a present field says is read from it (a result_url: succeeded; an error_message: failed; no
    completed_at: queued or running). A finished row with neither is ENDED: it may be cancelled,
    or failed with an empty message, and only ``GET /api/ai/queue/{id}`` (which carries status)
    can tell. A terminal state is never inferred from missing fields."""
    raw = row.get("status")
    if raw is None:
        if row.get("result_url"):
            return RemoteStatus.SUCCEEDED
        if row.get("error_message"):
            return RemoteStatus.FAILED
        if row.get("completed_at"):
            return RemoteStatus.ENDED
        return RemoteStatus.RUNNING if row.get("started_at") else RemoteStatus.QUEUED
    return normalised_status(provider, raw, STATUS)


def generation_from_row(provider: str, row: Mapping[str, Any]) -> Generation:
    """A REST row (``result_url``/``error_message``) as a Generation."""
    status = _row_status(provider, row)
    url, error = row.get("result_url"), row.get("error_message")
    if status is RemoteStatus.SUCCEEDED and not url:
        raise TransientProviderError(provider, None, None, "succeeded row has no result_url yet")
    if status is RemoteStatus.FAILED and not error:
        error = "generation failed (no reason given)"
    return Generation(generation_id=str(row.get("generation_id")), status=status,
                      video_url=url if status is RemoteStatus.SUCCEEDED else None,
                      error=error if status is RemoteStatus.FAILED else None,
                      cost_usd=_float(row.get("cost")), enqueued_at=_float(row.get("enqueued_at")),
                      started_at=_float(row.get("started_at")),
                      completed_at=_float(row.get("completed_at")))


def _generations(provider: str, rows: list[dict[str, Any]]) -> list[Generation]:
    """The rows that can be read as generations (a succeeded row without its URL yet is skipped)."""
    found = []
    for row in rows:
        try:
            found.append(generation_from_row(provider, row))
        except TransientProviderError:
            continue
    return found


def generation_from_event(sse: ServerSentEvent) -> Generation | None:
    """A ``media_generation_completed`` event (``url``/``error``) as a Generation; None to skip."""
    if sse.event != COMPLETED_EVENT:
        return None
    try:
        data = json.loads(sse.data)
    except ValueError:
        log.warning("skipping an SSE event whose data is not JSON")
        return None
    if not isinstance(data, dict) or not data.get("generation_id"):
        return None
    if data.get("status") == "succeeded" and data.get("url"):
        return Generation(str(data["generation_id"]), RemoteStatus.SUCCEEDED, video_url=data["url"])
    if data.get("status") == "failed":
        return Generation(str(data["generation_id"]), RemoteStatus.FAILED,
                          error=data.get("error") or "generation failed (no reason given)")
    return None


def matches(row: Mapping[str, Any], request: ProviderRequest, since: float | None = None) -> bool:
    """Whether a row may be this request's generation, on what is certain: the same model, the
    same prompt (Oxen always echoes it), enqueued at or after ``since``. How Oxen echoes the other
    fields is undocumented, so they only rank candidates (``agreement``). The rows were listed with
    a model filter, so a row that leaves out model_name is not held against."""
    if row.get("model_name") not in (None, request.model) or row.get("prompt") != request.body.get("prompt"):
        return False
    return since is None or (_float(row.get("enqueued_at")) or 0) >= since


def _comparable(value: Any) -> bool:
    """Plain values only: data URIs, lists and objects (elements) may be echoed in any form."""
    if isinstance(value, str):
        return not value.startswith("data:")
    return isinstance(value, (int, float, bool))


def agreement(row: Mapping[str, Any], request: ProviderRequest) -> int:
    """How many comparable echoed fields agree with the request, less those that disagree."""
    score = 0
    for key, sent in request.body.items():
        if key != "prompt" and key in row and _comparable(sent):
            score += 1 if _same(row[key], sent) else -1
    return score


def _same(echoed: Any, sent: Any) -> bool:
    """Equal, or equal once printed (a duration sent as 5 may be echoed as "5")."""
    return echoed == sent or str(echoed) == str(sent)


class OxenProvider:
    """Oxen's queue API. ``name`` is "oxen", or "simulator" when pointed at the local simulator."""

    charges_in_history = True   # queue rows and events carry no cost; history rows do

    def __init__(self, http: HttpSeam, name: str = "oxen",
                 backoff: Callable[[int], float] = RECONNECT.delay,
                 download_credential: HostCredential | None = None):
        self.name, self._http, self._backoff = name, http, backoff
        self.download_credential = download_credential
        self._closed = threading.Event()
        self.stream_open = False

    def stream_is_open(self) -> bool:
        return self.stream_open

    def __repr__(self) -> str:
        return f"OxenProvider(name={self.name!r}, base_url={str(self._http.client.base_url)!r})"

    def submit(self, request: ProviderRequest) -> str:
        body = {"model": request.model, **request.body, "num_generations": 1}
        answer, response = self._http.answer("POST", "/api/ai/queue", submit=True, json=body)
        if isinstance(answer, dict) and answer.get("error") and not answer.get("generations"):
            raise self._http.refused(response, answer)   # a 200 that refuses: nothing was queued
        try:
            first = answer["generations"][0]
            generation_id = str(first["generation_id"])
        except (KeyError, IndexError, TypeError):
            raise SubmitOutcomeUnknown(self.name, None, None,
                                       "enqueue answer carries no generation id") from None
        if first.get("status") not in ("queued", "processing"):
            log.warning("enqueue answered status %r for %s", first.get("status"), generation_id)
        return generation_id

    def get(self, generation_id: str) -> Generation:
        """The queue row; on 404 (legacy TTL, or an old id) the generation history's row.
        The fallback runs on every 404, not only for ids this process saw: ids come from the
        state store and may have been submitted by another worker."""
        quoted = quote(generation_id, safe="")
        try:
            row = self._http.json("GET", f"/api/ai/queue/{quoted}")
        except PermanentProviderError as exc:
            if exc.status_code != 404:
                raise
            answer = self._http.json("GET", f"/api/ai/generations/{quoted}")
            row = answer.get("generation") if isinstance(answer, dict) else None
        if not isinstance(row, dict):
            raise TransientProviderError(self.name, None, None, "generation answer is not a row")
        generation = generation_from_row(self.name, {"generation_id": generation_id, **row})
        return self._confirmed(generation, row.get("model_name")) if generation.unconfirmed else generation

    def _confirmed(self, generation: Generation, model: Any) -> Generation:
        """A history row that ended without saying how (no status, no result_url, no
        error_message): look for it in the history listed with an explicit ``status=`` filter
        (failed, then cancelled). Not found there, it stays ENDED (not terminal) and is polled on."""
        filters = {"model": model} if isinstance(model, str) else {}
        for raw in ("failed", "cancelled"):
            rows = self._history_rows(generation.enqueued_at, status=raw, **filters)
            if any(str(r.get("generation_id")) == generation.generation_id for r in rows):
                failed = STATUS[raw] is RemoteStatus.FAILED
                return replace(generation, status=STATUS[raw],
                               error="generation failed (no reason given)" if failed else None)
        return generation

    def charged_cost(self, generation_id: str) -> float | None:
        """The cost Oxen charged for a generation (history row ``cost``, a decimal string), in USD;
        None while it has none. Queue rows and events carry no cost."""
        answer = self._http.json("GET", f"/api/ai/generations/{quote(generation_id, safe='')}")
        row = answer.get("generation") if isinstance(answer, dict) else None
        return _float(row.get("cost")) if isinstance(row, dict) else None

    def check_key(self, model_id: str) -> None:
        """``GET /api/ai/models/{id}``: one small authenticated answer (401 for a refused key)."""
        check_answer(lambda: self._http.json("GET", f"/api/ai/models/{quote(model_id, safe='')}"))

    def model_pricing(self, model_id: str) -> dict[str, Any] | None:
        """The model's ``pricing`` object (``cost_per_second``, ``cost_per_second_with_audio``,
        ``cost_per_second_high_res``, ...) from ``GET /api/ai/models/{id}``; None when absent."""
        answer = self._http.json("GET", f"/api/ai/models/{quote(model_id, safe='')}")
        pricing = answer.get("pricing") if isinstance(answer, dict) else None
        return pricing if isinstance(pricing, dict) else None

    def cancel(self, generation_id: str) -> None:
        """Cancel a queued or processing row; on a terminal row Oxen does nothing."""
        self._http.json("DELETE", f"/api/ai/queue/{quote(generation_id, safe='')}")

    def list_active(self, model: str | None = None) -> list[Generation]:
        """Every queued or processing generation of the account (of one model)."""
        return _generations(self.name, self._active_rows(**({"model": model} if model else {})))

    def list_page(self, model: str | None = None, page: int = 1,
                  page_size: int = LIST_PAGE_SIZE) -> list[Generation]:
        """One page of the generation history (``GET /api/ai/generations``, newest first), with
        each finished row's charged ``cost``. Rows that cannot be read yet (a succeeded row with
        no result_url) are left out."""
        params: dict[str, Any] = {"page": page, "page_size": page_size, **({"model": model} if model else {})}
        answer = self._http.json("GET", "/api/ai/generations", params=params)
        rows = answer.get("generations") if isinstance(answer, dict) else None
        return _generations(self.name, [r for r in rows or [] if isinstance(r, dict)])

    def find(self, request: ProviderRequest, since: float | None = None) -> list[Generation]:
        """Reconcile a SubmitOutcomeUnknown: generations (active, then history) of the same model
        and prompt, enqueued at or after ``since`` (unix seconds; pass the submit time less a little
        clock slack). Best first: most echoed fields in agreement, then newest.

        The engine adopts the first one no other item has claimed; with none, it may resubmit.
        Echoed extras never exclude a row (data URIs and elements are not compared at all)."""
        rows = self._active_rows(model=request.model) + self._history_rows(since, model=request.model)
        found: dict[str, tuple[int, Generation]] = {}
        for row in rows:
            if matches(row, request, since) and str(row.get("generation_id")) not in found:
                found[str(row["generation_id"])] = (agreement(row, request),
                                                    generation_from_row(self.name, row))
        ranked = sorted(found.values(), key=lambda f: (f[0], f[1].enqueued_at or 0), reverse=True)
        return [generation for _, generation in ranked]

    def _active_rows(self, **filters: str) -> list[dict[str, Any]]:
        answer = self._http.json("GET", "/api/ai/queue", params=filters)
        return [r for r in answer.get("generations") or [] if isinstance(r, dict)]

    def _history_rows(self, since: float | None = None, **filters: Any) -> list[dict[str, Any]]:
        """History rows (newest first), paged back until a page holds nothing enqueued at or after
        ``since``: on a busy account a lost submit's generation may already be pages deep."""
        rows: list[dict[str, Any]] = []
        for page in range(1, HISTORY_MAX_PAGES + 1):
            params = {**filters, "page": page, "page_size": HISTORY_PAGE_SIZE}
            answer = self._http.json("GET", "/api/ai/generations", params=params)
            chunk = [r for r in answer.get("generations") or [] if isinstance(r, dict)]
            rows += chunk
            if since is None or len(chunk) < HISTORY_PAGE_SIZE or \
                    all((_float(r.get("enqueued_at")) or 0) < since for r in chunk):
                return rows
        return rows

    def events(self) -> Iterator[Generation]:
        """Terminal generations from the SSE stream, reconnecting with backoff until close().
        Transient failures reconnect; permanent ones (401, 404) propagate."""
        attempt = 0
        while not self._closed.is_set():
            try:
                for generation in self._stream_once():
                    attempt = 0
                    yield generation
                attempt = 0
            except TransientProviderError as exc:
                log.info("event stream lost (%s); reconnecting", exc)
            if self._closed.wait(self._backoff(attempt)):
                return
            attempt += 1

    def _stream_once(self) -> Iterator[Generation]:
        with self._http.stream("GET", "/api/events", headers=SSE_HEADERS) as response:
            self.stream_open = True   # read by the listener's health beacon
            try:
                for sse in EventSource(response).iter_sse():
                    generation = generation_from_event(sse)
                    if generation is not None:
                        yield generation
                    if self._closed.is_set():
                        return
            finally:
                self.stream_open = False

    def close(self) -> None:
        self._closed.set()
        self._http.close()

"""fal.ai queue client for the Kling O1 endpoints (PROTOCOLS.md section 4 and its 2026-12-02 errata;
fal-ai/fal-js@381105e1 libs/client/src/queue.ts).

Submit ``POST {FAL_QUEUE_URL}/{endpoint}`` with ``Authorization: Key <key>``; the answer carries
``request_id``, ``status_url``, ``response_url`` and ``cancel_url``. Those URLs name the app
(``fal-ai/kling-video``) without the endpoint's sub-path (``o1/image-to-video``): a client that
rebuilds them from the endpoint gets 405.

**The generation id.** The engine keeps one id string per generation, so the id is the submit
answer's ``response_url`` relative to FAL_QUEUE_URL: ``fal-ai/kling-video/requests/<request_id>``
(the absolute URL when fal ever answers one on another host). The request's other URLs are that
URL plus ``/status``, ``/status/stream`` and ``/cancel``: the shape fal-js itself builds them in
(``{owner}/{alias}/requests/{id}/...``, queue.ts ``status``, ``streamStatus``, ``cancel``); submit
checks the answered ``status_url`` and ``cancel_url`` against it and logs when they differ.

Status ``IN_QUEUE`` -> ``IN_PROGRESS`` -> ``COMPLETED``. A failed request is COMPLETED too: its
result fetch answers the error (422 ``detail[]``, or ``{detail, error_type}`` with X-Fal-Error-Type
on 5xx; 5xx is never billed). The result is kept about an hour after completion: a 404 then is a
result that expired before it was fetched (the item fails as missing; it is never paid again).

Completion is pushed per request on ``GET .../requests/{id}/status/stream`` (SSE, one JSON status
per ``data:``): ``events()`` follows one stream for each generation in flight (``follow`` gives it
the ids); polling ``get`` stays the backstop. Reconciling a lost submit, the prices and storage
uploads are in ``fal_platform.py`` and ``fal_storage.py``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import httpx
from httpx_sse import EventSource

from reelbatch.jobs.errors import PermanentProviderError, SubmitOutcomeUnknown, TransientProviderError
from reelbatch.jobs.item import ProviderRequest
from reelbatch.jobs.policy import RECONNECT
from reelbatch.jobs.settings import Settings
from reelbatch.worker.providers import fal_platform
from reelbatch.worker.providers.base import Generation, RemoteStatus, normalised_status
from reelbatch.worker.providers.fal_storage import UPLOADS_FILE, Uploads
from reelbatch.worker.providers.http import (
    HostCredential,
    HttpSeam,
    build_client,
    build_download_client,
    check_answer,
    error_message,
)

log = logging.getLogger(__name__)

STATUS = {"IN_QUEUE": RemoteStatus.QUEUED, "IN_PROGRESS": RemoteStatus.RUNNING,
          "COMPLETED": RemoteStatus.SUCCEEDED}   # COMPLETED: the result fetch says which
SSE_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
CANCELLED_TYPES = ("request_cancelled", "cancelled")   # assumed: fal documents no cancelled result
FOLLOW_EVERY_S = 0.5      # how often the ids in flight are read again
MAX_STREAMS = 256         # status streams open at once; the rest are left to polling
STREAM_TRIES = 5          # a stream that keeps failing is left to polling


def request_path(response_url: str, queue_url: str) -> str:
    """The generation id: ``response_url`` relative to the queue URL (absolute when elsewhere)."""
    base = queue_url.rstrip("/") + "/"
    return response_url[len(base):] if response_url.startswith(base) else response_url


def failure_text(body: Any, response: httpx.Response) -> tuple[str, str | None]:
    """A failed result's message and error type (``error_type`` or X-Fal-Error-Type)."""
    kind = response.headers.get("x-fal-error-type")
    if isinstance(body, Mapping) and isinstance(body.get("error_type"), str):
        kind = body["error_type"]
    text = error_message(body) or response.reason_phrase or "request failed"
    return (f"{text} ({kind})" if kind else text), kind


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]


class FalProvider:
    """fal.ai's queue. One instance per worker process; thread-safe."""

    name = "fal"
    charges_in_history = False   # no charged cost anywhere: spend stays the catalogue's estimate
    download_credential: HostCredential | None = None   # results on fal's CDN: never the key

    def __init__(self, queue_http: HttpSeam, api_http: HttpSeam, uploads: Uploads | None = None,
                 backoff: Callable[[int], float] = RECONNECT.delay):
        self._http, self._api, self._uploads, self._backoff = queue_http, api_http, uploads, backoff
        self._closed = threading.Event()
        self._source: Callable[[], Iterable[str]] | None = None
        self._followed: set[str] = set()   # a stream is open (or opening) for these
        self._told: set[str] = set()       # their outcome was handed on: never followed again
        self._lock = threading.Lock()
        self._heard: queue.Queue[Generation] = queue.Queue()
        self.stream_open = False

    def stream_is_open(self) -> bool:
        return self.stream_open

    def __repr__(self) -> str:
        return f"FalProvider(queue_url={self._queue_url!r})"

    @property
    def _queue_url(self) -> str:
        return str(self._http.client.base_url)

    # --- the queue ---

    def submit(self, request: ProviderRequest) -> str:
        body = self._uploads.body(request.body) if self._uploads else request.body   # local files
        answer = self._http.json("POST", request.model, submit=True, json=body)
        response_url = answer.get("response_url") if isinstance(answer, dict) else None
        if not isinstance(response_url, str) or not answer.get("request_id"):
            raise SubmitOutcomeUnknown(self.name, None, None, "submit answer carries no request id")
        for key, suffix in (("status_url", "/status"), ("cancel_url", "/cancel")):
            if answer.get(key) not in (None, response_url + suffix):
                log.warning("fal answered a %s that is not response_url%s; following response_url",
                            key, suffix)
        return request_path(response_url, self._queue_url)

    def get(self, generation_id: str) -> Generation:
        answer = self._http.json("GET", f"{generation_id}/status")
        raw = answer.get("status") if isinstance(answer, dict) else None
        status = normalised_status(self.name, raw, STATUS)
        if status is RemoteStatus.SUCCEEDED:
            return self.result(generation_id)
        return Generation(generation_id, status)

    def result(self, generation_id: str) -> Generation:
        """A COMPLETED request's outcome, from its result fetch (``response_url``)."""
        with self._http.mapped():
            response = self._http.client.get(generation_id)
        body = _json(response)
        if response.status_code == 200:
            url = (body.get("video") or {}).get("url") if isinstance(body, dict) else None
            if not url:
                raise TransientProviderError(self.name, 200, None, "result has no video.url yet")
            return Generation(generation_id, RemoteStatus.SUCCEEDED, video_url=url)
        if response.status_code == 404:
            raise PermanentProviderError(self.name, 404, None, "missing: the result expired before it "
                                         "was fetched (fal keeps it about an hour); not resubmitted")
        if response.status_code in (401, 403, 429) or (response.status_code >= 500 and not
                                                     _typed(body, response)):
            self._http.check(response)   # the seam's mapping: refused key, rate limit, transient
        text, kind = failure_text(body, response)
        status = RemoteStatus.CANCELLED if kind in CANCELLED_TYPES else RemoteStatus.FAILED
        return Generation(generation_id, status, error=self._http.scrubbed(text))

    def charged_cost(self, generation_id: str) -> float | None:
        return None   # fal's queue and history carry no charged amount

    def check_key(self, model_id: str) -> None:
        """The platform API's price of the endpoint: one small authenticated answer (401 for a
        refused key), and no request on the queue a status count would mistake for a poll."""
        check_answer(lambda: fal_platform.pricing(self._api, model_id))

    def cancel(self, generation_id: str) -> None:
        """``PUT cancel_url``: OK (queued, removed), CANCELLATION_REQUESTED (running: it may still
        finish and bill; logged), ALREADY_COMPLETED, NOT_FOUND. A poll reports the outcome."""
        with self._http.mapped():
            response = self._http.client.put(f"{generation_id}/cancel")
        body = _json(response)
        said = body.get("status") if isinstance(body, dict) else None
        if said == "CANCELLATION_REQUESTED":
            log.warning("fal %s was running: cancellation requested; it may still finish and bill",
                        generation_id)
        elif said not in ("OK", "ALREADY_COMPLETED", "NOT_FOUND"):
            self._http.check(response)

    # --- prices, lost submits (the platform API) ---

    def model_pricing(self, model_id: str) -> dict[str, Any] | None:
        return fal_platform.pricing(self._api, model_id)

    def find(self, request: ProviderRequest, since: float | None = None) -> list[Generation]:
        """Reconcile a lost submit: the request history's requests of this endpoint whose payload
        is this body, created at or after ``since``. The history holds finished requests only, so
        an empty answer soon after the submit is "not yet" (TransientProviderError: the engine asks
        again later) rather than "nothing was created"."""
        urls = fal_platform.matching_requests(self._api, request, since)
        return [Generation(request_path(url, self._queue_url), RemoteStatus.UNKNOWN) for url in urls]

    # --- completions pushed per request ---

    def follow(self, source: Callable[[], Iterable[str]]) -> None:
        """Where ``events`` reads the generation ids in flight (the listener's store)."""
        self._source = source

    def events(self) -> Iterator[Generation]:
        """Terminal generations, one status stream per id in flight, until close()."""
        self.stream_open = self._source is not None
        looked = 0.0
        while not self._closed.is_set() and self._source is not None:
            if time.monotonic() - looked >= FOLLOW_EVERY_S:   # not once per event: a burst waits
                looked = time.monotonic()
                self._start_followers()
            try:
                yield self._heard.get(timeout=FOLLOW_EVERY_S)
            except queue.Empty:
                continue
        self.stream_open = False

    def _start_followers(self) -> None:
        ids = list(self._source() if self._source else ())
        with self._lock:
            self._told &= set(ids)   # forget what is no longer in flight
            new = [g for g in ids if g not in self._followed and g not in self._told]
            new = new[:MAX_STREAMS - len(self._followed)]
            self._followed.update(new)
        for generation_id in new:
            threading.Thread(target=self._follow_one, args=(generation_id,), daemon=True,
                             name="rb-fal-stream").start()

    def _follow_one(self, generation_id: str) -> None:
        try:
            for attempt in range(STREAM_TRIES):
                if self._stream_until_done(generation_id) or self._closed.wait(self._backoff(attempt)):
                    return
        finally:
            with self._lock:
                self._followed.discard(generation_id)

    def _stream_until_done(self, generation_id: str) -> bool:
        """Read one request's status stream; True once its outcome was handed on (or is not ours
        to wait for), False to reconnect."""
        try:
            with self._http.stream("GET", f"{generation_id}/status/stream", headers=SSE_HEADERS) as response:
                for sse in EventSource(response).iter_sse():
                    if self._closed.is_set():
                        return True
                    if _status_of(sse.data) == "COMPLETED":
                        self._heard.put(self.result(generation_id))
                        with self._lock:
                            self._told.add(generation_id)
                        return True
        except PermanentProviderError as exc:
            log.info("status stream of %s refused (%s); polling carries on", generation_id, exc)
            return True
        except TransientProviderError as exc:
            log.info("status stream of %s lost (%s); reconnecting", generation_id, exc)
        return False

    def close(self) -> None:
        self._closed.set()
        self._http.close()
        self._api.close()
        if self._uploads:
            self._uploads.close()


def _typed(body: Any, response: httpx.Response) -> bool:
    """A 5xx that is the request's own failure (fal names its type), not the gateway's."""
    return bool(response.headers.get("x-fal-error-type")) or (
        isinstance(body, Mapping) and bool(body.get("error_type")))


def _status_of(data: str) -> str | None:
    try:
        status = json.loads(data)
    except ValueError:
        return None
    return status.get("status") if isinstance(status, dict) else None


def build_fal(settings: Settings, key: str, transport: httpx.BaseTransport | None = None,
              tally: Callable[[str], None] | None = None) -> FalProvider:
    """fal: the queue, the platform API and storage, with ``Authorization: Key <key>``; uploads go
    to their presigned URL without it."""
    def seam(url: str) -> HttpSeam:
        return HttpSeam("fal", build_client(settings, url, key, transport, scheme="Key"), secrets=(key,),
                        tally=tally)
    uploads = Uploads(seam(settings.fal_rest_url), build_download_client(settings, transport),
                      cache_file=settings.data_dir / UPLOADS_FILE)
    return FalProvider(seam(settings.fal_queue_url), seam(settings.fal_api_url), uploads)

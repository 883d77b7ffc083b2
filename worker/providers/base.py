"""One protocol for every provider: submit, get, cancel, and (where there is one) completion events."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from reelbatch.jobs.item import ProviderRequest
from reelbatch.worker.providers.http import HostCredential

log = logging.getLogger(__name__)


class RemoteStatus(str, Enum):
    """A provider's generation status, normalised. ``UNKNOWN`` is a status string the provider does
    not document: not terminal, so the engine keeps polling; a paid generation is never failed on it."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"
    ENDED = "ended"   # it ended, but the answer does not say how (an Oxen history row has no status):
                      # not terminal until ``get`` confirms how; never a guess


REMOTE_TERMINAL = frozenset({RemoteStatus.SUCCEEDED, RemoteStatus.FAILED, RemoteStatus.CANCELLED})


_reported: set[tuple[str, str]] = set()
_reported_lock = threading.Lock()


def normalised_status(provider: str, raw: object, table: dict[str, RemoteStatus]) -> RemoteStatus:
    """``table[raw]``, or UNKNOWN for a string the provider does not document (logged once per
    process and provider)."""
    if isinstance(raw, str) and raw in table:
        return table[raw]
    with _reported_lock:
        first = (provider, str(raw)) not in _reported
        _reported.add((provider, str(raw)))
    if first:
        log.warning("%s answered the undocumented status %r; polling on until it ends in a documented "
                    "one", provider, raw)
    return RemoteStatus.UNKNOWN


@dataclass(frozen=True)
class Generation:
    """What a provider says about one generation."""

    generation_id: str
    status: RemoteStatus
    video_url: str | None = None
    error: str | None = None
    cost_usd: float | None = None
    enqueued_at: float | None = None   # unix seconds, where the provider gives them
    started_at: float | None = None
    completed_at: float | None = None

    @property
    def terminal(self) -> bool:
        return self.status in REMOTE_TERMINAL

    @property
    def unconfirmed(self) -> bool:
        """It ended but the answer does not say how (ENDED): ask ``get`` before acting on it."""
        return self.status is RemoteStatus.ENDED


class Provider(Protocol):
    """What every provider client does. One instance per worker process; thread-safe. Optional
    abilities are the small protocols below, which the engine tests with ``isinstance``."""

    name: str
    charges_in_history: bool   # the charged cost comes later, from a history (``list_page`` rows)
    download_credential: HostCredential | None   # the key, for result URLs on the API's own host

    def submit(self, request: ProviderRequest) -> str:
        """Create one generation and return its id. Raises the error tree's ProviderError family;
        SubmitOutcomeUnknown when the request went out and no answer came back."""

    def get(self, generation_id: str) -> Generation:
        """The generation's current state."""

    def charged_cost(self, generation_id: str) -> float | None:
        """What the provider charged for a finished generation, in USD; None when it does not say."""

    def check_key(self, model_id: str) -> None:
        """One cheap authenticated request: raises PermanentProviderError (401/403) for a refused
        key, ProviderUnreachable when the provider cannot be reached; any other answer passes."""

    def close(self) -> None:
        """Release connections."""


@runtime_checkable
class Cancels(Protocol):
    """A provider that can stop a queued or running generation."""

    def cancel(self, generation_id: str) -> None:
        """Cancel it; a PermanentProviderError when it has already finished."""


@runtime_checkable
class StreamsEvents(Protocol):
    """A provider that pushes completions on one stream (Oxen's events)."""

    def events(self) -> Iterator[Generation]:
        """Terminal generations as the provider pushes them (reconnecting with backoff)."""

    def stream_is_open(self) -> bool:
        """Whether the stream is connected now (the listener's health beacon)."""


@runtime_checkable
class ListsGenerations(Protocol):
    """A provider that answers for many generations in one request (Oxen's queue and history)."""

    def list_page(self, model: str | None = None, page: int = 1, page_size: int = 100) -> list[Generation]:
        """One page of the history, newest first (``model`` None: every model)."""

    def list_active(self, model: str | None = None) -> list[Generation]:
        """The generations still queued or running."""


@runtime_checkable
class ListsMadeGenerations(Protocol):
    """A provider that lists the generations the account made since a time (Oxen's queue and
    history, the AI/ML API's request log): the end of a run looks there for ones no item claims."""

    def made_since(self, model: str, since: float) -> list[Generation]:
        """The model's generations made at or after ``since`` (unix seconds), with their cost
        where the provider says; failed requests that made nothing are left out."""


@runtime_checkable
class PublishesPrices(Protocol):
    """A provider whose API says what a model costs."""

    def model_pricing(self, model_id: str) -> dict[str, Any] | None:
        """The model's ``pricing`` object as the provider publishes it; None when it has none."""


@runtime_checkable
class FindsLostSubmits(Protocol):
    """A provider that can find the generation a submit whose answer was lost may have created:
    Oxen by its queue and history (same model and prompt), the AI/ML API by its request log (the
    request's client id). Best candidates first; an empty list may only mean "not visible yet"."""

    def find(self, request: ProviderRequest, since: float | None = None) -> list[Generation]:
        """Candidates created at or after ``since`` (unix seconds)."""


@runtime_checkable
class FollowsRequests(Protocol):
    """A provider whose completions are pushed per request (fal's status stream), not on one
    account-wide stream: its ``events()`` needs the ids in flight, read from ``source`` as it goes."""

    def follow(self, source: Callable[[], Iterable[str]]) -> None: ...

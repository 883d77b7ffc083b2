"""One protocol for every provider: submit, get, cancel, and (where there is one) completion events."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from reelbatch.jobs.item import ProviderRequest


class RemoteStatus(str, Enum):
    """A provider's generation status, normalised."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


REMOTE_TERMINAL = frozenset({RemoteStatus.SUCCEEDED, RemoteStatus.FAILED, RemoteStatus.CANCELLED})


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


class Provider(Protocol):
    """A provider client. One instance per worker process; thread-safe."""

    name: str
    can_cancel: bool
    has_events: bool

    def submit(self, request: ProviderRequest) -> str:
        """Create one generation and return its id. Raises the error tree's ProviderError family;
        SubmitOutcomeUnknown when the request went out and no answer came back."""

    def get(self, generation_id: str) -> Generation:
        """The generation's current state."""

    def cancel(self, generation_id: str) -> None:
        """Cancel a queued or running generation; CancelNotSupported where the provider cannot."""

    def events(self) -> Iterator[Generation]:
        """Terminal generations as the provider pushes them (reconnecting with backoff);
        only where ``has_events``."""

    def close(self) -> None:
        """Release connections."""

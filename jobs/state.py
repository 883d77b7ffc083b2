"""The item state machine: states, which are terminal, which transitions are allowed, and which step
drives an item in each open state."""

from __future__ import annotations

from enum import Enum


class ItemState(str, Enum):
    PENDING = "pending"
    SUBMITTING = "submitting"
    QUEUED = "queued"
    RUNNING = "running"
    DOWNLOADING = "downloading"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({ItemState.SUCCEEDED, ItemState.FAILED, ItemState.CANCELLED})


class Step(str, Enum):
    """What is done to an item next; each step is one Celery task (worker/tasks.py)."""

    SUBMIT = "submit"         # create the generation at the provider
    RECONCILE = "reconcile"   # a submit whose answer was lost: find what it created
    POLL = "poll"             # ask the provider how the generation is doing
    DOWNLOAD = "download"     # bring the finished video home
    CANCEL = "cancel"         # stop the item of a cancelled batch

S = ItemState
# State groups, in the order of an item's life (the progress line lists them so).
IN_PROGRESS: tuple[ItemState, ...] = (S.QUEUED, S.RUNNING)   # the generation exists at the provider
IN_FLIGHT: tuple[ItemState, ...] = (S.SUBMITTING, S.QUEUED, S.RUNNING, S.DOWNLOADING)   # started
OPEN: tuple[ItemState, ...] = tuple(s for s in ItemState if s not in TERMINAL)   # not finished

TRANSITIONS: dict[ItemState, frozenset[ItemState]] = {
    S.PENDING: frozenset({S.SUBMITTING, S.CANCELLED}),
    # back to pending: the submit was refused before anything was created (rate limit, transient)
    S.SUBMITTING: frozenset({S.QUEUED, S.RUNNING, S.PENDING, S.FAILED, S.CANCELLED}),
    S.QUEUED: frozenset({S.RUNNING, S.DOWNLOADING, S.PENDING, S.FAILED, S.CANCELLED}),
    # back to pending: the remote generation failed and will be resubmitted
    S.RUNNING: frozenset({S.DOWNLOADING, S.PENDING, S.FAILED, S.CANCELLED}),
    S.DOWNLOADING: frozenset({S.SUCCEEDED, S.FAILED, S.RUNNING}),
    # back to downloading: a rerun found the video deleted or changed; it is fetched again
    S.SUCCEEDED: frozenset({S.DOWNLOADING}),
    # `reelbatch retry` (and raising a budget): back to pending to submit again, or, where the
    # generation exists, back to polling it or downloading its result (never paid for twice)
    S.FAILED: frozenset({S.PENDING, S.QUEUED, S.DOWNLOADING}),
    S.CANCELLED: frozenset({S.PENDING}),
}


def can_transition(current: ItemState, target: ItemState) -> bool:
    return target in TRANSITIONS[current]


def sources_of(target: ItemState) -> frozenset[ItemState]:
    """Every state from which ``target`` may be reached."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


# The step that carries an open item forward when its task was lost (resume, the sweeper).
RESUME: dict[ItemState, Step] = {
    S.SUBMITTING: Step.RECONCILE, S.QUEUED: Step.POLL, S.RUNNING: Step.POLL,
    S.DOWNLOADING: Step.DOWNLOAD,
}

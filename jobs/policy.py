"""Retry and polling policy: pure functions from an attempt number to a delay in seconds, and the one
table that says how each step retries."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from reelbatch.jobs.state import Step


def backoff(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: uniform in the upper half of min(max_s, base_s * 2**attempt)."""
    ceiling = min(max_s, base_s * 2 ** min(attempt, 32))
    return (rng or random).uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class Retry:
    """How a step retries transient errors: at most ``max_attempts`` in a row (0: without end),
    backing off from ``base_s`` up to ``max_s``, a provider's Retry-After first."""

    max_attempts: int = 12
    base_s: float = 1.0
    max_s: float = 120.0

    def delay(self, attempt: int, retry_after: float | None = None,
              rng: random.Random | None = None) -> float:
        """Seconds before retry number ``attempt + 1``. A Retry-After wins (plus a little jitter)."""
        if retry_after is not None:
            return min(self.max_s, max(0.0, retry_after)) + (rng or random).uniform(0, 0.25)
        return backoff(attempt, self.base_s, self.max_s, rng)

    def exhausted(self, attempts: int) -> bool:
        return 0 < self.max_attempts < attempts


# Transient errors each step tolerates in a row before the item gives up; a good answer resets
# the count. Past the limit an item fails with a kind that `reelbatch retry` resumes from where
# it was: a submit is never repeated for an error that came after the generation existed.
RETRIES: Mapping[Step, Retry] = MappingProxyType({
    Step.SUBMIT: Retry(12, 1.0, 120.0),      # refused submits: 429, 503, no connection
    Step.RECONCILE: Retry(12, 2.0, 120.0),   # asking about a submit whose answer was lost
    Step.POLL: Retry(30, 2.0, 300.0),        # status requests of a paid generation
    Step.DOWNLOAD: Retry(12, 2.0, 120.0),    # result downloads and fresh-URL requests
    Step.CANCEL: Retry(8, 1.0, 60.0),        # cancel requests
})
RECONNECT = Retry(0, 0.25, 60.0)   # the event stream reconnects without end, until closed
INTERNAL_ERRORS = 5                # unexpected exceptions an item survives (across redeliveries)


@dataclass(frozen=True)
class PollPolicy:
    """When to ask a provider again about a generation that has not finished.

    The first poll lands at the early part of the learned generation times (``early_s``). After it,
    polls come at a steady step that crosses the bulk of the distribution, from ``early_s`` to
    ``late_s``, in ``steps_across`` polls: a uniform spread of generation times then costs about
    three status requests per item, and the median detection delay is about step / 2. A poll comes
    before ``early_s`` only where ``max_interval_s`` forces it (the next then lands at ``early_s``). Past
    ``late_s`` (the slow tail) the step grows with how late the generation is. Every delay, the
    first included, stays within ``min_interval_s`` and ``max_interval_s``.

    Before anything is learned, ``late_s`` is unknown: the bulk is taken as ``expected_s`` plus or
    minus a quarter, or mirrored around ``expected_s`` when ``early_s`` is further out than that.
    """

    expected_s: float = 300.0      # a typical (median) generation time for this model
    early_s: float | None = None   # the early part of the distribution; defaults to 0.8 * expected
    min_interval_s: float = 5.0
    max_interval_s: float = 60.0
    late_s: float | None = None    # the late part of the distribution (a high quantile)
    steps_across: int = 3          # polls between early_s and late_s

    @property
    def _early(self) -> float:
        return self.early_s if self.early_s is not None else 0.8 * self.expected_s

    @property
    def _late(self) -> float:
        if self.late_s is not None:
            return max(self.late_s, self._early)
        return max(2 * self.expected_s - self._early, self.expected_s * 1.25)

    def first_delay(self) -> float:
        """The wait before the first poll: the early part of the distribution, and never more than
        ``max_interval_s`` (the manifest's bound holds for every wait, the first too)."""
        return self._clamp(self._early)

    def relaxed(self, factor: float) -> PollPolicy:
        """The same shape, ``factor`` times slower: a backstop behind something that tells of
        completions (an event stream, a poller listing many generations at once). Its waits may pass
        ``max_interval_s``, up to ``factor`` times the late part: detection does not wait on it."""
        return PollPolicy(expected_s=self.expected_s * factor, early_s=self._early * factor,
                          min_interval_s=self.min_interval_s * factor,
                          max_interval_s=max(self.max_interval_s, self._late) * factor,
                          late_s=self._late * factor, steps_across=self.steps_across)

    def next_delay(self, elapsed_s: float) -> float:
        """Delay before the next poll, ``elapsed_s`` after submission."""
        step = (self._late - min(self._early, self.expected_s)) / max(1, self.steps_across)
        overdue = elapsed_s - self._late
        if overdue > 0:
            return self._clamp(max(step, overdue / 2))
        return self._clamp(max(step, self._early - elapsed_s))   # none before the early part but
        # those max_interval_s forces

    def _clamp(self, delay: float) -> float:
        return min(self.max_interval_s, max(self.min_interval_s, delay))

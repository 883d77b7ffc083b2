"""Retry and polling policy: pure functions from an attempt number to a delay in seconds."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped, honouring a provider's Retry-After."""

    base_s: float = 1.0
    factor: float = 2.0
    max_s: float = 120.0
    max_retries: int = 12

    def backoff(self, retries: int, retry_after: float | None = None,
                rng: random.Random | None = None) -> float:
        """Delay before retry number ``retries + 1``. A Retry-After wins (plus a little jitter)."""
        rng = rng or random
        if retry_after is not None:
            return min(self.max_s, max(0.0, retry_after)) + rng.uniform(0, 0.25)
        ceiling = min(self.max_s, self.base_s * self.factor ** retries)
        return rng.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class PollPolicy:
    """When to ask a provider again about a generation that has not finished.

    The first poll lands near the early part of the expected generation time; after that, polls
    tighten: each waits half the remaining expected time, never less than ``min_interval_s`` and
    never more than ``max_interval_s``.
    """

    expected_s: float = 300.0      # a typical (median) generation time for this model
    early_s: float | None = None   # the early part of the distribution; defaults to 0.8 * expected
    min_interval_s: float = 5.0
    max_interval_s: float = 60.0

    def first_delay(self) -> float:
        early = self.early_s if self.early_s is not None else 0.8 * self.expected_s
        return max(self.min_interval_s, early)

    def relaxed(self, factor: float) -> PollPolicy:
        """The same shape, ``factor`` times slower: a backstop behind an event stream."""
        early = self.early_s if self.early_s is not None else 0.8 * self.expected_s
        return PollPolicy(expected_s=self.expected_s * factor, early_s=early * factor,
                          min_interval_s=self.min_interval_s * factor,
                          max_interval_s=self.max_interval_s * factor)

    def next_delay(self, elapsed_s: float) -> float:
        """Delay before the next poll, ``elapsed_s`` after submission."""
        remaining = self.expected_s - elapsed_s
        wanted = remaining / 2 if remaining > 0 else self.min_interval_s
        return min(self.max_interval_s, max(self.min_interval_s, wanted))

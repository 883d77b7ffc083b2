"""Reconnect delays: exponential backoff with full jitter, as a pure function."""

from __future__ import annotations

import random

BASE_S = 0.25
CAP_S = 60.0


def compute_backoff(attempt: int, base: float = BASE_S, cap: float = CAP_S,
                    rand: random.Random | None = None) -> float:
    """Seconds to wait before reconnect number ``attempt`` (0-based): uniform in [0, min(cap, base*2^n)]."""
    ceiling = min(cap, base * 2 ** min(attempt, 32))
    return (rand or random).uniform(0, ceiling)

"""What a step hands back: the step an item needs next, and when."""

from __future__ import annotations

from dataclasses import dataclass

from reelbatch.jobs.state import Step


@dataclass(frozen=True)
class Next:
    """Run ``step`` on the item after ``countdown`` seconds."""

    step: Step
    batch: str
    item_id: str
    countdown: float = 0.0

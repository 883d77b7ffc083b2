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


class Failed(list[Next]):
    """What a step returns when it failed its item: the steps that follow (the freed slot handed
    on), and why; the task then ends in Celery's FAILURE state with that reason."""

    def __init__(self, nexts: list[Next], reason: str):
        super().__init__(nexts)
        self.reason = reason

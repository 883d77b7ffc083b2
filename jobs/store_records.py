"""What the store holds, as values: a batch's settings, an item's record, a problem outside the
batch; and the refusal of a state change. Stored as Redis hashes of strings (``flat``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from reelbatch.jobs.item import Item
from reelbatch.jobs.state import ItemState

NOT_FIELDS = frozenset({"spec", "est"})   # stored beside the fields: the spec, its estimated cost


class BatchMeta(BaseModel):
    """What a worker needs to know about a batch, besides its items."""

    name: str
    provider: str
    model: str
    output: str
    max_concurrency: int = 5
    queue_depth: int | None = None     # limits.queue_depth (None: learned; worker/engine/depth.py)
    requests_per_minute: int = 60
    max_cost_usd: float | None = None
    max_attempts: int = 3
    lost_submit: str = "fail"          # fail | resubmit (retry.lost_submit)
    first_after_s: float | None = None
    min_interval_s: float = 5.0
    max_interval_s: float = 60.0
    give_up_after_s: float | None = None   # in flight this long, an item fails stuck (None: the model's)
    start_at: float | None = None      # unix time; None means now
    manifest: str | None = None        # the manifest file the batch came from
    manifest_sha256: str | None = None # its text's digest (a copy elsewhere is the same manifest)
    paused: str | None = None          # why the batch cannot go on (a provider down, a full disk)
    paused_at: float | None = None
    cancelled: bool = False
    abandon: bool = False
    created_at: float = 0.0


class ItemRecord(BaseModel):
    """An item as the store holds it."""

    item: Item
    state: ItemState
    generation_id: str | None = None
    attempts: int = 0
    error_kind: str | None = None
    error: str | None = None
    cost_usd: float | None = None
    cost_source: str | None = None     # charged (the provider reported it) | estimated
    video_url: str | None = None
    file: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    submitted_at: float | None = None
    remote_started_at: float | None = None
    remote_completed_at: float | None = None
    detected_at: float | None = None
    completed_at: float | None = None
    updated_at: float | None = None
    polled_at: float | None = None        # the last good answer of a poll (learning timings)
    in_flight_since: float | None = None  # when `retry` sent it back to polling (else submitted_at)
    transient_retries: int = 0            # transient errors in a row of the current step
    internal_errors: int = 0              # unexpected exceptions, across redeliveries
    cancel_requested: bool = False
    url_stale: bool = False               # ask the provider for the result URL before downloading
    reconcile_looks: int = 0              # looks for a lost submit's generation since that submit
    reconcile_resubmits: int = 0          # submits sent again because a reconcile found nothing

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> ItemRecord:
        fields = {k: v for k, v in data.items() if k not in NOT_FIELDS and v != ""}
        return cls(item=Item.model_validate_json(data["spec"]), **fields)

    @property
    def item_id(self) -> str:
        return str(self.item.item_id)

    def to_hash(self) -> dict[str, str]:
        fields = self.model_dump(mode="json", exclude={"item"}, exclude_none=True)
        return {"spec": self.item.model_dump_json(), **flat(fields)}


@dataclass(frozen=True)
class Problem:
    """Something outside the batch that stops it: since when (unix time) and why."""

    since: float
    why: str


class TransitionRefused(Exception):
    """The item was not in a state the caller expected (another worker got there first)."""

    def __init__(self, item_id: str, current: str, target: str):
        super().__init__(item_id, current, target)
        self.item_id, self.current, self.target = item_id, current, target


def meta_from(data: dict[str, str]) -> BatchMeta | None:
    if not data:
        return None
    known: dict[str, Any] = {k: v for k, v in data.items() if k in BatchMeta.model_fields and v != ""}
    for flag in ("cancelled", "abandon"):
        if flag in known:
            known[flag] = known[flag] == "True"
    return BatchMeta(**known)


def flat(fields: dict[str, Any]) -> dict[str, str]:
    return {k: ("" if v is None else str(v)) for k, v in fields.items()}

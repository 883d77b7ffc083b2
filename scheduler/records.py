"""The Python API's answers: plain, typed, documented records (frozen dataclasses), built from what
the state store and the planner hold. Nothing here talks to Redis."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reelbatch.jobs.item import Item
from reelbatch.jobs.store import BatchMeta, ItemRecord
from reelbatch.worker.control import Retried, Stopped

__all__ = ["PlannedItem", "Plan", "BatchStatus", "Result", "RetryReport", "CancelReport", "RunReport",
           "SubmitReport", "ExportReport"]


def _when(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts else None


def _params(item: Item) -> dict[str, Any]:
    return item.params.model_dump(mode="json", exclude_defaults=True)


@dataclass(frozen=True)
class PlannedItem:
    """One generation the manifest asks for, before anything is submitted.

    ``id`` is the stable item id (also the video's file name); ``params`` the provider-neutral
    parameters after expansion (prompt, start_image, duration, ...); ``source_id`` the manifest
    item it was expanded from and ``sample`` its repeat number."""

    id: str
    params: dict[str, Any]
    video_seconds: int
    estimated_cost_usd: float
    provider: str
    model: str
    source_id: str
    sample: int

    @classmethod
    def of(cls, item: Item) -> PlannedItem:
        return cls(item.item_id, _params(item), item.video_seconds, item.estimated_cost_usd,
                   item.provider, item.model, item.source_id, item.sample)


@dataclass(frozen=True)
class Plan:
    """A validated, expanded manifest (what ``reelbatch plan`` prints); nothing was submitted.

    Pass it to ``reelbatch.run`` or ``reelbatch.submit`` to run exactly this plan."""

    name: str
    provider: str
    model: str
    output: Path
    items: list[PlannedItem]
    video_seconds: int
    estimated_cost_usd: float
    budget_usd: float | None
    internal: Any = field(default=None, repr=False, compare=False)   # scheduler.plan.Plan


@dataclass(frozen=True)
class BatchStatus:
    """A batch at one moment (what ``reelbatch status`` shows).

    ``counts`` has every state (pending, submitting, queued, running, downloading, succeeded,
    failed, cancelled). Money: ``charged_usd`` as the provider reported it, ``estimated_usd`` from
    the catalogue's price where it reported none, ``projected_usd`` what the batch will have cost
    when the open items finish. ``paused`` says why the batch cannot go on (a provider out of
    reach, a full disk) or is None; a paused batch is not an error: running it again resumes.
    Times are UTC; ``started_at`` is the first submit, ``finished_at`` the last completion once
    every item is terminal. ``unserved`` names the batch's providers no live worker has a key for
    (their items wait untouched)."""

    name: str
    provider: str
    model: str
    total: int
    done: int
    counts: dict[str, int]
    charged_usd: float
    estimated_usd: float
    projected_usd: float
    paused: str | None
    cancelled: bool
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    failure_kinds: dict[str, int]
    waiting_for_budget: int
    workers: int
    output: Path
    manifest: str | None
    details: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    unserved: tuple[str, ...] = ()
    # a batch over several providers: per provider, in the list's order, its state ("active" or
    # "paused") and why, items in flight and done, charged_usd and estimated_usd; None for one provider
    providers: list[dict[str, Any]] | None = None

    def as_json(self) -> dict[str, Any]:
        """What ``reelbatch status --json`` prints: these fields and more (the spend as text, pace,
        time left, failures grouped by reason with example ids, orphaned generations), times as
        local ISO 8601 text."""
        return dict(self.details)

    @property
    def succeeded(self) -> int:
        return self.counts.get("succeeded", 0)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    @property
    def finished(self) -> bool:
        """Every item is terminal (succeeded, failed or cancelled)."""
        return self.done == self.total

    @classmethod
    def of(cls, info: dict[str, Any], meta: BatchMeta, pace: tuple[float | None, float | None]) -> BatchStatus:
        done = info["done"] == info["total"]
        return cls(info["batch"], meta.provider, meta.model, info["total"], info["done"], dict(info["counts"]),
                   info["charged_usd"], info["estimated_usd"], info["projected_usd"], info["paused"], meta.cancelled,
                   _when(meta.created_at), _when(pace[0]), _when(pace[1]) if done else None,
                   dict(info["failure_kinds"]), info["waiting_for_budget"], info["workers"],
                   Path(meta.output), meta.manifest, info,
                   tuple(info.get("unserved") or ()), info.get("providers"))


@dataclass(frozen=True)
class Result:
    """One item of a batch and what became of it (a line of ``results.jsonl``, typed).

    ``state`` is one of the item states; ``file`` the video's absolute path once succeeded;
    ``url`` where the provider served it; ``cost_usd`` with ``cost_source`` ``charged`` (the
    provider reported it) or ``estimated`` (the catalogue's price); ``error_kind`` and ``error``
    say why a failed item failed (``reelbatch.Batch.retry(kind=...)`` takes the kind)."""

    id: str
    state: str
    file: Path | None
    url: str | None
    generation_id: str | None
    cost_usd: float | None
    cost_source: str | None
    error_kind: str | None
    error: str | None
    params: dict[str, Any]
    provider: str
    model: str
    attempts: int
    sha256: str | None
    bytes: int | None
    submitted_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def of(cls, meta: BatchMeta, rec: ItemRecord) -> Result:
        file = Path(meta.output) / rec.file if rec.file else None
        return cls(rec.item_id, rec.state.value, file, rec.video_url, rec.generation_id, rec.cost_usd,
                   rec.cost_source, rec.error_kind, rec.error, _params(rec.item), rec.item.provider,
                   rec.item.model, rec.attempts, rec.sha256, rec.bytes, _when(rec.submitted_at),
                   _when(rec.completed_at))

    def row(self, param_columns: list[str]) -> dict[str, Any]:
        """A flat row for a table: the prompt and the given parameters as columns of their own,
        every parameter also as one JSON text column ``params``; paths and times as text."""
        return {"id": self.id, "state": self.state, "file": str(self.file) if self.file else None,
                "prompt": self.params.get("prompt"),
                **{key: _scalar(self.params.get(key)) for key in param_columns},
                "params": json.dumps(self.params, ensure_ascii=False, sort_keys=True),
                "provider": self.provider, "model": self.model, "url": self.url,
                "generation_id": self.generation_id, "cost_usd": self.cost_usd,
                "cost_source": self.cost_source, "error_kind": self.error_kind, "error": self.error,
                "attempts": self.attempts, "sha256": self.sha256, "bytes": self.bytes,
                "submitted_at": self.submitted_at.isoformat() if self.submitted_at else None,
                "completed_at": self.completed_at.isoformat() if self.completed_at else None}


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def param_columns(results: list[Result]) -> list[str]:
    """Parameters worth a column of their own: the scalar ones any item sets, prompt aside."""
    return sorted({key for r in results for key, value in r.params.items()
                   if key != "prompt" and (value is None or isinstance(value, (str, int, float, bool)))})


@dataclass(frozen=True)
class RetryReport:
    """What ``Batch.retry`` did: ``moved`` counts items by where they went on (``submit``,
    ``poll``, ``download``: an existing generation is never paid for twice); ``skipped`` counts,
    by kind, failures left alone for a permanent reason (content_policy, ...)."""

    total: int
    moved: dict[str, int]
    skipped: dict[str, int]

    @classmethod
    def of(cls, done: Retried) -> RetryReport:
        return cls(done.total, dict(done.moved), dict(done.skipped))


@dataclass(frozen=True)
class CancelReport:
    """What ``Batch.cancel`` did: items ``cancelled``; generations the workers are cancelling
    (``sent``); ones to cancel on the next run (``later``); ones the provider cannot cancel that
    finish and are downloaded (``finishing``; ``abandon=True`` stops waiting for them); the batch's
    ``provider``."""

    cancelled: int
    sent: int
    later: int
    finishing: int
    provider: str

    @classmethod
    def of(cls, out: Stopped, provider: str) -> CancelReport:
        d = out.done
        return cls(d["cancelled"], d["sent"], d["later"], d["finishing"], provider)


@dataclass(frozen=True)
class RunReport:
    """How the ``run`` that returned a ``Batch`` ended (``Batch.report``): ``all_succeeded`` every
    item succeeded; ``paused`` why the batch cannot go on for now (with how to resume) or None."""

    all_succeeded: bool
    paused: str | None = None


@dataclass(frozen=True)
class SubmitReport:
    """What ``reelbatch.submit`` did (``Batch.report``): items ``new`` and ``known`` (kept from an
    earlier submit), tasks ``sent``, ``start_at`` (UTC; None: now) and whether that time had passed;
    ``notify_ignored``: the manifest names ``notify:`` URLs, which only ``run`` tells."""

    new: int
    known: int
    sent: int
    start_at: datetime | None
    past: bool
    notify_ignored: bool


@dataclass(frozen=True)
class ExportReport:
    """What ``Batch.export_report`` wrote: ``path`` (None: standard output), ``items`` in the batch;
    for a dataset, ``videos`` placed (``linked`` of them as hard links, the rest copies), local
    ``inputs`` carried along, and what was left out: succeeded videos ``missing`` from the output
    folder, local inputs gone (``missing_inputs``)."""

    path: Path | None
    items: int
    dataset: bool = False
    videos: int = 0
    linked: int = 0
    inputs: int = 0
    missing: tuple[str, ...] = ()
    missing_inputs: tuple[str, ...] = ()

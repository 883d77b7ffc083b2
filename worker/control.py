"""The engine's face for the command line: register a planned batch, start, retry, cancel and sweep
it. Each call runs the engine and sends the steps it returns; nothing here decides anything."""

from __future__ import annotations

from reelbatch.jobs.store import Store
from reelbatch.worker.context import WorkerContext
from reelbatch.worker.engine import batch as batches
from reelbatch.worker.engine import sweeper
from reelbatch.worker.engine.batch import Registration
from reelbatch.worker.tasks import send

__all__ = ["Registration", "register_batch", "start_batch", "retry_batch", "cancel_batch",
           "sweep_batch", "failure_kinds"]


def register_batch(store: Store, plan, start_at: float | None = None) -> Registration:
    """Save a planned batch and add the items it does not have yet (nothing is sent)."""
    return batches.register(store, plan, start_at)


def start_batch(ctx: WorkerContext, batch: str) -> int:
    """Put the batch to work (or leave it for the sweeper until its --at time); steps sent."""
    return send(ctx, batches.enqueue(ctx, batch))


def retry_batch(ctx: WorkerContext, batch: str, kind: str | None = None) -> int:
    """Failed items (of one kind) back to work; how many."""
    moved, nexts = batches.retry_failed(ctx, batch, kind)
    send(ctx, nexts)
    return moved


def cancel_batch(ctx: WorkerContext, batch: str, abandon: bool = False) -> int:
    """Stop the batch; how many items were told to stop."""
    return send(ctx, batches.cancel_batch(ctx, batch, abandon))


def sweep_batch(ctx: WorkerContext, batch: str) -> int:
    return send(ctx, sweeper.sweep(ctx, batch))


def failure_kinds(store: Store, batch: str) -> dict[str, int]:
    return batches.failure_kinds(store, batch)

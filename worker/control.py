"""The engine's face for the command line: register a planned batch, start, retry, cancel and sweep
it. Each call runs the engine and sends the steps it returns; nothing here decides anything."""

from __future__ import annotations

from reelbatch.jobs.errors import ReelbatchError
from reelbatch.jobs.store import Store
from reelbatch.worker.engine import batch as batches, bulk_poll, retry, stop, sweeper, unclaimed
from reelbatch.worker.engine.batch import Registration
from reelbatch.worker.engine.recheck import download_lost, recheck_files
from reelbatch.worker.engine.retry import Retried
from reelbatch.worker.engine.stop import Stopped
from reelbatch.worker.engine.unclaimed import Unclaimed
from reelbatch.worker.runtime import Runtime
from reelbatch.worker.tasks import send

__all__ = ["Registration", "Retried", "Stopped", "register_batch", "start_batch", "retry_batch", "cancel_batch",
           "sweep_batch", "failure_kinds", "recheck_batch", "fetch_lost_files", "settle_charges", "Unclaimed",
           "find_unclaimed"]


def register_batch(store: Store, plan, start_at: float | None = None,
                   adopt: bool = False) -> Registration:
    """Make the batch's items what the manifest says (nothing is sent)."""
    return batches.register(store, plan, start_at, adopt)


def start_batch(ctx: Runtime, batch: str) -> int:
    """Put the batch to work (or leave it for the sweeper until its --at time); steps sent."""
    return send(ctx, batches.enqueue(ctx, batch))


def recheck_batch(ctx: Runtime, batch: str, verify: bool = False) -> int:
    """Videos deleted or changed on disk since they were downloaded go back to downloading from
    their generation (start_batch sends them); how many."""
    return recheck_files(ctx, batch, verify)


def fetch_lost_files(ctx: Runtime, batch: str) -> int:
    """Succeeded videos missing from disk now (the folder deleted during the run) are downloaded
    again from their generations (steps sent); how many."""
    return send(ctx, download_lost(ctx, batch))


def retry_batch(ctx: Runtime, batch: str, kind: str | None = None,
                include_permanent: bool = False) -> Retried:
    """Failed items (of one kind) back to work, each from where it can go on; what was done."""
    done, nexts = retry.retry_items(ctx, batch, kind, include_permanent)
    send(ctx, nexts)
    return done


def cancel_batch(ctx: Runtime, batch: str, abandon: bool = False) -> Stopped:
    """Stop the batch at once: pending items cancelled, remote generations cancelled by the
    workers, or from here when none serves the batch's provider; what was done."""
    meta = ctx.store.batch(batch)
    served = meta is not None and all(ctx.store.serving(p) for p in ctx.providers_of(meta))
    out = stop.cancel_batch(ctx, batch, abandon, here=not served)
    send(ctx, out.nexts)
    return out


def sweep_batch(ctx: Runtime, batch: str) -> int:
    return send(ctx, sweeper.sweep(ctx, batch))


def failure_kinds(store: Store, batch: str) -> dict[str, int]:
    return retry.failure_kinds(store, batch)


def settle_charges(ctx: Runtime, provider: str) -> int:
    """Read the provider's history once for the charged cost of generations still counted at their
    estimate (`run`, before it writes the index); how many were charged."""
    if not ctx.provider(provider).charges_in_history:
        return 0
    try:
        return bulk_poll.collect_charges(ctx, provider)
    except ReelbatchError:
        return 0   # the figures stay estimated; the lister tries again later


def find_unclaimed(ctx: Runtime, batch: str) -> tuple[int, list[Unclaimed]]:
    """The provider's generations of the batch's model made since it started that no item claims:
    those matching a pending item adopted (their steps sent; how many), the rest recorded."""
    nexts, recorded = unclaimed.look(ctx, batch)
    return send(ctx, nexts), recorded

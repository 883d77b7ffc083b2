"""Stopping one item of a cancelled batch: pending ones at once, remote ones where the provider
allows it. At a provider that cannot cancel, what is already paid for still downloads, unless the
batch was cancelled with ``--abandon``."""

from __future__ import annotations

from reelbatch.jobs import errors
from reelbatch.jobs.state import IN_PROGRESS, ItemState as S, Step
from reelbatch.jobs.store import BatchMeta, ItemRecord, TransitionRefused
from reelbatch.worker.engine.line import release
from reelbatch.worker.engine.next import Next
from reelbatch.worker.engine.outcome import retry_delay
from reelbatch.worker.providers.base import Cancels
from reelbatch.worker.runtime import Runtime


def cancel(ctx: Runtime, batch: str, item_id: str) -> list[Next]:
    store = ctx.store
    meta, rec = ctx.load(batch, item_id)
    if meta is None or rec is None:
        return []
    if rec.state is S.PENDING:
        try:
            store.transition(batch, item_id, S.CANCELLED, [S.PENDING], error="batch cancelled")
        except TransitionRefused:
            return []
        return release(ctx, meta.provider, batch, item_id)
    if rec.state in IN_PROGRESS and not rec.cancel_requested:
        return cancel_remote(ctx, meta, rec)
    return []


def cancel_remote(ctx: Runtime, meta: BatchMeta, rec: ItemRecord) -> list[Next]:
    """Ask the provider to cancel (where it can), then let a poll report the real outcome. Only
    the caller that claims the request asks; another one (a cancel task, a poll) leaves it."""
    batch, item_id = meta.name, rec.item_id
    if not ctx.store.claim_cancel(batch, item_id):
        return []    # the claimer polls next
    client = ctx.provider(meta.provider)
    if isinstance(client, Cancels):
        assert rec.generation_id is not None   # queued and running items have their generation
        try:
            client.cancel(rec.generation_id)
        except errors.TransientProviderError as exc:
            return _retry_cancel(ctx, meta, rec, exc)
        except errors.PermanentProviderError:
            pass  # already finished: the poll below reports its real outcome
    elif meta.abandon:
        ctx.store.transition(batch, item_id, S.CANCELLED, IN_PROGRESS,
                             error=f"abandoned: {meta.provider} cannot cancel; it may still bill")
        return release(ctx, meta.provider, batch, item_id)
    return [Next(Step.POLL, batch, item_id, 0)]


def _retry_cancel(ctx: Runtime, meta: BatchMeta, rec: ItemRecord,
                  exc: errors.TransientProviderError) -> list[Next]:
    """Retry the cancel request; past its attempts stop asking and keep polling the generation."""
    delay = retry_delay(ctx, meta, rec.item_id, Step.CANCEL, exc)
    if delay is not None:
        ctx.store.update(meta.name, rec.item_id, cancel_requested=0)   # the retry claims it again
        return [Next(Step.CANCEL, meta.name, rec.item_id, delay)]
    ctx.store.update(meta.name, rec.item_id, transient_retries=0)      # the claim stays: no more asking
    return [Next(Step.POLL, meta.name, rec.item_id, 0)]

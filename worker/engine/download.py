"""Bringing a finished generation home: download, check and record it; ask the provider for a fresh
URL when the one we hold has expired."""

from __future__ import annotations

import time
from pathlib import Path

from reelbatch.jobs import errors
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.state import Step
from reelbatch.jobs.store import BatchMeta, ItemRecord, TransitionRefused
from reelbatch.worker import results
from reelbatch.worker.context import WorkerContext
from reelbatch.worker.engine.next import Next
from reelbatch.worker.engine.outcome import fail, retry_or_fail
from reelbatch.worker.storage import download

DOWNLOADING = (S.DOWNLOADING,)


def fetch(ctx: WorkerContext, batch: str, item_id: str) -> list[Next]:
    store = ctx.store
    meta, rec = store.batch(batch), store.item(batch, item_id)
    if meta is None or rec is None or rec.state is not S.DOWNLOADING:
        return []
    try:
        stored = download(rec.video_url, Path(meta.output), results.file_name(rec),
                          ctx.download_client, ctx.settings)
    except errors.ResultUrlExpired:
        return _refresh_url(ctx, meta, rec)
    except errors.UnsafeResult as exc:
        return fail(ctx, meta, item_id, exc, DOWNLOADING)
    except errors.StorageError as exc:
        return retry_or_fail(ctx, meta, item_id, Step.DOWNLOAD, exc, DOWNLOADING)
    try:
        store.transition(batch, item_id, S.SUCCEEDED, DOWNLOADING, file=stored.path.name,
                         sha256=stored.sha256, bytes=stored.bytes, completed_at=time.time())
    except TransitionRefused:
        return []
    if rec.cost_usd:
        store.add_cost(batch, rec.cost_usd)
    results.record(meta, store.item(batch, item_id))
    return []


def _refresh_url(ctx: WorkerContext, meta: BatchMeta, rec: ItemRecord) -> list[Next]:
    """The result URL expired: ask the provider for the row again, which carries a fresh one."""
    try:
        g = ctx.provider(meta.provider).get(rec.generation_id)
    except errors.TransientProviderError as exc:
        return retry_or_fail(ctx, meta, rec.item_id, Step.DOWNLOAD, exc, DOWNLOADING)
    except errors.PermanentProviderError as exc:
        return fail(ctx, meta, rec.item_id, exc, DOWNLOADING)
    if g.video_url and g.video_url != rec.video_url:
        ctx.store.update(meta.name, rec.item_id, video_url=g.video_url)
        return [Next(Step.DOWNLOAD, meta.name, rec.item_id)]
    exc = errors.ResultUrlExpired("the result URL expired and the provider gave no fresh one")
    return fail(ctx, meta, rec.item_id, exc, DOWNLOADING)

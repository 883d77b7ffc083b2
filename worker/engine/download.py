"""Bringing a finished generation home: download, check and record it. A failed download is tried
again with backoff, asking the provider for the result URL again first (a fresh one where it has
one, the same one where it gives the same: CDNs answer 404 for a moment after completion). The
generation is never submitted again for a download problem."""

from __future__ import annotations

import time
from pathlib import Path

from reelbatch.jobs import errors
from reelbatch.jobs.policy import RETRIES
from reelbatch.jobs.state import ItemState as S, Step
from reelbatch.jobs.store import BatchMeta, ItemRecord, TransitionRefused
from reelbatch.jobs.tuning import OUTPUT_MARK_S, OUTPUT_WAIT_S
from reelbatch.worker import outputs, results
from reelbatch.worker.engine.next import Next
from reelbatch.worker.engine.outcome import fail, retry_delay
from reelbatch.worker.runtime import Runtime
from reelbatch.worker.storage import download

DOWNLOADING = (S.DOWNLOADING,)
GONE = frozenset({404, 410})


def fetch(ctx: Runtime, batch: str, item_id: str) -> list[Next]:
    store = ctx.store
    meta, rec = ctx.load(batch, item_id)
    if meta is None or rec is None or rec.state is not S.DOWNLOADING:
        return []
    if rec.detected_at and not (rec.transient_retries or rec.url_stale):   # the first try: learning
        ctx.store.queue_depth(meta.provider).hop(time.time() - rec.detected_at)   # engine/depth.py
    if rec.url_stale or not rec.video_url:
        refreshed = _fresh_url(ctx, meta, rec)
        if isinstance(refreshed, list):
            return refreshed
        rec = refreshed
    assert rec.video_url is not None   # the one it had, or the provider's fresh one
    try:
        stored = download(rec.video_url, Path(meta.output), outputs.main_name(rec),
                          ctx.download_client, ctx.settings,
                          ctx.provider(meta.provider).download_credential)
    except errors.UnsafeResult as exc:
        return fail(ctx, meta, item_id, exc, DOWNLOADING)
    except errors.OutputUnwritable as exc:
        return _output_blocked(ctx, meta, rec, exc)
    except errors.StorageError as exc:
        return _again(ctx, meta, rec, exc)
    try:   # there was room: the "cannot write" mark goes in the same step
        done = store.transition_read(batch, item_id, S.SUCCEEDED, DOWNLOADING, clear_output=True,
                                     file=stored.path.name, sha256=stored.sha256, bytes=stored.bytes,
                                     completed_at=time.time(), transient_retries=0, url_stale=0)
    except TransitionRefused:
        return []
    try:
        results.record(store, meta, done)
    except OSError as exc:   # the video is in place; its sidecar waits for room (the index is rewritten)
        store.mark_output_problem(batch, f"{meta.output}: {exc.strerror}", OUTPUT_MARK_S)
    return []


def _output_blocked(ctx: Runtime, meta: BatchMeta, rec: ItemRecord,
                    exc: errors.OutputUnwritable) -> list[Next]:
    """The output folder is full or read-only: not the item's fault. The batch pauses (the sweeper
    sees the mark); the download waits, without using its attempts, and goes on once there is room."""
    ctx.store.mark_output_problem(meta.name, str(exc), OUTPUT_MARK_S)
    return [Next(Step.DOWNLOAD, meta.name, rec.item_id, OUTPUT_WAIT_S)]


def _again(ctx: Runtime, meta: BatchMeta, rec: ItemRecord, exc: errors.ReelbatchError) -> list[Next]:
    """Try the download again after a backoff, with the URL asked for again; past the download
    budget the item fails with kind ``download`` (`retry` downloads it again)."""
    delay = retry_delay(ctx, meta, rec.item_id, Step.DOWNLOAD, exc)
    if delay is None:
        tries = RETRIES[Step.DOWNLOAD].max_attempts
        return fail(ctx, meta, rec.item_id,
                    errors.DownloadFailed(f"{tries} download attempts failed; the last: {exc}"),
                    DOWNLOADING)
    ctx.store.update(meta.name, rec.item_id, url_stale=1)
    return [Next(Step.DOWNLOAD, meta.name, rec.item_id, delay)]


def _fresh_url(ctx: Runtime, meta: BatchMeta, rec: ItemRecord) -> ItemRecord | list[Next]:
    """The result URL as the provider gives it now (the record with it), or the steps to take when
    the provider cannot be asked or no longer has the generation."""
    assert rec.generation_id is not None   # a downloading item has its generation
    try:
        g = ctx.provider(meta.provider).get(rec.generation_id)
    except errors.TransientProviderError as exc:
        if rec.video_url:
            return rec   # the provider cannot be asked just now: try the URL we have
        return _again(ctx, meta, rec, exc)
    except errors.PermanentProviderError as exc:
        if exc.status_code in GONE:
            gone = errors.ResultMissing(f"the provider no longer has generation {rec.generation_id} "
                                        f"({exc}); `reelbatch retry --kind missing` generates it again")
            return fail(ctx, meta, rec.item_id, gone, DOWNLOADING)
        return _again(ctx, meta, rec, exc)
    url = g.video_url or rec.video_url
    if not url:
        return _again(ctx, meta, rec, errors.ResultUrlExpired("the provider gave no result URL"))
    ctx.store.update(meta.name, rec.item_id, video_url=url, url_stale=0)
    return rec.model_copy(update={"video_url": url, "url_stale": False})

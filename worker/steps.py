"""What each task does to an item, apart from Celery: read the state store, call the provider,
write the outcome, and say which task comes next. Tasks in worker/tasks.py only apply the answer."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from reelbatch.jobs import errors
from reelbatch.jobs.catalog import catalog, provider_request
from reelbatch.jobs.inputs import to_data_uri, is_url
from reelbatch.jobs.policy import PollPolicy, RetryPolicy
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import BatchMeta, ItemRecord, TransitionRefused
from reelbatch.worker import results, timing
from reelbatch.worker.context import WorkerContext
from reelbatch.worker.limits import holder, split_holder
from reelbatch.worker.providers.base import Generation, RemoteStatus
from reelbatch.worker.providers.http import permanent_reason
from reelbatch.worker.storage import download

log = logging.getLogger("reelbatch.worker")

RETRY = RetryPolicy()
MAX_TRANSIENT_RETRIES = 12
RECONCILE_AFTER_S = 3.0


@dataclass(frozen=True)
class Next:
    """The task an item needs next, and when."""

    task: str            # submit | poll | download | reconcile
    batch: str
    item_id: str
    countdown: float = 0.0


# --- feeding: items wait in line for a slot of their provider's concurrency -----------------

def feed(ctx: WorkerContext, provider: str, default_limit: int = 5) -> list[Next]:
    """Hand free slots to the items waiting longest. Each gets a submit task holding its slot."""
    slots, ready = ctx.slots(provider), []
    while (who := slots.next_waiting()) is not None:
        if not slots.acquire(who, default_limit):
            slots.wait([who], front=True)
            break
        batch, item_id = split_holder(who)
        ready.append(Next("submit", batch, item_id))
    return ready


def release(ctx: WorkerContext, provider: str, batch: str, item_id: str) -> list[Next]:
    """Give the item's slot back and hand it to the next waiting item."""
    ctx.slots(provider).release(holder(batch, item_id))
    return feed(ctx, provider)


def requeue(ctx: WorkerContext, provider: str, batch: str, item_id: str) -> list[Next]:
    """Put a pending item back in line (after a remote failure or a refused submit)."""
    ctx.slots(provider).wait([holder(batch, item_id)])
    return release(ctx, provider, batch, item_id)


# --- submit --------------------------------------------------------------------------------

def submit(ctx: WorkerContext, batch: str, item_id: str) -> list[Next]:
    store = ctx.store
    meta, rec = store.batch(batch), store.item(batch, item_id)
    if rec is None or meta is None or rec.state is not S.PENDING:
        return _release_if_idle(ctx, meta, rec, batch, item_id)
    if meta.cancelled:
        store.transition(batch, item_id, S.CANCELLED, [S.PENDING], error="batch cancelled")
        return release(ctx, meta.provider, batch, item_id)
    if not _reserve_budget(ctx, meta, rec):
        return release(ctx, meta.provider, batch, item_id)
    wait = ctx.rate(meta.provider).take(meta.requests_per_minute)
    if wait:
        _unreserve(ctx, meta, rec)
        return [Next("submit", batch, item_id, wait)]
    return _send(ctx, meta, rec)


def _release_if_idle(ctx, meta, rec, batch, item_id) -> list[Next]:
    """A duplicate or stale submit: free the slot it was handed unless the item is in flight."""
    if meta and (rec is None or rec.state not in (S.SUBMITTING, S.QUEUED, S.RUNNING)):
        return release(ctx, meta.provider, batch, item_id)
    return []


def _reserve_budget(ctx: WorkerContext, meta: BatchMeta, rec: ItemRecord) -> bool:
    if meta.max_cost_usd is None:
        return True
    if ctx.store.commit_cost(meta.name, rec.item.estimated_cost_usd) <= meta.max_cost_usd + 1e-9:
        return True
    _unreserve(ctx, meta, rec)
    ctx.store.clear_due(meta.name, rec.item_id)  # parked until the limit is raised
    ctx.store.update(meta.name, rec.item_id, error_kind="budget",
                     error=f"waiting: submitting it would pass max_cost_usd {meta.max_cost_usd}")
    return False


def _unreserve(ctx: WorkerContext, meta: BatchMeta, rec: ItemRecord) -> None:
    if meta.max_cost_usd is not None:
        ctx.store.commit_cost(meta.name, -rec.item.estimated_cost_usd)


def _send(ctx: WorkerContext, meta: BatchMeta, rec: ItemRecord) -> list[Next]:
    store, batch, item_id = ctx.store, meta.name, rec.item_id
    try:
        store.transition(batch, item_id, S.SUBMITTING, [S.PENDING], incr={"attempts": 1},
                         submitted_at=time.time(), error_kind=None, error=None)
    except TransitionRefused:
        _unreserve(ctx, meta, rec)
        return []  # a duplicate submit task: the other one is sending it
    resolve = _resolver(ctx)
    try:
        generation_id = ctx.provider(meta.provider).submit(provider_request(rec.item, resolve))
    except errors.SubmitOutcomeUnknown as exc:
        store.record_attempt(batch, item_id, exc.kind, str(exc))
        return [Next("reconcile", batch, item_id, RECONCILE_AFTER_S)]
    except errors.TransientProviderError as exc:
        return _submit_refused(ctx, meta, rec, exc)
    except (errors.PermanentProviderError, errors.ManifestError) as exc:
        _unreserve(ctx, meta, rec)
        return fail(ctx, meta, item_id, exc, [S.SUBMITTING])
    store.transition(batch, item_id, S.QUEUED, [S.SUBMITTING], generation_id=generation_id,
                     transient_retries=0)
    _claim(ctx, meta.provider, generation_id, batch, item_id)
    return [Next("poll", batch, item_id, poll_policy(ctx, meta, rec).first_delay())]


def _resolver(ctx: WorkerContext):
    limit = ctx.settings.max_data_uri_bytes
    return lambda ref: ref if is_url(ref) else to_data_uri(Path(ref), limit)


def _submit_refused(ctx, meta: BatchMeta, rec: ItemRecord, exc) -> list[Next]:
    """Nothing was created (429, 503, no connection): back to pending, try again after a backoff."""
    _unreserve(ctx, meta, rec)
    retries = _count_transient(ctx, meta.name, rec.item_id, exc)
    ctx.store.transition(meta.name, rec.item_id, S.PENDING, [S.SUBMITTING],
                         incr={"attempts": -1}, error_kind=exc.kind, error=str(exc))
    if retries > MAX_TRANSIENT_RETRIES:
        return fail(ctx, meta, rec.item_id, exc, [S.PENDING])
    delay = RETRY.backoff(retries, getattr(exc, "retry_after", None))
    return [Next("submit", meta.name, rec.item_id, delay)]


def _count_transient(ctx, batch: str, item_id: str, exc) -> int:
    ctx.store.record_attempt(batch, item_id, exc.kind, str(exc))
    return ctx.store.r.hincrby(ctx.store.item_key(batch, item_id), "transient_retries", 1)


# --- reconcile: a submit whose answer was lost ----------------------------------------------

def reconcile(ctx: WorkerContext, batch: str, item_id: str) -> list[Next]:
    """Find the generation a lost submit may have created; resubmit only when there is none.

    Providers that can list recent generations (Oxen, the simulator) are asked for one whose echoed
    model and prompt match, created after the submit started. Where no such list exists (the AI/ML
    API) the item fails with kind ``submit_unknown``: `reelbatch retry --kind submit_unknown`
    resubmits it, a decision left to the person paying for it."""
    store = ctx.store
    meta, rec = store.batch(batch), store.item(batch, item_id)
    if meta is None or rec is None or rec.state is not S.SUBMITTING:
        return []
    client = ctx.provider(meta.provider)
    if not hasattr(client, "find"):
        exc = errors.SubmitOutcomeUnknown(meta.provider, None, None,
                                          "submit sent but unanswered; the provider cannot be asked")
        return fail(ctx, meta, item_id, exc, [S.SUBMITTING])
    try:
        found = client.find(provider_request(rec.item, _resolver(ctx)),
                            since=(rec.submitted_at or 0) - 5)
    except errors.TransientProviderError:
        return [Next("reconcile", batch, item_id, RETRY.backoff(1))]
    generation_id = _claim_first(ctx, meta.provider, [g.generation_id for g in found], batch, item_id)
    if generation_id:
        store.transition(batch, item_id, S.QUEUED, [S.SUBMITTING], generation_id=generation_id)
        return [Next("poll", batch, item_id, 0)]
    store.transition(batch, item_id, S.PENDING, [S.SUBMITTING], incr={"attempts": -1})
    _unreserve(ctx, meta, rec)
    return [Next("submit", batch, item_id, 0)]


def _claim(ctx: WorkerContext, provider: str, generation_id: str, batch: str, item_id: str) -> bool:
    """Record whose generation this is (the event listener looks it up); False when another
    item has it already. Claiming again one's own is True: a reconcile that claimed and then died
    before recording the generation must adopt it on the next try, not submit again."""
    who, index = holder(batch, item_id), generation_index(provider)
    return bool(ctx.store.r.hsetnx(index, generation_id, who)) or ctx.store.r.hget(index, generation_id) == who


def generation_index(provider: str) -> str:
    return f"rb:gens:{provider}"


def owner_of(ctx: WorkerContext, provider: str, generation_id: str) -> tuple[str, str] | None:
    who = ctx.store.r.hget(generation_index(provider), generation_id)
    return split_holder(who) if who else None


def _claim_first(ctx: WorkerContext, provider: str, candidates: list[str], batch: str,
                 item_id: str) -> str | None:
    """The newest matching generation no other item has: identical requests (repeat samples)
    each adopt their own."""
    return next((g for g in candidates if _claim(ctx, provider, g, batch, item_id)), None)


# --- poll ----------------------------------------------------------------------------------

def poll(ctx: WorkerContext, batch: str, item_id: str) -> list[Next]:
    store = ctx.store
    meta, rec = store.batch(batch), store.item(batch, item_id)
    if meta is None or rec is None or rec.state not in (S.QUEUED, S.RUNNING):
        return []
    ctx.slots(meta.provider).renew(holder(batch, item_id))
    if meta.cancelled and not rec.cancel_requested:
        return _cancel_remote(ctx, meta, rec)
    try:
        generation = ctx.provider(meta.provider).get(rec.generation_id)
    except errors.TransientProviderError as exc:
        retries = _count_transient(ctx, batch, item_id, exc)
        return [Next("poll", batch, item_id, RETRY.backoff(min(retries, 6), getattr(exc, "retry_after", None)))]
    except errors.PermanentProviderError as exc:
        return fail(ctx, meta, item_id, exc, [S.QUEUED, S.RUNNING])
    return observe(ctx, meta, rec, generation, polled=True)


def observe(ctx: WorkerContext, meta: BatchMeta, rec: ItemRecord, g: Generation,
            polled: bool = False) -> list[Next]:
    """Act on what the provider says about a generation (from a poll or from an event)."""
    batch, item_id = meta.name, rec.item_id
    if g.status is RemoteStatus.SUCCEEDED:
        return _finished(ctx, meta, rec, g, polled)
    if g.status is RemoteStatus.FAILED:
        return _remote_failed(ctx, meta, rec, g)
    if g.status is RemoteStatus.CANCELLED:
        ctx.store.transition(batch, item_id, S.CANCELLED, [S.QUEUED, S.RUNNING],
                             error="cancelled at the provider")
        return release(ctx, meta.provider, batch, item_id)
    if g.status is RemoteStatus.RUNNING and rec.state is S.QUEUED:
        ctx.store.transition(batch, item_id, S.RUNNING, [S.QUEUED],
                             remote_started_at=g.started_at or time.time())
    now = time.time()
    if polled:  # a good answer: earlier transient errors no longer count against the item
        ctx.store.update(batch, item_id, polled_at=now, transient_retries=0)
    elapsed = now - (rec.submitted_at or now)
    return [Next("poll", batch, item_id, poll_policy(ctx, meta, rec).next_delay(elapsed))]


def _finished(ctx, meta: BatchMeta, rec: ItemRecord, g: Generation, polled: bool = False) -> list[Next]:
    try:
        ctx.store.transition(meta.name, rec.item_id, S.DOWNLOADING, [S.QUEUED, S.RUNNING],
                             video_url=g.video_url, detected_at=time.time(),
                             cost_usd=g.cost_usd if g.cost_usd is not None else rec.item.estimated_cost_usd,
                             cost_source="provider" if g.cost_usd is not None else "estimate",
                             remote_started_at=g.started_at, remote_completed_at=g.completed_at,
                             transient_retries=0)
    except TransitionRefused:
        return []  # another poll or the event stream got there first
    if rec.submitted_at:
        timing.record(ctx.store.r, rec.item, _finished_at(ctx, meta, rec, g, polled) - rec.submitted_at)
    return [Next("download", meta.name, rec.item_id)] + release(ctx, meta.provider, meta.name, rec.item_id)


def _finished_at(ctx, meta: BatchMeta, rec: ItemRecord, g: Generation, polled: bool) -> float:
    """When the generation finished, for learning: now when an event said so at once; from a poll,
    the middle of the window it finished in, after the last poll that saw it unfinished, narrowed
    by the provider's whole-second completed_at. (Learning the time it was seen done instead
    piles every generation that finished before the first poll onto the first poll's time, so the
    first poll never moves earlier.)"""
    now = time.time()
    if not polled:
        return now
    seen = ctx.store.r.hget(ctx.store.item_key(meta.name, rec.item_id), "polled_at")
    low, high = max(float(seen or 0), rec.submitted_at), now
    if g.completed_at is not None and max(low, g.completed_at) < min(high, g.completed_at + 1):
        low, high = max(low, g.completed_at), min(high, g.completed_at + 1)
    return (low + high) / 2


def _remote_failed(ctx, meta: BatchMeta, rec: ItemRecord, g: Generation) -> list[Next]:
    exc = errors.GenerationFailed(meta.provider, None, None, g.error or "generation failed")
    ctx.store.record_attempt(meta.name, rec.item_id, exc.kind, str(exc))
    if rec.attempts >= meta.max_attempts or permanent_reason(g.error):
        return fail(ctx, meta, rec.item_id, exc, [S.QUEUED, S.RUNNING])
    try:
        ctx.store.transition(meta.name, rec.item_id, S.PENDING, [S.QUEUED, S.RUNNING],
                             error_kind=exc.kind, error=str(exc), generation_id=None)
    except TransitionRefused:
        return []
    _unreserve(ctx, meta, rec)
    return requeue(ctx, meta.provider, meta.name, rec.item_id)


EVENT_BACKSTOP_FACTOR = 3.0
POLL_QUANTILES = (0.2, 0.5, 0.9)   # early, expected, late: the first poll, the bulk polls cross


def events_healthy_key(provider: str) -> str:
    return f"rb:events:{provider}:healthy"


def poll_policy(ctx: WorkerContext, meta: BatchMeta, rec: ItemRecord) -> PollPolicy:
    """First poll near the early part of the generation times learned for this model and duration
    (before anything is learned: the manifest's first_after_s, else the catalogue's typical time),
    tightening after; while the provider's event stream is healthy, polls relax to a backstop."""
    learned = timing.quantiles(ctx.store.r, rec.item, POLL_QUANTILES)
    if learned:
        early, expected, late = learned
    else:
        expected = meta.first_after_s or catalog().model_for(meta.provider, meta.model).expected_seconds
        early = meta.first_after_s if meta.first_after_s is not None else 0.8 * expected
        late = None
    policy = PollPolicy(expected_s=expected, early_s=early, late_s=late,
                        min_interval_s=meta.min_interval_s, max_interval_s=meta.max_interval_s)
    if ctx.store.r.exists(events_healthy_key(meta.provider)):
        return policy.relaxed(EVENT_BACKSTOP_FACTOR)
    return policy


# --- download ------------------------------------------------------------------------------

def fetch(ctx: WorkerContext, batch: str, item_id: str) -> list[Next]:
    store = ctx.store
    meta, rec = store.batch(batch), store.item(batch, item_id)
    if meta is None or rec is None or rec.state is not S.DOWNLOADING:
        return []
    try:
        stored = download(rec.video_url, Path(meta.output), results.file_name(rec), ctx.download_client,
                          ctx.settings, ctx.provider(meta.provider).download_credential)
    except errors.ResultUrlExpired:
        return _refresh_url(ctx, meta, rec)
    except errors.UnsafeResult as exc:
        return fail(ctx, meta, item_id, exc, [S.DOWNLOADING])
    except errors.StorageError as exc:
        retries = _count_transient(ctx, batch, item_id, exc)
        if retries > MAX_TRANSIENT_RETRIES:
            return fail(ctx, meta, item_id, exc, [S.DOWNLOADING])
        return [Next("download", batch, item_id, RETRY.backoff(min(retries, 5)))]
    try:
        store.transition(batch, item_id, S.SUCCEEDED, [S.DOWNLOADING], file=stored.path.name,
                         sha256=stored.sha256, bytes=stored.bytes, completed_at=time.time())
    except TransitionRefused:
        return []
    if rec.cost_usd:
        store.add_cost(batch, rec.cost_usd)
    results.record(meta, store.item(batch, item_id))
    return []


def _refresh_url(ctx, meta: BatchMeta, rec: ItemRecord) -> list[Next]:
    """The result URL expired: ask the provider for the row again, which carries a fresh one."""
    try:
        g = ctx.provider(meta.provider).get(rec.generation_id)
    except errors.TransientProviderError as exc:
        retries = _count_transient(ctx, meta.name, rec.item_id, exc)
        return [Next("download", meta.name, rec.item_id, RETRY.backoff(min(retries, 5)))]
    except errors.PermanentProviderError as exc:
        return fail(ctx, meta, rec.item_id, exc, [S.DOWNLOADING])
    if g.video_url and g.video_url != rec.video_url:
        ctx.store.update(meta.name, rec.item_id, video_url=g.video_url)
        return [Next("download", meta.name, rec.item_id)]
    exc = errors.ResultUrlExpired("the result URL expired and the provider gave no fresh one")
    return fail(ctx, meta, rec.item_id, exc, [S.DOWNLOADING])


# --- cancel ------------------------------------------------------------------------------

def cancel(ctx: WorkerContext, batch: str, item_id: str) -> list[Next]:
    """Stop one item of a cancelled batch: pending ones at once, remote ones where the provider
    allows it. At a provider that cannot cancel, what is already paid for still downloads, unless
    the batch was cancelled with ``--abandon``."""
    store = ctx.store
    meta, rec = store.batch(batch), store.item(batch, item_id)
    if meta is None or rec is None:
        return []
    if rec.state is S.PENDING:
        try:
            store.transition(batch, item_id, S.CANCELLED, [S.PENDING], error="batch cancelled")
        except TransitionRefused:
            return []
        return release(ctx, meta.provider, batch, item_id)
    if rec.state in (S.QUEUED, S.RUNNING) and not rec.cancel_requested:
        return _cancel_remote(ctx, meta, rec)
    return []


def _cancel_remote(ctx: WorkerContext, meta: BatchMeta, rec: ItemRecord) -> list[Next]:
    batch, item_id = meta.name, rec.item_id
    client = ctx.provider(meta.provider)
    if client.can_cancel:
        try:
            client.cancel(rec.generation_id)
        except errors.TransientProviderError as exc:
            return [Next("cancel", batch, item_id, RETRY.backoff(_count_transient(ctx, batch, item_id, exc)))]
        except errors.PermanentProviderError:
            pass  # already finished: the poll below reports its real outcome
        ctx.store.update(batch, item_id, cancel_requested=1)
        return [Next("poll", batch, item_id, 0)]
    if meta.abandon:
        ctx.store.transition(batch, item_id, S.CANCELLED, [S.QUEUED, S.RUNNING],
                             error=f"abandoned: {meta.provider} cannot cancel; it may still bill")
        return release(ctx, meta.provider, batch, item_id)
    ctx.store.update(batch, item_id, cancel_requested=1)
    return [Next("poll", batch, item_id, 0)]


# --- endings -------------------------------------------------------------------------------

def fail(ctx, meta: BatchMeta, item_id: str, exc: Exception, expected) -> list[Next]:
    kind = getattr(exc, "kind", "error")
    ctx.store.record_attempt(meta.name, item_id, kind, str(exc))
    try:
        ctx.store.transition(meta.name, item_id, S.FAILED, expected, error_kind=kind,
                             error=str(exc), completed_at=time.time())
    except TransitionRefused:
        return []
    results.record(meta, ctx.store.item(meta.name, item_id))
    return release(ctx, meta.provider, meta.name, item_id)


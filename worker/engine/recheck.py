"""A rerun checks the videos already on disk: one deleted, resized or (with ``--verify``) changed
since it was downloaded is downloaded again from its generation, never generated again."""

from __future__ import annotations

from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import TransitionRefused
from reelbatch.worker import outputs
from reelbatch.worker.context import WorkerContext


def recheck_files(ctx: WorkerContext, batch: str, verify: bool = False) -> int:
    """Send succeeded items whose file is not what was recorded back to downloading (the batch's
    enqueue resumes them); how many."""
    store, meta = ctx.store, ctx.store.batch(batch)
    if meta is None:
        return 0
    lost = 0
    for rec in store.items(batch, S.SUCCEEDED):
        problem = outputs.file_problem(meta, rec, verify)
        if problem is None:
            continue
        store.record_attempt(batch, rec.item_id, "lost_file", problem)
        try:
            store.transition(batch, rec.item_id, S.DOWNLOADING, [S.SUCCEEDED], url_stale=1,
                             transient_retries=0, error_kind="lost_file", error=problem)
        except TransitionRefused:
            continue
        lost += 1
    return lost

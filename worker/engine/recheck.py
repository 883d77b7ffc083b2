"""A rerun checks the videos already on disk: one deleted, resized or (with ``--verify``) changed
since it was downloaded is downloaded again from its generation, never generated again."""

from __future__ import annotations

from reelbatch.jobs.state import ItemState as S, Step
from reelbatch.jobs.store import TransitionRefused
from reelbatch.worker import outputs
from reelbatch.worker.engine.next import Next
from reelbatch.worker.runtime import Runtime


def recheck_files(ctx: Runtime, batch: str, verify: bool = False) -> int:
    """Send succeeded items whose file is not what was recorded back to downloading (the batch's
    enqueue resumes them); how many."""
    return len(_send_back(ctx, batch, verify))


def download_lost(ctx: Runtime, batch: str) -> list[Next]:
    """The end of a run: succeeded items whose video is no longer on disk (the folder deleted
    while the batch ran) go back to downloading; their download steps."""
    return [Next(Step.DOWNLOAD, batch, item_id) for item_id in _send_back(ctx, batch, False)]


def _send_back(ctx: Runtime, batch: str, verify: bool) -> list[str]:
    store, meta = ctx.store, ctx.store.batch(batch)
    if meta is None:
        return []
    lost = []
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
        lost.append(rec.item_id)
    return lost

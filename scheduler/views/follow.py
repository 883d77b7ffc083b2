"""`reelbatch report BATCH --watch`: the report rewritten while the batch runs.

Why --watch and not --serve: the page stays the file it always is (opened from disk, mailed,
copied with its videos), there is no port to open or protect, and the browser only has to reload
it. While the batch runs the page carries a refresh tag, so an open tab reloads itself (the view in
the URL fragment is kept); the last write, once nothing can move, has none.

Each turn reads only what changed: the ids in the open states' sets (compared with the state last
seen) and the items that became terminal since the last turn (the store's bounded outcome
stream); only those items are read again. Every item is read at the start, and once more for the last
write (a cost the provider reports after an item ended changes no state).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from reelbatch.jobs.state import OPEN
from reelbatch.jobs.store import BatchMeta, ItemRecord, Store
from reelbatch.scheduler.views.export import load_batch
from reelbatch.scheduler.views.progress import settled


class Follower:
    """The batch's items as last seen, brought up to date by what changed."""

    def __init__(self, store: Store, batch: str):
        self.store, self.batch = store, batch
        self.cursor = store.outcome_cursor(batch)
        meta, records = load_batch(store, batch)
        self.meta: BatchMeta = meta
        self.records: dict[str, ItemRecord] = {rec.item_id: rec for rec in records}
        self.reread = 0   # items read again after the first read (for tests and figures)

    def changed(self) -> set[str]:
        """Ids of the items whose state moved since the last look."""
        moved = set()
        for state in OPEN:
            moved |= {i for i in self.store.item_ids(self.batch, state)
                      if i not in self.records or self.records[i].state is not state}
        while rows := self.store.outcomes(self.batch, self.cursor):
            self.cursor = rows[-1][0]
            moved |= {item_id for _, item_id, _ in rows}
        return moved

    def refresh(self) -> list[ItemRecord]:
        """Every item, as it is now; sorted by id, as a full read gives them."""
        for item_id in self.changed():
            rec = self.store.item(self.batch, item_id)
            if rec is not None:
                self.records[item_id] = rec
                self.reread += 1
        self.meta = self.store.batch(self.batch) or self.meta
        return sorted(self.records.values(), key=lambda rec: rec.item_id)


def follow(store: Store, batch: str, write: Callable[[BatchMeta, list[ItemRecord], float | None], Path],
           every_s: float, sleep: Callable[[float], None] = time.sleep) -> Path:
    """Write the page every ``every_s`` until nothing in the batch can move; the last write has no
    refresh tag. Returns the page."""
    follower = Follower(store, batch)
    while not settled(store, batch):
        write(follower.meta, follower.refresh(), every_s)
        sleep(every_s)
    return write(*load_batch(store, batch), None)   # read whole once more: costs charged after the end

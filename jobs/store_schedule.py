"""The store's schedule: when each item's next step is due (the sweeper finds work whose task was
lost), a batch's start time (`submit --at`), task deliveries, and the leases and look-again windows
of running tasks."""

from __future__ import annotations

from collections.abc import Iterable

from reelbatch.jobs import keys
from reelbatch.jobs.leases import TaskLeases, look_window_open, open_look_window
from reelbatch.jobs.store_batches import Batches
from reelbatch.jobs.store_records import BatchMeta, meta_from

# Take the items whose next step is due by ARGV[1] (up to ARGV[4]): each is given a new due time
# (when it will be sent, ARGV[2] at the earliest, plus the grace ARGV[3]) so no other sweeper sends it.
_TAKE_DUE = """
local found = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[4])
local now, grace = tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, #found, 2 do
  local when = math.max(tonumber(found[i + 1]), now)
  redis.call('ZADD', KEYS[1], when + grace, found[i])
end
return found
"""


class Schedule(Batches):
    """Due times (``rb:{batch}:due``), start times and task deliveries."""

    def set_due(self, batch: str, item_id: str, when: float) -> None:
        self._r.zadd(keys.due(batch), {item_id: when})

    def look_again_at(self, batch: str, item_ids: list[str], when: float) -> None:
        """Bring the due time of items whose task still runs forward to ``when`` (never later than
        it was): the sweeper looks again soon after a dead holder's lease would have lapsed."""
        if item_ids:
            self._r.zadd(keys.due(batch), {item_id: when for item_id in item_ids}, lt=True)

    def overdue(self, batch: str, before: float, limit: int = 1000) -> list[str]:
        return list(self._r.zrangebyscore(keys.due(batch), "-inf", before, start=0, num=limit))

    def take_due(self, batch: str, until: float, now: float, grace_s: float,
                 limit: int = 1000) -> list[tuple[str, float]]:
        """(item id, due time) of items due by ``until``, each given the due time ``max(due,
        now) + grace_s`` in the same step, so a second sweeper does not send it again."""
        found = self._script(_TAKE_DUE)(keys=[keys.due(batch)], args=[until, now, grace_s, limit])
        return [(found[i], float(found[i + 1])) for i in range(0, len(found), 2)]

    def due_at(self, batch: str, item_id: str) -> float | None:
        score = self._r.zscore(keys.due(batch), item_id)
        return float(score) if score is not None else None

    def clear_due(self, batch: str, item_id: str) -> None:
        self._r.zrem(keys.due(batch), item_id)

    def mark_started(self, batch: str) -> bool:
        """Record that a batch with a start time was started; False if it already was."""
        return bool(self._r.hsetnx(keys.meta(batch), "started", 1))

    def _started(self, batch: str) -> bool:
        return bool(self._r.hexists(keys.meta(batch), "started"))

    def sweep_needed(self, now: float, ahead_s: float = 0.0) -> bool:
        """Whether a sweep has work: an item whose task is due within ``ahead_s`` (a long wait
        kept here, or a task lost), a batch whose start time came, a batch paused, its provider
        unreachable or its output folder unwritable (to pause or resume it)."""
        for batch in self.batches():
            meta = self.batch(batch)
            if meta is None:
                continue
            if meta.paused or (meta.start_at and meta.start_at <= now and not self._started(batch)):
                return True
            if self._r.exists(keys.provider_down(meta.provider), keys.output_problem(batch),
                             keys.account_problem(meta.provider),
                             keys.account_problem(meta.provider, meta.model)):
                return True
            if self.overdue(batch, now + ahead_s, limit=1):
                return True
        return False

    def begin_task(self, task_id: str, batch: str | None, item_id: str | None
                   ) -> tuple[int, BatchMeta | None, dict[str, str] | None]:
        """A task starts: count its delivery, and read its batch and item, in one round trip. The
        item comes as stored (``ItemRecord.from_hash`` reads it), so a record that cannot be read
        fails in the step, where it counts against the item."""
        pipe = self._r.pipeline(transaction=False)
        pipe.incr(keys.delivery(task_id))
        pipe.expire(keys.delivery(task_id), 86400)
        if batch is not None and item_id is not None:
            pipe.hgetall(keys.meta(batch))
            pipe.hgetall(keys.item(batch, item_id))
        answers = pipe.execute()
        if len(answers) < 4:
            return int(answers[0]), None, None
        return int(answers[0]), meta_from(answers[2]), answers[3] or None

    def end_task(self, task_id: str | None, dues: Iterable[tuple[str, str, float]]) -> None:
        """Record when each (batch, item id) is due next, and forget the task's delivery count
        (it ran), in one round trip."""
        pipe = self._r.pipeline(transaction=False)
        for batch, item_id, when in dues:
            pipe.zadd(keys.due(batch), {item_id: when})
        if task_id is not None:
            pipe.unlink(keys.delivery(task_id))
        pipe.execute()

    def task_leases(self, ttl_s: float) -> TaskLeases:
        """The leases of running tasks on items (``jobs/leases.py``), over this store's Redis."""
        return TaskLeases(self._r, ttl_s)

    def open_look_window(self, batch: str, item_id: str, seconds: float) -> None:
        open_look_window(self._r, batch, item_id, seconds)

    def look_window_open(self, batch: str, item_id: str) -> bool:
        return look_window_open(self._r, batch, item_id)

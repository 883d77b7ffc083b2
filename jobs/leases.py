"""Task leases: a task that works on an item holds a lease on it, a Redis key with a short TTL that
the task renews while it runs (a long POST, a long download). The sweeper and ``enqueue`` never
send a step for an item whose lease is live: a task still running is not a lost one.

The TTL is kept by the Redis server (SET PX), so a jump of a worker's wall clock neither ends a
lease early nor keeps it alive: a lease ends when its holder stops renewing it, or releases it."""

from __future__ import annotations

import uuid
from typing import Any

import redis

from reelbatch.jobs import keys

# Renew only one's own lease (taking it back if it lapsed and nobody took it since); release only
# one's own.
_RENEW = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] or not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class TaskLeases:
    """The leases of running tasks on items, for one Redis."""

    def __init__(self, client: redis.Redis, ttl_s: float):
        self.r: Any = client
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def take(self, batch: str, item_id: str) -> str | None:
        """A token for the lease, or None when another task holds it."""
        token = uuid.uuid4().hex
        taken = self.r.set(keys.task_lease(batch, item_id), token, nx=True, px=self.ttl_ms)
        return token if taken else None

    def renew(self, batch: str, item_id: str, token: str) -> bool:
        return bool(self._renew(keys=[keys.task_lease(batch, item_id)], args=[token, self.ttl_ms]))

    def release(self, batch: str, item_id: str, token: str) -> None:
        self._release(keys=[keys.task_lease(batch, item_id)], args=[token])

    def held(self, batch: str, item_id: str) -> bool:
        return bool(self.r.exists(keys.task_lease(batch, item_id)))

    def live(self, batch: str, item_ids: list[str]) -> set[str]:
        """The items among ``item_ids`` that a running task holds."""
        found: set[str] = set()
        for start in range(0, len(item_ids), 1000):
            chunk = item_ids[start:start + 1000]
            pipe = self.r.pipeline(transaction=False)
            for item_id in chunk:
                pipe.exists(keys.task_lease(batch, item_id))
            found.update(i for i, on in zip(chunk, pipe.execute(), strict=True) if on)
        return found


def open_look_window(client: Any, batch: str, item_id: str, seconds: float) -> None:
    """Start the window over which a reconcile looks again for a lost submit's generation (kept if
    it is open already). Its end is kept by the Redis server, like a lease's."""
    client.set(keys.look_window(batch, item_id), 1, nx=True, px=max(1, int(seconds * 1000)))


def look_window_open(client: Any, batch: str, item_id: str) -> bool:
    return bool(client.exists(keys.look_window(batch, item_id)))

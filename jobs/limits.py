"""Limits that hold across every worker: a concurrency semaphore with leases and a request-rate
limiter, both in Redis, plus the waiting line of items that want a slot.

A slot is held from the moment an item is handed to a submit task until its remote generation ends.
A holder renews its lease each time it hears from the provider; a lease nobody renews (its worker
died and nothing picked the item up) expires and the slot returns to the pool. Lease ends are kept
in the Redis server's clock, so a jump of a worker's wall clock expires no lease.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from reelbatch.jobs import keys
from reelbatch.jobs.tuning import SLOT_LEASE_S as LEASE_S

# Lease ends are in the Redis server's clock (TIME), never a client's: a worker whose wall clock
# jumps (a laptop's suspend, an NTP step) neither expires every other holder's lease nor its own.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

_ACQUIRE = _NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ends = now + tonumber(ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], ends, ARGV[2])
  return 1
end
local limit = tonumber(redis.call('GET', KEYS[2]) or ARGV[3])
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], ends, ARGV[2])
  return 1
end
return 0
"""

_RENEW = _NOW + """
local ends = now + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', ends, ARGV[i]) end
return #ARGV - 1
"""

_HELD = _NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""

_WAIT = """
local added = 0
for i = 2, #ARGV do
  if redis.call('SADD', KEYS[2], ARGV[i]) == 1 then
    if ARGV[1] == 'front' then redis.call('LPUSH', KEYS[1], ARGV[i])
    else redis.call('RPUSH', KEYS[1], ARGV[i]) end
    added = added + 1
  end
end
return added
"""

_POP = """
local who = redis.call('LPOP', KEYS[1])
if who then redis.call('SREM', KEYS[2], who) end
return who
"""


def holder(batch: str, item_id: str) -> str:
    return f"{batch}\x1f{item_id}"


def split_holder(value: str) -> tuple[str, str]:
    batch, item_id = value.split("\x1f", 1)
    return batch, item_id


class Slots:
    """The provider account's in-flight generations: at most ``limit`` holders at once."""

    def __init__(self, client: redis.Redis, provider: str, lease_s: float = LEASE_S):
        self.r: Any = client      # decodes to str, which redis-py's types cannot say
        self.provider, self.lease_s = provider, lease_s
        self.key, self.limit_key = keys.slots(provider), keys.slots_limit(provider)
        self.wait_key, self.wait_set_key = keys.waiting(provider), keys.waiting_set(provider)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._held = client.register_script(_HELD)
        self._wait = client.register_script(_WAIT)
        self._pop = client.register_script(_POP)

    def set_limit(self, limit: int) -> None:
        self.r.set(self.limit_key, limit)

    def acquire(self, who: str, default_limit: int = 5) -> bool:
        return bool(self._acquire(keys=[self.key, self.limit_key], args=[self.lease_s, who, default_limit]))

    def renew(self, who: str) -> None:
        self.renew_many([who])

    def renew_many(self, whos: list[str]) -> None:
        """Renew the leases of holders heard of at once (a lister's look)."""
        for start in range(0, len(whos), 1000):
            self._renew(keys=[self.key], args=[self.lease_s, *whos[start:start + 1000]])

    def release(self, who: str) -> bool:
        return bool(self.r.zrem(self.key, who))

    def held(self) -> int:
        return int(self._held(keys=[self.key]))

    def holders(self) -> list[str]:
        return list(self.r.zrange(self.key, 0, -1))

    # --- the waiting line: a list in arrival order, and a set so nobody waits twice ------
    def wait(self, whos: list[str], front: bool = False) -> int:
        """Put holders in line (at the back, or the front); returns how many were not there yet."""
        added = 0
        for start in range(0, len(whos), 1000):
            chunk = whos[start:start + 1000]
            added += self._wait(keys=[self.wait_key, self.wait_set_key],
                                args=["front" if front else "back", *chunk])
        return added

    def next_waiting(self) -> str | None:
        who: str | None = self._pop(keys=[self.wait_key, self.wait_set_key])
        return who

    def waiting(self) -> int:
        return int(self.r.llen(self.wait_key))


class RequestRate:
    """Requests per minute per provider account, shared by every worker (moving window)."""

    def __init__(self, redis_url: str, provider: str):
        self.provider = provider
        self._limiter = MovingWindowRateLimiter(storage_from_string(redis_url))

    def take(self, per_minute: int) -> float:
        """Take one token: 0.0 when granted, else the seconds to wait before asking again."""
        item = RateLimitItemPerMinute(per_minute)
        if self._limiter.hit(item, "reelbatch", self.provider):
            return 0.0
        stats = self._limiter.get_window_stats(item, "reelbatch", self.provider)
        return max(0.05, stats.reset_time - time.time())

    def full_until(self, per_minute: int) -> float | None:
        """When the window has room again (unix seconds), or None when it has room now."""
        item = RateLimitItemPerMinute(per_minute)
        if self._limiter.test(item, "reelbatch", self.provider):
            return None
        return float(self._limiter.get_window_stats(item, "reelbatch", self.provider).reset_time)

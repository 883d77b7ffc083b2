"""Queue depth in Redis: a provider account's running limit and the generations kept queued at the
provider beyond it. The slots (limits.py) then hold up to ``running + depth`` items, so a running
slot that frees at the provider starts the next generation at once instead of idling until a
completion is noticed and the next item submitted. What the depth is, is decided in
worker/engine/depth.py; this module only keeps it and opens the slots.

At a provider that serves a batch over several providers (``share``), the slots past the running
limit are open only as far as ``depth`` items still wait behind them once the free running slots are
filled: near the end of a batch the last items are not held queued at one provider (they go to
whichever provider frees a running slot first). A provider alone takes its last items queued.
"""

from __future__ import annotations

from typing import Any

import redis

from reelbatch.jobs import keys

# past the running limit: the depth, as far as items wait once the free running slots are filled
# (at a shared provider, only as far as at least ``depth`` items still wait behind)
_OPEN = """
local running = tonumber(redis.call('HGET', KEYS[1], 'running') or '')
if not running then return -1 end
local depth = tonumber(redis.call('HGET', KEYS[1], 'depth') or '0') or 0
if redis.call('EXISTS', KEYS[4]) == 1 then depth = 0 end
local free = math.max(0, running - redis.call('ZCARD', KEYS[5]))
local behind = redis.call('LLEN', KEYS[2]) - free
if redis.call('EXISTS', KEYS[6]) == 1 then behind = behind - depth end
local extra = math.min(depth, math.max(0, behind))
redis.call('SET', KEYS[3], running + extra)
return running + extra
"""


# a moving average of seconds in the field ARGV[3] (ARGV[2]: the weight of a new sample)
_AVERAGE = """
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[3]) or '')
local new = tonumber(ARGV[1])
if old then new = old + tonumber(ARGV[2]) * (new - old) end
redis.call('HSET', KEYS[1], ARGV[3], new)
return tostring(new)
"""
SAMPLE_WEIGHT = 0.05


class QueueDepth:
    """One provider account's running limit and queue depth (``rb:depth:<provider>``)."""

    def __init__(self, client: redis.Redis, provider: str):
        self.r: Any = client
        self.key, self.refused_key = keys.depth(provider), keys.depth_refused(provider)
        self.shared_key = keys.depth_shared(provider)
        self._keys = [self.key, keys.waiting(provider), keys.slots_limit(provider), self.refused_key,
                      keys.slots(provider), self.shared_key]
        self._open = client.register_script(_OPEN)
        self._average = client.register_script(_AVERAGE)

    def set(self, running: int, depth: int) -> None:
        """The account's running limit (max_concurrency) and the depth kept beyond it."""
        self.r.hset(self.key, mapping={"running": running, "depth": depth})
        self.open()

    def set_depth(self, depth: int) -> None:
        self.r.hset(self.key, "depth", depth)

    def depth(self) -> int:
        return int(self.r.hget(self.key, "depth") or 0)

    def running(self) -> int | None:
        value = self.r.hget(self.key, "running")
        return int(value) if value is not None else None

    def notice(self, seconds: float) -> None:
        """A completion was noticed ``seconds`` after it happened (by an event, a look, a poll)."""
        self._average(keys=[self.key], args=[max(0.0, seconds), SAMPLE_WEIGHT, "noticed_s"])

    def hop(self, seconds: float) -> None:
        """The step a noticed completion sends (its download, beside the next submit) began
        ``seconds`` after it was noticed: the task queue's delay."""
        self._average(keys=[self.key], args=[max(0.0, seconds), SAMPLE_WEIGHT, "hop_s"])

    def delays(self) -> tuple[float | None, float | None]:
        """How long completions wait to be noticed and the next step then waits to start, on
        average (None: not seen yet)."""
        noticed, hop = self.r.hmget(self.key, ["noticed_s", "hop_s"])
        return (float(noticed) if noticed is not None else None, float(hop) if hop is not None else None)

    def open(self) -> int:
        """Set the slots' limit: the running limit, plus as much of the depth as leaves ``depth``
        items waiting (none once the provider refused a submit past its limit); -1 (untouched)
        when no running limit is known yet."""
        return int(self._open(keys=self._keys))

    def refuse(self, ttl_s: float) -> None:
        """The provider refused a submit past its running limit: keep none queued there."""
        self.r.set(self.refused_key, 1, ex=max(1, int(ttl_s)))
        self.open()

    def share(self, ttl_s: float) -> None:
        """A batch over several providers uses this one: for ``ttl_s`` (renewed on each sweep) its
        last items are not held queued here."""
        self.r.set(self.shared_key, 1, ex=max(1, int(ttl_s)))

    def shared(self) -> bool:
        return bool(self.r.exists(self.shared_key))

    def refused(self) -> bool:
        return bool(self.r.exists(self.refused_key))

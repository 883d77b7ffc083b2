"""What every part of the store shares: the Redis client (private to the store), its Lua scripts,
and how a key family's set names and Redis answers are read."""

from __future__ import annotations

from typing import Any

import redis

from reelbatch.jobs import keys
from reelbatch.jobs.state import ItemState

CHUNK = 1000   # items per pipelined round trip
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)   # the store cannot be reached (for now)


class StoreBase:
    """The Redis client the store's parts share; none of them hands it out."""

    def __init__(self, client: redis.Redis):
        # Any: the client decodes to str (decode_responses=True), which redis-py's types cannot say
        self._r: Any = client
        self._scripts: dict[str, Any] = {}

    def _script(self, lua: str) -> Any:
        """The registered script of ``lua`` (registering sends nothing: it is loaded on first use)."""
        script = self._scripts.get(lua)
        if script is None:
            script = self._scripts[lua] = self._r.register_script(lua)
        return script


def state_set(batch: str, state: ItemState | str) -> str:
    return keys.state_prefix(batch) + str(ItemState(state).value)


def pairs(flat: Any) -> dict[str, str]:
    """A hash as Lua hands it back: a flat list of field, value (or already a mapping)."""
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True))


def dollars(value: str | None) -> float:
    return max(0.0, round(float(value or 0.0), 6))

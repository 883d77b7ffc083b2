"""A batch over several providers in the store: its routing settings, and each item's binding to
the provider a concurrency slot handed it to. The binding is set atomically, only on a pending item
nobody holds: once bound, the item is submitted, polled, reconciled and downloaded there, and its
spec is that provider's view of it (model id, price), so everything downstream (results, costs,
the engine's steps) reads its provider from the item."""

from __future__ import annotations

from typing import Any

import redis
from pydantic import BaseModel, ConfigDict

from reelbatch.jobs import keys
from reelbatch.jobs.item import Item
from reelbatch.jobs.manifest import Manifest

BOUND = "bound"   # the item hash's field: the provider it is bound to

# KEYS: the item, the batch's estimates per state. ARGV: provider, its view's spec JSON and price.
_BIND = """
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
local bound = redis.call('HGET', KEYS[1], 'bound')
if bound and bound ~= '' and bound ~= ARGV[1] then return 0 end
local est = tonumber(redis.call('HGET', KEYS[1], 'est') or '0')
redis.call('HSET', KEYS[1], 'bound', ARGV[1], 'spec', ARGV[2], 'est', ARGV[3])
redis.call('HINCRBYFLOAT', KEYS[2], 'pending', tonumber(ARGV[3]) - est)
return 1
"""

# A pending item (nothing made for it where it was bound) is free to go elsewhere.
_UNBIND = """
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
return redis.call('HDEL', KEYS[1], 'bound')
"""

# A pending item registered again: unbound, with the plan's spec (its offers, its price).
_RESET = """
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
local est = tonumber(redis.call('HGET', KEYS[1], 'est') or '0')
redis.call('HDEL', KEYS[1], 'bound')
redis.call('HSET', KEYS[1], 'spec', ARGV[1], 'est', ARGV[2])
redis.call('HINCRBYFLOAT', KEYS[2], 'pending', tonumber(ARGV[2]) - est)
return 1
"""


def providers_of(fanout: Fanout | None, provider: str) -> tuple[str, ...]:
    """A batch's providers: its list in a batch over several (``fanout``), else its one."""
    return fanout.providers if fanout is not None else (provider,)


class Fanout(BaseModel):
    """How a batch spreads over its providers (``provider:`` a list in the manifest)."""

    model_config = ConfigDict(frozen=True)
    providers: tuple[str, ...]
    route: str = "cheapest"
    limits: dict[str, tuple[int, int]] = {}    # provider -> (max_concurrency, requests_per_minute)
    depths: dict[str, int] = {}                # provider -> its own limits.queue_depth, where set
    on_other_provider: bool = False
    by_price: tuple[str, ...] = ()   # the providers, cheapest per video second first

    @classmethod
    def of(cls, manifest: Manifest, items: list[Item]) -> Fanout | None:
        if not manifest.fanout:
            return None
        return cls(providers=manifest.providers, route=manifest.route,
                   limits={p: manifest.limits.of(p) for p in manifest.providers},
                   depths={p: d for p in manifest.providers if (d := manifest.limits.depth_of(p)) is not None},
                   on_other_provider=manifest.retry.on_other_provider,
                   by_price=tuple(sorted(manifest.providers, key=lambda p: _price(items, p))))

    def limit(self, provider: str) -> tuple[int, int]:
        return self.limits.get(provider, (5, 60))


class FanoutStore:
    """The fan-out side of the store, over its Redis client."""

    def __init__(self, client: redis.Redis):
        self.r: Any = client
        self._bind = client.register_script(_BIND)
        self._unbind = client.register_script(_UNBIND)
        self._reset = client.register_script(_RESET)

    def save(self, batch: str, fanout: Fanout | None) -> bool:
        """Save the batch's routing (None: one provider); whether it had one or has one now."""
        had = bool(self.r.delete(keys.fanout(batch)))
        if fanout is not None:
            self.r.hset(keys.fanout(batch), "config", fanout.model_dump_json())
        return had or fanout is not None

    def load(self, batch: str) -> Fanout | None:
        data = self.r.hget(keys.fanout(batch), "config")
        return Fanout.model_validate_json(data) if data else None

    def bind(self, batch: str, item: Item, provider: str) -> bool:
        """Bind a pending item to ``provider`` (its spec becomes that provider's view); False when it
        is not pending or is bound to another provider."""
        view = item.bound_to(provider)
        return bool(self._bind(keys=[keys.item(batch, item.item_id), keys.estimates(batch)],
                               args=[provider, view.model_dump_json(), view.estimated_cost_usd]))

    def unbind(self, batch: str, item_id: str) -> bool:
        """Free a pending item to go to another provider; False when it is not pending or unbound."""
        return bool(self._unbind(keys=[keys.item(batch, item_id)]))

    def reset(self, batch: str, items: list[Item]) -> None:
        """Pending items as the plan has them now, bound nowhere (others are left as they are)."""
        for item in items:
            self._reset(keys=[keys.item(batch, item.item_id), keys.estimates(batch)],
                        args=[item.model_dump_json(), item.estimated_cost_usd])

    def bindings(self, batch: str, item_ids: list[str]) -> dict[str, str | None]:
        """Each item's provider (None: not bound), in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for item_id in item_ids:
            pipe.hget(keys.item(batch, item_id), BOUND)
        return {i: (b or None) for i, b in zip(item_ids, pipe.execute(), strict=True)}

    def specs(self, batch: str, item_ids: list[str]) -> dict[str, Item]:
        pipe = self.r.pipeline(transaction=False)
        for item_id in item_ids:
            pipe.hget(keys.item(batch, item_id), "spec")
        return {i: Item.model_validate_json(s) for i, s in zip(item_ids, pipe.execute(), strict=True) if s}

    def in_flight(self, batch: str, item_ids: list[str], provider: str) -> list[tuple[str, str, float]]:
        """(item id, generation id, submitted at) of the items bound to ``provider`` that have a
        generation, in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for item_id in item_ids:
            pipe.hmget(keys.item(batch, item_id), [BOUND, "generation_id", "submitted_at"])
        return [(item_id, gid, float(at or 0))
                for item_id, (bound, gid, at) in zip(item_ids, pipe.execute(), strict=True)
                if bound == provider and gid]

    def flag(self, batch: str, name: str, value: str | None = None) -> str | None:
        """A small per-batch note (e.g. the providers active when it was last routed)."""
        if value is not None:
            self.r.hset(keys.fanout(batch), name, value)
            return value
        found: str | None = self.r.hget(keys.fanout(batch), name)
        return found


def _price(items: list[Item], provider: str) -> float:
    """USD per video second at ``provider`` over the items it can make (infinite: none)."""
    cost = seconds = 0.0
    for item in items:
        for offer in item.offers:
            if offer.provider == provider:
                cost, seconds = cost + offer.estimated_cost_usd, seconds + item.video_seconds
    return cost / seconds if seconds else float("inf")

"""The store's ledger: a batch's spend (charged, estimated, committed), charges owed by a provider's
history, which item owns which paid generation (and the paid ones nobody owns), request outcomes and
learned generation times."""

from __future__ import annotations

import json
import time
from typing import Any

from reelbatch.jobs import keys
from reelbatch.jobs.item import Item
from reelbatch.jobs.limits import holder, split_holder
from reelbatch.jobs.money import Spend
from reelbatch.jobs.store_base import StoreBase, dollars

UNCLAIMED_WHY = "made since the batch started; no item claims it"

# Charge a finished generation the provider's figure: once, moving the amount it was counted at
# (estimated) to charged in the batch's spend.
_CHARGE = """
local source = redis.call('HGET', KEYS[1], 'cost_source')
if source ~= 'estimated' then return 0 end
local old = tonumber(redis.call('HGET', KEYS[1], 'cost_usd') or '0') or 0
redis.call('HSET', KEYS[1], 'cost_usd', ARGV[1], 'cost_source', 'charged')
redis.call('HINCRBYFLOAT', KEYS[2], 'estimated_usd', -old)
redis.call('HINCRBYFLOAT', KEYS[2], 'charged_usd', ARGV[1])
return 1
"""


class Ledger(StoreBase):
    """Money and measured times: what was spent, what is owed, what a generation took."""

    def add_spend(self, batch: str, usd: float, charged: bool) -> None:
        """Count a generation the provider made: charged when it reported the cost."""
        self._r.hincrbyfloat(keys.meta(batch), "charged_usd" if charged else "estimated_usd", usd)

    def commit_cost(self, batch: str, usd: float) -> float:
        """Add (or, negative, take back) estimated spend reserved for submits; returns the total."""
        return float(self._r.hincrbyfloat(keys.meta(batch), "committed_usd", usd))

    def spend(self, batch: str) -> Spend:
        """The batch's spend; sums moved from estimated to charged leave no float dust behind."""
        charged, estimated = self._r.hmget(keys.meta(batch), ["charged_usd", "estimated_usd"])
        return Spend(dollars(charged), dollars(estimated))

    def owe_charge(self, provider: str, batch: str, item_id: str, since: float) -> None:
        """The item's cost is an estimate until the provider's history gives the charged figure."""
        self._r.zadd(keys.uncharged(provider), {holder(batch, item_id): since})

    def owed_charges(self, provider: str, limit: int = 5000) -> list[tuple[str, str, float]]:
        """(batch, item id, since) of items waiting for their charged cost, oldest first."""
        rows = self._r.zrange(keys.uncharged(provider), 0, limit - 1, withscores=True)
        return [(*split_holder(who), float(since)) for who, since in rows]

    def charge(self, provider: str, batch: str, item_id: str, usd: float | None) -> bool:
        """Record what the provider charged for the item's generation (None: forget it, there is
        nothing to charge): its cost becomes that figure and the batch's spend moves it from
        estimated to charged, once. True when it was moved."""
        moved = False
        if usd is not None:
            moved = bool(self._script(_CHARGE)(keys=[keys.item(batch, item_id), keys.meta(batch)], args=[usd]))
        self._r.zrem(keys.uncharged(provider), holder(batch, item_id))
        return moved

    def claim_generation(self, provider: str, generation_id: str, owner: str) -> bool:
        """Record whose generation this is; False when another owner has it. Claiming one's own
        again is True (a reconcile that claimed and then died must adopt it next time)."""
        index = keys.generations(provider)
        return bool(self._r.hsetnx(index, generation_id, owner)) or \
            self._r.hget(index, generation_id) == owner

    def generation_owner(self, provider: str, generation_id: str) -> str | None:
        owner: str | None = self._r.hget(keys.generations(provider), generation_id)
        return owner

    def record_orphan(self, batch: str, generation_id: str, item_id: str, usd: float, why: str) -> bool:
        """A paid generation no item holds (an answer that came after its item moved on): kept
        for `status` and counted in the spend, once."""
        entry = json.dumps({"item_id": item_id, "cost_usd": usd, "why": why, "at": round(time.time(), 3)})
        if not self._r.hsetnx(keys.orphans(batch), generation_id, entry):
            return False
        self.add_spend(batch, usd, charged=False)
        return True

    def record_unclaimed(self, batch: str, generation_id: str, model: str, created_at: float | None,
                         cost_usd: float | None, status: str) -> bool:
        """A generation of the batch's model made since it started that no item claims, kept once
        beside the orphans (marked ``unclaimed``); not counted in the spend: it may be another
        client's. False when it was known already."""
        entry = {"item_id": None, "unclaimed": True, "model": model, "created_at": created_at,
                 "cost_usd": cost_usd, "status": status, "why": UNCLAIMED_WHY, "at": round(time.time(), 3)}
        return bool(self._r.hsetnx(keys.orphans(batch), generation_id, json.dumps(entry)))

    def orphans(self, batch: str) -> dict[str, dict[str, Any]]:
        """generation id -> what is known of a paid generation no item holds."""
        return {g: json.loads(v) for g, v in self._r.hgetall(keys.orphans(batch)).items()}

    def count_request(self, provider: str, outcome: str) -> None:
        """One more provider request with this outcome (ok | transient | permanent)."""
        self._r.hincrby(keys.requests(provider), outcome, 1)

    def requests(self, provider: str) -> dict[str, int]:
        return {k: int(v) for k, v in self._r.hgetall(keys.requests(provider)).items()}

    def record_time(self, item: Item, seconds: float, keep: int) -> None:
        key = keys.times(item.provider, item.model, item.video_seconds)
        pipe = self._r.pipeline(transaction=False)
        pipe.lpush(key, round(seconds, 3))
        pipe.ltrim(key, 0, keep - 1)
        pipe.execute()

    def times(self, item: Item) -> list[float]:
        return [float(x) for x in self._r.lrange(keys.times(item.provider, item.model,
                                                           item.video_seconds), 0, -1)]

    def learned_times(self) -> dict[tuple[str, str, int], list[float]]:
        """Every kept generation time, per (provider, model, seconds): for metrics."""
        found = {}
        for key in self._r.scan_iter(match=keys.TIMES_MATCH, count=500):
            found[keys.times_parts(key)] = [float(x) for x in self._r.lrange(key, 0, -1)]
        return found

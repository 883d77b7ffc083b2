"""The store's state machine: an item moves between states in one Lua script, which checks the
current state against the caller's expectation and the allowed transitions, moves the item between
the per-state sets (whose sizes are the per-state counters), and writes its fields, atomically."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from reelbatch.jobs import keys
from reelbatch.jobs.state import TERMINAL, ItemState, sources_of
from reelbatch.jobs.store_base import StoreBase, pairs
from reelbatch.jobs.store_records import ItemRecord, TransitionRefused, flat

OUTCOME_LOG = 10_000   # terminal outcomes kept per batch for progress readers (a bounded stream)

_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {-1, ''} end
local allowed = false
for s in string.gmatch(ARGV[2], '[^,]+') do if s == cur then allowed = true end end
if not allowed then return {0, cur} end
local to = ARGV[3]
if cur ~= to then
  redis.call('SMOVE', ARGV[1] .. cur, ARGV[1] .. to, ARGV[4])
  local est = redis.call('HGET', KEYS[1], 'est')
  if est then
    redis.call('HINCRBYFLOAT', KEYS[5], cur, -tonumber(est))
    redis.call('HINCRBYFLOAT', KEYS[5], to, est)
  end
  if cur == 'pending' then redis.call('SREM', KEYS[6], ARGV[4]) end
end
local sets = cjson.decode(ARGV[5])
local flat = {'state', to}
for k, v in pairs(sets) do flat[#flat + 1] = k; flat[#flat + 1] = v end
redis.call('HSET', KEYS[1], unpack(flat))
local incr = cjson.decode(ARGV[6])
for k, v in pairs(incr) do redis.call('HINCRBY', KEYS[1], k, v) end
if sets['submitted_at'] and sets['submitted_at'] ~= '' then
  redis.call('HSETNX', KEYS[4], 'first_submitted_at', sets['submitted_at'])
end
if sets['completed_at'] and sets['completed_at'] ~= '' then
  redis.call('HSET', KEYS[4], 'last_completed_at', sets['completed_at'])
end
if ARGV[9] ~= '' then redis.call('HINCRBYFLOAT', KEYS[4], ARGV[9], ARGV[10]) end
if ARGV[12] == '1' then redis.call('DEL', KEYS[7]) end
if ARGV[7] == '1' then redis.call('ZREM', KEYS[2], ARGV[4]) end
if ARGV[7] == '1' and cur ~= to then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'item', ARGV[4], 'state', to)
end
if ARGV[11] == '1' then return {1, cur, redis.call('HGETALL', KEYS[1])} end
return {1, cur}
"""


@dataclass(frozen=True)
class Move:
    """One state change asked of the store: to ``target`` from one of ``expected`` (None: every
    state the state machine allows), with the fields written and counters added in the same step."""

    target: ItemState
    expected: frozenset[ItemState] | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    incr: dict[str, int] = field(default_factory=dict)
    spend: tuple[float, bool] | None = None   # (usd, charged) added to the batch's spend
    clear_output: bool = False                # forget the batch's "output cannot be written" mark
    read: bool = False                        # hand back the item as it is afterwards

    def sources(self) -> set[ItemState]:
        """The states the item may be in for the move to happen."""
        allowed = set(sources_of(self.target))
        if self.expected is not None:
            allowed &= self.expected
            if self.target in self.expected:
                allowed.add(self.target)  # an idempotent re-write of the same state, when asked for
        return allowed


def _expected(states: Iterable[ItemState] | None) -> frozenset[ItemState] | None:
    return None if states is None else frozenset(states)


class Transitions(StoreBase):
    """Item state changes, each one atomic step."""

    def transition(self, batch: str, item_id: str, target: ItemState,
                   expected: Iterable[ItemState] | None = None,
                   incr: dict[str, int] | None = None, spend: tuple[float, bool] | None = None,
                   clear_output: bool = False, **fields: Any) -> ItemState:
        """Move an item to ``target`` if it is in one of ``expected`` (default: every state the
        state machine allows). Returns the state it left; raises TransitionRefused otherwise.
        ``spend``: (usd, charged) added to the batch's spend in the same step (a generation made);
        ``clear_output``: forget the batch's "output folder cannot be written" mark."""
        move = Move(target, _expected(expected), fields, incr or {}, spend, clear_output)
        return self._move(batch, item_id, move)[0]

    def transition_read(self, batch: str, item_id: str, target: ItemState,
                        expected: Iterable[ItemState] | None = None, clear_output: bool = False,
                        **fields: Any) -> ItemRecord:
        """``transition``, returning the item as it is afterwards (one round trip)."""
        move = Move(target, _expected(expected), fields, clear_output=clear_output, read=True)
        record = self._move(batch, item_id, move)[1]
        assert record is not None
        return record

    def _move(self, batch: str, item_id: str, move: Move) -> tuple[ItemState, ItemRecord | None]:
        fields = {**move.fields, "updated_at": time.time()}
        spent = ("charged_usd" if move.spend[1] else "estimated_usd", move.spend[0]) if move.spend else ("", 0)
        answer = self._script(_TRANSITION)(
            keys=[keys.item(batch, item_id), keys.due(batch), keys.outcomes(batch), keys.meta(batch),
                  keys.estimates(batch), keys.budget_waiting(batch), keys.output_problem(batch)],
            args=[keys.state_prefix(batch), ",".join(sorted(s.value for s in move.sources())),
                  move.target.value, item_id, json.dumps(flat(fields)), json.dumps(move.incr),
                  "1" if move.target in TERMINAL else "0", OUTCOME_LOG, spent[0], spent[1],
                  "1" if move.read else "0", "1" if move.clear_output else "0"])
        status, current = answer[0], answer[1]
        if status != 1:
            raise TransitionRefused(item_id, current or "missing", move.target.value)
        record = ItemRecord.from_hash(pairs(answer[2])) if move.read else None
        return ItemState(current), record

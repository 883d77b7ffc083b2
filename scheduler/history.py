"""What the state store already knows about a plan: in its own batch, the items already made,
those to generate and those paid again (an id whose paid video had other content); in other
batches of the data dir, identical succeeded requests (same content key) that ``reuse:`` can take.

The store is asked only when it is reachable without starting anything expensive: the configured
broker, or the data dir's embedded Redis when it has run there before (a redis-server reading its
append-only file); otherwise the plan says it did not look."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis

from reelbatch.jobs.item import Item
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import ItemRecord, Store
from reelbatch.scheduler.stack.embedded import EmbeddedRedis

TIMEOUT_S = 2


NO_STORE = "no batch has run with this data dir (REELBATCH_DATA_DIR): every item is new"


@contextmanager
def known_store(settings: Settings) -> Iterator[tuple[Store | None, str]]:
    """The store, or None and why it was not asked (reaching it would need a new broker)."""
    embedded = None
    url = settings.broker_url
    if not url:
        if not (settings.data_dir / "redis.port").exists():
            yield None, NO_STORE
            return
        embedded = EmbeddedRedis(settings.data_dir)
        url = embedded.start()
    try:
        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=TIMEOUT_S,
                                      socket_connect_timeout=TIMEOUT_S)
        client.ping()
        yield Store(client), ""
    except (redis.RedisError, OSError, ValueError) as exc:
        yield None, f"not looked up: the broker did not answer ({type(exc).__name__})"
    finally:
        if embedded is not None:
            embedded.stop()


@dataclass
class SeenBefore:
    """The plan against its batch in the store."""

    made: list[Item] = field(default_factory=list)
    to_generate: list[Item] = field(default_factory=list)
    paid_again: list[Item] = field(default_factory=list)


def _succeeded_keys(store: Store, batch: str) -> dict[str, ItemRecord]:
    return {rec.item.content_key: rec for rec in store.items(batch, S.SUCCEEDED)}


def seen_before(store: Store, batch: str, items: list[Item]) -> SeenBefore | None:
    if store.batch(batch) is None:
        return None
    made_keys = _succeeded_keys(store, batch)
    by_id = {rec.item_id: rec for rec in store.items(batch)}
    archived = store.archived_many(batch, [(i.item_id, i.content_key) for i in items])
    seen = SeenBefore()
    for item, old in zip(items, archived, strict=True):
        if item.content_key in made_keys or (old is not None and old.state is S.SUCCEEDED):
            seen.made.append(item)
            continue
        seen.to_generate.append(item)
        rec = by_id.get(item.item_id)
        if rec is not None and rec.state is S.SUCCEEDED and rec.item.content_key != item.content_key:
            seen.paid_again.append(item)
    return seen


def identical_elsewhere(store: Store, batch: str, items: list[Item]) -> dict[str, list[Item]]:
    """Per other batch, the plan's items it already made (same content key), each counted once."""
    wanted = {item.content_key: item for item in items}
    found: dict[str, list[Item]] = {}
    taken: set[str] = set()
    for other in sorted(store.batches()):
        if other == batch:
            continue
        for key in _succeeded_keys(store, other):
            if key in wanted and key not in taken:
                taken.add(key)
                found.setdefault(other, []).append(wanted[key])
    return found


def cost(items: list[Item]) -> float:
    return round(sum(i.estimated_cost_usd for i in items), 2)

"""Every Redis key reelbatch writes, in one place (the store and the limits use nothing else).

``{b}`` is a Redis hash tag, so one batch's keys sit together on a cluster slot.

    rb:batches                        set of batch names
    rb:{b}:meta                       hash: the batch's settings and running totals
    rb:{b}:i:<item_id>                hash: one item (its spec as JSON, state, generation id, result...)
    rb:{b}:s:<state>                  set of item ids in that state (their sizes are the counts)
    rb:{b}:ids                        set of the batch's current item ids
    rb:{b}:v:<item_id>                hash: content key -> an archived (superseded or retired) version
    rb:{b}:due                        zset: item id -> when its next step is due: a long wait kept here
                                      (the sweeper sends it), or a sent task's deadline (resent if lost)
    rb:{b}:run:<item_id>              a running task's lease on the item (a token, with a TTL it renews)
    rb:{b}:look:<item_id>             set while a reconcile looks again for a lost submit's generation (TTL)
    rb:{b}:orphans                    hash: generation id -> a paid generation no item holds (late answer)
    rb:{b}:est                        hash: state -> the estimated cost of the batch's items in it
    rb:{b}:budget                     set of pending item ids parked by the batch's budget
    rb:{b}:a:<item_id>                list: one JSON line per failed attempt
    rb:{b}:fanout                     hash: a batch over several providers: its providers, route,
                                      per-provider limits (jobs/fanout.py); an item's provider once a
                                      slot binds it is the item hash's ``bound``
    rb:{b}:index:turn / :lock         whose turn it is to rewrite results.jsonl, and one writer at a time
    rb:{b}:outcomes                   stream: item id and state of each item that became terminal (bounded)
    rb:{b}:notified                   hash: notifications already sent (scope:event:outcome id -> time)
    rb:gens:<provider>                hash: generation id -> "<batch>\\x1f<item id>" (who owns it)
    rb:slots:<provider>               zset: holders of the provider's concurrency slots -> lease end
    rb:slots:<provider>:limit         the provider's concurrency limit
    rb:wait:<provider>                list (+ :set): items waiting for a slot, in arrival order
    rb:depth:<provider>               hash: the account's running limit and the queue depth kept beyond it
    rb:depth:<provider>:refused       set when the provider refused a submit past its running limit
    rb:depth:<provider>:shared        set while a batch over several providers uses this one (TTL)
    rb:times:<provider>:<model>:<s>   list: learned generation times of a model and duration
    rb:deliv:<task id>                how often a task message was delivered (our redelivery cap)
    rb:events:<provider>:healthy      set while the provider's event stream is open (with a TTL)
    rb:sweep:lock                     one sweep at a time across the fleet (redis-py Lock)
    rb:sweeper                        set while a sweeper runs (with a TTL): long waits may be left to it
    rb:list:<provider>:lock           one lister per provider across the fleet (redis-py Lock)
    rb:list:<provider>:on             set while a lister lists the provider's generations (with a TTL)
    rb:requests:<provider>            hash: provider requests by outcome (ok, transient, permanent)
    rb:uncharged:<provider>           zset: "<batch>\\x1f<item id>" -> submit time, costs still estimated
    rb:workers                        zset: live workers -> when their heartbeat lapses
    rb:serves:<provider>              zset: live workers consuming the provider's queue -> heartbeat lapse
    rb:store:id                       this store's identity (a random id, set once): an output folder
                                      records the store that wrote it
    rb:down:<provider>                set while the provider cannot be reached: since when, and why
    rb:{b}:output                     set while the batch's output folder cannot be written: since, why
    rb:account:<provider>[:<model>]   set while the provider account (or one model) cannot take work (a
                                      key refused, no credits, a model gone): since, why; until a rerun
    rb:account-cleared:<provider>     when a rerun last cleared those marks (a credit failure from before is stale)
    LIMITS:...                        the request-rate windows, named by the `limits` library
"""

from __future__ import annotations

BATCHES = "rb:batches"
WORKERS = "rb:workers"
SWEEP_LOCK = "rb:sweep:lock"
SWEEPER = "rb:sweeper"
STORE_ID = "rb:store:id"


def _b(batch: str, suffix: str) -> str:
    return f"rb:{{{batch}}}:{suffix}"


def meta(batch: str) -> str:
    return _b(batch, "meta")


def item(batch: str, item_id: str) -> str:
    return _b(batch, f"i:{item_id}")


def state_prefix(batch: str) -> str:
    """The per-state sets are this prefix plus the state's value."""
    return _b(batch, "s:")


def ids(batch: str) -> str:
    return _b(batch, "ids")


def versions(batch: str, item_id: str) -> str:
    return _b(batch, f"v:{item_id}")


def due(batch: str) -> str:
    return _b(batch, "due")


def fanout(batch: str) -> str:
    return _b(batch, "fanout")


def attempts(batch: str, item_id: str) -> str:
    return _b(batch, f"a:{item_id}")


def generations(provider: str) -> str:
    return f"rb:gens:{provider}"


def slots(provider: str) -> str:
    return f"rb:slots:{provider}"


def slots_limit(provider: str) -> str:
    return f"rb:slots:{provider}:limit"


def waiting(provider: str) -> str:
    return f"rb:wait:{provider}"


def waiting_set(provider: str) -> str:
    return f"rb:wait:{provider}:set"


def depth(provider: str) -> str:
    return f"rb:depth:{provider}"


def depth_refused(provider: str) -> str:
    return f"rb:depth:{provider}:refused"


def depth_shared(provider: str) -> str:
    return f"rb:depth:{provider}:shared"


def times(provider: str, model: str, seconds: int) -> str:
    return f"rb:times:{provider}:{model}:{seconds}"


TIMES_MATCH = "rb:times:*"


def times_parts(key: str) -> tuple[str, str, int]:
    """(provider, model, seconds) of a ``times`` key (a model name may hold colons)."""
    provider, rest = key.removeprefix("rb:times:").split(":", 1)
    model, _, seconds = rest.rpartition(":")
    return provider, model, int(seconds)


def delivery(task_id: str) -> str:
    return f"rb:deliv:{task_id}"


def events_healthy(provider: str) -> str:
    return f"rb:events:{provider}:healthy"


def index_turn(batch: str) -> str:
    return _b(batch, "index:turn")


def index_lock(batch: str) -> str:
    return _b(batch, "index:lock")


def serving(provider: str) -> str:
    return f"rb:serves:{provider}"


def provider_down(provider: str) -> str:
    return f"rb:down:{provider}"


def account_problem(provider: str, model: str = "") -> str:
    return f"rb:account:{provider}" + (f":{model}" if model else "")


def account_cleared(provider: str) -> str:
    return f"rb:account-cleared:{provider}"


def output_problem(batch: str) -> str:
    return _b(batch, "output")


def outcomes(batch: str) -> str:
    return _b(batch, "outcomes")


def notified(batch: str) -> str:
    return _b(batch, "notified")


def estimates(batch: str) -> str:
    return _b(batch, "est")


def budget_waiting(batch: str) -> str:
    return _b(batch, "budget")


def lister_lock(provider: str) -> str:
    return f"rb:list:{provider}:lock"


def listing(provider: str) -> str:
    return f"rb:list:{provider}:on"


def requests(provider: str) -> str:
    return f"rb:requests:{provider}"


def uncharged(provider: str) -> str:
    return f"rb:uncharged:{provider}"


def task_lease(batch: str, item_id: str) -> str:
    """Set (with a TTL the running task renews) while a task works on the item."""
    return _b(batch, f"run:{item_id}")


def look_window(batch: str, item_id: str) -> str:
    """Set (with a TTL) while a reconcile keeps looking for a lost submit's generation."""
    return _b(batch, f"look:{item_id}")


def orphans(batch: str) -> str:
    """Hash: generation id -> JSON of a paid generation no item holds (an answer that came late)."""
    return _b(batch, "orphans")

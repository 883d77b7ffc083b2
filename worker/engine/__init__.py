"""The engine: everything that drives an item from pending to a terminal state.

Each step is a function ``(ctx, batch, item_id) -> list[Next]``: it reads the state store, calls the
provider, writes the outcome and says which steps come next. Nothing here sends a task or sleeps:
``worker/tasks.py`` sends what a step returns (holding the item's task lease while the step runs),
and ``worker/control.py`` is the face the command line uses (register, start, retry, cancel, sweep).
No module here names a provider: abilities are the capability protocols of
``worker/providers/base.py``, checked with ``isinstance``.

    next.py      Next: the step an item needs next, and when
    line.py      the waiting line for a provider's concurrency slots (feed, release, requeue)
    depth.py     the queue depth kept past the running limit where a provider queues (learned)
    budget.py    reserve and release a batch's budget; nothing spent before its start time
    outcome.py   the one retry-or-fail decision, fail(), give_up()
    account.py   account problems (key refused, no credits, model gone): the provider paused
    submit.py    submit (budget, rate, the POST) and reconcile (a lost answer: look again, capped)
    orphans.py   an answer for an item that moved on: adopted, or kept and counted as an orphan
    poll.py      poll and observe (a poll's answer or a pushed event), the schedule, stuck items
    events.py    act on a completion the provider pushed
    bulk_poll.py one request for many generations (Oxen's history and queue): completions, costs
    download.py  download the result, refresh an expired URL, a full output folder
    cancel.py    stop one item of a cancelled batch; stop.py: cancel a whole batch
    batch.py     register a planned batch (new, kept, changed, readopted, dropped); enqueue it
    retry.py     failed items back to work from where they can go on (never paid twice)
    recheck.py   videos deleted or changed on disk go back to downloading
    sweeper.py   due waits sent, lost tasks resent (never one whose lease is live), --at, pauses
    timing.py    generation times learned from finished items
    unclaimed.py at the end of a run: generations made since the batch started that no item claims
                 (adopted by a pending item they match, else recorded for status and the summary)
    route.py     a batch over several providers: which provider takes an item (the route, failover)
    fanout.py    ... and acting on it: lines, hand-out in the route's order, items moved off a paused one
"""

# what worker/ (tasks, control, the listener and lister, beat) calls; the rest is the engine's own
__all__ = [
    "batch", "bulk_poll", "cancel", "download", "events", "fanout", "next", "outcome", "poll", "recheck",
    "retry", "route", "stop", "submit", "sweeper", "unclaimed",
]

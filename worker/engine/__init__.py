"""The engine: everything that drives an item from pending to a terminal state.

Each step is a function ``(ctx, batch, item_id) -> list[Next]``: it reads the state store, calls the
provider, writes the outcome and says which steps come next. Nothing here sends a task or sleeps:
``worker/tasks.py`` sends what a step returns, and ``worker/control.py`` is the face the command
line uses (register, start, retry, cancel, sweep).

    next.py      Next: the step an item needs next, and when
    line.py      the waiting line for a provider's concurrency slots (feed, release, requeue)
    outcome.py   the one retry-or-fail decision, and fail()
    submit.py    submit (budget, rate, the POST) and reconcile (a submit whose answer was lost)
    poll.py      poll and observe (from a poll or an event), the poll schedule
    download.py  download the result, refresh an expired URL
    cancel.py    stop one item of a cancelled batch
    batch.py     register a planned batch, enqueue it, retry and cancel it
    sweeper.py   resend lost tasks, start --at batches, feed slots
    events.py    act on a completion the provider pushed
    timing.py    generation times learned from finished items
"""

# what worker/ (tasks, control, the listener and lister, beat) calls; the rest is the engine's own
__all__ = [
    "batch", "cancel", "download", "events", "listing", "next", "outcome", "poll", "recheck", "retry", "stop",
    "submit", "sweeper",
]

"""The engine's coupled tuning: intervals, lifetimes (TTLs) and lock times that only work together.

Each group says how its members depend on each other: change one, check the rest of its group. What a
deployment may set (task_lease_s, sweep_every_s, poll intervals, ...) is a setting (jobs/settings.py);
these are fixed, and named here so the couplings are visible in one place. Sizes that are facts of a
format or an API (page sizes, hash chunks) stay beside the code that uses them.
"""

# --- liveness marks ----------------------------------------------------------------------------
# A mark renewed every EVERY lapses TTL after its last renewal: TTL is three periods, so one late or
# lost renewal does not read as a death. A process caches what it read of a mark for BEACON_TRUST_S,
# far below any TTL, so a lapsed mark is noticed within about a second.
HEARTBEAT_EVERY_S = 5.0        # a worker's heartbeat (worker/heartbeat.py) ...
HEARTBEAT_TTL_S = 15.0         # ... and when `status` stops counting the worker
EVENTS_BEACON_EVERY_S = 5.0    # the event stream's "healthy" beacon (worker/event_stream.py) ...
EVENTS_BEACON_TTL_S = 15       # ... lapses after three missed renewals: items poll on their own again
BEACON_TRUST_S = 1.0           # how long a process trusts a beacon it read (events, sweeper)
PROVIDER_TRUST_S = 5.0         # how long a process trusts the provider it read for a batch's items
TASK_LEASE_RENEWALS = 3        # a task renews its item's lease this many times per lease TTL
SLOT_LEASE_S = 900.0           # a concurrency slot not renewed for this long is freed (a dead holder)

# --- the lister (worker/history_watch.py): one per provider across the fleet ----------------------------
# Its holder extends the lock every LISTER_EXTEND_EVERY_S; the lock lapses LISTER_LOCK_S after the last
# extension (six missed extensions: a holder that died), and the others ask for it again every
# LISTER_WAIT_LOCK_S. The listing beacon lasts three ticks, at least LISTER_BEACON_MIN_S; after a failed
# look none is set for LISTER_FAILED_QUIET_S, so items fall back to their own polls.
LISTER_LOCK_S = 30.0
LISTER_EXTEND_EVERY_S = 5.0
LISTER_WAIT_LOCK_S = 5.0
LISTER_IDLE_S = 1.0            # nothing in flight: look again after this
LISTER_AFTER_ERROR_S = 2.0
LISTER_COST_EVERY_S = 30.0     # how often the history is read for charged costs
LISTER_BEACON_MIN_S = 5.0
LISTER_FAILED_QUIET_S = 60.0

# --- the sweeper (worker/engine/sweeper.py, scheduler/run.py, worker/beat.py) ---------------------
# `run` sweeps every RUN_SWEEP_EVERY_S (a fleet's beat every settings.sweep_every_s), one sweep at a
# time under a lock that lapses after SWEEP_LOCK_S (a sweep must finish well within it). Waits due
# within SWEEP_HORIZON_FACTOR sweep periods are left to the sweeper, so every such wait meets a sweep
# first; that holds only while a sweeper was seen within SWEEPER_TTL_S (several periods). The beat
# sweeps at least every BEAT_SWEEP_AT_LEAST_S even when the store says nothing is due.
RUN_SWEEP_EVERY_S = 5.0
RUN_TICK_S = 0.25              # `run`'s loop: progress, signals, the sweep's clock
WORKER_READY_S = 30.0          # `run` of a batch over several providers waits this long at most for
                               # its worker to say which providers it serves before routing items
SWEEP_LOCK_S = 30.0
SWEEP_HORIZON_FACTOR = 1.5
SWEEPER_TTL_S = 60.0
SWEEP_TAKE_ROUNDS = 50         # at most this many thousand items taken per batch and sweep
BEAT_SWEEP_AT_LEAST_S = 300.0

# --- marks that lapse by themselves (no one has to clear them) -----------------------------------
# A mark lapses MARK_S after the last failure that set it; whoever is blocked tries again at least
# that often while it lasts (the unreachable backoff reaches 64 s; a blocked download every 30 s), so a
# problem that persists keeps its mark and one that is gone lets it lapse.
DOWN_MARK_S = 120.0            # "the provider is unreachable" (worker/engine/outcome.py)
UNREACHABLE_BACKOFF_STEP = 5   # the backoff step an unreachable provider is waited out with
OUTPUT_MARK_S = 120.0          # "the output folder cannot be written" (worker/engine/download.py)
OUTPUT_WAIT_S = 30.0           # a download blocked by a full or read-only folder is tried this often
ACCOUNT_RECHECK_S = 60.0       # an item in flight asks again this often while the account is stopped

# --- a lost submit and the clocks of two machines ------------------------------------------------
# A submit whose answer was lost is reconciled after RECONCILE_AFTER_S, looked for LOOKS times over its
# window, from CLOCK_SLACK_S before it was sent (a worker clock minutes fast). Histories are read with
# the same allowance for the provider's clock (LISTING_SLACK_S, AIMLAPI_LOG_END_SLACK_S).
RECONCILE_AFTER_S = 3.0
RECONCILE_LOOKS = 6
CLOCK_SLACK_S = 300.0
LISTING_SLACK_S = 5.0          # a just-submitted item may be missing from the provider's list
AIMLAPI_LOG_END_SLACK_S = 300.0
CHARGE_GIVE_UP_S = 86400.0     # a cost not found in the history after a day stays estimated
FAL_HISTORY_NOT_YET_S = 1800.0  # an empty fal history this soon after a submit may still get it

# --- learned generation times (worker/engine/timing.py) and the poll schedule --------------------
# The quantiles of the last TIMES_KEPT samples set the poll schedule once TIMES_MIN_SAMPLES are known;
# a process reuses them for TIMES_CACHE_S (TIMES_FEW_CACHE_S while it is still learning). With events,
# a poll still backs them up at EVENT_BACKSTOP_FACTOR times the usual interval.
TIMES_KEPT = 500
TIMES_MIN_SAMPLES = 5
TIMES_CACHE_S = 5.0
TIMES_FEW_CACHE_S = 0.5
EVENT_BACKSTOP_FACTOR = 3.0

# --- the results index (worker/results.py) -------------------------------------------------------
# Rewritten at most every INDEX_EVERY_S, and no more often than INDEX_COST_FACTOR times as long as the
# last rewrite took: a 100,000-item index (seconds to write) is rewritten every minute or two, not
# every 5 s (which would grow as the square of the batch).
INDEX_EVERY_S = 5.0
INDEX_COST_FACTOR = 20.0

# --- waiting out an outage -----------------------------------------------------------------------
OUTAGE_LIMIT_S = 300.0         # how long `run` waits for a lost Redis before giving up (exit 3)
PRICE_TTL_S = 24 * 3600        # published prices are fetched again after this ...
PRICE_RETRY_AFTER_FAILURE_S = 600   # ... and an unreachable price list is not asked again before this

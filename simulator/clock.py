"""The generation lifecycle, advanced lazily from a monotonic clock.

Nothing runs per generation: `advance(now)` replays the start and completion events due since the
last call, in time order, against a FIFO of waiting generations and a heap of running ones. The
server calls it on every API request and from one timer loop (for SSE events).
"""

from __future__ import annotations

import heapq
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from reelbatch.simulator import catalog
from reelbatch.simulator.knobs import Knobs

ACTIVE = ("queued", "processing")
TERMINAL = ("succeeded", "failed", "cancelled")

# Mid-run failures: (message, nominal seconds after start, or None for a random point of the run).
INSUFFICIENT_CREDITS = ("Insufficient credits", 3.0)   # Oxen: failed 3 s after start (credits_usd knob)
REMOTE_FAILURES = (
    ("Getting model response error: 500 - Upstream provider error: task failed", None),
    ("Content policy violation: the generated video was flagged by the safety system", None),
    ("Getting model response error: 504 - Generation timed out upstream", None),
)


@dataclass(slots=True)
class Generation:
    """One generation, from either API."""

    key: str                  # uuid4; Oxen's generation_id, the media file name
    public_id: str            # what the API hands out (AI/ML: "<uuid>:<model>")
    api: str                  # "oxen" or "aiml"
    model: str
    params: dict
    enqueued: float           # monotonic seconds
    ready_at: float           # may start from here on (queue delay)
    run_time: float           # seconds of processing, scaled
    error: str | None         # the failure it will end with, decided at enqueue
    duration: int
    aspect_ratio: str
    status: str = "queued"
    started: float | None = None
    completed: float | None = None
    namespace: str = "sim-user"
    request_key: str = ""     # stats.request_key of the enqueue body: equal for duplicates
    extra: dict = field(default_factory=dict)


def failure_message(gen: Generation) -> str | None:
    """The failure text the APIs show: empty under the `empty_failure_messages` knob."""
    return gen.extra.get("message", gen.error)


def billed(gen: Generation) -> bool:
    """Whether the generation costs its price: it succeeded, or was cancelled while processing
    under the `cancel_billed` knob."""
    return gen.status == "succeeded" or bool(gen.extra.get("billed"))


class Clock:
    """Holds every generation and moves them through queued -> processing -> terminal."""

    def __init__(self, knobs: Knobs, on_terminal: Callable[[Generation], None]):
        self.knobs = knobs
        self.on_terminal = on_terminal
        self.gens: dict[str, Generation] = {}
        self.active: dict[str, Generation] = {}
        self.waiting: deque[Generation] = deque()
        self.running: list[tuple[float, int, Generation]] = []
        self.running_count = 0
        self.running_by_api: Counter[str] = Counter()   # each API's own concurrency (api_knobs)
        self.peak_running = 0
        self.peak_active = 0
        self.cursor = 0.0
        self._seq = 0
        self.rng = random.Random(f"{knobs.seed}-gen")

    def now(self) -> float:
        return time.monotonic()

    def enqueue(self, api: str, model: str, params: dict, runtime_error: str | None,
                request_key: str = "") -> Generation:
        key = self._new_key()
        public = f"{key}:{model}" if api == "aiml" else key
        run_time, error = self._plan(runtime_error, self.knobs.for_api(api))
        duration, aspect = catalog.media_shape(model, params)
        now = self.now()
        gen = Generation(key, public, api, model, params, now, now + self.knobs.scaled(self.knobs.queue_delay),
                         run_time, error, duration, aspect,
                         namespace=params.get("target_namespace") or "sim-user", request_key=request_key)
        if error and self.knobs.empty_failure_messages:
            gen.extra["message"] = ""
        self.gens[key] = self.active[key] = gen
        self.waiting.append(gen)
        self.peak_active = max(self.peak_active, len(self.active))
        return gen

    def _new_key(self) -> str:
        """A fresh uuid4 from the seeded RNG (a restored state may already hold the first draws)."""
        while (key := str(uuid.UUID(int=self.rng.getrandbits(128), version=4))) in self.gens:
            pass
        return key

    def _plan(self, runtime_error: str | None, k: Knobs) -> tuple[float, str | None]:
        """Run time (scaled) and the failure the generation will end with, if any."""
        rng = self.rng
        nominal = rng.uniform(k.gen_time_min, k.gen_time_max)
        if runtime_error == INSUFFICIENT_CREDITS[0]:
            return k.scaled(INSUFFICIENT_CREDITS[1]), runtime_error
        if runtime_error:
            return k.scaled(rng.uniform(1.0, 3.0)), runtime_error
        if k.stuck_rate > 0 and rng.random() < k.stuck_rate:
            return float("inf"), None       # never finishes: processing for ever
        if rng.random() < k.fail_rate:
            message, at = rng.choice(REMOTE_FAILURES)
            return k.scaled(at if at is not None else nominal * rng.uniform(0.1, 0.9)), message
        return k.scaled(nominal), None

    def advance(self, now: float | None = None) -> None:
        """Apply every start and completion due by `now`, in time order."""
        now = self.now() if now is None else now
        while True:
            done_at = self.running[0][0] if self.running else float("inf")
            start_at, first = self._next_start()
            if min(done_at, start_at) > now:
                break
            if done_at <= start_at or first is None:
                self._complete(heapq.heappop(self.running)[2], done_at)
            else:
                self.waiting.remove(first)
                self._start(first, start_at)
        self.cursor = max(self.cursor, now)

    def _next_start(self) -> tuple[float, Generation | None]:
        """When the next waiting generation starts, and which (the oldest whose API has room)."""
        while self.waiting and self.waiting[0].status != "queued":
            self.waiting.popleft()      # cancelled while waiting
        if not self.waiting or self.running_count >= self.knobs.concurrency:
            return float("inf"), None
        if not self.knobs.api_knobs:
            return max(self.waiting[0].ready_at, self.cursor), self.waiting[0]
        full: set[str] = set()
        for gen in self.waiting:
            if gen.status != "queued" or gen.api in full:
                continue
            if self.running_by_api[gen.api] < self.knobs.api_concurrency(gen.api):
                return max(gen.ready_at, self.cursor), gen
            full.add(gen.api)
        return float("inf"), None

    def _start(self, gen: Generation, at: float) -> None:
        gen.status, gen.started = "processing", at
        self.cursor = at
        self._run(gen)

    def _run(self, gen: Generation) -> None:
        self._seq += 1
        assert gen.started is not None   # processing
        heapq.heappush(self.running, (gen.started + gen.run_time, self._seq, gen))
        self.running_count += 1
        self.running_by_api[gen.api] += 1
        self.peak_running = max(self.peak_running, self.running_count)

    def _complete(self, gen: Generation, at: float) -> None:
        self.cursor = at
        if gen.status != "processing":
            return                      # cancelled while running: its slot was freed then
        self.running_count -= 1
        self.running_by_api[gen.api] -= 1
        self._finish(gen, "failed" if gen.error else "succeeded", at)
        self.on_terminal(gen)

    def _finish(self, gen: Generation, status: str, at: float) -> None:
        gen.status, gen.completed = status, at
        self.active.pop(gen.key, None)

    def cancel(self, gen: Generation) -> bool:
        """Cancel an active generation (no event); False when it is already terminal."""
        self.advance()
        if gen.status not in ACTIVE:
            return False
        if gen.status == "processing":
            self.running_count -= 1
            self.running_by_api[gen.api] -= 1
            if self.knobs.cancel_billed:
                gen.extra["billed"] = True
        self._finish(gen, "cancelled", self.now())
        return True

    def next_deadline(self) -> float:
        """When the next event is due (inf when nothing is pending)."""
        done_at = self.running[0][0] if self.running else float("inf")
        return min(done_at, self._next_start()[0])

    def restore(self, gens: list[Generation], cursor: float) -> None:
        """Take back saved generations (in enqueue order) into a fresh clock; the next `advance`
        replays whatever fell due while the simulator was down."""
        for gen in gens:
            self.gens[gen.key] = gen
            if gen.status in ACTIVE:
                self.active[gen.key] = gen
            if gen.status == "queued":
                self.waiting.append(gen)
            elif gen.status == "processing":
                self._run(gen)
        self.cursor = cursor

    def reset(self) -> None:
        """Forget every generation and counter (POST /_sim/reset)."""
        self.__init__(self.knobs, self.on_terminal)  # type: ignore[misc]

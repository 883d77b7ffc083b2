"""The simulator's shared state: knobs, generations, counters, media, events, and the timer loop."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict

from starlette.requests import Request

from reelbatch.simulator import catalog
from reelbatch.simulator.aimllog import RequestLog
from reelbatch.simulator.clock import Clock, Generation
from reelbatch.simulator.events import EventBus
from reelbatch.simulator.knobs import Knobs
from reelbatch.simulator.media import MediaStore
from reelbatch.simulator.stats import Stats, request_key


class Core:
    """Everything the routes share; lives on `app.state.core` and runs on the server's loop."""

    def __init__(self, knobs: Knobs, api_key: str):
        self.knobs, self.api_key = knobs, api_key
        self.key_uses = 0
        self.stats = Stats()
        self.bus = EventBus()
        self.aiml_log = RequestLog()
        self.clock = Clock(knobs, self._terminal)
        self.media = MediaStore(knobs.cache_dir)
        self.fault_rng = random.Random(f"{knobs.seed}-fault")
        self.waiters: dict[str, asyncio.Future] = {}
        self.closing = asyncio.Event()
        self.wake = asyncio.Event()
        self.wall_offset = time.time() - time.monotonic()

    def authorized(self, request: Request) -> bool:
        """The request carries the good key, and the key has not been revoked (revoke_key_after)."""
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return False
        self.key_uses += 1
        limit = self.knobs.revoke_key_after
        return not (limit and self.key_uses > limit)

    def rotate_key(self, key: str) -> None:
        """A new good key (the old one is refused from now on); its uses are counted afresh."""
        self.api_key, self.key_uses = key, 0
        self.knobs.revoke_key_after = 0

    def charge(self, model: str, params: dict) -> bool:
        """Take one generation's price from the balance (credits_usd); False when it is short."""
        if self.knobs.credits_usd is None:
            return True
        usd = catalog.cost_usd(catalog.media_shape(model, params)[0], self.knobs.cost_per_second)
        if self.knobs.credits_usd + 1e-9 < usd:
            return False
        self.knobs.credits_usd = round(self.knobs.credits_usd - usd, 6)
        return True

    def top_up(self, usd: float) -> float:
        self.knobs.credits_usd = round((self.knobs.credits_usd or 0.0) + usd, 6)
        return self.knobs.credits_usd

    def vanished(self, model: str) -> bool:
        return model in {m.strip() for m in self.knobs.vanished_models.split(",") if m.strip()}

    def unix(self, mono: float | None) -> int | None:
        return None if mono is None else int(self.wall_offset + mono)

    def result_url(self, gen: Generation, base_url: str) -> str:
        """A fresh presigned URL; `expire_rate` issues it already expired."""
        expired = self.knobs.expire_rate > 0 and self.fault_rng.random() < self.knobs.expire_rate
        return self.media.url(base_url, gen.key, -2.0 if expired else self.knobs.url_ttl)

    def count_enqueue(self, body: dict) -> str:
        """Count an accepted enqueue body; its request key goes on each of its generations."""
        key = request_key(body)
        self.stats.enqueues[key] += 1
        return key

    def enqueue(self, api: str, model: str, params: dict, runtime_error: str | None,
                key: str = "") -> Generation:
        gen = self.clock.enqueue(api, model, params, runtime_error, key)
        self.wake.set()
        return gen

    def cancel(self, gen: Generation) -> None:
        if self.clock.cancel(gen):
            self._resolve(gen)

    async def finished(self, gen: Generation) -> Generation:
        """Wait for a generation to reach a terminal state (the synchronous endpoint)."""
        self.clock.advance()
        if gen.completed is None:
            self.waiters.setdefault(gen.key, asyncio.get_running_loop().create_future())
            await self.waiters[gen.key]
        return gen

    def _terminal(self, gen: Generation) -> None:
        self.bus.publish(gen)
        self._resolve(gen)

    def _resolve(self, gen: Generation) -> None:
        waiter = self.waiters.pop(gen.key, None)
        if waiter and not waiter.done():
            waiter.set_result(gen)

    def set_knobs(self, **values) -> dict:
        self.knobs.update(**values)
        if "seed" in values:
            self.clock.rng.seed(f"{self.knobs.seed}-gen")
            self.fault_rng.seed(f"{self.knobs.seed}-fault")
        self.wake.set()
        return asdict(self.knobs)

    def reset(self) -> None:
        self.clock.reset()
        self.aiml_log.clear()
        self.stats.__init__()  # type: ignore[misc]
        self.fault_rng.seed(f"{self.knobs.seed}-fault")

    def snapshot(self, detail: bool = True) -> dict:
        return self.stats.snapshot(self.clock, detail)

    async def tick(self) -> None:
        """The one timer loop: completes generations on time so SSE events go out unprompted."""
        while not self.closing.is_set():
            self.clock.advance()
            delay = min(max(self.clock.next_deadline() - time.monotonic(), 0.0) + 0.001, 0.5)
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), delay)
            except TimeoutError:
                pass

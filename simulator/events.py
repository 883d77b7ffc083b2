"""Oxen's /api/events: live-only fan-out of completion events, keep-alives and unrelated events."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from reelbatch.simulator.clock import Generation, failure_message
from reelbatch.simulator.knobs import Knobs

KEEPALIVE = b": keep-alive\n\n"


def sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def completion(gen: Generation, url: str | None) -> bytes:
    """`media_generation_completed` with the SSE field names (`url`, `error`), not the REST ones."""
    data: dict[str, Any] = {"generation_id": gen.key, "status": gen.status, "media_type": "video"}
    if gen.status == "succeeded":
        data.update(model=gen.model, url=url)
    else:
        data["error"] = failure_message(gen)
    return sse("media_generation_completed", data)


def deployment_status(n: int) -> bytes:
    return sse("deployment_status", {"deployment_id": f"dep-{n}", "status": "active",
                                     "model": "kling-video-o1-reference-to-video"})


class EventBus:
    """Subscribers connected now get each event; nothing is buffered for later ones."""

    def __init__(self) -> None:
        self.subscribers: set[asyncio.Queue] = set()

    def publish(self, gen: Generation) -> None:
        if gen.api != "oxen":
            return
        for queue in self.subscribers:
            queue.put_nowait(gen)

    def subscribe(self) -> asyncio.Queue:
        """Subscribe before the response starts, so a client that has the headers gets every event."""
        queue: asyncio.Queue = asyncio.Queue()
        self.subscribers.add(queue)
        return queue

    async def stream(self, queue: asyncio.Queue, knobs: Knobs, url_for: Callable[[Generation], str],
                     closing: asyncio.Event) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._frames(queue, knobs, url_for, closing):
                yield chunk
        finally:
            self.subscribers.discard(queue)

    async def _frames(self, queue, knobs, url_for, closing) -> AsyncIterator[bytes]:
        start = last_write = last_other = time.monotonic()
        sent_other = 0
        while not closing.is_set():
            now = time.monotonic()
            deadlines = [last_write + knobs.keepalive_interval, last_other + knobs.other_event_interval,
                         now + 1.0]     # notice `closing` and knob changes within a second
            if knobs.sse_disconnect_every > 0:
                deadlines.append(start + knobs.sse_disconnect_every)
                if now >= deadlines[-1]:
                    return
            try:
                gen = await asyncio.wait_for(queue.get(), max(0.0, min(deadlines) - now) + 0.001)
                frame = completion(gen, url_for(gen) if gen.status == "succeeded" else None)
            except TimeoutError:
                now = time.monotonic()
                if now >= last_other + knobs.other_event_interval:
                    sent_other += 1
                    last_other, frame = now, deployment_status(sent_other)
                elif now >= last_write + knobs.keepalive_interval:
                    frame = KEEPALIVE
                else:
                    continue
            last_write = time.monotonic()
            yield frame

"""What the simulator served: request counts, enqueues per request body, faults, media served."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter

from reelbatch.simulator.clock import Clock

_ID_ROUTES = (
    (re.compile(r"^/api/ai/queue/[^/]+$"), "/api/ai/queue/{id}"),
    (re.compile(r"^/api/ai/generations/[^/]+$"), "/api/ai/generations/{id}"),
    (re.compile(r"^/api/ai/models/.+$"), "/api/ai/models/{id}"),
    (re.compile(r"^/media/[^/]+$"), "/media/{id}"),
    (re.compile(r"^/fal-ai/[^/]+/requests/[^/]+/status$"), "/fal-ai/{app}/requests/{id}/status"),
    (re.compile(r"^/fal-ai/[^/]+/requests/[^/]+/status/stream$"), "/fal-ai/{app}/requests/{id}/status/stream"),
    (re.compile(r"^/fal-ai/[^/]+/requests/[^/]+/cancel$"), "/fal-ai/{app}/requests/{id}/cancel"),
    (re.compile(r"^/fal-ai/[^/]+/requests/[^/]+$"), "/fal-ai/{app}/requests/{id}"),
    (re.compile(r"^/api/repos/.+$"), "/api/repos/{file}"),
)


def endpoint(method: str, path: str) -> str:
    """"GET /api/ai/queue/{id}": the route template a request counts under."""
    for pattern, template in _ID_ROUTES:
        if pattern.match(path):
            return f"{method} {template}"
    return f"{method} {path}"


def request_key(body: dict) -> str:
    """A stable key of an enqueue body (prompt + parameters), independent of key order."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class Stats:
    """Counters; `snapshot` is the JSON of GET /_sim/stats."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.enqueues: Counter[str] = Counter()
        self.media: dict[str, dict] = {}    # generation key -> {sha256, bytes, downloads}

    def served(self, key: str, sha256: str, size: int) -> None:
        entry = self.media.setdefault(key, {"sha256": sha256, "bytes": size, "downloads": 0})
        entry["downloads"] += 1

    def snapshot(self, clock: Clock, detail: bool = True) -> dict:
        """The counters, and with `detail` one entry per generation (GET /_sim/stats?detail=0 drops them)."""
        clock.advance()
        out = {
            "requests": dict(self.requests),
            "requests_total": sum(self.requests.values()),
            "faults": dict(self.faults),
            "enqueues": dict(self.enqueues),
            "generations_total": len(clock.gens),
            "in_flight": {"active": len(clock.active), "running": clock.running_count},
            "peak_in_flight": clock.peak_running,
            "peak_active": clock.peak_active,
            "by_status": dict(Counter(g.status for g in clock.gens.values())),
        }
        if detail:
            out["generations"] = {key: _generation(g, self.media.get(key)) for key, g in clock.gens.items()}
        return out


def _generation(gen, media: dict | None) -> dict:
    run = gen.completed - gen.started if gen.completed is not None and gen.started is not None else None
    return {
        "public_id": gen.public_id, "api": gen.api, "model": gen.model, "status": gen.status,
        "request_key": gen.request_key,
        "enqueued": gen.enqueued, "started": gen.started, "completed": gen.completed, "run_time": run,
        "sha256": media and media["sha256"], "bytes": media and media["bytes"],
        "downloads": media["downloads"] if media else 0,
    }

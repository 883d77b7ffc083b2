"""The simulator's state across restarts (`--state-file`): saved on a clean stop, loaded on start.

Times are stored as wall-clock unix seconds, so they mean the same in the next process. On load the
clock replays what fell due while the simulator was down: a generation that was running finishes at
its planned time, or has already finished. The media secret is kept so issued URLs stay valid.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from reelbatch.jobs.files import atomic_write
from reelbatch.simulator.clock import Generation

VERSION = 1
_TIMES = ("enqueued", "ready_at", "started", "completed")
_COUNTERS = ("requests", "faults", "enqueues", "media")


def _shifted(row: dict, by: float) -> dict:
    return {**row, **{name: None if row[name] is None else row[name] + by for name in _TIMES}}


def save(core, path: str | os.PathLike) -> None:
    """Write every generation, the counters and the media secret atomically as JSON (the server
    must be stopped; what fell due since the last advance is replayed on load)."""
    clock, offset = core.clock, core.wall_offset
    state = {
        "version": VERSION, "cursor": clock.cursor + offset, "media_secret": core.media.secret.hex(),
        "peak_running": clock.peak_running, "peak_active": clock.peak_active,
        "stats": {name: getattr(core.stats, name) for name in _COUNTERS},
        "generations": [_shifted(asdict(gen), offset) for gen in clock.gens.values()],
        "aiml_log": core.aiml_log.dump(),
    }
    with atomic_write(Path(path), fsync=True) as fh:
        json.dump(state, fh, separators=(",", ":"))


def load(core, path: str | os.PathLike) -> bool:
    """Take back a saved state into a fresh core; False when there is no file."""
    try:
        state = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return False
    if state.get("version") != VERSION:
        raise ValueError(f"{path}: unknown simulator state version {state.get('version')!r}")
    clock, offset = core.clock, core.wall_offset
    clock.restore([Generation(**_shifted(row, -offset)) for row in state["generations"]],
                  state["cursor"] - offset)
    clock.peak_running, clock.peak_active = state["peak_running"], state["peak_active"]
    for name in _COUNTERS:
        getattr(core.stats, name).update(state["stats"][name])
    core.media.secret = bytes.fromhex(state["media_secret"])
    core.aiml_log.load(state.get("aiml_log") or [], clock.gens)
    return True

"""Build a batch's state directly through the Store API (items, transitions, spend) with real small
MP4s on disk: for tests of what the user sees (progress, notifications, export, report) without
generating every item through the simulator."""

from __future__ import annotations

from pathlib import Path

from reelbatch.jobs.item import Item, Params
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import BatchMeta, Store
from reelbatch.simulator.media import make_mp4

MODEL, PROVIDER_MODEL = "kling-o1/image-to-video", "kling-video-o1-image-to-video"
IN_FLIGHT_PATH = (S.SUBMITTING, S.QUEUED, S.RUNNING, S.DOWNLOADING)


def make_item(item_id: str, prompt: str, source_id: str | None = None, sample: int = 1,
              cost: float = 0.56, **params) -> Item:
    params.setdefault("start_image", "https://e.org/a.png")
    return Item(item_id=item_id, source_id=source_id or item_id, content_key=f"k-{item_id}",
                provider="simulator", model=MODEL, provider_model=PROVIDER_MODEL,
                params=Params(prompt=prompt, **params), sample=sample, video_seconds=params.get("duration") or 5,
                estimated_cost_usd=cost)


def new_batch(store: Store, name: str, out: Path, items: list[Item]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    store.save_batch(BatchMeta(name=name, provider="simulator", model=MODEL, output=str(out)))
    store.add_items(name, items)


def start(store: Store, batch: str, item_id: str, upto: S = S.RUNNING) -> None:
    """Move a pending item along its way, up to ``upto``."""
    for state in IN_FLIGHT_PATH[:IN_FLIGHT_PATH.index(upto) + 1]:
        store.transition(batch, item_id, state)


def succeed(store: Store, batch: str, item_id: str, out: Path, aspect: str = "16:9",
            video: bytes | None = None, charged: bool = False, cost: float = 0.56) -> None:
    """Succeed an item with a real MP4 on disk (``video``: bytes to write instead of a new one)."""
    rec = store.item(batch, item_id)
    if rec.state is S.PENDING:
        start(store, batch, item_id, S.DOWNLOADING)
    elif rec.state is not S.DOWNLOADING:
        store.transition(batch, item_id, S.DOWNLOADING)
    path = out / f"{item_id}.mp4"
    if video is None:
        make_mp4(1, aspect, path)
    else:
        path.write_bytes(video)
    store.add_spend(batch, cost, charged)
    store.transition(batch, item_id, S.SUCCEEDED, file=path.name, sha256="ab" * 32,
                     bytes=path.stat().st_size, cost_usd=cost, detected_at=1.0,
                     cost_source="charged" if charged else "estimated", generation_id=f"g-{item_id}",
                     attempts=1, completed_at=2.0, submitted_at=1.0)


def fail(store: Store, batch: str, item_id: str, kind: str = "permanent",
         error: str = "simulator 422: <img src=x onerror=alert(1)>") -> None:
    store.transition(batch, item_id, S.SUBMITTING)
    store.transition(batch, item_id, S.FAILED, error_kind=kind, error=error, attempts=1)

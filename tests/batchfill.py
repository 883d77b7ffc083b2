"""Build a batch's state directly through the Store API (items, transitions, spend) with real small
MP4s on disk: for tests of what the user sees (progress, notifications, export, report) without
generating every item through the simulator."""

from __future__ import annotations

import os
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


def big_batch(store: Store, name: str, out: Path, sources: int, aspects=("16:9", "9:16"), samples: int = 2,
              fail_every: int = 25, pending_every: int = 97) -> list[Item]:
    """``sources`` source items, each in every aspect ratio and ``samples`` repeats. Every item
    succeeds with a real MP4 (a hard link to one encoded per aspect ratio) and a poster frame
    already extracted, except every ``fail_every``-th (failed) and ``pending_every``-th (pending)."""
    from reelbatch.worker.storage import poster_frame

    items = [make_item(f"src{s:05d}-{a.replace(':', 'x')}-s{k}", f"Shot {s}: an ox crosses a river at dawn",
                       f"src{s:05d}", k, aspect_ratio=a, duration=5)
             for s in range(sources) for a in aspects for k in range(1, samples + 1)]
    new_batch(store, name, out, items)
    (out / "posters").mkdir(exist_ok=True)
    master = {}
    for a in aspects:
        video = out / f".master-{a.replace(':', 'x')}.mp4"
        make_mp4(1, a, video)
        master[a] = (video, poster_frame(video, out / f".master-{a.replace(':', 'x')}.jpg"))
    for n, item in enumerate(items, 1):
        if n % pending_every == 0:
            continue
        if n % fail_every == 0:
            fail(store, name, item.item_id, kind="generation_failed", error=f"the provider failed {item.item_id}")
            continue
        video, poster = master[item.params.aspect_ratio]
        start(store, name, item.item_id, S.DOWNLOADING)
        os.link(video, out / f"{item.item_id}.mp4")
        os.link(poster, out / "posters" / f"{item.item_id}.jpg")
        store.add_spend(name, 0.56, False)
        store.transition(name, item.item_id, S.SUCCEEDED, file=f"{item.item_id}.mp4", bytes=video.stat().st_size,
                         sha256="ab" * 32, cost_usd=0.56, cost_source="estimated", detected_at=1.0, attempts=1)
    return items

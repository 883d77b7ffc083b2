"""`reelbatch report`: one static HTML page per batch, opened straight from disk.

A card per item: the poster frame (the video's first frame, extracted once into
``<output>/posters/<stem>.jpg``), the video playable in place, prompt, parameters, status, error
and cost. Filter links set the URL fragment (``report.html#failed``); a few lines of inline script
show the cards of that state. Every value passes through Jinja2's autoescape.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import click
from jinja2 import Environment, FileSystemLoader

from reelbatch.jobs.errors import StorageError
from reelbatch.jobs.files import write_text
from reelbatch.jobs.money import Spend
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import BatchMeta, ItemRecord
from reelbatch.scheduler.broker import connect_batch
from reelbatch.scheduler.export import destination, load_batch
from reelbatch.worker.storage import poster_frame

REPORT = "report.html"
POSTERS = "posters"
TEMPLATES = Path(__file__).parent / "templates"
POSTER_WORKERS = min(8, os.cpu_count() or 1)


@dataclass(frozen=True)
class Card:
    """What the page shows of one item; paths are URLs relative to the page."""

    item_id: str
    status: str
    prompt: str
    params: list[tuple[str, str]]
    error: str | None
    cost: str
    attempts: int
    video: str | None = None
    poster: str | None = None


def poster_for(video: Path, posters: Path) -> Path | None:
    """The video's first frame, extracted only when missing or older than the video."""
    out = posters / f"{video.stem}.jpg"
    if out.exists() and out.stat().st_mtime >= video.stat().st_mtime:
        return out
    try:
        return poster_frame(video, out)
    except StorageError:
        return None  # the card still shows the video, without a poster


def videos_on_disk(meta: BatchMeta, records: list[ItemRecord]) -> dict[str, Path]:
    """item id -> its video, for succeeded items whose file exists directly in the output folder."""
    folder = Path(meta.output).resolve()
    found = {rec.item_id: (folder / rec.file).resolve() for rec in records
             if rec.state is S.SUCCEEDED and rec.file}
    return {item_id: path for item_id, path in found.items()
            if path.parent == folder and path.is_file()}


def make_posters(videos: dict[str, Path], posters: Path) -> dict[str, Path | None]:
    posters.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(POSTER_WORKERS) as pool:
        frames = pool.map(lambda video: poster_for(video, posters), videos.values())
        return dict(zip(videos, frames, strict=True))


def relative_url(path: Path | None, page_dir: Path) -> str | None:
    return None if path is None else quote(Path(os.path.relpath(path, page_dir)).as_posix())


def shown_params(rec: ItemRecord) -> list[tuple[str, str]]:
    params = rec.item.params.model_dump(mode="json", exclude_defaults=True)
    params.pop("prompt", None)
    return [(key, value if isinstance(value, str) else json.dumps(value))
            for key, value in params.items()]


def spend_of(records: list[ItemRecord]) -> Spend:
    """What the items' generations cost, charged and estimated (the same as `status`)."""
    made = [rec for rec in records if rec.detected_at and rec.cost_usd is not None]
    return Spend(sum(r.cost_usd or 0.0 for r in made if r.cost_source == "charged"),
                 sum(r.cost_usd or 0.0 for r in made if r.cost_source != "charged"))


def shown_cost(rec: ItemRecord) -> str:
    if rec.cost_usd is not None:
        return f"${rec.cost_usd:.2f} {'charged' if rec.cost_source == 'charged' else 'estimated'}"
    if rec.state in (S.FAILED, S.CANCELLED):
        return "none recorded"
    return f"~${rec.item.estimated_cost_usd:.2f} estimated"


def card(rec: ItemRecord, video: Path | None, poster: Path | None, page_dir: Path) -> Card:
    error = f"[{rec.error_kind}] {rec.error}" if rec.error_kind and rec.error else rec.error
    if rec.state is S.SUCCEEDED and video is None:
        error = f"the file {rec.file!r} is not in the output folder"
    return Card(item_id=rec.item_id, status=rec.state.value, prompt=rec.item.params.prompt,
                params=shown_params(rec), error=error, cost=shown_cost(rec), attempts=rec.attempts,
                video=relative_url(video, page_dir), poster=relative_url(poster, page_dir))


def render(meta: BatchMeta, cards: list[Card], spend: Spend) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    counts = Counter(c.status for c in cards)
    states = [s.value for s in S if counts[s.value]]
    return env.get_template("report.html.j2").render(
        meta=meta, cards=cards, counts=counts, states=states, spend=spend.label(),
        generated=datetime.now().astimezone().isoformat(timespec="seconds"))


def write_report(meta: BatchMeta, records: list[ItemRecord], out: Path | None = None) -> Path:
    page = (out or Path(meta.output) / REPORT).absolute()   # never through a symlink
    videos = videos_on_disk(meta, records)
    posters = make_posters(videos, Path(meta.output) / POSTERS)
    cards = [card(rec, videos.get(rec.item_id), posters.get(rec.item_id), page.parent)
             for rec in records]
    return write_text(page, render(meta, cards, spend_of(records)))


def report_batch(settings: Settings, batch: str, out: Path | None) -> int:
    meta, records = load_batch(connect_batch(settings, batch).store, batch)
    with destination(out or Path(meta.output) / REPORT, explicit=out is not None):
        page = write_report(meta, records, out)
    click.echo(f"{batch}: {len(records)} items -> {page}")
    return 0

"""`reelbatch report`: one static HTML page per batch, opened straight from disk.

A card per item: the poster frame (the video's first frame, extracted once into
``<output>/posters/<stem>.jpg``), the video played in place on a click, a link to the file, prompt,
parameters, status, error and cost (charged or estimated). The cards travel as JSON inside the
page and a short script draws one page of them at a time, so a 10,000-item batch opens as fast as
a 100-item one; poster images load lazily, only as their cards scroll into view.

The URL fragment holds the view: ``#failed`` (a state), ``#page=3``, ``#view=variants`` (the
variants of each source item, matrix values and samples, side by side in one row), combined with
``&``. Every card's media frame has the same shape (the batch's aspect ratio, or square when
ratios are mixed), and videos fit inside it, so a 9:16 video never stretches its row. Text reaches
the page as JSON with ``<``, ``>`` and ``&`` escaped and is put in place as text, never as HTML.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import click
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup

from reelbatch.jobs.errors import StorageError
from reelbatch.jobs.files import write_text
from reelbatch.jobs.money import Spend
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.state import TERMINAL, ItemState as S
from reelbatch.jobs.store import BatchMeta, ItemRecord
from reelbatch.jobs.unclaimed import unclaimed_lines
from reelbatch.scheduler.stack.broker import connect_batch
from reelbatch.scheduler.views.charts import generation_s, summarise
from reelbatch.scheduler.views.export import destination, most_first
from reelbatch.scheduler.views.follow import follow
from reelbatch.scheduler.views.inputs import INPUTS, input_thumbs, relative_url
from reelbatch.scheduler.views.svg import summary_svg
from reelbatch.worker.storage import poster_frame

REPORT = "report.html"
POSTERS = "posters"
TEMPLATES = Path(__file__).parent / "templates"
POSTER_WORKERS = min(8, os.cpu_count() or 1)


PAGE_ITEMS, PAGE_GROUPS = 60, 20   # cards per page; source items per page in the variants view
MIXED_FRAME = "1 / 1"


@dataclass(frozen=True)
class Card:
    """What the page shows of one item; paths are URLs relative to the page."""

    item_id: str
    source_id: str
    status: str
    prompt: str
    params: list[tuple[str, str]]
    error: str | None
    cost: str
    attempts: int
    aspect: str | None = None
    variant: str = ""
    video: str | None = None
    poster: str | None = None
    file: str | None = None
    kind: str | None = None            # a failure's kind (the `#failed&kind=` filter)
    cost_usd: float = 0.0              # for sorting by cost
    generation_s: float | None = None  # for sorting by generation time
    thumb: int | None = None           # the input's thumbnail: its place in the page's list of inputs

    def as_json(self) -> dict:
        """Short keys, and no empty ones: they are repeated 10,000 times in a large page."""
        found = {"id": self.item_id, "src": self.source_id, "st": self.status, "p": self.prompt,
                "pa": self.params, "e": self.error, "c": self.cost, "a": self.attempts, "ar": self.aspect,
                "var": self.variant, "v": self.video, "po": self.poster, "f": self.file, "k": self.kind,
                "cu": round(self.cost_usd, 4), "gt": None if self.generation_s is None
                else round(self.generation_s, 1), "in": self.thumb}
        return {key: value for key, value in found.items() if value is not None}


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


def shown_params(rec: ItemRecord) -> list[tuple[str, str]]:
    params = rec.item.params.model_dump(mode="json", exclude_defaults=True)
    params.pop("prompt", None)
    return [(key, value if isinstance(value, str) else json.dumps(value))
            for key, value in params.items()]


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
    return Card(item_id=rec.item_id, source_id=rec.item.source_id, status=rec.state.value,
                prompt=rec.item.params.prompt, params=shown_params(rec), error=error, cost=shown_cost(rec),
                attempts=rec.attempts, aspect=rec.item.params.aspect_ratio,
                video=relative_url(video, page_dir), poster=relative_url(poster, page_dir),
                file=video.name if video else None, kind=rec.error_kind if rec.state is S.FAILED else None,
                cost_usd=rec.cost_usd or 0.0, generation_s=generation_s(rec))


def variant_labels(records: list[ItemRecord]) -> dict[str, str]:
    """item id -> what sets it apart from the other variants of its source item: every field whose
    value differs among them (the prompt too, shortened), and the sample number of repeats."""
    groups: dict[str, list[ItemRecord]] = {}
    for rec in records:
        groups.setdefault(rec.item.source_id, []).append(rec)
    labels = {}
    for group in groups.values():
        params = [{"prompt": short(rec.item.params.prompt), **dict(shown_params(rec))} for rec in group]
        differ = sorted({k for p in params for k in p if len({q.get(k) for q in params}) > 1},
                        key=lambda k: (k != "prompt", k))   # the prompt first, when it differs
        samples = len({rec.item.sample for rec in group}) > 1
        for rec, p in zip(group, params, strict=True):
            parts = [f"{k} {p.get(k, '-')}" for k in differ] + ([f"sample {rec.item.sample}"] if samples else [])
            labels[rec.item_id] = " · ".join(parts)
    return labels


def short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def frame_of(cards: list[Card]) -> str:
    """The CSS aspect ratio every media frame gets: the batch's own, or square when mixed."""
    ratios = {c.aspect or "16:9" for c in cards}
    if len(ratios) == 1:
        width, _, height = ratios.pop().partition(":")
        if width.isdigit() and height.isdigit():
            return f"{width} / {height}"
    return MIXED_FRAME


def cards_json(cards: list[Card] | list[str]) -> str:
    """The cards (or the inputs' URLs) as JSON that cannot end the <script> element holding it."""
    rows = [c if isinstance(c, str) else c.as_json() for c in cards]
    text = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(meta: BatchMeta, cards: list[Card], spend: Spend, summary: str = "",
           refresh_s: float | None = None, inputs: list[str] | None = None,
           notes: list[str] | None = None, providers: str | None = None) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    counts = Counter(c.status for c in cards)
    states = [s.value for s in S if counts[s.value]]
    variants = len({c.source_id for c in cards}) < len(cards)
    return env.get_template("report.html.j2").render(
        meta=meta, providers=providers or meta.provider, total=len(cards), counts=counts, states=states,
        spend=spend.label(),
        cards_json=Markup(cards_json(cards)), inputs_json=Markup(cards_json(inputs or [])),
        frame=frame_of(cards), variants=variants,
        page_items=PAGE_ITEMS, page_groups=PAGE_GROUPS, summary=Markup(summary), notes=notes or [],
        refresh_s=None if refresh_s is None else max(1, round(refresh_s)),
        generated=datetime.now().astimezone().isoformat(timespec="seconds"))


def write_report(meta: BatchMeta, records: list[ItemRecord], spend: Spend, out: Path | None = None,
                 refresh_s: float | None = None, notes: list[str] | None = None) -> Path:
    """The page; ``spend`` is the batch's, from the store (as `status` shows it: set-aside versions
    included); ``refresh_s``: an open tab reloads it (`--watch`); ``notes``: lines shown under the
    summary (generations no item claims)."""
    page = (out or Path(meta.output) / REPORT).absolute()   # never through a symlink
    videos = videos_on_disk(meta, records)
    posters = make_posters(videos, Path(meta.output) / POSTERS)
    labels = variant_labels(records)
    thumbs = input_thumbs(meta, records, Path(meta.output) / POSTERS / INPUTS, page.parent)
    inputs = sorted(set(thumbs.values()))   # each URL once in the page: items often share an input
    place = {url: n for n, url in enumerate(inputs)}
    cards = [replace(card(rec, videos.get(rec.item_id), posters.get(rec.item_id), page.parent),
                     variant=labels[rec.item_id], thumb=place.get(thumbs.get(rec.item_id, ""))) for rec in records]
    summary = summary_svg(summarise(meta, records, spend))
    providers = most_first([rec.item.provider for rec in records], meta.provider)
    return write_text(page, render(meta, cards, spend, summary, refresh_s, inputs, notes, providers))


def watch_report(settings: Settings, batch: str, out: Path | None, every_s: float) -> int:
    """`report --watch`: the page rewritten every so often until the batch can move no more."""
    store = connect_batch(settings, batch).store

    def write(meta: BatchMeta, records: list[ItemRecord], refresh_s: float | None) -> Path:
        with destination(out or Path(meta.output) / REPORT, explicit=out is not None):
            page = write_report(meta, records, store.spend(batch), out, refresh_s,
                                unclaimed_lines(store.orphans(batch)))
        click.echo(f"{batch}: {sum(r.state in TERMINAL for r in records)}/{len(records)} done -> {page}")
        return page

    follow(store, batch, write, every_s)
    return 0

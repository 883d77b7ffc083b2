"""Expansion: every item x vars combination x matrix combination x repeat sample becomes one Item,
with a readable, stable id and a content key (the hash of what is generated)."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reelbatch.jobs import inputs
from reelbatch.jobs.catalog import (
    MediaLimits,
    ModelSpec,
    catalog,
    check_params,
    price_per_second,
    tier_model_id,
    tier_price,
)
from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.item import Element, Item, Params
from reelbatch.jobs.manifest import (
    Manifest,
    ParamSpec,
    YamlPath,
    dotted,
    read_text,
    safe_id,
    validation_error,
)
from reelbatch.jobs.names import file_key, file_stem, id_part
from reelbatch.jobs.settings import Settings

Where = tuple[str, int | None, str]  # file, line, field
PARAM_NAMES = frozenset(ParamSpec.model_fields)
TEMPLATED = ("prompt", "start_image", "end_image", "video")
# `{name}` is a placeholder; `{{` and `}}` are literal braces (as in str.format); any other brace
# is kept as it is.
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
BRACE_HINT = "write {{ and }} for literal braces"
MATRIX_TAGS = {"prompt": "p", "start_image": "img", "end_image": "end", "video": "vid"}
ROW_FORMATS = (".csv", ".jsonl", ".ndjson")
MAX_ID_CHARS = 200


@dataclass(frozen=True)
class Source:
    """One item before expansion: an entry of ``items`` or a row of ``items_from``."""

    id: str
    values: dict[str, Any]
    origins: dict[str, Where]
    where: Where
    vars: dict[str, tuple[Any, ...]]
    from_row: bool = False


@dataclass(frozen=True)
class Variant:
    """One matrix combination: its id label, the parameters it sets, and where they come from."""

    label: tuple[str, ...]
    values: dict[str, Any]
    origins: dict[str, Where]


def at(exc: ManifestError, where: Where) -> ManifestError:
    """``exc`` placed at ``where``; a field named by ``exc`` is appended to the location's."""
    file, line, field = where
    return ManifestError(exc.message, file, line, ".".join(p for p in (field, exc.field) if p))


# --- sources: explicit items ---

def _origins(manifest: Manifest, prefix: YamlPath, names: Iterable[str]) -> dict[str, Where]:
    file = str(manifest.source)
    return {n: (file, manifest.line_of((*prefix, n)), dotted((*prefix, n))) for n in names}


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, list) else (value,)


def _item_sources(manifest: Manifest, defaults: dict[str, Any],
                  origins: dict[str, Where]) -> Iterator[Source]:
    for index, spec in enumerate(manifest.items):
        path = ("items", index)
        given = spec.given()
        given.pop("id"), given.pop("vars", None)
        used = placeholders({**defaults, **given})
        for name, values in spec.vars.items():
            if isinstance(values, list) and not values:
                raise manifest.error("empty list; expected at least one value", (*path, "vars", name))
            if name not in used:
                raise manifest.error(f"no placeholder uses {{{name}}}; every var must appear in the "
                                     "prompt or a media field (an unused var would only repeat items)",
                                     (*path, "vars", name))
        where = (str(manifest.source), manifest.line_of(path), dotted(path))
        yield Source(spec.id, {**defaults, **given},
                     {**origins, **_origins(manifest, path, given)}, where,
                     {k: _as_tuple(v) for k, v in spec.vars.items()})


# --- sources: items_from rows ---

def _csv_rows(text: str, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        _check_header(reader.fieldnames, path)
        for row in reader:
            _check_width(row, reader, path)
            if row.get("images"):
                row["images"] = [part.strip() for part in row["images"].split("|")]
            yield reader.line_num, row
    except csv.Error as exc:   # the row starts after the last one read whole
        raise ManifestError(f"not readable as CSV: {exc} (an unclosed quote?)", str(path),
                            reader.line_num + 1, "row") from None


def _check_header(columns: Sequence[str] | None, path: Path) -> None:
    if not columns:
        raise ManifestError("the file is empty; expected a header line of column names, then rows",
                            str(path), 1, "header")
    if len(columns) == 1 and (sep := next((d for d in ";\t|" if d in columns[0]), None)):
        raise ManifestError(f"one column {columns[0]!r} found: the file looks separated by "
                            f"{sep!r}; expected commas", str(path), 1, "header")


def _check_width(row: dict[str | None, Any], reader: csv.DictReader[str], path: Path) -> None:
    """Each row has exactly the header's columns."""
    columns = len(reader.fieldnames or ())
    if None in row:
        raise ManifestError(f"more values than the header's {columns} columns", str(path),
                            reader.line_num, "row")
    if any(value is None for value in row.values()):
        found = sum(value is not None for value in row.values())
        raise ManifestError(f"{found} values; the header has {columns} columns", str(path),
                            reader.line_num, "row")


def _jsonl_rows(text: str, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"invalid JSON: {exc.msg}", str(path), line, "row") from None
        if not isinstance(row, dict):
            raise ManifestError("a row must be a JSON object", str(path), line, "row")
        yield line, row


def _rows_file(manifest: Manifest) -> Path:
    try:
        path = inputs.local_path(manifest.items_from or "", manifest.folder)
        found = path.is_file()
    except (ManifestError, OSError):
        raise manifest.error(f"{manifest.items_from!r} is not a valid path", ("items_from",)) from None
    if path.suffix.lower() not in ROW_FORMATS:
        raise manifest.error(f"{path.name}: expected a .csv or .jsonl file", ("items_from",))
    if not found:
        raise manifest.error(f"file not found: {path}", ("items_from",))
    return path


def _row_params(row: dict[str, Any], path: Path, line: int) -> dict[str, Any]:
    given = {k: v for k, v in row.items() if k in PARAM_NAMES and v not in (None, "")}
    try:
        return ParamSpec.model_validate(given).given()
    except ValidationError as exc:
        def locate(loc: YamlPath, message: str) -> ManifestError:
            return ManifestError(message, str(path), line, dotted(loc))
        raise validation_error(exc, locate) from None


def _row_id(row: dict[str, Any], path: Path, line: int, index: int) -> str:
    try:
        return safe_id(str(row.get("id") or f"{path.stem}-{index}"))
    except ValueError as exc:
        raise ManifestError(str(exc), str(path), line, "id") from None


def _row_sources(manifest: Manifest, settings: Settings, defaults: dict[str, Any],
                 origins: dict[str, Where]) -> Iterator[Source]:
    path = _rows_file(manifest)
    text = read_text(path, settings.max_items_from_bytes, "max_items_from_bytes")
    rows = _jsonl_rows(text, path) if path.suffix.lower() != ".csv" else _csv_rows(text, path)
    index = 0
    for index, (line, row) in enumerate(rows, start=1):
        params = _row_params(row, path, line)
        here = {name: (str(path), line, name) for name in params}
        scalars = {k: (v,) for k, v in row.items() if isinstance(v, str | int | float | bool)}
        yield Source(_row_id(row, path, line, index), {**defaults, **params}, {**origins, **here},
                     (str(path), line, ""), scalars, from_row=True)
    if index == 0:
        raise ManifestError("no rows; expected at least one item below the header", str(path),
                            None, "items_from")


def sources(manifest: Manifest, settings: Settings) -> list[Source]:
    defaults = manifest.defaults.given()
    origins = _origins(manifest, ("defaults",), defaults)
    found = list(_item_sources(manifest, defaults, origins))
    if manifest.items_from:
        found += _row_sources(manifest, settings, defaults, origins)
    return found


# --- counting (before expanding) ---

def count_items(manifest: Manifest, found: list[Source]) -> int:
    per_matrix = sum(math.prod(len(v) for v in s.vars.values()) for s in found)
    return per_matrix * math.prod(len(v) for v in manifest.matrix.values()) * manifest.repeat


def _check_cap(manifest: Manifest, count: int, cap: int) -> None:
    if count > cap:
        where = "matrix" if manifest.matrix else "repeat" if manifest.repeat > 1 else "items"
        raise manifest.error(f"expands to {count:,} items, more than max_items ({cap:,}); "
                             "shrink the matrix, repeat or vars, or raise max_items", (where,))


# --- variants ---

def _matrix_label(name: str, value: Any, index: int) -> str:
    if name == "duration":
        return f"d{value}"
    if name == "aspect_ratio":
        return "ar" + id_part(str(value).replace(":", "x"))
    if name == "keep_audio":
        return "audio" if value else "mute"
    if name == "tier":
        return str(value)
    return f"{MATRIX_TAGS[name]}{index + 1}"


def _matrix_value(manifest: Manifest, name: str, index: int, value: Any) -> Any:
    try:
        return ParamSpec.model_validate({name: value}).given()[name]
    except ValidationError as exc:
        path = ("matrix", name, index)
        raise validation_error(exc, lambda _loc, msg: manifest.error(msg, path)) from None


def variants(manifest: Manifest) -> list[Variant]:
    axes = []
    for name, values in manifest.matrix.items():
        axes.append([(name, i, _matrix_value(manifest, name, i, v)) for i, v in enumerate(values)])
    found = []
    for combo in itertools.product(*axes):
        found.append(Variant(
            tuple(_matrix_label(n, v, i) for n, i, v in combo),
            {n: v for n, _, v in combo},
            {n: (str(manifest.source), manifest.line_of(("matrix", n, i)), f"matrix.{n}[{i}]")
             for n, i, _ in combo}))
    return found


def _var_combos(source: Source) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    names = list(source.vars)
    for combo in itertools.product(*(enumerate(source.vars[n]) for n in names)):
        label = tuple(_var_label(n, v, i) for n, (i, v) in zip(names, combo, strict=True)
                      if len(source.vars[n]) > 1)
        yield label, {n: v for n, (_, v) in zip(names, combo, strict=True)}


def _var_label(name: str, value: Any, index: int) -> str:
    text = id_part(str(value))
    return text if text and len(text) <= 24 else f"{id_part(name)}{index + 1}"


# --- placeholders and media ---

def fill(text: str, env: dict[str, Any], missing: Callable[[str], ManifestError]) -> str:
    """``text`` with every ``{name}`` replaced from ``env`` and ``{{``/``}}`` made single braces."""
    if "{" not in text and "}" not in text:
        return text

    def value(match: re.Match[str]) -> str:
        if match[1] is None:
            return match[0][0]
        if match[1] not in env:
            raise missing(match[1])
        return str(env[match[1]])

    return PLACEHOLDER.sub(value, text)


def placeholders(values: dict[str, Any]) -> set[str]:
    """The names every templated field of ``values`` refers to."""
    texts = [values[n] for n in TEMPLATED if isinstance(values.get(n), str)]
    texts += list(values.get("images") or ())
    return {m[1] for text in texts for m in PLACEHOLDER.finditer(text) if m[1]}


def _filled(source: Source, env: dict[str, Any]) -> dict[str, Any]:
    values = dict(source.values)
    for name in TEMPLATED:
        if isinstance(values.get(name), str):
            values[name] = fill(values[name], env, partial(_undefined, source, name))
    if values.get("images"):
        values["images"] = tuple(fill(r, env, lambda p: _undefined(source, "images", p))
                                 for r in values["images"])
    return values


def _undefined(source: Source, field: str, name: str) -> ManifestError:
    if source.from_row:
        file, line, _ = source.where
        return ManifestError(f"the row has no column {name!r}, which {{{name}}} in {field} needs",
                             file, line, name)
    return at(ManifestError(f"undefined placeholder {{{name}}}; expected a var named {name} "
                            f"({BRACE_HINT})"),
              source.origins.get(field, source.where))


class MediaChecker:
    """Checks each distinct image or video reference once and turns local paths absolute. Local
    files are held to the model's media limits for its provider (format, size, dimensions, length);
    for URLs only the format named by the extension can be checked without fetching them."""

    def __init__(self, base_dir: Path, formats: tuple[str, ...], max_bytes: int | None = None,
                 limits: MediaLimits | None = None):
        self.base_dir, self.formats, self.max_bytes, self.limits = base_dir, formats, max_bytes, limits
        self.seen: dict[tuple[str, bool], str] = {}

    def resolve(self, ref: str, is_image: bool, field: str) -> str:
        key = (ref, is_image)
        if key not in self.seen:
            try:
                self.seen[key] = self._check(ref, is_image)
            except ManifestError as exc:
                raise ManifestError(exc.message, field=field) from None
        return self.seen[key]

    def _check(self, ref: str, is_image: bool) -> str:
        url = inputs.checked_url(ref)
        if url is not None:
            if is_image:
                inputs.check_image_url(url, self.formats)
            return url
        path = inputs.local_path(ref, self.base_dir)
        if is_image:
            inputs.check_local_image(path, self.formats, self.limits)
        else:
            inputs.check_local_video(path, self.limits)
        if self.max_bytes is not None:
            inputs.check_inline_size(path, self.max_bytes)
        return str(path)

    def resolved(self, values: dict[str, Any]) -> dict[str, Any]:
        values = dict(values)
        for name in ("start_image", "end_image"):
            if values.get(name):
                values[name] = self.resolve(values[name], True, name)
        if values.get("video"):
            values["video"] = self.resolve(values["video"], False, "video")
        if values.get("images"):
            values["images"] = tuple(self.resolve(r, True, "images") for r in values["images"])
        if values.get("elements"):
            values["elements"] = tuple(self._element(e) for e in values["elements"])
        return values

    def _element(self, element: Element) -> Element:
        return Element(frontal_image=self.resolve(element.frontal_image, True, "elements"),
                       reference_images=tuple(self.resolve(r, True, "elements")
                                              for r in element.reference_images))


# --- ids and keys ---

def item_id(parts: tuple[str, ...]) -> str:
    text = ".".join(p for p in parts if p)
    if len(text) <= MAX_ID_CHARS:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{text[:MAX_ID_CHARS - 13]}.{digest}"


# Parameters added to Params after batches were first saved: they join the content key only when
# set, so an item that does not use one keeps the key it had (and is not regenerated on resume).
LATER_PARAMS = frozenset({"backend", "tier"})


def params_json(params: Params) -> str:
    unset = {name for name in LATER_PARAMS if getattr(params, name) is None}
    return params.model_dump_json(exclude=unset or None)


def content_key(provider: str, model: str, params_json: str, sample: int) -> str:
    """The identity of the work itself: same provider, model, parameters and sample, same key."""
    text = f"{provider}\n{model}\n{params_json}\n{sample}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# --- expansion ---

@dataclass
class Expander:
    manifest: Manifest
    spec: ModelSpec
    price: float
    media: MediaChecker
    overrides: dict[str, float]

    def checked(self, source: Source, variant: Variant, env: dict[str, Any]) -> dict[str, Any]:
        values = {**_filled(source, env), **variant.values}
        origins = {**source.origins, **variant.origins}
        try:
            values = self.media.resolved(values)
        except ManifestError as exc:
            raise self._locate(exc, source, origins) from None
        try:
            check_params(self.spec, values)
            check_raw(self.manifest.provider, values.get("raw") or {})
        except ManifestError as exc:
            raise self._locate(exc, source, origins) from None
        return values

    @staticmethod
    def _locate(exc: ManifestError, source: Source, origins: dict[str, Where]) -> ManifestError:
        where = origins.get(exc.field) if exc.field else None
        return ManifestError(exc.message, *where) if where else at(exc, source.where)

    def items(self, source: Source, label: tuple[str, ...], values: dict[str, Any]) -> Iterator[Item]:
        m = self.manifest
        params = Params.model_construct(**values)
        key_json = params_json(params)
        seconds = values.get("duration") or self.spec.default_duration
        tier = values.get("tier")
        price = tier_price(self.spec, tier, self.price, self.overrides)
        for sample in range(1, m.repeat + 1):
            tag = (f"s{sample}",) if m.repeat > 1 else ()
            new_id = item_id((source.id, *label, *tag))
            yield Item.model_construct(
                item_id=new_id, source_id=source.id,
                content_key=content_key(m.provider, self.spec.name, key_json, sample),
                provider=m.provider, model=self.spec.name, provider_model=tier_model_id(self.spec, tier),
                params=params, sample=sample, video_seconds=seconds,
                estimated_cost_usd=round(seconds * price, 6))


def check_raw(provider: str, raw: dict[str, Any]) -> None:
    """``raw`` passes provider fields through untouched: it may not set a field that a neutral
    parameter sets (the request, the cost and the index would disagree)."""
    taken: dict[str, list[str]] = {"model": ["model"], "num_generations": ["repeat"]}
    for neutral, wire in catalog().dialect_for(provider).fields.items():
        taken.setdefault(wire, []).append(neutral)
    for key in raw:
        if key in taken:
            names = " or ".join(repr(n) for n in taken[key])
            raise ManifestError(f"raw.{key} is the {provider} field of the neutral parameter "
                                f"{names}; set that instead", field="raw")


def _add_unique(item: Item, where: Where, seen: dict[str, tuple[str, Where]], out: list[Item]) -> None:
    """Refuse a second item with the same id, or with an id that names the same file (``x`` and
    ``_x``, ``x.`` and ``x``, ``Y`` and ``y`` on a case-insensitive file system)."""
    key = file_key(item.item_id)
    if key in seen:
        other, first = seen[key]
        what = (f"duplicate item id {item.item_id!r}" if other == item.item_id else
                f"item ids {other!r} and {item.item_id!r} would share the file {file_stem(other)}.mp4")
        raise ManifestError(f"{what}; {first[2] or 'a row'} (line {first[1]}) makes {other!r}",
                            where[0], where[1], where[2] or "id")
    seen[key] = (item.item_id, where)
    out.append(item)


def expand(manifest: Manifest, settings: Settings) -> list[Item]:
    """Every item the manifest describes, validated against the model catalogue."""
    spec = catalog().model_for(manifest.provider, manifest.model)
    found = sources(manifest, settings)
    _check_cap(manifest, count_items(manifest, found), settings.max_items)
    expander = Expander(manifest, spec, price_per_second(manifest.provider, spec,
                                                         settings.price_overrides),
                        MediaChecker(manifest.folder, spec.image_formats, settings.max_data_uri_bytes,
                                     spec.media), dict(settings.price_overrides))
    all_variants = variants(manifest)
    seen: dict[str, tuple[str, Where]] = {}
    out: list[Item] = []
    for source in found:
        for var_label, env in _var_combos(source):
            for variant in all_variants:
                values = expander.checked(source, variant, env)
                for item in expander.items(source, (*var_label, *variant.label), values):
                    _add_unique(item, source.where, seen, out)
    return out

"""Expansion: every item x vars combination x matrix combination x repeat sample becomes one Item,
with a readable, stable id and a content key (the hash of what is generated)."""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from reelbatch.jobs import file_rows, inputs
from reelbatch.jobs.catalog import (
    MediaLimits,
    ModelSpec,
    catalog,
    check_params,
    price_per_second,
    tier_model_id,
    tier_price,
)
from reelbatch.jobs.content import content_key, file_sha256, keyed_json
from reelbatch.jobs.errors import ErrorCollector, ManifestError
from reelbatch.jobs.item import Element, Item, Params
from reelbatch.jobs.manifest import Manifest, YamlPath, dotted
from reelbatch.jobs.names import file_key, file_stem, id_part
from reelbatch.jobs.rows import Source, Where, file_sources, row_sources
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.variants import Variant, variants

TEMPLATED = ("prompt", "start_image", "end_image", "video")
# `{name}` is a placeholder; `{{` and `}}` are literal braces (as in str.format); any other brace
# is kept as it is.
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
BRACE_HINT = "write {{ and }} for literal braces"
MAX_ID_CHARS = 200


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
        used = placeholders({**defaults, **given}) | _matrix_placeholders(manifest)
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


def _matrix_placeholders(manifest: Manifest) -> set[str]:
    """The names the matrix's text values refer to (``prompt: {walk: "the {animal} walks"}``)."""
    found: set[str] = set()
    for name, values in manifest.matrix.items():
        texts = values.values() if isinstance(values, dict) else values
        for text in texts:
            for inner in (text.values() if isinstance(text, dict) else (text,)):
                if isinstance(inner, str):
                    found |= placeholders({name: inner})
    return found


def sources(manifest: Manifest, settings: Settings, spec: ModelSpec | None = None) -> list[Source]:
    defaults = manifest.defaults.given()
    origins = _origins(manifest, ("defaults",), defaults)
    found = list(_item_sources(manifest, defaults, origins))
    if manifest.items_from and spec is not None and file_rows.is_file_set(manifest.items_from,
                                                                          manifest.folder):
        found += file_sources(manifest, spec, defaults, origins)
    elif manifest.items_from:
        found += row_sources(manifest, settings, defaults, origins)
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


# --- variables ---

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
        self.digests: dict[str, str] = {}   # local path -> sha256 of its bytes (the content key's)

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
        self.digests[str(path)] = _digest(path)
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


def _digest(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from None


# --- ids and keys ---

def item_id(parts: tuple[str, ...]) -> str:
    text = ".".join(p for p in parts if p)
    if len(text) <= MAX_ID_CHARS:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{text[:MAX_ID_CHARS - 13]}.{digest}"


# --- expansion ---

@dataclass
class Expander:
    manifest: Manifest
    provider: str
    key_provider: str    # the provider the content key names (ANY_PROVIDER for several)
    spec: ModelSpec
    price: float
    media: MediaChecker
    overrides: dict[str, float]

    def checked(self, source: Source, variant: Variant, env: dict[str, Any]) -> dict[str, Any]:
        origins = {**source.origins, **variant.origins}
        values = _filled(replace(source, values={**source.values, **variant.values}, origins=origins),
                         env)
        try:
            values = self.media.resolved(values)
        except ManifestError as exc:
            raise self._locate(exc, source, origins) from None
        try:
            check_params(self.spec, values)
            check_raw(self.provider, values.get("raw") or {})
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
        key_json = keyed_json(params, self.media.digests)
        seconds = values.get("duration") or self.spec.default_duration
        tier = values.get("tier")
        price = tier_price(self.spec, tier, self.price, self.overrides)
        for sample in range(1, m.repeat + 1):
            tag = (f"s{sample}",) if m.repeat > 1 else ()
            new_id = item_id((source.id, *label, *tag))
            yield Item.model_construct(
                item_id=new_id, source_id=source.id,
                content_key=content_key(self.key_provider, self.spec.name, key_json, sample),
                provider=self.provider, model=self.spec.name, provider_model=tier_model_id(self.spec, tier),
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


Key = tuple[str, tuple[str, ...], tuple[str, ...]]   # source id, var label, matrix label
Made = tuple[Key, Where, list[Item] | ManifestError]


def expansions(manifest: Manifest, settings: Settings, provider: str,
               key_provider: str | None = None) -> Iterator[Made]:
    """Every item combination as ``provider`` makes it: its items, or why that provider cannot."""
    spec = catalog().model_for(provider, manifest.model)
    found = sources(manifest, settings, spec)
    _check_cap(manifest, count_items(manifest, found), settings.max_items)
    expander = Expander(manifest, provider, key_provider or provider, spec,
                        price_per_second(provider, spec, settings.price_overrides),
                        MediaChecker(manifest.folder, spec.image_formats, settings.max_data_uri_bytes,
                                     spec.media), dict(settings.price_overrides))
    all_variants = variants(manifest)
    for source in found:
        for var_label, env in _var_combos(source):
            for variant in all_variants:
                key = (source.id, var_label, variant.label)
                try:
                    values = expander.checked(source, variant, env)
                    made: list[Item] | ManifestError = list(
                        expander.items(source, (*var_label, *variant.label), values))
                except ManifestError as exc:
                    made = exc
                yield key, source.where, made


def collect(made: Iterable[tuple[Where, list[Item] | ManifestError]]) -> list[Item]:
    """The items, each id (and file name) once; every bad value raised at once, each with its file
    and line."""
    seen: dict[str, tuple[str, Where]] = {}
    out: list[Item] = []
    errors = ErrorCollector()
    for where, items in made:
        try:
            if isinstance(items, ManifestError):
                raise items
            for item in items:
                _add_unique(item, where, seen, out)
        except ManifestError as exc:
            errors.add(exc)
    errors.raise_any()
    return out


def expand(manifest: Manifest, settings: Settings) -> list[Item]:
    """Every item the manifest's one provider makes, validated against the model catalogue (a batch
    over several providers: jobs/offers.py)."""
    return collect((where, made) for _, where, made in expansions(manifest, settings, manifest.provider))

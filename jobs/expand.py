"""Expansion: every item x vars combination x matrix combination x repeat sample becomes one Item,
with a readable, stable id and a content key (the hash of what is generated).

Its parts: rows from files (``rows.py``, ``file_rows.py``), placeholders (``placeholders.py``), the
matrix's variants (``variants.py``), ids (``item_ids.py``), media checks (``media_check.py``); an
error is placed at its file, line and field by ``rows.at``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from reelbatch.jobs import file_rows
from reelbatch.jobs.catalog import (
    ModelSpec,
    catalog,
    check_params,
    price_per_second,
    tier_model_id,
    tier_price,
)
from reelbatch.jobs.content import content_key, keyed_json
from reelbatch.jobs.errors import ErrorCollector, ManifestError
from reelbatch.jobs.item import Item, Params
from reelbatch.jobs.item_ids import add_unique, item_id, var_combos
from reelbatch.jobs.manifest import Manifest
from reelbatch.jobs.manifest_yaml import YamlPath, dotted
from reelbatch.jobs.media_check import MediaChecker
from reelbatch.jobs.placeholders import filled, placeholders
from reelbatch.jobs.rows import Source, Where, at, file_sources, row_sources
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.variants import Variant, variants

__all__ = ["check_raw", "collect", "content_key", "count_items", "expand", "expansions", "item_id", "sources"]


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


def count_items(manifest: Manifest, found: list[Source]) -> int:
    per_matrix = sum(math.prod(len(v) for v in s.vars.values()) for s in found)
    return per_matrix * math.prod(len(v) for v in manifest.matrix.values()) * manifest.repeat


def _check_cap(manifest: Manifest, count: int, cap: int) -> None:
    if count > cap:
        where = "matrix" if manifest.matrix else "repeat" if manifest.repeat > 1 else "items"
        raise manifest.error(f"expands to {count:,} items, more than max_items ({cap:,}); "
                             "shrink the matrix, repeat or vars, or raise max_items", (where,))


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
        values = filled(replace(source, values={**source.values, **variant.values}, origins=origins),
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
        for var_label, env in var_combos(source):
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
                add_unique(item, where, seen, out)
        except ManifestError as exc:
            errors.add(exc)
    errors.raise_any()
    return out


def expand(manifest: Manifest, settings: Settings) -> list[Item]:
    """Every item the manifest's one provider makes, validated against the model catalogue (a batch
    over several providers: jobs/offers.py)."""
    return collect((where, made) for _, where, made in expansions(manifest, settings, manifest.provider))

"""The model catalogue (configs/models.yaml) as models: per-model constraints, prices and provider
mapping, loaded once, and each provider's view of a model.

A model's neutral constraints hold for every provider unless that provider's entry overrides them
(Oxen requires reference images where the AI/ML API does not, the AI/ML API requires views on every
element, ...). ``catalog().model_for(provider, model)`` gives that provider's view of a model: the
overrides applied, the provider's model id, its typical generation time as ``expected_seconds``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from reelbatch.jobs.errors import ManifestError

ENTRY_ONLY = ("id",)                         # provider entry keys that are not constraint overrides
MERGED = ("notes", "media", "wire_defaults")  # overrides merged key by key, not replaced
DEFAULT_BACKEND = "auto"   # the AI/ML API's `provider` field when unset (its O1 schemas)
GIVE_UP_FACTOR = 3.0        # an item in flight this many times the typical upper bound is stuck...
GIVE_UP_FLOOR_S = 3600.0    # ... and never sooner than an hour (seeds report 5-15 min for "1-5")


class MediaLimits(BaseModel):
    """What a local input file may be. None: nobody documents a limit, nothing is checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    image_max_bytes: int | None = None
    image_min_side: int | None = None
    image_aspect_range: tuple[float, float] | None = None    # width / height
    video_formats: tuple[str, ...] = ("mp4", "mov")
    video_seconds: tuple[float, float] | None = None
    video_side_range: tuple[int, int] | None = None          # each of width and height
    video_max_short_side: int | None = None                  # "up to 1080p"
    video_fps_range: tuple[float, float] | None = None
    video_max_bytes: int | None = None
    source: str = ""


class Tier(BaseModel):
    """A provider's second tier of a model (fal's Kling O1 ``standard``): its own id and price."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    price_per_second: float
    price_source: str


class ModelSpec(BaseModel):
    """One neutral model: what it takes, what it allows, what it costs, and its id per provider.
    As returned by ``Catalog.model_for`` it is one provider's view (``provider`` set)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    takes: tuple[str, ...]
    required: tuple[str, ...] = ()
    required_one_of: tuple[str, ...] = ()
    prompt_max_chars: int
    durations: tuple[int, ...]
    aspect_ratios: tuple[str, ...]
    image_formats: tuple[str, ...]
    max_images: int = 0
    max_elements: int = 0
    max_images_and_elements: int = 0
    min_reference_images_per_element: int = 0
    max_reference_images_per_element: int = 4
    default_duration: int
    price_per_second: float
    price_source: str
    expected_seconds: float = 600.0   # typical generation time, until finished items teach better
    ids: dict[str, str]
    notes: dict[str, str] = {}        # why a parameter is refused or required, for messages
    wire_defaults: dict[str, Any] = {}  # sent when the manifest leaves the parameter unset
    media: MediaLimits = MediaLimits()
    provider: str | None = None
    typical_range_s: tuple[float, float] | None = None
    poll_every_s: tuple[float, float] | None = None
    typical_source: str = ""
    backends: dict[str, dict[str, Any]] = {}   # overrides by `backend` (the AI/ML API's upstream)
    backend: str | None = None                 # set on a view with a backend's overrides applied
    standard: Tier | None = None      # the provider's standard tier, where it has one (fal)

    @property
    def label(self) -> str:
        where = f"{self.name} on {self.provider}" if self.provider else self.name
        return f"{where} with backend {self.backend}" if self.backend else where

    @property
    def give_up_after_s(self) -> float:
        """How long an item may stay in flight before it fails ``stuck`` (polling.give_up_after_s's
        default): generous, GIVE_UP_FACTOR times the typical upper bound, at least GIVE_UP_FLOOR_S."""
        upper = self.typical_range_s[1] if self.typical_range_s else self.expected_seconds
        return max(GIVE_UP_FACTOR * upper, GIVE_UP_FLOOR_S)

    @property
    def served_by(self) -> str:
        """The provider of a provider's view of the model (``Catalog.model_for``)."""
        if self.provider is None:
            raise ValueError(f"{self.name}: the neutral model has no provider")
        return self.provider


class Dialect(BaseModel):
    """How one wire protocol names the neutral parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    fields: dict[str, str]
    element: dict[str, str]
    model_in_body: bool = False
    duration_as_string: bool = False   # fal sends duration "5", not 5


class ProviderInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    dialect: str
    options: tuple[str, ...] = ()
    like: str | None = None   # a simulated account of that provider: its models, ids and prices, with
                              # the simulator's timing (served by the local simulator, no key)


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True)
    models: dict[str, ModelSpec]
    dialects: dict[str, Dialect]
    providers: dict[str, ProviderInfo]
    entries: dict[str, dict[str, dict[str, Any]]]   # model -> provider -> raw entry (id, overrides)
    notes: dict[str, str] = {}

    def dialect_for(self, provider: str) -> Dialect:
        return self.dialects[self.providers[provider].dialect]

    def schema_folders(self, provider: str) -> tuple[str, ...]:
        return (provider, self.providers[provider].dialect)

    def model_for(self, provider: str, model: str) -> ModelSpec:
        """``provider``'s view of the neutral model it serves under ``model`` (neutral or native name)."""
        if provider not in self.providers:
            raise ManifestError(f"unknown provider {provider!r}; expected one of "
                                f"{', '.join(self.providers)}", field="provider")
        served = {s.name: s for s in self.models.values() if provider in s.ids}
        served |= {s.ids[provider]: s for s in served.values()}
        if model not in served:
            names = sorted(s.name for s in self.models.values() if provider in s.ids)
            raise ManifestError(f"{provider} does not serve {model!r}; it serves {', '.join(names)}",
                                field="model")
        return _view(provider, served[model].name)


def _read_catalog() -> dict[str, Any]:
    text = resources.files("reelbatch.configs").joinpath("models.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _base(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    spec = dict(spec)
    entries = spec.pop("providers")
    return {**spec, "name": name, "ids": {p: entry["id"] for p, entry in entries.items()}}


SIMULATOR = "simulator"
TIMING_KEYS = ("typical_seconds", "typical_range_s", "poll_every_s", "typical_source")


def _with_simulated(data: dict[str, Any]) -> dict[str, Any]:
    """Every model a provider serves is served by its simulated account (``like``) too, with the
    simulator's timing."""
    for name, info in data["providers"].items():
        like = info.get("like")
        for spec in data["models"].values() if like else ():
            entries = spec["providers"]
            if like in entries:
                timing = {k: v for k, v in entries.get(SIMULATOR, {}).items() if k in TIMING_KEYS}
                entries[name] = {**entries[like], **timing}
    return data


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    data = _with_simulated(_read_catalog())
    models = {name: _base(name, spec) for name, spec in data["models"].items()}
    entries = {name: spec["providers"] for name, spec in data["models"].items()}
    return Catalog(models=models, dialects=data["dialects"], providers=data["providers"],
                   entries=entries, notes=data.get("notes") or {})


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if key in MERGED and isinstance(value, Mapping):
            merged[key] = {**(merged.get(key) or {}), **value}
        else:
            merged[key] = value
    return merged


@lru_cache(maxsize=128)
def _view(provider: str, name: str) -> ModelSpec:
    cat = catalog()
    base = cat.models[name]
    entry = {k: v for k, v in cat.entries[name][provider].items() if k not in ENTRY_ONLY}
    timing = {"expected_seconds": entry.pop("typical_seconds", base.expected_seconds)}
    data = _merge(base.model_dump(), {**entry, **timing})
    options = cat.providers[provider].options
    data["takes"] = tuple(data["takes"]) + tuple(o for o in options if o not in data["takes"])
    data["notes"] = {**cat.notes, **data["notes"]}
    return ModelSpec.model_validate({**data, "provider": provider})


def for_backend(spec: ModelSpec, backend: str | None) -> ModelSpec:
    """The view of a model on one upstream of its provider (``backends``; unset is the provider's
    default, auto): fal.ai takes fewer reference views per element than native Kling."""
    chosen = backend or DEFAULT_BACKEND
    overrides = spec.backends.get(chosen)
    if not overrides:
        return spec
    data = _merge(spec.model_dump(), overrides)
    return ModelSpec.model_validate({**data, "backends": {}, "backend": chosen})


def price_per_second(provider: str, spec: ModelSpec, overrides: Mapping[str, float]) -> float:
    return overrides.get(f"{provider}:{spec.name}", spec.price_per_second)


def tier_model_id(spec: ModelSpec, tier: str | None) -> str:
    """The provider's model id for the tier (unset or pro: the model's own id)."""
    return spec.standard.id if tier == "standard" and spec.standard else spec.ids[spec.served_by]


def tier_price(spec: ModelSpec, tier: str | None, pro_price: float, overrides: Mapping[str, float]) -> float:
    """USD per second for the tier; ``<provider>:<model>:standard`` in price_overrides wins."""
    if tier != "standard" or spec.standard is None:
        return pro_price
    return overrides.get(f"{spec.served_by}:{spec.name}:standard", spec.standard.price_per_second)

"""The model catalogue (configs/models.yaml): per-model constraints, prices and provider mapping.

A model's neutral constraints hold for every provider unless that provider's entry overrides them
(Oxen requires reference images where the AI/ML API does not, the AI/ML API requires views on every
element, ...). ``catalog().model_for(provider, model)`` gives that provider's view of a model: the
overrides applied, the provider's model id, its typical generation time as ``expected_seconds``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from reelbatch.jobs import schemas
from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.item import Element, Item, ProviderRequest

MEDIA_FIELDS = ("start_image", "end_image", "video")
REFERENCE = re.compile(r"@(Image|Element)(\d+)")
TRACE_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")   # outside the AI/ML API's X-Client-Request-Id alphabet
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


# --- validation of one item's neutral parameters (raises ManifestError with field set) ---

def _present(values: Mapping[str, Any], name: str) -> bool:
    return values.get(name) not in (None, (), [], "")


def _fail(field: str, message: str) -> None:
    raise ManifestError(message, field=field)


def _why(spec: ModelSpec, name: str) -> str:
    note = spec.notes.get(name)
    return f" ({' '.join(note.split())})" if note else ""


def _check_inputs(spec: ModelSpec, values: Mapping[str, Any]) -> None:
    for name in values:
        if name not in spec.takes and name not in ("prompt", "raw", "tier") and _present(values, name):
            _fail(name, f"{spec.label} does not take {name}{_why(spec, name)}; it takes "
                        f"{', '.join(spec.takes)}")
    for name in spec.required:
        if not _present(values, name):
            _fail(name, f"{spec.label} needs {name}{_why(spec, name)}")
    if spec.required_one_of and not any(_present(values, n) for n in spec.required_one_of):
        _fail(spec.required_one_of[0], f"{spec.label} needs {' or '.join(spec.required_one_of)}")


def _check_prompt(spec: ModelSpec, values: Mapping[str, Any]) -> None:
    prompt = values.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        _fail("prompt", "a prompt is required (not only spaces)")
        return
    if len(prompt) > spec.prompt_max_chars:
        _fail("prompt", f"{len(prompt)} characters; expected at most {spec.prompt_max_chars}")
    given = {"Image": len(values.get("images") or ()), "Element": len(values.get("elements") or ())}
    for kind, number in REFERENCE.findall(prompt):
        if not 1 <= int(number) <= given[kind]:
            plural = "s" if given[kind] != 1 else ""
            _fail("prompt", f"@{kind}{number} refers to a missing input: {given[kind]} "
                            f"{kind.lower()}{plural} given")


def _check_choices(spec: ModelSpec, values: Mapping[str, Any]) -> None:
    duration, ratio = values.get("duration"), values.get("aspect_ratio")
    if duration is not None and duration not in spec.durations:
        _fail("duration", f"{duration} is not allowed; expected one of "
                          f"{', '.join(map(str, spec.durations))}")
    if ratio is not None and ratio not in spec.aspect_ratios:
        _fail("aspect_ratio", f"{ratio!r} is not allowed; expected one of "
                              f"{', '.join(spec.aspect_ratios)}")


def _check_counts(spec: ModelSpec, values: Mapping[str, Any]) -> None:
    images, elements = values.get("images") or (), values.get("elements") or ()
    if len(images) > spec.max_images:
        _fail("images", f"{len(images)} images; {spec.name} takes at most {spec.max_images}")
    if len(elements) > spec.max_elements:
        _fail("elements", f"{len(elements)} elements; {spec.name} takes at most {spec.max_elements}")
    if len(images) + len(elements) > spec.max_images_and_elements:
        _fail("images", f"{len(images)} images and {len(elements)} elements; {spec.name} takes at "
                        f"most {spec.max_images_and_elements} together")
    low, high = spec.min_reference_images_per_element, spec.max_reference_images_per_element
    for number, element in enumerate(elements, start=1):
        count = len(element.reference_images)
        if not low <= count <= high:
            _fail("elements", f"element {number} has {count} reference images; {spec.label} takes "
                              f"{low}-{high} per element{_why(spec, 'elements')}")


def _check_tier(spec: ModelSpec, values: Mapping[str, Any]) -> None:
    if values.get("tier") == "standard" and spec.provider is not None and spec.standard is None:
        _fail("tier", f"{spec.label} has no standard tier; it runs pro only (the standard tier of "
                      f"Kling O1 is served by fal)")


def tier_model_id(spec: ModelSpec, tier: str | None) -> str:
    """The provider's model id for the tier (unset or pro: the model's own id)."""
    return spec.standard.id if tier == "standard" and spec.standard else spec.ids[spec.served_by]


def tier_price(spec: ModelSpec, tier: str | None, pro_price: float, overrides: Mapping[str, float]) -> float:
    """USD per second for the tier; ``<provider>:<model>:standard`` in price_overrides wins."""
    if tier != "standard" or spec.standard is None:
        return pro_price
    return overrides.get(f"{spec.served_by}:{spec.name}:standard", spec.standard.price_per_second)


def check_params(spec: ModelSpec, values: Mapping[str, Any]) -> None:
    """Raise ManifestError (with ``field`` set) when ``values`` break the model's constraints,
    or, for a provider's view, when the request they make breaks that provider's schema."""
    spec = for_backend(spec, values.get("backend"))
    _check_tier(spec, values)
    _check_inputs(spec, values)
    _check_prompt(spec, values)
    _check_choices(spec, values)
    _check_counts(spec, values)
    if spec.provider is not None:
        check_wire(spec, values)


# --- translation to the provider's wire fields ---

def _same(ref: str) -> str:
    return ref


def _wire_element(element: Element, dialect: Dialect, resolve: Callable[[str], str]) -> dict[str, Any]:
    """An element; an empty list of views is left out, never sent as []."""
    names = dialect.element
    wire: dict[str, Any] = {names["frontal_image"]: resolve(element.frontal_image)}
    if element.reference_images:
        wire[names["reference_images"]] = [resolve(r) for r in element.reference_images]
    return wire


def _wire_value(name: str, value: Any, dialect: Dialect, resolve: Callable[[str], str]) -> Any:
    if name in MEDIA_FIELDS:
        return resolve(value)
    if name == "images":
        return [resolve(r) for r in value]
    if name == "elements":
        return [_wire_element(e, dialect, resolve) for e in value]
    if name == "duration" and dialect.duration_as_string:
        return str(value)
    return value


def wire_body(spec: ModelSpec, values: Mapping[str, Any],
              resolve: Callable[[str], str] = _same) -> dict[str, Any]:
    """The request body for ``spec.provider`` in its own field names. Unset parameters are left
    out (an empty list is never sent), except the model's ``wire_defaults``, which are always sent
    explicitly; ``raw`` fields are merged last."""
    dialect = catalog().dialect_for(spec.served_by)
    body: dict[str, Any] = {}
    for name, wire_name in dialect.fields.items():
        value = values.get(name)
        if value is None and name in spec.takes:
            value = spec.wire_defaults.get(name)
        if value not in (None, (), []):
            body[wire_name] = _wire_value(name, value, dialect, resolve)
    body.update(values.get("raw") or {})
    return body


def _neutral_field(spec: ModelSpec, wire_path: str) -> str:
    """The manifest parameter a wire field (dotted path) comes from."""
    wire = wire_path.split(".")[0]
    names = [n for n, w in catalog().dialect_for(spec.served_by).fields.items() if w == wire]
    taken = [n for n in names if n in spec.takes]
    return (taken or names or ["raw"])[0] if wire != "model" else "model"


@lru_cache(maxsize=4096)
def _shape_violation(folders: tuple[str, ...], model_id: str, shape: str) -> schemas.Violation | None:
    return schemas.violation(folders, model_id, json.loads(shape))


def check_wire(spec: ModelSpec, values: Mapping[str, Any]) -> None:
    """Refuse values whose request the provider's published schema would refuse.

    Items of a batch mostly differ in their prompt alone, so each distinct body is checked once
    with the prompt blanked: _check_prompt holds prompts to at least the schemas' limits (a test
    keeps prompt_max_chars within every schema's maxLength)."""
    body = wire_body(spec, values)
    model_id = tier_model_id(spec, values.get("tier"))
    payload = {"model": model_id, **body} if catalog().dialect_for(spec.served_by).model_in_body else body
    folders = catalog().schema_folders(spec.served_by)
    if isinstance(payload.get("prompt"), str):
        payload["prompt"] = ""
    problem = _shape_violation(folders, model_id, json.dumps(payload, sort_keys=True, default=str))
    if problem is not None:
        _fail(_neutral_field(spec, problem.field),
              f"{spec.provider} would refuse this request: {problem.field or 'body'}: {problem.message} "
              f"(per {schemas.schema_path(folders, model_id)})")


def client_request_id(item: Item, batch: str | None = None, attempt: int | None = None) -> str:
    """The id a request is traced by at the provider (the AI/ML API's ``X-Client-Request-Id``: 1-128
    characters of ``[A-Za-z0-9._:-]``, anything else silently dropped): the item's readable id and a
    digest of what makes it unique (its content, and the batch and attempt when given). The same
    item gives the same id when it is sent and when a lost answer is reconciled."""
    readable = TRACE_UNSAFE.sub("-", item.item_id)[:64]
    unique = hashlib.sha256(f"{batch}\n{item.item_id}\n{item.content_key}".encode()).hexdigest()[:20]
    suffix = f":a{attempt}" if attempt is not None else ""
    return f"rb:{readable}:{unique}{suffix}"


def provider_request(item: Item, resolve: Callable[[str], str] = _same, batch: str | None = None,
                     attempt: int | None = None) -> ProviderRequest:
    """The item in its provider's model id and field names; ``resolve`` maps every image or video
    reference (the worker uses it to inline local files)."""
    spec = catalog().model_for(item.provider, item.model)
    values = {name: getattr(item.params, name) for name in type(item.params).model_fields}
    return ProviderRequest(model=item.provider_model, body=wire_body(spec, values, resolve),
                           client_request_id=client_request_id(item, batch, attempt))

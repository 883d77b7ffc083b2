"""The model catalogue (configs/models.yaml): per-model constraints, prices and provider mapping."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.item import Element, Item, ProviderRequest

MEDIA_FIELDS = ("start_image", "end_image", "video")
REFERENCE = re.compile(r"@(Image|Element)(\d+)")


class ModelSpec(BaseModel):
    """One neutral model: what it takes, what it allows, what it costs, and its id per provider."""

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
    max_reference_images_per_element: int = 4
    default_duration: int
    price_per_second: float
    price_source: str
    expected_seconds: float = 600.0   # typical generation time, until finished items teach better
    ids: dict[str, str]


class Dialect(BaseModel):
    """How one wire protocol names the neutral parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    fields: dict[str, str]
    element: dict[str, str]


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True)
    models: dict[str, ModelSpec]
    dialects: dict[str, Dialect]
    providers: dict[str, dict[str, str]]

    def dialect_for(self, provider: str) -> Dialect:
        return self.dialects[self.providers[provider]["dialect"]]

    def model_for(self, provider: str, model: str) -> ModelSpec:
        """The neutral model that ``provider`` serves under ``model`` (a neutral or native name)."""
        if provider not in self.providers:
            raise ManifestError(f"unknown provider {provider!r}; expected one of "
                                f"{', '.join(self.providers)}", field="provider")
        served = {s.name: s for s in self.models.values() if provider in s.ids}
        served |= {s.ids[provider]: s for s in served.values()}
        if model not in served:
            names = sorted(s.name for s in self.models.values() if provider in s.ids)
            raise ManifestError(f"{provider} does not serve {model!r}; it serves {', '.join(names)}",
                                field="model")
        return served[model]


def _read_catalog() -> dict[str, Any]:
    text = resources.files("reelbatch.configs").joinpath("models.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    data = _read_catalog()
    models = {name: {**spec, "name": name} for name, spec in data["models"].items()}
    return Catalog(models=models, dialects=data["dialects"], providers=data["providers"])


def price_per_second(provider: str, spec: ModelSpec, overrides: Mapping[str, float]) -> float:
    return overrides.get(f"{provider}:{spec.name}", spec.price_per_second)


# --- validation of one item's neutral parameters (raises ManifestError with field set) ---

def _present(values: Mapping[str, Any], name: str) -> bool:
    return values.get(name) not in (None, (), [], "")


def _fail(field: str, message: str) -> None:
    raise ManifestError(message, field=field)


def _check_inputs(spec: ModelSpec, values: Mapping[str, Any]) -> None:
    for name in values:
        if name not in spec.takes and name not in ("prompt", "raw") and _present(values, name):
            _fail(name, f"{spec.name} does not take {name}; it takes {', '.join(spec.takes)}")
    for name in spec.required:
        if not _present(values, name):
            _fail(name, f"{spec.name} needs {name}")
    if spec.required_one_of and not any(_present(values, n) for n in spec.required_one_of):
        _fail(spec.required_one_of[0], f"{spec.name} needs {' or '.join(spec.required_one_of)}")


def _check_prompt(spec: ModelSpec, values: Mapping[str, Any]) -> None:
    prompt = values.get("prompt")
    if not prompt:
        _fail("prompt", "a prompt is required")
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
    for element in elements:
        if len(element.reference_images) > spec.max_reference_images_per_element:
            _fail("elements", f"an element has {len(element.reference_images)} reference images; "
                              f"expected at most {spec.max_reference_images_per_element}")


def check_params(spec: ModelSpec, values: Mapping[str, Any]) -> None:
    """Raise ManifestError (with ``field`` set) when ``values`` break the model's constraints."""
    _check_inputs(spec, values)
    _check_prompt(spec, values)
    _check_choices(spec, values)
    _check_counts(spec, values)


# --- translation to the provider's wire fields ---

def _same(ref: str) -> str:
    return ref


def _wire_element(element: Element, dialect: Dialect, resolve: Callable[[str], str]) -> dict:
    names = dialect.element
    return {names["frontal_image"]: resolve(element.frontal_image),
            names["reference_images"]: [resolve(r) for r in element.reference_images]}


def _wire_value(name: str, value: Any, dialect: Dialect, resolve: Callable[[str], str]) -> Any:
    if name in MEDIA_FIELDS:
        return resolve(value)
    if name == "images":
        return [resolve(r) for r in value]
    if name == "elements":
        return [_wire_element(e, dialect, resolve) for e in value]
    return value


def provider_request(item: Item, resolve: Callable[[str], str] = _same) -> ProviderRequest:
    """The item in its provider's model id and field names; ``resolve`` maps every image or video
    reference (the worker uses it to inline local files). ``raw`` fields are merged last."""
    dialect = catalog().dialect_for(item.provider)
    params = item.params
    body = {}
    for name, wire_name in dialect.fields.items():
        value = getattr(params, name)
        if value not in (None, ()):
            body[wire_name] = _wire_value(name, value, dialect, resolve)
    body.update(params.raw)
    return ProviderRequest(model=item.provider_model, body=body)

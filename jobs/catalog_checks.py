"""Validation of one item's neutral parameters against its model (and, for a provider's view, the
provider's published schema): a ManifestError with ``field`` set, before anything is sent."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from reelbatch.jobs.catalog_models import ModelSpec, for_backend
from reelbatch.jobs.catalog_wire import check_wire, refuse

REFERENCE = re.compile(r"@(Image|Element)(\d+)")


def _present(values: Mapping[str, Any], name: str) -> bool:
    return values.get(name) not in (None, (), [], "")


def _why(spec: ModelSpec, name: str) -> str:
    note = spec.notes.get(name)
    return f" ({' '.join(note.split())})" if note else ""


def _check_inputs(spec: ModelSpec, values: Mapping[str, Any]) -> None:
    for name in values:
        if name not in spec.takes and name not in ("prompt", "raw", "tier") and _present(values, name):
            refuse(name, f"{spec.label} does not take {name}{_why(spec, name)}; it takes "
                        f"{', '.join(spec.takes)}")
    for name in spec.required:
        if not _present(values, name):
            refuse(name, f"{spec.label} needs {name}{_why(spec, name)}")
    if spec.required_one_of and not any(_present(values, n) for n in spec.required_one_of):
        refuse(spec.required_one_of[0], f"{spec.label} needs {' or '.join(spec.required_one_of)}")


def _check_prompt(spec: ModelSpec, values: Mapping[str, Any]) -> None:
    prompt = values.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        refuse("prompt", "a prompt is required (not only spaces)")
        return
    if len(prompt) > spec.prompt_max_chars:
        refuse("prompt", f"{len(prompt)} characters; expected at most {spec.prompt_max_chars}")
    given = {"Image": len(values.get("images") or ()), "Element": len(values.get("elements") or ())}
    for kind, number in REFERENCE.findall(prompt):
        if not 1 <= int(number) <= given[kind]:
            plural = "s" if given[kind] != 1 else ""
            refuse("prompt", f"@{kind}{number} refers to a missing input: {given[kind]} "
                            f"{kind.lower()}{plural} given")


def _check_choices(spec: ModelSpec, values: Mapping[str, Any]) -> None:
    duration, ratio = values.get("duration"), values.get("aspect_ratio")
    if duration is not None and duration not in spec.durations:
        refuse("duration", f"{duration} is not allowed; expected one of "
                          f"{', '.join(map(str, spec.durations))}")
    if ratio is not None and ratio not in spec.aspect_ratios:
        refuse("aspect_ratio", f"{ratio!r} is not allowed; expected one of "
                              f"{', '.join(spec.aspect_ratios)}")


def _check_counts(spec: ModelSpec, values: Mapping[str, Any]) -> None:
    images, elements = values.get("images") or (), values.get("elements") or ()
    if len(images) > spec.max_images:
        refuse("images", f"{len(images)} images; {spec.name} takes at most {spec.max_images}")
    if len(elements) > spec.max_elements:
        refuse("elements", f"{len(elements)} elements; {spec.name} takes at most {spec.max_elements}")
    if len(images) + len(elements) > spec.max_images_and_elements:
        refuse("images", f"{len(images)} images and {len(elements)} elements; {spec.name} takes at "
                        f"most {spec.max_images_and_elements} together")
    low, high = spec.min_reference_images_per_element, spec.max_reference_images_per_element
    for number, element in enumerate(elements, start=1):
        count = len(element.reference_images)
        if not low <= count <= high:
            refuse("elements", f"element {number} has {count} reference images; {spec.label} takes "
                              f"{low}-{high} per element{_why(spec, 'elements')}")


def _check_tier(spec: ModelSpec, values: Mapping[str, Any]) -> None:
    if values.get("tier") == "standard" and spec.provider is not None and spec.standard is None:
        refuse("tier", f"{spec.label} has no standard tier; it runs pro only (the standard tier of "
                      f"Kling O1 is served by fal)")


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

"""Translation of an item to its provider's wire fields (the dialect in the catalogue), the check of
that request against the provider's published schema, and the id a request is traced by."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from reelbatch.jobs import schemas
from reelbatch.jobs.catalog_models import Dialect, ModelSpec, catalog, tier_model_id
from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.item import Element, Item, ProviderRequest

MEDIA_FIELDS = ("start_image", "end_image", "video")
TRACE_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")   # outside the AI/ML API's X-Client-Request-Id alphabet


def refuse(field: str, message: str) -> None:
    """Refuse the item's ``field`` with ``message`` (bad input: nothing is sent)."""
    raise ManifestError(message, field=field)


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
        refuse(_neutral_field(spec, problem.field),
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

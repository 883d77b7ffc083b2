"""The providers' request schemas (configs/schemas/), and checking a request body against them.

One JSON Schema per provider model, written by us from each provider's published documentation (each
file's ``$comment`` names the source, commit and date). They are read from
``configs/schemas/<provider>/<model id>.json``, else ``configs/schemas/<dialect>/<model id>.json``: the
simulator speaks Oxen's dialect and has one model of its own. The plan, the unit tests and the
simulator all check bodies against the same files, so a body a provider would refuse is refused here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match


@dataclass(frozen=True)
class Violation:
    """The first reason a body breaks its schema: the wire field (dotted path) and what is wrong."""

    field: str
    message: str
    validator: str   # the JSON Schema keyword that failed: required, enum, minItems, ...


def _root() -> Traversable:
    return resources.files("reelbatch.configs").joinpath("schemas")


def _file(folders: tuple[str, ...], model_id: str) -> Traversable | None:
    for folder in folders:
        path = _root().joinpath(folder, *f"{model_id}.json".split("/"))
        if path.is_file():
            return path
    return None


def schema_path(folders: tuple[str, ...], model_id: str) -> str | None:
    """``schemas/<folder>/<model id>.json`` of the first folder that has it (for messages)."""
    return f"configs/schemas/{folders[0]}/{model_id}.json" if _file(folders, model_id) else None


@lru_cache(maxsize=64)
def validator(folders: tuple[str, ...], model_id: str) -> Draft202012Validator | None:
    """The compiled schema of ``model_id`` (None when there is none). ``format`` is not asserted."""
    path = _file(folders, model_id)
    if path is None:
        return None
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@lru_cache(maxsize=64)
def schema(folders: tuple[str, ...], model_id: str) -> dict[str, Any] | None:
    found = validator(folders, model_id)
    return found.schema if found else None


def _describe(error: ValidationError) -> Violation:
    path = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else ""
        return Violation(".".join([*path, missing]).strip("."), f"{missing} is required", "required")
    where = ".".join(path)
    return Violation(where, error.message, str(error.validator))


def violation(folders: tuple[str, ...], model_id: str, body: Mapping[str, Any]) -> Violation | None:
    """Why ``body`` breaks the model's schema (the most relevant error), or None when it fits."""
    found = validator(folders, model_id)
    if found is None:
        return None
    error = best_match(found.iter_errors(body))
    return _describe(error) if error is not None else None

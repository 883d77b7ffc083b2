"""The matrix: every combination of its values is a variant of every item. A value's tag (its part of
the item id) comes from what it is, never from where it stands, so reordering, inserting or removing
values costs nothing for the others:

- a mapping names its values: ``prompt: {calm: "a calm sea", storm: "a storm"}`` (or a list entry
  ``- calm: "a calm sea"``): the tag is the name;
- in a list, a file or URL is tagged by its stem (``img/ox.png`` -> ``ox``), a text by a short hash of
  it (``p3f9a1c``), a duration, aspect ratio or audio flag by its value (``d5``, ``ar16x9``, ``mute``).

Two different values with the same stem get their short hash appended; the same value twice is refused.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from reelbatch.jobs import inputs
from reelbatch.jobs.manifest import Manifest, ParamSpec, validation_error
from reelbatch.jobs.manifest_yaml import YamlPath, dotted
from reelbatch.jobs.names import id_part

Where = tuple[str, int | None, str]  # file, line, field
MATRIX_TAGS = {"prompt": "p", "start_image": "img", "end_image": "end", "video": "vid"}
MEDIA_AXES = frozenset({"start_image", "end_image", "video"})
HASH_CHARS = 6


@dataclass(frozen=True)
class Variant:
    """One matrix combination: its id label, the parameters it sets, and where they come from."""

    label: tuple[str, ...]
    values: dict[str, Any]
    origins: dict[str, Where]


@dataclass(frozen=True)
class Entry:
    """One value of a matrix axis: its tag, its value, and where the manifest gives it."""

    tag: str
    value: Any
    path: YamlPath


def short_hash(value: Any) -> str:
    return hashlib.sha256(str(value).encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]


def _stem(ref: str) -> str:
    path = urlsplit(ref).path if inputs.is_url(ref) else ref
    return id_part(PurePosixPath(path.replace("\\", "/")).stem) if not ref.startswith("data:") else ""


def value_tag(name: str, value: Any) -> str:
    """A list value's tag, from the value itself."""
    if name == "duration":
        return f"d{value}"
    if name == "aspect_ratio":
        return "ar" + id_part(str(value).replace(":", "x"))
    if name == "keep_audio":
        return "audio" if value else "mute"
    if name == "tier":
        return str(value)
    if name in MEDIA_AXES and (stem := _stem(str(value))):
        return stem
    return f"{MATRIX_TAGS[name]}{short_hash(value)}"


def _raw_entries(name: str, values: Any) -> list[tuple[str | None, Any, YamlPath]]:
    """(given tag or None, value, where) for a list axis or a mapping axis."""
    if isinstance(values, dict):
        return [(str(tag), value, ("matrix", name, tag)) for tag, value in values.items()]
    found: list[tuple[str | None, Any, YamlPath]] = []
    for index, value in enumerate(values):
        if isinstance(value, dict) and len(value) == 1:
            ((tag, inner),) = value.items()
            found.append((str(tag), inner, ("matrix", name, index, tag)))
        else:
            found.append((None, value, ("matrix", name, index)))
    return found


def _checked(manifest: Manifest, name: str, value: Any, path: YamlPath) -> Any:
    try:
        return ParamSpec.model_validate({name: value}).given()[name]
    except ValidationError as exc:
        raise validation_error(exc, lambda _loc, msg: manifest.error(msg, path)) from None


def axis(manifest: Manifest, name: str, values: Any) -> list[Entry]:
    """The axis's values, validated, each with a tag unique on the axis."""
    entries = []
    for given, raw, path in _raw_entries(name, values):
        value = _checked(manifest, name, raw, path)
        tag = id_part(given) if given is not None else value_tag(name, value)
        if not tag:
            raise manifest.error(f"the name {given!r} has no letters or digits; expected a "
                                 "short name for this value", path)
        entries.append(Entry(tag, value, path))
    return _unique(manifest, entries)


def _unique(manifest: Manifest, entries: list[Entry]) -> list[Entry]:
    """Tags shared by different values get the value's short hash; a repeated value is refused."""
    seen: dict[str, list[Entry]] = {}
    for entry in entries:
        seen.setdefault(entry.tag, []).append(entry)
    out = []
    for entry in entries:
        shared = seen[entry.tag]
        if len(shared) > 1 and sum(e.value == entry.value for e in shared) > 1:
            raise manifest.error(f"the value {str(entry.value)[:60]!r} is given twice; use repeat: "
                                 "for more samples", entry.path)
        tag = f"{entry.tag}-{short_hash(entry.value)}" if len(shared) > 1 else entry.tag
        out.append(Entry(tag, entry.value, entry.path))
    return out


def variants(manifest: Manifest) -> list[Variant]:
    axes = [[(name, entry) for entry in axis(manifest, name, values)]
            for name, values in manifest.matrix.items()]
    source = str(manifest.source)
    return [Variant(tuple(e.tag for _, e in combo), {n: e.value for n, e in combo},
                    {n: (source, manifest.line_of(e.path), dotted(e.path)) for n, e in combo})
            for combo in itertools.product(*axes)]

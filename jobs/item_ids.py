"""Item ids: a source's id, its vars' labels, its variant's tags and its sample, joined; readable,
stable across runs, and unique as file names."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from typing import Any

from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.item import Item
from reelbatch.jobs.names import file_key, file_stem, id_part
from reelbatch.jobs.rows import Source, Where

MAX_ID_CHARS = 200


def item_id(parts: tuple[str, ...]) -> str:
    text = ".".join(p for p in parts if p)
    if len(text) <= MAX_ID_CHARS:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{text[:MAX_ID_CHARS - 13]}.{digest}"


def var_combos(source: Source) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    names = list(source.vars)
    for combo in itertools.product(*(enumerate(source.vars[n]) for n in names)):
        label = tuple(_var_label(n, v, i) for n, (i, v) in zip(names, combo, strict=True)
                      if len(source.vars[n]) > 1)
        yield label, {n: v for n, (_, v) in zip(names, combo, strict=True)}


def _var_label(name: str, value: Any, index: int) -> str:
    text = id_part(str(value))
    return text if text and len(text) <= 24 else f"{id_part(name)}{index + 1}"


def add_unique(item: Item, where: Where, seen: dict[str, tuple[str, Where]], out: list[Item]) -> None:
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

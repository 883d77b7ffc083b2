"""Placeholders: ``{name}`` in a templated field (the prompt, a media reference) filled from the item's
vars, matrix values or row columns; ``{{`` and ``}}`` are literal braces."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any

from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.rows import Source, at

TEMPLATED = ("prompt", "start_image", "end_image", "video")
# `{name}` is a placeholder; `{{` and `}}` are literal braces (as in str.format); any other brace
# is kept as it is.
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
BRACE_HINT = "write {{ and }} for literal braces"


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


def filled(source: Source, env: dict[str, Any]) -> dict[str, Any]:
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

"""YAML that remembers the line of every value: the manifest's reader (and the item files'), with
its limits (aliases, duplicate keys, size, encoding), each refusal a ManifestError with its line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from reelbatch.jobs.errors import ManifestError

YamlPath = tuple[str | int, ...]
ALIAS_BUDGET = 20

__all__ = ["ALIAS_BUDGET", "YamlPath", "dotted", "parse_yaml", "read_text"]


def dotted(path: YamlPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


# Fast YAML (libyaml when present); safe types only.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _count_aliases(text: str) -> None:
    aliases = 0
    for event in yaml.parse(text, Loader=_Loader):
        aliases += isinstance(event, yaml.AliasEvent)
        if aliases > ALIAS_BUDGET:
            line = event.start_mark.line + 1 if event.start_mark else None
            raise ManifestError(f"more than {ALIAS_BUDGET} YAML aliases; anchors and aliases are "
                                "limited to keep manifests small", line=line, field="yaml")


def _record_lines(node: yaml.Node, path: YamlPath, lines: dict[YamlPath, int], seen: set[int]) -> None:
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[object, int] = {}
        for key, value in node.value:
            child = (*path, key.value if isinstance(key, yaml.ScalarNode) else "?")
            line = key.start_mark.line + 1
            _refuse_duplicate(key, child, line, first)
            lines[child] = line
            _record_lines(value, child, lines, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, value in enumerate(node.value):
            lines[(*path, index)] = value.start_mark.line + 1
            _record_lines(value, (*path, index), lines, seen)


def _refuse_duplicate(key: yaml.Node, path: YamlPath, line: int, first: dict[object, int]) -> None:
    """PyYAML keeps the last of two equal keys without a word: refuse them, naming both lines."""
    if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
        return
    if key.value in first:
        raise ManifestError(f"duplicate key {key.value!r}; line {first[key.value]} sets it too "
                            "(YAML keeps only the last one)", line=line, field=dotted(path))
    first[key.value] = line


def parse_yaml(text: str) -> tuple[Any, dict[YamlPath, int]]:
    """The document and a map from each key path to its line (1-based)."""
    try:
        _count_aliases(text)
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.constructor.SafeConstructor().construct_document(node) if node else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ManifestError(f"invalid YAML: {exc.problem or exc.context}",
                            line=mark.line + 1 if mark else None, field="yaml") from None
    except yaml.reader.ReaderError as exc:
        raise ManifestError(f"invalid YAML: character {exc.character!r} is not allowed",
                            line=text[:exc.position].count("\n") + 1, field="yaml") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"invalid YAML: {' '.join(str(exc).split())}", field="yaml") from None
    lines: dict[YamlPath, int] = {}
    if node is not None:
        _record_lines(node, (), lines, set())
    return data, lines


def read_text(path: Path, max_bytes: int, what: str = "max_manifest_bytes") -> str:
    """The file as UTF-8 text, refusing files over ``max_bytes``."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ManifestError(f"{size} bytes is more than {what} ({max_bytes})", str(path))
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read the file: {exc.strerror}", str(path)) from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")   # a BOM, as spreadsheets write it
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ManifestError(f"not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8",
                            str(path), line, "encoding") from None



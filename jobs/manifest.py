"""The batch manifest: pydantic models, and YAML loading that remembers the line of every value."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from reelbatch.jobs.catalog import catalog
from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.item import Element

YamlPath = tuple[str | int, ...]
ALIAS_BUDGET = 20
MAX_REQUESTS_PER_MINUTE = 60_000   # 1,000 a second: beyond any provider, within the rate limiter
MAX_QUEUE_DEPTH = 100              # limits.queue_depth: generations queued past the running limit
MATRIX_PARAMS = ("prompt", "start_image", "end_image", "video", "aspect_ratio", "duration",
                 "keep_audio", "tier")
SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
Scalar = str | int | float | bool


def safe_id(value: str) -> str:
    if not SAFE_ID.fullmatch(value) or ".." in value or len(value) > 120:
        raise ValueError(f"{value!r} is not a safe id; expected letters, digits, '.', '_' and '-' "
                         "(no '..', no '/', at most 120 characters)")
    return value


def _ratio_from_sexagesimal(value: Any) -> Any:
    """YAML 1.1 reads an unquoted 16:9 as the base-60 integer 969: give the ratio back."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 60:
        return f"{value // 60}:{value % 60}"
    return value


def _json_values(value: dict[str, Any]) -> dict[str, Any]:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise ValueError("raw must hold JSON values (strings, numbers, booleans, null, lists, "
                         "mappings)") from None
    return value


SafeId = Annotated[str, AfterValidator(safe_id)]
AspectRatio = Annotated[str, BeforeValidator(_ratio_from_sexagesimal)]


class ParamSpec(BaseModel):
    """Neutral generation parameters as written in the manifest (defaults, an item, a row)."""

    model_config = ConfigDict(extra="forbid")
    prompt: str | None = None
    start_image: str | None = None
    end_image: str | None = None
    images: list[str] | None = None
    elements: list[Element] | None = None
    video: str | None = None
    aspect_ratio: AspectRatio | None = None
    duration: int | None = None
    keep_audio: bool | None = None
    backend: Literal["kling", "fal", "auto"] | None = None   # AI/ML API routing (catalog)
    tier: Literal["standard", "pro"] | None = None   # Kling O1 tier; unset: pro (catalog)
    raw: Annotated[dict[str, Any], AfterValidator(_json_values)] | None = None

    def given(self) -> dict[str, Any]:
        """The parameters this spec sets, lists as tuples."""
        values = {name: getattr(self, name) for name in self.model_fields_set}
        for name in ("images", "elements"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        return {k: v for k, v in values.items() if v is not None}


class ItemSpec(ParamSpec):
    id: SafeId
    vars: dict[str, list[Scalar] | Scalar] = Field(default_factory=dict)


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_concurrency: int = Field(5, ge=1)
    requests_per_minute: int = Field(60, ge=1, le=MAX_REQUESTS_PER_MINUTE)
    max_cost_usd: float | None = Field(None, ge=0)
    # generations kept queued at the provider beyond max_concurrency, where it queues past its
    # running limit (Oxen, fal): None learns it, 0 keeps none (worker/engine/depth.py)
    queue_depth: int | None = Field(None, ge=0, le=MAX_QUEUE_DEPTH)


class RetrySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_attempts: int = Field(3, ge=1, le=100)
    # a submit whose answer was lost where the provider cannot be asked whether it created the
    # generation (a client without ``find``; Oxen and the AI/ML API both have one): fail it (kind
    # submit_unknown, the person paying decides with `retry --kind submit_unknown`) or resubmit at
    # once (may pay twice for that item)
    lost_submit: Literal["fail", "resubmit"] = "fail"


class PollingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first_after_s: float | None = Field(None, ge=0)
    min_interval_s: float = Field(5, gt=0)
    max_interval_s: float = Field(60, gt=0)
    give_up_after_s: float | None = Field(None, gt=0)   # default: the model's (catalog give_up_after_s)

    @model_validator(mode="after")
    def _ordered(self) -> PollingSettings:
        if self.max_interval_s < self.min_interval_s:
            raise ValueError("max_interval_s must be at least min_interval_s")
        return self


class Manifest(BaseModel):
    """A batch manifest (docs/design.md section 1). ``source`` is the file it was read from."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1]
    name: Annotated[str, AfterValidator(safe_id)]
    provider: str
    model: str
    output: Path
    defaults: ParamSpec = Field(default_factory=ParamSpec)
    matrix: dict[str, list[Any] | dict[str, Any]] = Field(default_factory=dict)   # jobs/variants.py
    repeat: int = Field(1, ge=1)
    items: list[ItemSpec] = Field(default_factory=list)
    items_from: str | None = None
    limits: Limits = Field(default_factory=Limits)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    polling: PollingSettings = Field(default_factory=PollingSettings)
    notify: list[str] = Field(default_factory=list)   # Apprise URLs; read by `run`, never stored
    reuse: list[Annotated[str, AfterValidator(safe_id)]] = Field(default_factory=list)   # batches to take
                                                      # identical succeeded requests from
    source: Path = Path("<manifest>")
    _lines: dict[YamlPath, int] = PrivateAttr(default_factory=dict)
    _digest: str = PrivateAttr(default="")

    @property
    def digest(self) -> str:
        """The sha256 of the manifest's text: a copy of the file elsewhere is the same manifest."""
        return self._digest

    @property
    def folder(self) -> Path:
        return self.source.parent

    def line_of(self, path: YamlPath) -> int | None:
        """The manifest line of ``path``, or of its nearest enclosing value."""
        return _nearest(self._lines, path)

    def error(self, message: str, path: YamlPath) -> ManifestError:
        return ManifestError(message, str(self.source), self.line_of(path), dotted(path))


USER_KEYS = tuple(k for k in Manifest.model_fields if k != "source")
KNOWN_KEYS = sorted({*USER_KEYS, *ItemSpec.model_fields, *Limits.model_fields,
                     *RetrySettings.model_fields, *PollingSettings.model_fields,
                     *Element.model_fields})


def dotted(path: YamlPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


# --- YAML with line numbers ---

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


# --- validation errors to one line ---

def _message(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        key = str(error["loc"][-1])
        close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
        return f"unknown key {key!r}" + (f"; did you mean {close[0]}?" if close else "")
    if error["type"] == "literal_error":
        return f"got {error['input']!r}; expected {error['ctx']['expected']}"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return "missing; this field is required"
    return f"{message} (got {error['input']!r})" if _short(error.get("input")) else message


def _short(value: Any) -> bool:
    return isinstance(value, str | int | float) and len(repr(value)) <= 60


TYPE_TAGS = {"str", "int", "float", "bool"}


def _loc(error: ErrorDetails) -> YamlPath:
    """The error location without pydantic's union branch names."""
    return tuple(p for p in error["loc"]
                 if isinstance(p, int) or not (p in TYPE_TAGS or p.startswith(("list[", "union["))))


Locate = Callable[[YamlPath, str], ManifestError]


def validation_error(exc: ValidationError, locate: Locate) -> ManifestError:
    """The most useful pydantic error as a ManifestError: unknown keys first (a typo also makes
    a field missing), then the earliest line. ``locate(path, message)`` builds each one."""
    found = [(e["type"] != "extra_forbidden", locate(_loc(e), _message(e))) for e in exc.errors()]
    return min(found, key=lambda f: (f[0], f[1].line or 0))[1]


# --- loading ---

def _check_top(data: Any, path: Path) -> None:
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise ManifestError(f"the manifest is {kind}; expected a mapping of keys such as version, "
                            "provider, model, items", str(path), 1, "manifest")


def _with_defaults(data: dict[str, Any], path: Path) -> dict[str, Any]:
    data = dict(data)
    data.setdefault("name", re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem).strip("-") or "batch")
    data.setdefault("output", f"out/{data['name']}")
    return data


def _semantic_checks(manifest: Manifest) -> None:
    try:
        catalog().model_for(manifest.provider, manifest.model)
    except ManifestError as exc:
        raise manifest.error(exc.message, (exc.field,)) from None
    for key, values in manifest.matrix.items():
        if key not in MATRIX_PARAMS:
            raise manifest.error(f"unknown matrix parameter {key!r}; expected one of "
                                 f"{', '.join(MATRIX_PARAMS)}", ("matrix", key))
        if not values:
            raise manifest.error("empty list; expected at least one value", ("matrix", key))
    if not manifest.items and not manifest.items_from:
        raise manifest.error("no items; give items or items_from", ("items",))


def build_manifest(data: Any, lines: dict[YamlPath, int], path: Path) -> Manifest:
    _check_top(data, path)
    def locate(loc: YamlPath, message: str) -> ManifestError:
        return ManifestError(message, str(path), _nearest(lines, loc), dotted(loc))

    if "source" in data:
        raise locate(("source",), "unknown key 'source'")
    try:
        manifest = Manifest.model_validate({**_with_defaults(data, path), "source": path})
    except ValidationError as exc:
        raise validation_error(exc, locate) from None
    manifest._lines = lines
    manifest.output = (path.parent / manifest.output).resolve()
    _semantic_checks(manifest)
    return manifest


def _nearest(lines: dict[YamlPath, int], path: YamlPath) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def load_manifest(path: str | Path, max_bytes: int = 5_000_000) -> Manifest:
    """Read, parse and validate a manifest; every mistake is a ManifestError naming file and line."""
    path = Path(path).absolute()
    text = read_text(path, max_bytes)
    try:
        data, lines = parse_yaml(text)
    except ManifestError as exc:
        raise ManifestError(exc.message, str(path), exc.line, exc.field) from None
    manifest = build_manifest(data, lines, path)
    manifest._digest = hashlib.sha256(text.encode()).hexdigest()
    return manifest


MAPPING_SOURCE = "<dict>"   # what errors name as the file of a manifest given as a mapping


def manifest_from_mapping(data: Any, base_dir: str | Path) -> Manifest:
    """A manifest given as a mapping (the Python API) instead of a file: relative paths (``output``,
    ``items_from``, local images) are taken from ``base_dir``; errors name no line. The same mapping
    from another folder is the same manifest (its digest is the canonical JSON's)."""
    path = Path(base_dir).absolute() / MAPPING_SOURCE
    manifest = build_manifest(data, {}, path)
    text = json.dumps(data, sort_keys=True, default=str)
    manifest._digest = hashlib.sha256(text.encode()).hexdigest()
    return manifest

"""The batch manifest: pydantic models, and YAML loading that remembers the line of every value."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

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
from reelbatch.jobs.manifest_yaml import YamlPath, dotted, parse_yaml, read_text

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


class ProviderLimits(BaseModel):
    """One provider's limits in a batch over several (``limits: {fal: {max_concurrency: 10}}``);
    unset values are the batch's own."""

    model_config = ConfigDict(extra="forbid")
    max_concurrency: int | None = Field(None, ge=1)
    requests_per_minute: int | None = Field(None, ge=1, le=MAX_REQUESTS_PER_MINUTE)
    queue_depth: int | None = Field(None, ge=0, le=MAX_QUEUE_DEPTH)


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_concurrency: int = Field(5, ge=1)
    requests_per_minute: int = Field(60, ge=1, le=MAX_REQUESTS_PER_MINUTE)
    max_cost_usd: float | None = Field(None, ge=0)   # every provider of the batch together
    # generations kept queued at the provider beyond max_concurrency, where it queues past its
    # running limit (Oxen, fal): None learns it, 0 keeps none (worker/engine/depth.py)
    queue_depth: int | None = Field(None, ge=0, le=MAX_QUEUE_DEPTH)
    # per provider, by name (tests/unit/test_fanout_manifest.py holds these to the catalogue's)
    oxen: ProviderLimits | None = None
    aimlapi: ProviderLimits | None = None
    fal: ProviderLimits | None = None
    simulator: ProviderLimits | None = None
    simulator_aimlapi: ProviderLimits | None = None
    simulator_fal: ProviderLimits | None = None

    def per_provider(self) -> dict[str, ProviderLimits]:
        """The providers given their own limits."""
        return {name: value for name in PROVIDER_LIMIT_FIELDS
                if isinstance(value := getattr(self, name), ProviderLimits)}

    def depth_of(self, provider: str) -> int | None:
        """``queue_depth`` for ``provider``: its own, else the batch's (None: learned)."""
        own = self.per_provider().get(provider, ProviderLimits()).queue_depth
        return self.queue_depth if own is None else own

    def of(self, provider: str) -> tuple[int, int]:
        """(max_concurrency, requests_per_minute) for ``provider``: its own, else the batch's."""
        own = self.per_provider().get(provider, ProviderLimits())
        return (own.max_concurrency or self.max_concurrency,
                own.requests_per_minute or self.requests_per_minute)


PROVIDER_LIMIT_FIELDS = ("oxen", "aimlapi", "fal", "simulator", "simulator_aimlapi", "simulator_fal")
Route = Literal["cheapest", "spread", "in-order"]


class RetrySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_attempts: int = Field(3, ge=1, le=100)
    # a submit whose answer was lost where the provider cannot be asked whether it created the
    # generation (a client without ``find``; Oxen and the AI/ML API both have one): fail it (kind
    # submit_unknown, the person paying decides with `retry --kind submit_unknown`) or resubmit at
    # once (may pay twice for that item)
    lost_submit: Literal["fail", "resubmit"] = "fail"
    # with several providers: a generation that failed remotely (not a permanent failure) may be
    # submitted again on another provider of the list
    on_other_provider: bool = False


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
    provider: str                     # the first provider of a list (build_manifest splits it)
    provider_list: tuple[str, ...] = ()   # ``provider: [fal, oxen]``: every provider, in order
    route: Route = "cheapest"
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

    @property
    def providers(self) -> tuple[str, ...]:
        """Every provider the batch may use, in the manifest's order."""
        return self.provider_list or (self.provider,)

    @property
    def fanout(self) -> bool:
        """The batch runs over several providers at once."""
        return len(self.providers) > 1

    def line_of(self, path: YamlPath) -> int | None:
        """The manifest line of ``path``, or of its nearest enclosing value."""
        return _nearest(self._lines, path)

    def error(self, message: str, path: YamlPath) -> ManifestError:
        return ManifestError(message, str(self.source), self.line_of(path), dotted(path))


INTERNAL_KEYS = ("source", "provider_list")
USER_KEYS = tuple(k for k in Manifest.model_fields if k not in INTERNAL_KEYS)
KNOWN_KEYS = sorted({*USER_KEYS, *ItemSpec.model_fields, *Limits.model_fields,
                     *RetrySettings.model_fields, *PollingSettings.model_fields,
                     *Element.model_fields})


# --- validation errors to one line ---

def _message(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        key = str(error["loc"][-1])
        close = difflib.get_close_matches(key, [k for k in KNOWN_KEYS if k != key], n=1)
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


def _split_providers(data: dict[str, Any], locate: Locate) -> dict[str, Any]:
    """``provider: [a, b]`` becomes provider ``a`` with the list beside it; a one-name list is that
    name, exactly as ``provider: a``."""
    names = data.get("provider")
    if not isinstance(names, list):
        return data
    if not names:
        raise locate(("provider",), "empty list; expected at least one provider")
    for index, name in enumerate(names):
        if not isinstance(name, str):
            raise locate(("provider", index), f"got {name!r}; expected a provider name")
        if name in names[:index]:
            raise locate(("provider", index), f"{name!r} is listed twice")
    return {**data, "provider": names[0], **({"provider_list": tuple(names)} if len(names) > 1 else {})}


def _check_providers(manifest: Manifest) -> None:
    """Every listed provider is known, at least one serves the model, and limits are given only to
    listed providers."""
    known = catalog().providers
    for index, name in enumerate(manifest.providers):
        if name not in known:
            where = ("provider", index) if manifest.fanout else ("provider",)
            raise manifest.error(f"unknown provider {name!r}; expected one of {', '.join(known)}", where)
    failures = []
    for name in manifest.providers:
        try:
            catalog().model_for(name, manifest.model)
        except ManifestError as exc:
            failures.append(exc)
    if len(failures) == len(manifest.providers):
        raise manifest.error(failures[0].message, (failures[0].field,))
    for name in manifest.limits.per_provider():
        if name not in manifest.providers:
            raise manifest.error(f"limits for {name}, which the batch does not use; provider lists "
                                 f"{', '.join(manifest.providers)}", ("limits", name))


def _semantic_checks(manifest: Manifest) -> None:
    _check_providers(manifest)
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

    for key in INTERNAL_KEYS:
        if key in data:
            raise locate((key,), f"unknown key {key!r}")
    data = _split_providers(data, locate)
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

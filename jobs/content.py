"""The content key: the identity of the work itself (provider, model, parameters, sample). A local
input counts by its bytes (its sha256), never by where it lies, so the same manifest in a moved
folder, a second checkout or a container that mounts it elsewhere is the same work.

Batches saved before keyed a local input by its absolute path (``legacy_key``); ``moved_same_work``
tells such an item apart from a real edit, so registering keeps it instead of paying again."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from reelbatch.jobs import inputs
from reelbatch.jobs.item import Element, Item, Params

HASH_CHUNK = 1 << 20
LOCAL_TAG = "sha256:"

# Parameters added to Params after batches were first saved: they join the content key only when
# set, so an item that does not use one keeps the key it had (and is not regenerated on resume).
LATER_PARAMS = frozenset({"backend", "tier"})


def params_json(params: Params) -> str:
    unset = {name for name in LATER_PARAMS if getattr(params, name) is None}
    return params.model_dump_json(exclude=unset or None)


def content_key(provider: str, model: str, params_json: str, sample: int) -> str:
    """Same provider, model, parameters (as keyed) and sample: same key."""
    text = f"{provider}\n{model}\n{params_json}\n{sample}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_local(ref: str) -> bool:
    return not inputs.is_url(ref)


def media_refs(params: Params) -> list[str]:
    """Every media reference of ``params``, in a fixed order."""
    refs = [r for r in (params.start_image, params.end_image, params.video) if r]
    refs += list(params.images)
    for element in params.elements:
        refs += [element.frontal_image, *element.reference_images]
    return refs


def with_media(params: Params, swap: Callable[[str], str]) -> Params:
    """``params`` with every media reference replaced by ``swap(ref)``."""
    def one(ref: str | None) -> str | None:
        return swap(ref) if ref else ref

    elements = tuple(Element.model_construct(frontal_image=swap(e.frontal_image),
                                             reference_images=tuple(map(swap, e.reference_images)))
                     for e in params.elements)
    return params.model_copy(update={
        "start_image": one(params.start_image), "end_image": one(params.end_image),
        "video": one(params.video), "images": tuple(map(swap, params.images)),
        "elements": elements})


def keyed_json(params: Params, digests: Mapping[str, str]) -> str:
    """The parameters as the key sees them: each local file as ``sha256:<its bytes' digest>``."""
    return params_json(with_media(params, lambda r: LOCAL_TAG + digests[r] if r in digests else r))


def legacy_key(item: Item) -> str:
    """The key an item had when local inputs were keyed by their path."""
    return content_key(item.provider, item.model, params_json(item.params), item.sample)


def rekeyed(item: Item) -> str | None:
    """The key by bytes of an item saved with path keys, while its local files are where they were
    (None for an item keyed the new way, or whose files are gone)."""
    local = [ref for ref in media_refs(item.params) if is_local(ref)]
    if not local or item.content_key != legacy_key(item):
        return None
    try:
        digests = {ref: file_sha256(ref) for ref in local}
    except OSError:
        return None
    return content_key(item.provider, item.model, keyed_json(item.params, digests), item.sample)


def moved_same_work(old: Item, new: Item, old_folder: Path | None, new_folder: Path,
                    digest: Callable[[str], str | None] | None = None) -> bool:
    """``old`` was keyed by its local paths, and ``new`` asks for the same request: the same
    parameters but where local files lie, each file moved (its old path holds the same bytes, or
    it is gone and the new file lies at the same place relative to the manifest)."""
    if old.content_key != legacy_key(old) or (old.provider, old.model, old.sample) != (
            new.provider, new.model, new.sample):
        return False
    if params_json(with_media(old.params, _blank)) != params_json(with_media(new.params, _blank)):
        return False
    pairs = list(zip(media_refs(old.params), media_refs(new.params), strict=False))
    if len(pairs) != len(media_refs(new.params)) or not any(is_local(a) for a, _ in pairs):
        return False
    digest = digest or _digest_or_none
    return all(_same_file(a, b, old_folder, new_folder, digest) for a, b in pairs)


def _blank(_ref: str) -> str:
    return ""


def _same_file(old: str, new: str, old_folder: Path | None, new_folder: Path,
               digest: Callable[[str], str | None]) -> bool:
    if old == new:
        return True
    if not (is_local(old) and is_local(new)):
        return False
    before = digest(old)
    if before is not None:
        return before == digest(new)
    return old_folder is not None and _relative(old, old_folder) == _relative(new, new_folder)


def _relative(path: str, folder: Path) -> str:
    return os.path.relpath(os.path.normpath(path), os.path.normpath(folder))


def _digest_or_none(path: str) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None

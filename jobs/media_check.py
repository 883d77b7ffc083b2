"""The media an item refers to, checked once per distinct reference at plan time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reelbatch.jobs import inputs
from reelbatch.jobs.catalog import MediaLimits
from reelbatch.jobs.content import file_sha256
from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.item import Element


class MediaChecker:
    """Checks each distinct image or video reference once and turns local paths absolute. Local
    files are held to the model's media limits for its provider (format, size, dimensions, length);
    for URLs only the format named by the extension can be checked without fetching them."""

    def __init__(self, base_dir: Path, formats: tuple[str, ...], max_bytes: int | None = None,
                 limits: MediaLimits | None = None):
        self.base_dir, self.formats, self.max_bytes, self.limits = base_dir, formats, max_bytes, limits
        self.seen: dict[tuple[str, bool], str] = {}
        self.digests: dict[str, str] = {}   # local path -> sha256 of its bytes (the content key's)

    def resolve(self, ref: str, is_image: bool, field: str) -> str:
        key = (ref, is_image)
        if key not in self.seen:
            try:
                self.seen[key] = self._check(ref, is_image)
            except ManifestError as exc:
                raise ManifestError(exc.message, field=field) from None
        return self.seen[key]

    def _check(self, ref: str, is_image: bool) -> str:
        url = inputs.checked_url(ref)
        if url is not None:
            if is_image:
                inputs.check_image_url(url, self.formats)
            return url
        path = inputs.local_path(ref, self.base_dir)
        if is_image:
            inputs.check_local_image(path, self.formats, self.limits)
        else:
            inputs.check_local_video(path, self.limits)
        if self.max_bytes is not None:
            inputs.check_inline_size(path, self.max_bytes)
        self.digests[str(path)] = _digest(path)
        return str(path)

    def resolved(self, values: dict[str, Any]) -> dict[str, Any]:
        values = dict(values)
        for name in ("start_image", "end_image"):
            if values.get(name):
                values[name] = self.resolve(values[name], True, name)
        if values.get("video"):
            values["video"] = self.resolve(values["video"], False, "video")
        if values.get("images"):
            values["images"] = tuple(self.resolve(r, True, "images") for r in values["images"])
        if values.get("elements"):
            values["elements"] = tuple(self._element(e) for e in values["elements"])
        return values

    def _element(self, element: Element) -> Element:
        return Element(frontal_image=self.resolve(element.frontal_image, True, "elements"),
                       reference_images=tuple(self.resolve(r, True, "elements")
                                              for r in element.reference_images))


def _digest(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from None

"""Image and video inputs: URLs or local paths; local files are checked by their magic bytes."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import urlparse

from reelbatch.jobs.errors import ManifestError

URL_SCHEMES = ("http://", "https://", "data:")
IMAGE_EXTENSIONS = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "gif": "gif", "webp": "webp",
                    "bmp": "bmp", "tif": "tiff", "tiff": "tiff", "svg": "svg", "heic": "heic",
                    "avif": "avif"}
MIME = {"jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp",
        "mp4": "video/mp4", "mov": "video/quicktime"}
VIDEO_BOXES = (b"moov", b"mdat", b"wide", b"free", b"skip")


def is_url(ref: str) -> bool:
    return ref.startswith(URL_SCHEMES)


def local_path(ref: str, base_dir: Path) -> Path:
    """A local reference as an absolute path; relative paths are relative to ``base_dir``."""
    if "\0" in ref:
        raise ManifestError(f"{ref!r} is not a valid path")
    return base_dir / Path(ref).expanduser()


def image_format(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def video_format(head: bytes) -> str | None:
    if head[4:8] == b"ftyp":
        return "mov" if head[8:10] == b"qt" else "mp4"
    return "mov" if head[4:8] in VIDEO_BOXES else None


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(16)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ManifestError(f"file not found: {path}") from None
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from None


def check_local_image(path: Path, formats: tuple[str, ...]) -> None:
    found = image_format(_head(path))
    if found not in formats:
        what = f"a {found} image" if found else "not an image"
        raise ManifestError(f"{path} is {what}; expected {', '.join(formats)}")


def check_local_video(path: Path) -> None:
    if video_format(_head(path)) is None:
        raise ManifestError(f"{path} is not a video; expected an MP4 or MOV file")


def check_image_url(url: str, formats: tuple[str, ...]) -> None:
    if url.startswith("data:"):
        return
    suffix = urlparse(url).path.rpartition(".")[2].lower()
    found = IMAGE_EXTENSIONS.get(suffix)
    if found and found not in formats:
        raise ManifestError(f"{url} is a {found} image; expected {', '.join(formats)}")


def check_inline_size(path: Path, max_bytes: int) -> None:
    """A local input is sent inline as a data URI: refuse one over ``max_data_uri_bytes``."""
    size = path.stat().st_size if path.is_file() else None
    if size is None:
        raise ManifestError(f"file not found: {path}", file=str(path))
    if size > max_bytes:
        raise ManifestError(f"{size} bytes is more than max_data_uri_bytes ({max_bytes}); "
                            "use a URL for large inputs", file=str(path))


def to_data_uri(path: str | Path, max_bytes: int) -> str:
    """The file inlined as a base64 data URI, for providers that cannot fetch local files."""
    path = Path(path)
    check_inline_size(path, max_bytes)
    data = path.read_bytes()
    kind = image_format(data[:16]) or video_format(data[:16]) or "octet-stream"
    mime = MIME.get(kind, "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"

"""Image and video inputs: URLs or local paths. Local files are checked by their magic bytes and,
against a model's media limits, by their dimensions (imagesize reads them from the header) and, for
videos, their length, size and frame rate (probed with the ffmpeg binary of imageio-ffmpeg)."""

from __future__ import annotations

import base64
import re
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlparse, urlsplit, urlunsplit

import imageio_ffmpeg
import imagesize

from reelbatch.jobs.catalog import MediaLimits
from reelbatch.jobs.errors import ManifestError

URL_SCHEMES = ("http://", "https://", "data:")
IMAGE_EXTENSIONS = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "gif": "gif", "webp": "webp",
                    "bmp": "bmp", "tif": "tiff", "tiff": "tiff", "svg": "svg", "heic": "heic",
                    "avif": "avif"}
MIME = {"jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp",
        "mp4": "video/mp4", "mov": "video/quicktime"}
VIDEO_BOXES = (b"moov", b"mdat", b"wide", b"free", b"skip")
TAIL_BYTES = 4096   # where an image's end marker is looked for


SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
DATA_URI = re.compile(r"^data:[\w.+-]+/[\w.+-]+(;[\w.+-]+=[\w.+-]+)*;base64,[A-Za-z0-9+/=\s]+$")


def is_url(ref: str) -> bool:
    return ref.startswith(URL_SCHEMES)


def checked_url(ref: str) -> str | None:
    """A media reference that is a URL, made safe to send (spaces percent-encoded), or None when it
    is a local path. Only http(s) URLs with a host and well-formed base64 data URIs are accepted."""
    if ref.startswith("data:"):
        if not DATA_URI.match(ref):
            raise ManifestError(f"{ref[:40]!r}... is not a data URI; expected data:<type>/<subtype>;base64,<data>")
        return ref
    if not SCHEME.match(ref) or len(ref) > 1 and ref[1] == ":":     # a path (or a Windows drive)
        return None
    parts = urlsplit(ref)
    if parts.scheme not in ("http", "https"):
        raise ManifestError(f"{ref!r}: only http(s) URLs, data: URIs and local paths are accepted")
    if not parts.hostname:
        raise ManifestError(f"{ref!r} has no host; expected https://host/path")
    return urlunsplit(parts._replace(path=quote(parts.path, safe="/%:@!$&'()*+,;="),
                                     query=quote(parts.query, safe="=&%:@!$'()*+,;/?")))


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
    _check_regular(path)
    try:
        with path.open("rb") as f:
            return f.read(16)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ManifestError(f"file not found: {path}") from None
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from None


def _check_regular(path: Path) -> None:
    """A FIFO, a socket or a device is refused before it is opened (reading a FIFO would wait
    for a writer forever)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return   # opening it says why
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ManifestError(f"{path} is not a regular file (a FIFO, a socket or a device); "
                            "expected an image or video file")


# --- is the image whole? The container's structure is read to its end; pixels are not decoded ---

def _png_complete(fh: BinaryIO, size: int) -> bool:
    """Every chunk's length lies within the file, up to the IEND chunk."""
    at = 8
    while at + 12 <= size:
        fh.seek(at)
        length: int = struct.unpack(">I", fh.read(4))[0]
        kind = fh.read(4)
        at += 12 + length
        if kind == b"IEND":
            return at <= size
    return False


def _jpeg_complete(fh: BinaryIO, size: int) -> bool:
    """The end-of-image marker lies near the end (cameras may add a few bytes after it)."""
    fh.seek(max(0, size - TAIL_BYTES))
    return b"\xff\xd9" in fh.read()


def _gif_complete(fh: BinaryIO, size: int) -> bool:
    fh.seek(max(0, size - TAIL_BYTES))
    return fh.read().rstrip(b"\0").endswith(b";")


def _webp_complete(fh: BinaryIO, size: int) -> bool:
    fh.seek(4)
    riff_size: int = struct.unpack("<I", fh.read(4))[0]
    return riff_size + 8 <= size


COMPLETE = {"png": _png_complete, "jpeg": _jpeg_complete, "gif": _gif_complete,
            "webp": _webp_complete}


def check_complete(path: Path, found: str) -> None:
    """A truncated image (a copy cut short, a download that stopped) is refused: its container's
    structure must reach its end marker. The pixels themselves are not decoded."""
    check = COMPLETE.get(found)
    if check is None:
        return
    with path.open("rb") as fh:
        whole = check(fh, path.stat().st_size)
    if not whole:
        raise ManifestError(f"{path} is a truncated {found} image (its data ends before the "
                            "image does); copy it again")


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    seconds: float | None
    fps: float | None


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def check_local_image(path: Path, formats: tuple[str, ...], limits: MediaLimits | None = None) -> None:
    found = image_format(_head(path))
    if found not in formats:
        what = f"a {found} image" if found else "not an image"
        raise ManifestError(f"{path} is {what}; expected {', '.join(formats)}")
    check_complete(path, found)
    if limits is not None:
        _check_image_limits(path, limits)


def _check_image_limits(path: Path, limits: MediaLimits) -> None:
    size = path.stat().st_size
    if limits.image_max_bytes is not None and size > limits.image_max_bytes:
        raise ManifestError(f"{path} is {_mb(size)}; images may be at most {_mb(limits.image_max_bytes)}")
    width, height = imagesize.get(path)
    if width <= 0 or height <= 0:
        raise ManifestError(f"{path}: cannot read the image's width and height")
    if limits.image_min_side is not None and min(width, height) < limits.image_min_side:
        raise ManifestError(f"{path} is {width}x{height}; each side must be at least "
                            f"{limits.image_min_side} px")
    if limits.image_aspect_range is not None:
        low, high = limits.image_aspect_range
        if not low <= width / height <= high:
            raise ManifestError(f"{path} is {width}x{height} (aspect {width / height:.2f}); "
                                f"width/height must be between {low} and {high}")


def probe_video(path: Path) -> VideoInfo:
    """Width, height, length and frame rate, read by ffmpeg from the container's header."""
    frames = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(frames)
    except (RuntimeError, OSError, StopIteration) as exc:
        raise ManifestError(f"{path}: ffmpeg cannot read this video ({exc})") from None
    finally:
        frames.close()
    width, height = meta.get("size") or (0, 0)
    duration, fps = meta.get("duration"), meta.get("fps")
    return VideoInfo(int(width), int(height), float(duration) if duration else None,
                     float(fps) if fps else None)


def check_local_video(path: Path, limits: MediaLimits | None = None) -> None:
    found = video_format(_head(path))
    formats = limits.video_formats if limits is not None else ("mp4", "mov")
    if found is None or found not in formats:
        raise ManifestError(f"{path} is not a video; expected an MP4 or MOV file")
    if limits is not None:
        _check_video_limits(path, limits)


def _check_video_limits(path: Path, limits: MediaLimits) -> None:
    size = path.stat().st_size
    if limits.video_max_bytes is not None and size > limits.video_max_bytes:
        raise ManifestError(f"{path} is {_mb(size)}; videos may be at most {_mb(limits.video_max_bytes)}")
    info = probe_video(path)
    if limits.video_seconds is not None and info.seconds is not None:
        low, high = limits.video_seconds
        if not low <= info.seconds <= high:
            raise ManifestError(f"{path} lasts {info.seconds:.2f} s; input videos must last "
                                f"{low:g}-{high:g} s")
    if limits.video_side_range is not None:
        low, high = limits.video_side_range
        if not (low <= info.width <= high and low <= info.height <= high):
            raise ManifestError(f"{path} is {info.width}x{info.height}; width and height must each "
                                f"be {low}-{high} px")
    if limits.video_max_short_side is not None and min(info.width, info.height) > limits.video_max_short_side:
        raise ManifestError(f"{path} is {info.width}x{info.height}; the provider takes videos up to "
                            f"{limits.video_max_short_side}p")
    if limits.video_fps_range is not None and info.fps is not None:
        low, high = limits.video_fps_range
        if not low <= info.fps <= high:
            raise ManifestError(f"{path} runs at {info.fps:g} fps; expected {low:g}-{high:g} fps")


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

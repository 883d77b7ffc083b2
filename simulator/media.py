"""Result media: one real H.264 MP4 per (duration, aspect_ratio), made unique per generation.

Each served file is `base MP4 + free box`, the box holding `media_pad_bytes` zeros then the
generation key, so the file stays a valid MP4 and no two generations share a sha256. The bytes
before the key are the same for every generation of a shape, so their hash state is cached and
a file's sha256 costs one small update; large files are streamed in chunks, never held.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import os
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

SIZES = {"16:9": "160x90", "9:16": "90x160", "1:1": "120x120"}
CHUNK = 1 << 20
_ZEROS = bytes(CHUNK)


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reelbatch" / "simulator"


def make_mp4(duration: int, aspect: str, out: Path) -> None:
    """Render a test pattern with the ffmpeg binary from the imageio-ffmpeg wheel."""
    import imageio_ffmpeg

    source = f"testsrc2=size={SIZES[aspect]}:rate=10:duration={duration}"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", source,
           "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-movflags", "+faststart",
           "-f", "mp4", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)


def free_box_header(payload: int) -> bytes:
    """ISO-BMFF `free` box header for `payload` bytes (64-bit largesize beyond 4 GiB)."""
    if payload + 8 <= 0xFFFFFFFF:
        return struct.pack(">I", payload + 8) + b"free"
    return struct.pack(">I", 1) + b"free" + struct.pack(">Q", payload + 16)


class MediaStore:
    """Base MP4s (memory + cache dir), per-generation layout, sha256 and signed URLs."""

    def __init__(self, cache_dir: str | None = None, secret: bytes | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.secret = secret or os.urandom(16)
        self._bases: dict[tuple[int, str], bytes] = {}
        self._prefix_hash: dict[tuple, hashlib._Hash] = {}
        self._lock = asyncio.Lock()

    async def base(self, duration: int, aspect: str) -> bytes:
        shape = (duration, aspect)
        if shape not in self._bases:
            async with self._lock:
                if shape not in self._bases:
                    self._bases[shape] = await asyncio.to_thread(self._load, duration, aspect)
        return self._bases[shape]

    def _load(self, duration: int, aspect: str) -> bytes:
        path = self.cache_dir / f"kling-{duration}s-{aspect.replace(':', 'x')}.mp4"
        if not path.exists():
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.cache_dir, suffix=".tmp", delete=False) as tmp:
                make_mp4(duration, aspect, Path(tmp.name))
            os.replace(tmp.name, path)
        return path.read_bytes()

    @staticmethod
    def size(base: bytes, key: str, pad: int) -> int:
        payload = pad + len(key)
        return len(base) + len(free_box_header(payload)) + payload

    def sha256(self, base: bytes, key: str, pad: int) -> str:
        shape = (id(base), pad, len(key))
        if shape not in self._prefix_hash:
            h = hashlib.sha256(base)
            h.update(free_box_header(pad + len(key)))
            for chunk in _zero_chunks(pad):
                h.update(chunk)
            self._prefix_hash[shape] = h
        h = self._prefix_hash[shape].copy()
        h.update(key.encode())
        return h.hexdigest()

    @staticmethod
    def chunks(base: bytes, key: str, pad: int) -> Iterator[bytes]:
        yield base + free_box_header(pad + len(key))
        yield from _zero_chunks(pad)
        yield key.encode()

    def signature(self, key: str, expires: int) -> str:
        return hmac.new(self.secret, f"{key}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    def url(self, base_url: str, key: str, ttl: float) -> str:
        expires = math.ceil(time.time() + ttl)
        return f"{base_url}/media/{key}.mp4?expires={expires}&sig={self.signature(key, expires)}"

    def check(self, key: str, expires: str, sig: str) -> str | None:
        """Why a media URL is refused ("expired", "bad signature"), or None when it is valid."""
        if not expires.isdigit() or not hmac.compare_digest(sig, self.signature(key, int(expires))):
            return "bad signature"
        return "expired" if int(expires) < time.time() else None


def _zero_chunks(count: int) -> Iterator[bytes]:
    while count > 0:
        yield _ZEROS if count >= CHUNK else _ZEROS[:count]
        count -= CHUNK

"""Small MP4s for storage tests: real box structure (ftyp, moov, mdat), no real frames."""

from __future__ import annotations

import struct


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload) + 8) + kind + payload


def mini_mp4(payload: int = 100) -> bytes:
    """ftyp + moov + mdat: what the container check accepts."""
    return (box(b"ftyp", b"isom\0\0\x02\0isomiso2") + box(b"moov", box(b"mvhd", b"\0" * 100))
            + box(b"mdat", b"\0" * payload))


def png_header(width: int = 1024, height: int = 576, pad: int = 16) -> bytes:
    """A PNG signature and IHDR (all an image size reader needs), then ``pad`` bytes."""
    import zlib

    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + b"\0" * pad

"""Small MP4s for storage tests: real box structure (ftyp, moov, mdat), no real frames."""

from __future__ import annotations

import struct


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload) + 8) + kind + payload


def mini_mp4(payload: int = 100) -> bytes:
    """ftyp + moov + mdat: what the container check accepts."""
    return (box(b"ftyp", b"isom\0\0\x02\0isomiso2") + box(b"moov", box(b"mvhd", b"\0" * 100))
            + box(b"mdat", b"\0" * payload))


def _chunk(kind: bytes, data: bytes) -> bytes:
    import zlib
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int = 640, height: int = 480, shade: int = 0) -> bytes:
    """A complete PNG (IHDR, IDAT, IEND) of one grey ``shade``: decodable to its last byte."""
    import zlib
    rows = (b"\0" + bytes([shade]) * (3 * width)) * height
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b""))


IEND = b"\0\0\0\0IEND\xaeB`\x82"   # the end chunk every complete PNG ends with


def padded_png(header: bytes, total: int) -> bytes:
    """``header`` (signature + IHDR) made a complete PNG of exactly ``total`` bytes (a private
    padding chunk, then IEND)."""
    return header + _chunk(b"zpAd", b"\0" * (total - len(header) - 24)) + IEND


def png_header(width: int = 1024, height: int = 576, pad: int = 16) -> bytes:
    """A complete PNG of ``width`` x ``height`` that an image size reader accepts: signature, IHDR,
    ``pad`` bytes of a private chunk, IEND (no pixels: enough for plan-time checks)."""
    header = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return padded_png(header, len(header) + 24 + pad)

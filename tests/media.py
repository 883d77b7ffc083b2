"""Small MP4s for storage tests: real box structure (ftyp, moov, mdat), no real frames."""

from __future__ import annotations

import struct


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload) + 8) + kind + payload


def mini_mp4(payload: int = 100) -> bytes:
    """ftyp + moov + mdat: what the container check accepts."""
    return (box(b"ftyp", b"isom\0\0\x02\0isomiso2") + box(b"moov", box(b"mvhd", b"\0" * 100))
            + box(b"mdat", b"\0" * payload))

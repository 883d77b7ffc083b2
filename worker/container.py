"""Is a downloaded file a video? An MP4/MOV whose top-level boxes chain exactly to the end of the
file and include ``ftyp`` and ``moov``, or a Matroska/WebM file (EBML header). An empty body, an
HTML error page or a cut-off file is not."""

from __future__ import annotations

import struct
from typing import BinaryIO

from reelbatch.jobs.errors import NotAVideo

EBML = b"\x1a\x45\xdf\xa3"
HTML = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")
MAX_BOXES = 100_000


def check_video(fh: BinaryIO, size: int, where: str) -> None:
    """Raise NotAVideo unless the ``size`` bytes of ``fh`` hold a video container."""
    if size == 0:
        raise NotAVideo(f"{where} served an empty body")
    fh.seek(0)
    head = fh.read(64)
    if head.lstrip().lower().startswith(HTML):
        raise NotAVideo(f"{where} served an HTML page, not a video")
    if head.startswith(EBML):
        return
    if head[4:8] != b"ftyp":
        raise NotAVideo(f"{where} served {size} bytes that are not an MP4 or WebM video")
    boxes = _top_level_boxes(fh, size, where)
    if b"moov" not in boxes:
        raise NotAVideo(f"{where} served an MP4 without its moov box (cut off?)")


def _top_level_boxes(fh: BinaryIO, size: int, where: str) -> set[bytes]:
    """The types of the top-level boxes; their sizes must add up to the file's size."""
    found: set[bytes] = set()
    offset = 0
    for _ in range(MAX_BOXES):
        if offset == size:
            return found
        fh.seek(offset)
        header = fh.read(16)
        if len(header) < 8:
            break
        length, kind = struct.unpack(">I4s", header[:8])
        if length == 1 and len(header) == 16:
            length = struct.unpack(">Q", header[8:16])[0]
        elif length == 0:
            length = size - offset
        if length < 8 or offset + length > size:
            break
        found.add(kind)
        offset += length
    raise NotAVideo(f"{where} served an MP4 whose boxes do not fit its {size} bytes (cut off?)")

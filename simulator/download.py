"""Serving a generation's result file: the presigned /media/ URL and the keyed /api/repos/ path."""

from __future__ import annotations

import asyncio

from starlette.responses import PlainTextResponse, Response, StreamingResponse

STREAM_ABOVE = 8 << 20     # bodies larger than this are streamed in chunks


async def serve_result(core, key: str) -> Response:
    """The MP4 of a succeeded generation (404 otherwise), counted in the stats."""
    gen = core.clock.gens.get(key)
    if gen is None or gen.status != "succeeded":
        return PlainTextResponse("NoSuchKey", status_code=404)
    base, pad = await core.media.base(gen.duration, gen.aspect_ratio), core.knobs.media_pad_bytes
    size = core.media.size(base, key, pad)
    core.stats.served(key, core.media.sha256(base, key, pad), size)
    chunks = core.media.chunks(base, key, pad)
    if core.knobs.download_trickle_s > 0:
        return StreamingResponse(_trickle(b"".join(chunks), core.knobs.download_trickle_s),
                                 media_type="video/mp4", headers={"Content-Length": str(size)})
    if size <= STREAM_ABOVE:
        return Response(b"".join(chunks), media_type="video/mp4")
    return StreamingResponse(_async(chunks), media_type="video/mp4", headers={"Content-Length": str(size)})


async def _async(chunks):
    for chunk in chunks:
        yield chunk


async def _trickle(body: bytes, seconds: float, pieces: int = 20):
    """The body in ``pieces`` parts spread evenly over ``seconds`` (a slow link)."""
    step = -(-len(body) // pieces)
    for start in range(0, len(body), step):
        await asyncio.sleep(seconds / pieces)
        yield body[start:start + step]

"""fal.ai's queue (queue.fal.run) and platform API (api.fal.ai) for the Kling O1 endpoints.

Submit ``POST /fal-ai/kling-video/o1/<operation>`` (and ``.../o1/standard/...``) with
``Authorization: Key <key>``; the answer's status, result and cancel URLs name the app
(``/fal-ai/kling-video/requests/{id}``) without the endpoint's sub-path, so a client that rebuilds
them from the endpoint gets 405. Status answers 202 while IN_QUEUE/IN_PROGRESS, 200 once COMPLETED;
a failed request is COMPLETED and its result fetch answers the error (422 ``detail[]``, or
``{detail, error_type}`` with X-Fal-Error-Type on 5xx). fal checks the body when the request runs.
The result is kept ``fal_result_ttl`` nominal seconds (an hour) after completion, then 404.

``.../status/stream`` sends the status as SSE ``data:`` frames on every change and ends after
COMPLETED. The platform API serves ``/v1/models/pricing`` and ``/v1/models/requests/by-endpoint``
(finished requests only).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from reelbatch.jobs import schemas
from reelbatch.simulator import catalog
from reelbatch.simulator.clock import TERMINAL, Generation
from reelbatch.simulator.oxen import base_url

APP = "fal-ai/kling-video"
OPERATIONS = ("image-to-video", "reference-to-video", "video-to-video/edit", "video-to-video/reference")
ENDPOINTS = tuple(f"{APP}/o1/{tier}{op}" for tier in ("", "standard/") for op in OPERATIONS)
FOLDERS = ("fal",)
STREAM_CHANGE_S = 0.5   # real seconds between looks for IN_QUEUE -> IN_PROGRESS
# A failure message -> (HTTP status, error_type) of the result fetch; validation errors are 422 detail[]
INFRA = (("timed out", 504, "request_timeout"), ("500", 503, "runner_server_error"))


def _guard(handler):
    """``Authorization: Key <key>`` and a clock advance before every fal handler."""
    async def guarded(request: Request) -> Response:
        core = request.app.state.core
        if request.headers.get("authorization") != f"Key {core.api_key}":
            return JSONResponse({"detail": "Unauthorized"}, status_code=401)
        core.clock.advance()
        return await handler(request, core)
    return guarded


def _urls(request: Request, gen: Generation) -> dict:
    root = f"{base_url(request)}/{gen.public_id}"
    return {"request_id": gen.key, "response_url": root, "status_url": f"{root}/status",
            "cancel_url": f"{root}/cancel"}


def validation_error(endpoint: str, body: dict) -> str | None:
    """The body's first schema violation as fal's 422 detail JSON (decided at submit, answered
    when the result is fetched), or None."""
    problem = schemas.violation(FOLDERS, endpoint, body)
    if problem is None:
        return None
    loc = ["body", *problem.field.split(".")] if problem.field else ["body"]
    return json.dumps([{"loc": loc, "msg": problem.message, "type": f"value_error.{problem.validator}"}])


async def submit(request: Request, core) -> Response:
    endpoint = f"{APP}/{request.path_params['sub']}"
    if endpoint not in ENDPOINTS:
        return JSONResponse({"detail": f"Application '{endpoint}' not found"}, status_code=404)
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return JSONResponse({"detail": [{"loc": ["body"], "msg": "Input should be a valid dictionary",
                                         "type": "dict_type"}]}, status_code=422)
    gen = core.enqueue("fal", endpoint, body, validation_error(endpoint, body), core.count_enqueue(body))
    gen.public_id = f"{APP}/requests/{gen.key}"
    gen.extra["sent_at"] = datetime.now(UTC).isoformat()
    return JSONResponse({**_urls(request, gen), "queue_position": _position(core, gen)})


def _position(core, gen: Generation) -> int:
    waiting = [g for g in core.clock.waiting if g.status == "queued"]
    return waiting.index(gen) if gen in waiting else 0


def _lookup(core, request: Request) -> Generation | None:
    gen = core.clock.gens.get(request.path_params["rid"])
    return gen if gen is not None and gen.api == "fal" else None


def status_body(core, gen: Generation, request: Request) -> dict:
    body = _urls(request, gen)
    if gen.status == "queued":
        return {"status": "IN_QUEUE", "queue_position": _position(core, gen), **body}
    if gen.status == "processing":
        return {"status": "IN_PROGRESS", "logs": [], **body}
    run = (gen.completed or 0) - (gen.started or gen.completed or 0)
    return {"status": "COMPLETED", "logs": [], "metrics": {"inference_time": run}, **body}


async def status(request: Request, core) -> Response:
    gen = _lookup(core, request)
    if gen is None:
        return JSONResponse({"detail": "Request not found"}, status_code=404)
    body = status_body(core, gen, request)
    return JSONResponse(body, status_code=200 if body["status"] == "COMPLETED" else 202)


async def status_stream(request: Request, core) -> Response:
    gen = _lookup(core, request)
    if gen is None:
        return JSONResponse({"detail": "Request not found"}, status_code=404)
    return StreamingResponse(_frames(core, gen, request), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store"})


async def _frames(core, gen: Generation, request: Request):
    """The status now, then a frame on each change: IN_PROGRESS within a keep-alive interval,
    COMPLETED the moment the clock finishes the request (no busy loop); the stream then ends."""
    last = None
    while not core.closing.is_set():
        core.clock.advance()
        body = status_body(core, gen, request)
        if body["status"] != last:
            last = body["status"]
            yield f"data: {json.dumps(body, separators=(',', ':'))}\n\n".encode()
        elif last != "COMPLETED":
            yield b": keep-alive\n\n"
        if last == "COMPLETED":
            return
        if gen.completed is None:
            done = core.waiters.setdefault(gen.key, asyncio.get_running_loop().create_future())
            try:
                await asyncio.wait_for(asyncio.shield(done), STREAM_CHANGE_S)
            except TimeoutError:
                pass


def _expired(core, gen: Generation) -> bool:
    return gen.completed is not None and core.clock.now() > gen.completed + core.knobs.scaled(
        core.knobs.fal_result_ttl)


async def result(request: Request, core) -> Response:
    gen = _lookup(core, request)
    if gen is None or (gen.status in TERMINAL and _expired(core, gen)):
        return JSONResponse({"detail": "Request not found"}, status_code=404)
    if gen.status not in TERMINAL:
        return JSONResponse({"detail": "Request is still in progress"}, status_code=400)
    if gen.status == "cancelled":
        return JSONResponse({"detail": "Request was cancelled", "error_type": "request_cancelled"},
                            status_code=400)
    if gen.status == "failed":
        return failure(gen)
    url = core.result_url(gen, base_url(request))
    return JSONResponse({"video": {"url": url, "content_type": "video/mp4", "file_name": f"{gen.key}.mp4",
                                   "file_size": None}})


def failure(gen: Generation) -> Response:
    """A failed request's result: 422 detail[] (validation, content policy, credits) or a typed 5xx."""
    error = gen.error or "failed"
    if error.startswith("[{"):
        return JSONResponse({"detail": json.loads(error)}, status_code=422)
    for needle, code, kind in INFRA:
        if needle in error:
            return JSONResponse({"detail": error, "error_type": kind}, status_code=code,
                                headers={"X-Fal-Error-Type": kind})
    return JSONResponse({"detail": [{"loc": ["body", "prompt"], "msg": error, "type": "generation_error"}]},
                        status_code=422)


async def cancel(request: Request, core) -> Response:
    gen = _lookup(core, request)
    if gen is None:
        return JSONResponse({"status": "NOT_FOUND"}, status_code=404)
    if gen.status in TERMINAL:
        return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)
    running = gen.status == "processing"
    core.cancel(gen)
    return JSONResponse({"status": "CANCELLATION_REQUESTED" if running else "OK"},
                        status_code=202 if running else 200)


async def pricing(request: Request, core) -> Response:
    endpoint = request.query_params.get("endpoint_id", "")
    if endpoint not in ENDPOINTS:
        return JSONResponse({"detail": f"Endpoint '{endpoint}' not found"}, status_code=404)
    price = core.knobs.cost_per_second * (0.75 if "/standard/" in endpoint else 1.0)
    return JSONResponse({"prices": [{"endpoint_id": endpoint, "unit_price": round(price, 4),
                                     "unit": "seconds", "currency": "USD"}]})


async def history(request: Request, core) -> Response:
    """Finished requests of one endpoint, newest first, with payloads when ``expand=payloads``."""
    endpoint = request.query_params.get("endpoint_id", "")
    payloads = "payloads" in request.query_params.get("expand", "")
    done = [g for g in core.clock.gens.values()
            if g.api == "fal" and g.model == endpoint and g.status in TERMINAL]
    done.sort(key=lambda g: g.enqueued, reverse=True)
    limit = min(int(request.query_params.get("limit") or 50), 100)
    page = int(request.query_params.get("cursor") or 0)
    rows = [_history_row(core, g, payloads) for g in done[page * limit:(page + 1) * limit]]
    more = len(done) > (page + 1) * limit
    return JSONResponse({"items": rows, "next_cursor": str(page + 1) if more else None, "has_more": more})


def _history_row(core, gen: Generation, payloads: bool) -> dict:
    row = {"request_id": gen.key, "endpoint_id": gen.model, "sent_at": gen.extra.get("sent_at"),
           "status_code": 200 if gen.status == "succeeded" else 422,
           "duration": catalog.cost_usd(gen.duration, 1.0)}
    if payloads:
        row["json_input"] = gen.params
    return row


async def upload_initiate(request: Request, core) -> Response:
    """fal storage (fal-js storage.ts ``initiateUpload``): a presigned upload URL and the file's URL."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    if not isinstance(body, dict) or not body.get("file_name"):
        return JSONResponse({"detail": [{"loc": ["body", "file_name"], "msg": "Field required",
                                         "type": "missing"}]}, status_code=422)
    token = uuid.uuid4().hex
    root = f"{base_url(request)}/fal-storage"
    return JSONResponse({"upload_url": f"{root}/upload/{token}",
                         "file_url": f"{root}/files/{token}/{body['file_name']}"})


async def upload_put(request: Request) -> Response:
    files = request.app.state.__dict__.setdefault("fal_files", {})
    files[request.path_params["token"]] = (request.headers.get("content-type"), await request.body())
    return Response(status_code=200)


async def stored_file(request: Request) -> Response:
    found = request.app.state.__dict__.get("fal_files", {}).get(request.path_params["token"])
    if found is None:
        return JSONResponse({"detail": "Not found"}, status_code=404)
    return Response(found[1], media_type=found[0] or "application/octet-stream")


_q = "/fal-ai/{alias}/requests/{rid}"
ROUTES = [
    Route(f"{_q}/status/stream", _guard(status_stream), methods=["GET"]),
    Route(f"{_q}/status", _guard(status), methods=["GET"]),
    Route(f"{_q}/cancel", _guard(cancel), methods=["PUT"]),
    Route(_q, _guard(result), methods=["GET"]),
    Route("/fal-ai/kling-video/{sub:path}", _guard(submit), methods=["POST"]),
    Route("/v1/models/pricing", _guard(pricing), methods=["GET"]),
    Route("/v1/models/requests/by-endpoint", _guard(history), methods=["GET"]),
    Route("/storage/upload/initiate", _guard(upload_initiate), methods=["POST"]),
    Route("/fal-storage/upload/{token}", upload_put, methods=["PUT"]),
    Route("/fal-storage/files/{token}/{name}", stored_file, methods=["GET"]),
]

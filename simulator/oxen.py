"""The Oxen.ai inference API: queue, history, events, models, and the synchronous call."""

from __future__ import annotations

import asyncio
import base64
import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from reelbatch.simulator import catalog
from reelbatch.simulator.clock import ACTIVE, INSUFFICIENT_CREDITS, TERMINAL, Generation, billed, failure_message
from reelbatch.simulator.download import serve_result
from reelbatch.simulator.envelopes import oxen_error, oxen_message

_QUEUE_ONLY = ("model", "num_generations")
_LIST_FILTERS = {"model": "model", "namespace": "namespace", "repo": "target_repo", "folder": "target_directory"}


def base_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def _guard(handler):
    """Bearer check and a clock advance before every Oxen handler."""
    async def guarded(request: Request) -> Response:
        core = request.app.state.core
        if not core.authorized(request):
            return oxen_error(401, "unauthenticated")
        core.clock.advance()
        return await handler(request, core)
    return guarded


def rest_result_url(core, gen: Generation, request: Request) -> str:
    """A fresh presigned URL; with `result_url_needs_key`, a hub-style path on this host that needs
    the Bearer key, as Oxen's REST result_url may (https://hub.oxen.ai/api/repos/...)."""
    if core.knobs.result_url_needs_key:
        return f"{base_url(request)}/api/repos/{gen.namespace}/files/{gen.key}.mp4"
    return core.result_url(gen, base_url(request))


def row(core, gen: Generation, request: Request) -> dict:
    """The queue row: request params echoed at the top level, then the documented fields."""
    succeeded, failed = gen.status == "succeeded", gen.status == "failed"
    out = {k: v for k, v in gen.params.items() if k not in _QUEUE_ONLY}
    out.update(
        generation_id=gen.key, model_name=gen.model, prompt=gen.params.get("prompt"), media_type="video",
        status=gen.status, result_url=rest_result_url(core, gen, request) if succeeded else None,
        error_message=failure_message(gen) if failed else None, enqueued_at=core.unix(gen.enqueued),
        started_at=core.unix(gen.started), completed_at=core.unix(gen.completed),
    )
    return out


QUEUE_ROW_ONLY = ("status", "media_type")   # queue-row fields the documented history row lacks


def history_row(core, gen: Generation, request: Request) -> dict:
    """A history row with exactly the documented fields (OpenAPI 0.231.0: no ``status``, no
    ``media_type``) plus the request parameters."""
    out = {k: v for k, v in row(core, gen, request).items() if k not in QUEUE_ROW_ONLY}
    out.update(cost=_cost(core, gen), target_namespace=gen.namespace, target_repo=gen.params.get("target_repo"),
               target_directory=gen.params.get("target_directory"), user_id="sim-user-id",
               user_image=None, username="sim-user")
    return out


def _cost(core, gen: Generation) -> str:
    return f"{catalog.cost_usd(gen.duration, core.knobs.cost_per_second) if billed(gen) else 0:.4f}"


async def _body(request: Request) -> dict | None:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _check_enqueue(core, body: dict | None) -> Response | int:
    """The enqueue-time checks: an error response, or num_generations."""
    if body is None:
        return oxen_error(400, "invalid_params", "request body must be a JSON object")
    if body.get("model") not in catalog.OXEN_MODELS or core.vanished(body["model"]):
        return oxen_message(404, f"Model not found: {body.get('model')}")
    count = body.get("num_generations", 1)
    if type(count) is not int or not 1 <= count <= 4:
        return oxen_error(400, "invalid_params", "num_generations must be an integer between 1 and 4")
    return count


async def _accept(request: Request, core) -> Response | tuple[dict, list[Generation]]:
    """Check an enqueue body, count it, and create its generations (or answer the rejection)."""
    body = await _body(request)
    checked = _check_enqueue(core, body)
    if isinstance(checked, Response):
        return checked
    assert body is not None   # _check_enqueue answered a missing one
    key = core.count_enqueue(body)
    params = {k: v for k, v in body.items() if k not in _QUEUE_ONLY}
    error = catalog.runtime_error(body["model"], params)
    return body, [core.enqueue("oxen", body["model"], params, _credits(core, body["model"], params, error),
                               key) for _ in range(checked)]


def _credits(core, model: str, params: dict, error: str | None) -> str | None:
    """Oxen takes a generation without enough credits and fails it 3 s after start."""
    if error is None and not core.charge(model, params):
        return INSUFFICIENT_CREDITS[0]
    return error


@_guard
async def enqueue(request: Request, core) -> Response:
    knobs = core.knobs
    if knobs.create_late_s > 0:
        return await _create_late(request, core)
    if knobs.submit_delay_s > 0 and knobs.submit_create_late:
        await asyncio.sleep(knobs.submit_delay_s)
    accepted = await _accept(request, core)
    if isinstance(accepted, Response):
        return accepted
    if knobs.submit_delay_s > 0 and not knobs.submit_create_late:
        await asyncio.sleep(knobs.submit_delay_s)
    status = "processing" if core.knobs.legacy_enqueue_processing else "queued"
    gens = accepted[1]
    return JSONResponse({"generations": [{"generation_id": g.key, "status": status} for g in gens]})


async def _create_late(request: Request, core) -> Response:
    """A gateway that gives up at once (504) while the backend creates the generation later."""
    body = await _body(request)
    checked = _check_enqueue(core, body)
    if isinstance(checked, Response):
        return checked
    assert body is not None   # _check_enqueue answered a missing body

    def create() -> None:
        key = core.count_enqueue(body)
        params = {k: v for k, v in body.items() if k not in _QUEUE_ONLY}
        for _ in range(checked):
            core.enqueue("oxen", body["model"], params, catalog.runtime_error(body["model"], params), key)

    asyncio.get_running_loop().call_later(core.knobs.create_late_s, create)
    return oxen_message(504, "Gateway Timeout")


def _lookup(core, generation_id: str) -> Generation | None:
    gen = core.clock.gens.get(generation_id)
    return gen if gen is not None and gen.api == "oxen" else None


@_guard
async def get_one(request: Request, core) -> Response:
    gen = _lookup(core, request.path_params["generation_id"])
    if gen is None or (core.knobs.legacy_404_terminal and gen.status in TERMINAL):
        return oxen_error(404, "resource_not_found")
    return JSONResponse(row(core, gen, request))


@_guard
async def cancel(request: Request, core) -> Response:
    gen = _lookup(core, request.path_params["generation_id"])
    if gen is None:
        return oxen_error(404, "resource_not_found")
    core.cancel(gen)
    return JSONResponse({"status": "success", "generation_id": gen.key})


def _matching(core, query, statuses) -> list[Generation]:
    """Oxen generations passing the list filters, newest first."""
    source = core.clock.active if statuses == ACTIVE else core.clock.gens
    wanted = {attr: query[name] for name, attr in _LIST_FILTERS.items() if name in query}
    found, shown_before = [], core.clock.now() - core.knobs.oxen_list_lag_s
    for gen in source.values():
        if gen.api != "oxen" or gen.status not in statuses or gen.enqueued > shown_before:
            continue
        if query.get("media_type", "video") != "video":
            continue
        if all(_field(gen, attr) == value for attr, value in wanted.items()):
            found.append(gen)
    found.sort(key=lambda g: g.enqueued, reverse=True)
    return found


def _field(gen: Generation, attr: str):
    return getattr(gen, attr) if attr in ("model", "namespace") else gen.params.get(attr)


@_guard
async def list_queue(request: Request, core) -> Response:
    query = request.query_params
    status = query.get("status")
    if status is not None and status not in ACTIVE + TERMINAL:
        return oxen_error(400, "invalid_params", f"unknown status: {status}")
    gens = _matching(core, query, (status,) if status else ACTIVE)
    return JSONResponse({"count": len(gens), "generations": [row(core, g, request) for g in gens]})


def _page(query) -> tuple[int, int] | None:
    try:
        page, size = int(query.get("page", 1)), int(query.get("page_size", 50))
    except ValueError:
        return None
    return (page, size) if page >= 1 and 1 <= size <= 1000 else None


@_guard
async def history(request: Request, core) -> Response:
    if core.knobs.history_404:
        return oxen_error(404, "resource_not_found")
    query = request.query_params
    paging = _page(query)
    if paging is None:
        return oxen_error(400, "invalid_params", "page must be >= 1 and page_size in 1-1000")
    page, size = paging
    statuses = (query["status"],) if "status" in query else ACTIVE + TERMINAL
    gens = _matching(core, query, statuses)
    chosen = gens[(page - 1) * size: page * size]
    total = sum(float(_cost(core, g)) for g in gens)
    return JSONResponse({
        "count": len(chosen), "generations": [history_row(core, g, request) for g in chosen],
        "page_number": page, "page_size": size, "total_cost": f"{total:.4f}" if gens else None,
        "total_entries": len(gens), "total_pages": -(-len(gens) // size),
    })


@_guard
async def history_one(request: Request, core) -> Response:
    gen = _lookup(core, request.path_params["generation_id"])
    if gen is None or core.knobs.history_404:
        return oxen_error(404, "resource_not_found")
    return JSONResponse({"generation": history_row(core, gen, request), "status": "success",
                         "status_message": "resource_found"})


def _models(core, ids) -> Response:
    created = core.unix(core.clock.cursor) or 0
    price = core.knobs.cost_per_second
    return JSONResponse({"object": "list", "data": [catalog.oxen_model(m, created, price) for m in ids]})


@_guard
async def models(request: Request, core) -> Response:
    return _models(core, catalog.OXEN_MODELS)


@_guard
async def search_models(request: Request, core) -> Response:
    term = request.query_params.get("search", "").lower()
    return _models(core, [m for m in catalog.OXEN_MODELS if term in m])


@_guard
async def model(request: Request, core) -> Response:
    model_id = request.path_params["model_id"]
    if model_id not in catalog.OXEN_MODELS or core.vanished(model_id):
        return oxen_message(404, f"Model not found: {model_id}")
    created = core.unix(core.clock.cursor) or 0
    return JSONResponse(catalog.oxen_model(model_id, created, core.knobs.cost_per_second))


@_guard
async def events(request: Request, core) -> Response:
    base = base_url(request)
    url_for = lambda gen: core.result_url(gen, base)  # noqa: E731
    stream = core.bus.stream(core.bus.subscribe(), core.knobs, url_for, core.closing)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@_guard
async def generate_sync(request: Request, core) -> Response:
    """POST /api/ai/videos/generate: holds the connection for the whole generation."""
    accepted = await _accept(request, core)
    if isinstance(accepted, Response):
        return accepted
    body, gen = accepted[0], accepted[1][0]
    await core.finished(gen)
    if gen.status != "succeeded":
        return oxen_error(400, "invalid_params", gen.error or gen.status)
    if body.get("response_format") == "b64_json":
        data = b"".join(core.media.chunks(await core.media.base(gen.duration, gen.aspect_ratio), gen.key,
                                          core.knobs.media_pad_bytes))
        video = {"b64_json": base64.b64encode(data).decode()}
    else:
        video = {"url": core.result_url(gen, base_url(request))}
    return JSONResponse({"model": gen.model, "created": core.unix(gen.enqueued), "videos": [video]})


@_guard
async def repo_file(request: Request, core) -> Response:
    """GET /api/repos/{namespace}/files/{key}.mp4: a result behind the Bearer key (the guard)."""
    return await serve_result(core, request.path_params["name"].removesuffix(".mp4"))


ROUTES = [
    Route("/api/ai/queue", enqueue, methods=["POST"]),
    Route("/api/ai/queue", list_queue, methods=["GET"]),
    Route("/api/ai/queue/{generation_id}", get_one, methods=["GET"]),
    Route("/api/ai/queue/{generation_id}", cancel, methods=["DELETE"]),
    Route("/api/ai/generations", history, methods=["GET"]),
    Route("/api/ai/generations/{generation_id}", history_one, methods=["GET"]),
    Route("/api/ai/models", models, methods=["GET"]),
    Route("/api/ai/models/search", search_models, methods=["GET"]),
    Route("/api/ai/models/{model_id:path}", model, methods=["GET"]),
    Route("/api/ai/videos/generate", generate_sync, methods=["POST"]),
    Route("/api/events", events, methods=["GET"]),
    Route("/api/repos/{namespace}/files/{name}", repo_file, methods=["GET"]),
]

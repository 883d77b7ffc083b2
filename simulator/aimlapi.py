"""The AI/ML API v2 video endpoints: create a task, then poll it by generation_id."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reelbatch.simulator import catalog
from reelbatch.simulator.aimllog import client_request_id, trace_headers
from reelbatch.simulator.clock import Generation
from reelbatch.simulator.envelopes import aiml_error
from reelbatch.simulator.oxen import base_url

PATH = "/v2/video/generations"


OUT_OF_CREDITS = "You've run out of credits. Please top up your balance to continue."   # errors 4xx page
ACTIVE_SHARE = 0.1   # the first tenth of a run answers "active", the rest "generating"


def status_of(gen: Generation, now: float) -> str:
    """queued for the first half of the queue delay, then waiting (also while held by concurrency);
    while processing, active and then generating: the AI/ML API's own polling examples treat all
    four as in progress (docs/providers.md errata); which one it shows when is not documented."""
    if gen.status == "queued":
        return "queued" if now < (gen.enqueued + gen.ready_at) / 2 else "waiting"
    if gen.status == "processing":
        assert gen.started is not None   # processing
        return "active" if now < gen.started + ACTIVE_SHARE * gen.run_time else "generating"
    return {"succeeded": "completed"}.get(gen.status, "error")


def error_shape(gen: Generation, shape: str) -> dict:
    """Both documented error objects; "random" picks one per generation, stable across polls."""
    if shape == "random":
        shape = "detail" if int(gen.key[:8], 16) % 2 else "name"
    if shape == "detail":
        return {"detail": [{"loc": ["body", "prompt"], "msg": gen.error, "type": "generation_error",
                            "input": gen.params.get("prompt")}]}
    return {"name": "GenerationError", "message": gen.error}


def task(core, gen: Generation, request: Request) -> dict:
    status = status_of(gen, core.clock.now())
    body: dict[str, Any] = {"id": gen.public_id, "status": status, "video": None, "error": None, "meta": None}
    if status == "completed":
        usd = catalog.cost_usd(gen.duration, core.knobs.cost_per_second)
        body["video"] = {"url": core.result_url(gen, base_url(request))}
        body["meta"] = {"usage": {"credits_used": int(usd * catalog.CREDITS_PER_USD), "usd_spent": usd}}
    elif status == "error":
        body["error"] = error_shape(gen, core.knobs.aiml_error_shape)
    return body


async def create(request: Request) -> Response:
    core = request.app.state.core
    if not core.authorized(request):
        return aiml_error(401, PATH)
    client_id = client_request_id(request)
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return _refused(core, "", client_id, "Body validation error! Expected object, received invalid JSON")
    problem = catalog.aiml_body_error(body)
    if problem:
        return _refused(core, str(body.get("model", "")), client_id, f"Body validation error! {problem}")
    params = {k: v for k, v in body.items() if k != "model"}
    if not core.charge(body["model"], params):
        return _refused(core, str(body["model"]), client_id, OUT_OF_CREDITS, status=403)
    delay, late = core.knobs.submit_delay_s, core.knobs.submit_create_late
    if delay > 0 and late:
        await asyncio.sleep(delay)
    key = core.count_enqueue(body)
    gen = core.enqueue("aiml", body["model"], params, catalog.aiml_runtime_error(body), key)
    inference_id = core.aiml_log.record(body["model"], client_id, gen)
    if delay > 0 and not late:
        await asyncio.sleep(delay)
    return JSONResponse({"id": gen.public_id, "status": "queued"}, headers=trace_headers(inference_id, client_id))


def _refused(core, model: str, client_id: str | None, message: str, status: int = 400) -> Response:
    inference_id = core.aiml_log.record(model, client_id, None)
    return aiml_error(status, PATH, message, headers=trace_headers(inference_id, client_id))


async def fetch(request: Request) -> Response:
    core = request.app.state.core
    if not core.authorized(request):
        return aiml_error(401, PATH)
    public_id = request.query_params.get("generation_id")
    if not public_id:
        return aiml_error(400, PATH, "Body validation error! Required at generation_id")
    core.clock.advance()
    gen = core.clock.gens.get(public_id.split(":", 1)[0])
    if gen is None or gen.public_id != public_id:
        return aiml_error(404, PATH, f"Generation {public_id} not found")
    return JSONResponse(task(core, gen, request), headers=trace_headers(gen.public_id, None))


ROUTES = [
    Route(PATH, create, methods=["POST"]),
    Route(PATH, fetch, methods=["GET"]),
]

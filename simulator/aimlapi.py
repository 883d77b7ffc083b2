"""The AI/ML API v2 video endpoints: create a task, then poll it by generation_id."""

from __future__ import annotations

import asyncio
import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reelbatch.simulator import catalog
from reelbatch.simulator.clock import Generation
from reelbatch.simulator.envelopes import aiml_error
from reelbatch.simulator.oxen import base_url

PATH = "/v2/video/generations"


ACTIVE_SHARE = 0.1   # the first tenth of a run answers "active", the rest "generating"


def status_of(gen: Generation, now: float) -> str:
    """queued for the first half of the queue delay, then waiting (also while held by concurrency);
    while processing, active and then generating: the AI/ML API's own polling examples treat all
    four as in progress (docs/providers.md errata); which one it shows when is not documented."""
    if gen.status == "queued":
        return "queued" if now < (gen.enqueued + gen.ready_at) / 2 else "waiting"
    if gen.status == "processing":
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
    body = {"id": gen.public_id, "status": status, "video": None, "error": None, "meta": None}
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
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return aiml_error(400, PATH, "Body validation error! Expected object, received invalid JSON")
    problem = catalog.aiml_body_error(body)
    if problem:
        return aiml_error(400, PATH, f"Body validation error! {problem}")
    delay, late = core.knobs.submit_delay_s, core.knobs.submit_create_late
    if delay > 0 and late:
        await asyncio.sleep(delay)
    key = core.count_enqueue(body)
    params = {k: v for k, v in body.items() if k != "model"}
    gen = core.enqueue("aiml", body["model"], params, None, key)
    if delay > 0 and not late:
        await asyncio.sleep(delay)
    return JSONResponse({"id": gen.public_id, "status": "queued"})


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
    return JSONResponse(task(core, gen, request))


ROUTES = [
    Route(PATH, create, methods=["POST"]),
    Route(PATH, fetch, methods=["GET"]),
]

"""The Kling O1 models the simulator serves and how it checks their parameters.

It enforces the same request schemas the clients are checked against (configs/schemas/, our
transcriptions of the providers' documentation), each the way its provider does:
- Oxen checks model parameters only when the generation runs: the enqueue is accepted, then the
  generation fails with a 422-style message (inference-api/reference/async_queue.mdx);
- the AI/ML API checks the body at POST: 400 "Body validation error!" with a zod-like detail.
"""

from __future__ import annotations

from reelbatch.jobs import schemas

CREDITS_PER_USD = 2_000_000
DURATIONS = (5, 10)
FAL_DURATIONS = tuple(range(3, 11))   # fal's O1 endpoints: "3" to "10"
ASPECT_RATIOS = ("9:16", "1:1", "16:9")

# Oxen's three O1 models, plus a video-to-video-reference that only the simulator serves (Oxen has
# none); the AI/ML API's four.
OXEN_FOLDERS = ("oxen", "simulator")
OXEN_MODELS = ("kling-video-o1-image-to-video", "kling-video-o1-reference-to-video",
               "kling-video-o1-video-to-video-edit", "kling-video-o1-video-to-video-reference")
AIML_FOLDERS = ("aimlapi",)
AIML_MODELS = ("klingai/video-o1-image-to-video", "klingai/video-o1-reference-to-video",
               "klingai/video-o1-video-to-video-edit", "klingai/video-o1-video-to-video-reference")
# Reference views per element: Oxen's Kling pages say "Max 3 images per element"; fal.ai's O1 element
# type takes 1-3, which the AI/ML API's fal backend enforces when the generation runs there.
MAX_VIEWS = 3
# Oxen's queue takes these itself; everything else goes to the model (async_queue.mdx)
QUEUE_FIELDS = ("model", "num_generations", "target_namespace", "response_format")


def oxen_schema(model_id: str) -> dict | None:
    return schemas.schema(OXEN_FOLDERS, model_id)


def oxen_model(model_id: str, created: int, cost_per_second: float) -> dict:
    """The model object of GET /api/ai/models/{id}, schema under both documented keys."""
    schema = oxen_schema(model_id)
    return {
        "id": model_id, "object": "model", "created": created, "owned_by": "kling",
        "display_name": model_id.replace("-", " ").title(), "description": "Kling O1 (simulated)",
        "summary": "Kling O1 video model", "model_type": "base", "endpoint": "/videos/generate",
        "capabilities": {"input": ["text", "image", "video"], "output": ["video"]},
        "pricing": {"method": "per_video_output_second", "cost_per_second": cost_per_second,
                    "cost_per_second_with_audio": cost_per_second, "cost_per_second_high_res": cost_per_second},
        "fine_tuning": None, "deployments": [{"status": "active"}],
        "developer": {"name": "Kling", "logo": None}, "source_model": None, "image_url": None,
        "released_at": "2025-12-01", "request_schema": schema, "json_request_schema": schema,
    }


def media_shape(model_id: str, params: dict) -> tuple[int, str]:
    """The (duration, aspect_ratio) of the output video, defaults applied. A model without an
    aspect_ratio parameter (image-to-video follows its start image) gets the default shape."""
    try:
        duration = int(params.get("duration") or 5)
    except (TypeError, ValueError):
        duration = 5
    schema = oxen_schema(model_id) or schemas.schema(AIML_FOLDERS, model_id) or \
        schemas.schema(("fal",), model_id) or {}
    takes_aspect = "aspect_ratio" in schema.get("properties", {})
    aspect = (params.get("aspect_ratio") if takes_aspect else None) or "16:9"
    allowed = FAL_DURATIONS if model_id.startswith("fal-ai/") else DURATIONS
    return (duration if duration in allowed else 5), (aspect if aspect in ASPECT_RATIOS else "16:9")


def too_many_views(params: dict) -> bool:
    return any(isinstance(e, dict) and len(e.get("reference_image_urls") or []) > MAX_VIEWS
               for e in params.get("elements") or [])


def runtime_error(model_id: str, params: dict) -> str | None:
    """How a generation with these parameters fails when it runs (Oxen), or None when it can run."""
    if not params.get("prompt") and not params.get("multi_prompt"):
        return "Getting model response error: 422 - Value error, Either 'prompt' or 'multi_prompt' must be provided."
    if too_many_views(params):
        return f"Getting model response error: 422 - Value error, Max {MAX_VIEWS} images per element"
    model_params = {k: v for k, v in params.items() if k not in QUEUE_FIELDS}
    problem = schemas.violation(OXEN_FOLDERS, model_id, model_params)
    if problem is None:
        return None
    if problem.field == "duration" and problem.validator == "enum":
        # the wording Oxen documents for durations (walkthroughs/kling_o3_pro_reference_to_video.mdx)
        return (f"duration value '{params['duration']}' is invalid. Try using duration='5' instead, "
                "as duration support may vary by model and mode.")
    if problem.validator == "required":
        return f"Getting model response error: 422 - Field required: '{problem.field}'"
    return f"Getting model response error: 422 - Value error, {problem.field}: {problem.message}"


def aiml_body_error(body: dict) -> str | None:
    """What the AI/ML API's POST check says about a body (zod-like), or None when it passes."""
    model = body.get("model")
    if model not in AIML_MODELS:
        expected = " | ".join(f"'{m}'" for m in AIML_MODELS)
        return f"Invalid enum value. Expected {expected}, received '{model}' at model"
    problem = schemas.violation(AIML_FOLDERS, model, body)
    if problem is None:
        return None
    if problem.validator == "required":
        return f"Required at {problem.field}"
    return f"{problem.message} at {problem.field or 'body'}"


def aiml_runtime_error(body: dict) -> str | None:
    """How an accepted AI/ML request fails when it runs: on the fal backend (chosen, or the `auto`
    default falling back to it: the simulator always falls back), elements with more views than fal's
    O1 element type takes."""
    if str(body.get("provider") or "auto").lower() in ("fal", "auto") and too_many_views(body):
        return f"reference_image_urls: List should have at most {MAX_VIEWS} items (fal.ai)"
    return None


def cost_usd(duration: int, cost_per_second: float) -> float:
    return round(duration * cost_per_second, 4)

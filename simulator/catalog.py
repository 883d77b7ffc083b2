"""The Kling O1 models the simulator serves, their schemas, and run-time parameter checks."""

from __future__ import annotations

COST_PER_SECOND = 0.112
CREDITS_PER_USD = 2_000_000
DURATIONS = (5, 10)
ASPECT_RATIOS = ("9:16", "1:1", "16:9")

_URI = {"type": "string", "format": "uri"}
_URIS = {"type": "array", "items": _URI}
_ELEMENTS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"frontal_image_url": _URI, "reference_image_urls": _URIS},
        "required": ["frontal_image_url"],
    },
}
_DURATION = {"type": "integer", "enum": list(DURATIONS), "default": 5}
_ASPECT = {"type": "string", "enum": list(ASPECT_RATIOS), "default": "16:9"}
_PROMPT = {"type": "string"}

OXEN_SCHEMAS = {
    "kling-video-o1-image-to-video": (
        {"prompt": _PROMPT, "input_image": _URI, "tail_image_url": _URI, "duration": _DURATION},
        ["prompt", "input_image"],
    ),
    "kling-video-o1-reference-to-video": (
        {"prompt": _PROMPT, "input_image": _URIS, "elements": _ELEMENTS,
         "aspect_ratio": _ASPECT, "duration": _DURATION},
        ["prompt", "input_image"],
    ),
    "kling-video-o1-video-to-video-edit": (
        {"prompt": _PROMPT, "input_video": _URI, "input_image": _URIS, "elements": _ELEMENTS,
         "keep_audio": {"type": "boolean", "default": True}},
        ["prompt", "input_video"],
    ),
    "kling-video-o1-video-to-video-reference": (
        {"prompt": _PROMPT, "input_video": _URI, "input_image": _URIS, "elements": _ELEMENTS,
         "aspect_ratio": _ASPECT, "duration": _DURATION},
        ["prompt", "input_video"],
    ),
}

# AI/ML model id -> the field that must be present besides prompt (checked at POST, zod-style).
AIML_REQUIRED = {
    "klingai/video-o1-image-to-video": "image_url",
    "klingai/video-o1-reference-to-video": None,
    "klingai/video-o1-video-to-video-edit": "video_url",
    "klingai/video-o1-video-to-video-reference": "video_url",
}


def oxen_model(model_id: str, created: int) -> dict:
    """The model object of GET /api/ai/models/{id}, schema under both documented keys."""
    props, required = OXEN_SCHEMAS[model_id]
    schema = {"type": "object", "properties": props, "required": required, "basic": list(props)}
    return {
        "id": model_id, "object": "model", "created": created, "owned_by": "kling",
        "display_name": model_id.replace("-", " ").title(), "description": "Kling O1 (simulated)",
        "summary": "Kling O1 video model", "model_type": "base", "endpoint": "/videos/generate",
        "capabilities": {"input": ["text", "image", "video"], "output": ["video"]},
        "pricing": {"method": "per_video_output_second", "cost_per_second": COST_PER_SECOND,
                    "cost_per_second_with_audio": COST_PER_SECOND},
        "fine_tuning": None, "deployments": [{"status": "active"}],
        "developer": {"name": "Kling", "logo": None}, "source_model": None, "image_url": None,
        "released_at": "2025-12-01", "request_schema": schema, "json_request_schema": schema,
    }


def media_shape(params: dict) -> tuple[int, str]:
    """The (duration, aspect_ratio) of the output video, defaults applied."""
    try:
        duration = int(params.get("duration") or 5)
    except (TypeError, ValueError):
        duration = 5
    aspect = params.get("aspect_ratio") or "16:9"
    return (duration if duration in DURATIONS else 5), (aspect if aspect in ASPECT_RATIOS else "16:9")


def runtime_error(model_id: str, params: dict) -> str | None:
    """Oxen validates model parameters when the generation runs: the message a bad value fails with."""
    if not params.get("prompt") and not params.get("multi_prompt"):
        return "Getting model response error: 422 - Value error, Either 'prompt' or 'multi_prompt' must be provided."
    props, required = OXEN_SCHEMAS[model_id]
    for name in required:
        if name not in params:
            return f"Getting model response error: 422 - Field required: '{name}'"
    if "duration" in params and str(params["duration"]) not in map(str, DURATIONS):
        return (f"duration value '{params['duration']}' is invalid. Try using duration='5' instead, "
                "or one of: 5, 10")
    if "aspect_ratio" in props and params.get("aspect_ratio", "16:9") not in ASPECT_RATIOS:
        return ("Getting model response error: 422 - Value error, aspect_ratio must be one of "
                f"{', '.join(ASPECT_RATIOS)}")
    return None


def aiml_body_error(body: dict) -> str | None:
    """AI/ML validates the body at POST: a zod-like detail, or None when it is fine."""
    model = body.get("model")
    if model not in AIML_REQUIRED:
        expected = " | ".join(f"'{m}'" for m in AIML_REQUIRED)
        return f"Invalid enum value. Expected {expected}, received '{model}' at model"
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        return "Required at prompt"
    field = AIML_REQUIRED[model]
    if field and not body.get(field):
        return f"Required at {field}"
    if "duration" in body and str(body["duration"]) not in map(str, DURATIONS):
        return f"Invalid enum value. Expected 5 | 10, received '{body['duration']}' at duration"
    return None


def cost_usd(duration: int) -> float:
    return round(duration * COST_PER_SECOND, 4)

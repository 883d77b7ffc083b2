"""Each API's error bodies, exactly as docs/providers.md records them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from starlette.responses import JSONResponse

OXEN_TITLES = {
    "unauthenticated": "You must be authenticated to access this resource",
    "invalid_params": "Invalid parameters supplied, please check your request and try again.",
    "resource_not_found": "The requested resource could not be found",
    "too_many_requests": "Rate limit exceeded, please slow down",
    "unknown_error": "An unknown error occurred",
}

AIML_MESSAGES = {
    400: "Body validation error!",
    401: "This request requires a valid API key. Please provide your API key in the Authorization header.",
    404: "Not found",
    429: "Too Many Requests",
    500: "Internal server error",
    502: "Bad Gateway",
    503: "Service unavailable",
}


def oxen_error(status: int, kind: str, detail: str | None = None, headers: dict | None = None) -> JSONResponse:
    """The typed envelope: {error:{type,title[,detail]}, status:"error", status_message}."""
    error = {"type": kind, "title": OXEN_TITLES[kind]}
    if detail is not None:
        error["detail"] = detail
    body = {"error": error, "status": "error", "status_message": kind}
    return JSONResponse(body, status_code=status, headers=headers)


def oxen_message(status: int, message: str) -> JSONResponse:
    """The short envelope: {error:{message}} (e.g. "Model not found: <name>")."""
    return JSONResponse({"error": {"message": message}}, status_code=status)


def aiml_error(status: int, path: str, message: str | None = None, headers: dict | None = None) -> JSONResponse:
    """{message, path, requestId, statusCode (a string), timestamp}."""
    body = {
        "message": message or AIML_MESSAGES.get(status, "Error"), "path": path,
        "requestId": str(uuid.uuid4()), "statusCode": str(status),
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    return JSONResponse(body, status_code=status, headers=headers)


def api_error(path: str, status: int, headers: dict | None = None) -> JSONResponse:
    """A 429/5xx in the shape of whichever API the path belongs to."""
    if path.startswith("/v2/"):
        return aiml_error(status, path, headers=headers)
    if path.startswith(("/fal-ai/", "/v1/models/")):   # fal: {detail}; a gateway error has no error_type
        return JSONResponse({"detail": AIML_MESSAGES.get(status, "Error")}, status_code=status, headers=headers)
    kind = "too_many_requests" if status == 429 else "unknown_error"
    return oxen_error(status, kind, headers=headers)

"""fal storage: a local input (inlined by the engine as a data URI) uploaded once, sent as its URL.

The protocol of fal-js (libs/client/src/storage.ts at 381105e1, ``initiateUpload``):
``POST {FAL_REST_URL}/storage/upload/initiate?storage_type=fal-cdn-v3`` with ``{content_type,
file_name}`` and the key answers ``{upload_url, file_url}``; the bytes go to ``upload_url`` by ``PUT``
(no key: it is a presigned URL) and the request names ``file_url``.

Each distinct file is uploaded once per worker process (keyed by the sha256 of its bytes); a rerun
in a new process uploads again (recording the URL in the state store needs the engine's seam).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Mapping
from typing import Any

import httpx

from reelbatch.jobs.errors import TransientProviderError
from reelbatch.worker.providers.http import HttpSeam

INITIATE = "/storage/upload/initiate"
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif",
              "video/mp4": "mp4", "video/quicktime": "mov"}


def is_data_uri(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("data:")


def _decoded(uri: str) -> tuple[str, bytes]:
    header, _, payload = uri.partition(",")
    mime = header.removeprefix("data:").split(";")[0] or "application/octet-stream"
    return mime, base64.b64decode(payload)


class Uploads:
    """Data URIs in a request body replaced by fal storage URLs, each file uploaded once."""

    def __init__(self, rest: HttpSeam, plain: httpx.Client):
        self._rest, self._plain = rest, plain
        self._urls: dict[str, str] = {}
        self._lock = threading.Lock()

    def body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {key: self._value(value) for key, value in body.items()}

    def _value(self, value: Any) -> Any:
        if is_data_uri(value):
            return self.url(value)
        if isinstance(value, list):
            return [self._value(v) for v in value]
        if isinstance(value, dict):
            return {k: self._value(v) for k, v in value.items()}
        return value

    def url(self, uri: str) -> str:
        mime, data = _decoded(uri)
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            known = self._urls.get(digest)
        if known:
            return known
        name = f"{digest[:16]}.{EXTENSIONS.get(mime, 'bin')}"
        answer = self._rest.json("POST", INITIATE, params={"storage_type": "fal-cdn-v3"},
                                 json={"content_type": mime, "file_name": name})
        if not isinstance(answer, dict) or not answer.get("upload_url") or not answer.get("file_url"):
            raise TransientProviderError("fal", None, None, "upload initiate answer has no URLs")
        with self._rest.mapped():
            put = self._plain.put(answer["upload_url"], content=data, headers={"Content-Type": mime})
        self._rest.check(put)
        with self._lock:
            self._urls[digest] = str(answer["file_url"])
        return str(answer["file_url"])

    def close(self) -> None:
        self._rest.close()
        self._plain.close()

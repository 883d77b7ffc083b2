"""fal storage: a local input (inlined by the engine as a data URI) uploaded once, sent as its URL.

The protocol of fal-js (libs/client/src/storage.ts at 381105e1, ``initiateUpload``):
``POST {FAL_REST_URL}/storage/upload/initiate?storage_type=fal-cdn-v3`` with ``{content_type,
file_name}`` and the key answers ``{upload_url, file_url}``; the bytes go to ``upload_url`` by ``PUT``
(no key: it is a presigned URL) and the request names ``file_url``.

Each distinct file is uploaded once (keyed by the sha256 of its bytes): the URL is remembered in the
process and in ``fal-uploads.json`` in the data dir, so a rerun (another process on this machine) sends
the same URL for ``UPLOAD_REUSE_S`` (a day; fal keeps its CDN files at least 7 days per its older FAQ:
assumed to hold for uploads). Workers on other machines upload their own copy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from reelbatch.jobs.errors import TransientProviderError
from reelbatch.jobs.files import write_text
from reelbatch.worker.providers.http import HttpSeam

INITIATE = "/storage/upload/initiate"
UPLOAD_REUSE_S = 86400.0
UPLOADS_FILE = "fal-uploads.json"   # in the data dir
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

    def __init__(self, rest: HttpSeam, plain: httpx.Client, cache_file: Path | None = None):
        self._rest, self._plain, self._cache_file = rest, plain, cache_file
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
            known = self._urls.get(digest) or self._remembered(digest)
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
            self._remember(digest, str(answer["file_url"]))
        return str(answer["file_url"])

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self._cache_file.read_text(encoding="utf-8")) if self._cache_file else {}
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _remembered(self, digest: str) -> str | None:
        entry = self._read().get(digest)
        if isinstance(entry, dict) and time.time() - float(entry.get("at", 0)) < UPLOAD_REUSE_S:
            return str(entry.get("url")) if entry.get("url") else None
        return None

    def _remember(self, digest: str, url: str) -> None:
        """Best effort: two processes writing at once may lose an entry (that file is uploaded again)."""
        if self._cache_file is None:
            return
        now = time.time()
        data = {k: v for k, v in self._read().items()
                if isinstance(v, dict) and now - float(v.get("at", 0)) < UPLOAD_REUSE_S}
        data[digest] = {"url": url, "at": now}
        try:
            write_text(self._cache_file, json.dumps(data))
        except OSError:
            pass

    def close(self) -> None:
        self._rest.close()
        self._plain.close()

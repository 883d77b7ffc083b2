"""Provider clients behind one protocol (see base.py). Build one per worker process and reuse it."""

from __future__ import annotations

import httpx

from reelbatch.jobs.errors import PermanentProviderError
from reelbatch.jobs.settings import Settings
from reelbatch.worker.providers.aimlapi import AimlapiProvider
from reelbatch.worker.providers.base import Provider
from reelbatch.worker.providers.fal import FalProvider
from reelbatch.worker.providers.fal_storage import UPLOADS_FILE, Uploads
from reelbatch.worker.providers.http import HttpSeam, build_client, build_download_client, host_credential
from reelbatch.worker.providers.oxen import OxenProvider

PROVIDERS = ("oxen", "aimlapi", "fal", "simulator")
KEY_VARIABLE = {"oxen": "OXEN_API_KEY", "aimlapi": "AIMLAPI_KEY", "fal": "FAL_KEY",
                "simulator": "REELBATCH_SIMULATOR_KEY"}


def build_provider(name: str, settings: Settings,
                   transport: httpx.BaseTransport | None = None) -> Provider:
    """The client for ``name`` (oxen | aimlapi | fal | simulator). The simulator speaks Oxen's
    protocol and may run without a key; the real providers refuse to start without one."""
    if name not in PROVIDERS:
        raise PermanentProviderError(name, None, None, f"unknown provider {name!r}")
    key = settings.key_for(name)
    if not key and name != "simulator":
        raise PermanentProviderError(name, None, None, f"no API key: set {KEY_VARIABLE[name]}")
    base_url = settings.base_url_for(name)
    if name == "fal":
        return _fal(settings, key or "", transport)
    http = HttpSeam(name, build_client(settings, base_url, key, transport), secrets=(key,) if key else ())
    credential = host_credential(base_url, key)
    if name == "aimlapi":
        return AimlapiProvider(http, download_credential=credential)
    return OxenProvider(http, name=name, download_credential=credential)


def _fal(settings: Settings, key: str, transport: httpx.BaseTransport | None) -> FalProvider:
    """fal: the queue, the platform API and storage, with ``Authorization: Key <key>``; uploads go
    to their presigned URL without it."""
    def seam(url: str) -> HttpSeam:
        return HttpSeam("fal", build_client(settings, url, key, transport, scheme="Key"), secrets=(key,))
    uploads = Uploads(seam(settings.fal_rest_url), build_download_client(settings, transport),
                      cache_file=settings.data_dir / UPLOADS_FILE)
    return FalProvider(seam(settings.fal_queue_url), seam(settings.fal_api_url), uploads)

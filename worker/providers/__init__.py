"""Provider clients behind one protocol (see base.py). Build one per worker process and reuse it."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from reelbatch.jobs.errors import PermanentProviderError
from reelbatch.jobs.settings import Settings
from reelbatch.worker.providers.aimlapi import AimlapiProvider
from reelbatch.worker.providers.base import Provider
from reelbatch.worker.providers.http import HttpSeam, build_client, host_credential
from reelbatch.worker.providers.oxen import OxenProvider

PROVIDERS = ("oxen", "aimlapi", "simulator")
KEY_VARIABLE = {"oxen": "OXEN_API_KEY", "aimlapi": "AIMLAPI_KEY", "simulator": "REELBATCH_SIMULATOR_KEY"}


def build_provider(name: str, settings: Settings, transport: httpx.BaseTransport | None = None,
                   tally: Callable[[str], None] | None = None) -> Provider:
    """The client for ``name`` (oxen | aimlapi | simulator). The simulator speaks Oxen's protocol
    and may run without a key; the real providers refuse to start without one."""
    if name not in PROVIDERS:
        raise PermanentProviderError(name, None, None, f"unknown provider {name!r}")
    key = settings.key_for(name)
    if not key and name != "simulator":
        raise PermanentProviderError(name, None, None, f"no API key: set {KEY_VARIABLE[name]}")
    base_url = settings.base_url_for(name)
    http = HttpSeam(name, build_client(settings, base_url, key, transport), secrets=(key,) if key else (),
                    tally=tally)
    credential = host_credential(base_url, key)
    if name == "aimlapi":
        return AimlapiProvider(http, download_credential=credential)
    return OxenProvider(http, name=name, download_credential=credential)

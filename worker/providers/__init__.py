"""Provider clients behind one protocol and its capability protocols (base.py), one registry entry
each (registry.py). Build one client per worker process and reuse it."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from reelbatch.jobs.errors import PermanentProviderError
from reelbatch.jobs.settings import Settings
from reelbatch.worker.providers.base import Provider
from reelbatch.worker.providers.http import HttpSeam, build_client, host_credential
from reelbatch.worker.providers.registry import PROVIDERS, REGISTRY, ProviderEntry, entry

__all__ = ["PROVIDERS", "REGISTRY", "Provider", "ProviderEntry", "build_provider", "entry",
           "base", "http", "registry"]   # the modules the engine and worker/ use


def build_provider(name: str, settings: Settings, transport: httpx.BaseTransport | None = None,
                   tally: Callable[[str], None] | None = None) -> Provider:
    """The client for ``name``; a PermanentProviderError for an unknown name, or a provider that
    needs a key and has none. ``tally`` counts each request's outcome (the metrics)."""
    found = entry(name)
    key = found.key(settings)
    if not key and found.needs_key:
        raise PermanentProviderError(name, None, None, f"no API key: set {found.key_variable}")
    if found.build is not None:
        return found.build(settings, key or "", transport, tally)
    base_url = found.base_url(settings)
    http = HttpSeam(name, build_client(settings, base_url, key, transport), secrets=(key,) if key else (),
                    tally=tally)
    client: Provider = found.client(http, name=name, download_credential=host_credential(base_url, key))
    return client

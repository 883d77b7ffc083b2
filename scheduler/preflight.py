"""Checks made before anything is submitted, so a mistake costs nothing and says so in one line:
the output folder can be written, the provider's key is well formed and accepted."""

from __future__ import annotations

import re
import socket
from urllib.parse import urlsplit

from reelbatch.jobs.catalog import catalog
from reelbatch.jobs.errors import ManifestError, PermanentProviderError, ProviderUnreachable, ServiceUnavailable
from reelbatch.jobs.manifest import Manifest
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.store import Store
from reelbatch.scheduler.embedded import usable_dir
from reelbatch.worker.providers import KEY_VARIABLE, build_provider

BASE_URL_VARIABLE = {"oxen": "OXEN_BASE_URL", "aimlapi": "AIMLAPI_BASE_URL"}
KEY_CHARACTERS = re.compile(r"[\x21-\x7e]+")   # printable ASCII, no spaces: what a header can carry


def check_output(manifest: Manifest) -> None:
    try:
        usable_dir(manifest.output, "output")
    except ManifestError as exc:
        raise manifest.error(exc.message, ("output",)) from None


def check_key_format(settings: Settings, provider: str) -> None:
    key = settings.key_for(provider)
    if key is not None and not KEY_CHARACTERS.fullmatch(key):
        raise ManifestError("contains spaces or control characters; copy the key again",
                            field=KEY_VARIABLE[provider])


def check_key(settings: Settings, provider: str, model: str) -> str | None:
    """One cheap authenticated request with the provider's key: a refused key is one line and
    exit 2 before any item changes; an unreachable provider is a warning (returned) and the
    batch goes on (it pauses if the provider stays away)."""
    if settings.key_for(provider) is None:
        return None
    client = build_provider(provider, settings)
    try:
        client.check_key(catalog().model_for(provider, model).ids[provider])
    except ProviderUnreachable as exc:
        return f"cannot reach {provider} at {settings.base_url_for(provider)} yet ({exc.message})"
    except PermanentProviderError as exc:
        raise ManifestError(f"{provider} refused the key ({exc.status_code}): check it",
                            field=KEY_VARIABLE[provider]) from None
    finally:
        client.close()
    return None


def provider_answers(store: Store, provider: str) -> None:
    """The key check got an answer: an earlier "unreachable" mark is out of date."""
    store.clear_provider_down(provider)


def check_host(settings: Settings, provider: str) -> None:
    """A provider base URL whose host does not resolve is a typo or no network, not an outage to
    wait out: one line and exit 3 at once."""
    if provider not in BASE_URL_VARIABLE:
        return
    url = settings.base_url_for(provider)
    host = urlsplit(url).hostname
    if not host:
        return
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as exc:
        why = exc.strerror if isinstance(exc, socket.gaierror) else "not a host name"
        raise ServiceUnavailable(f"{provider}: the host {host!r} of {BASE_URL_VARIABLE[provider]} ({url}) "
                                 f"does not resolve ({why}): check the URL and the network") from None

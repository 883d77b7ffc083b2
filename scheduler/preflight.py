"""Checks made before anything is submitted, so a mistake costs nothing and says so in one line:
the output folder can be written, the provider's key is well formed and accepted."""

from __future__ import annotations

import os
import re
import socket
from urllib.parse import urlsplit

from dotenv import dotenv_values

from reelbatch.jobs.catalog import catalog
from reelbatch.jobs.errors import ManifestError, PermanentProviderError, ProviderUnreachable, ServiceUnavailable
from reelbatch.jobs.manifest import Manifest
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.store import Store
from reelbatch.scheduler.stack.embedded import usable_dir
from reelbatch.worker.providers import build_provider, entry

KEY_CHARACTERS = re.compile(r"[\x21-\x7e]+")   # printable ASCII, no spaces: what a header can carry


def check_output(manifest: Manifest) -> None:
    try:
        usable_dir(manifest.output, "output")
    except ManifestError as exc:
        raise manifest.error(exc.message, ("output",)) from None


def check_key_present(settings: Settings, provider: str) -> None:
    """The provider's key is set (environment or .env); else one line naming the variable, and a
    variable that looks meant for it (OXEN_KEY for OXEN_API_KEY)."""
    found = entry(provider)
    if not found.needs_key or found.key(settings) is not None:
        return
    variable = found.key_variable
    others = [name for name in near_misses(provider) if name.upper() != variable]
    hint = f" ({', '.join(others)} is set, but reelbatch reads {variable})" if others else ""
    raise ManifestError(f"is not set; the {provider} provider needs it{hint}", field=variable)


def near_misses(provider: str) -> list[str]:
    """Variables set in the environment or the working folder's .env that look like a key for
    ``provider`` under another name (OXEN_KEY, OXEN_TOKEN, AIML_KEY)."""
    stem = provider.upper()[:4]
    try:
        names = set(os.environ) | set(dotenv_values(".env"))
    except (OSError, UnicodeDecodeError):
        names = set(os.environ)
    return sorted(n for n in names if n.upper().replace("_", "").startswith(stem)
                  and any(word in n.upper() for word in ("KEY", "TOKEN", "SECRET")))


def check_key_format(settings: Settings, provider: str) -> None:
    key = entry(provider).key(settings)
    if key is not None and not KEY_CHARACTERS.fullmatch(key):
        raise ManifestError("contains spaces or control characters; copy the key again",
                            field=entry(provider).key_variable)


def check_key(settings: Settings, provider: str, model: str) -> str | None:
    """One cheap authenticated request with the provider's key: a refused key is one line and
    exit 2 before any item changes; an unreachable provider is a warning (returned) and the
    batch goes on (it pauses if the provider stays away)."""
    found = entry(provider)
    if found.key(settings) is None:
        return None
    client = build_provider(provider, settings)
    try:
        client.check_key(catalog().model_for(provider, model).ids[provider])
    except ProviderUnreachable as exc:
        return f"cannot reach {provider} at {found.base_url(settings)} yet ({exc.message})"
    except PermanentProviderError as exc:
        raise ManifestError(f"{provider} refused the key ({exc.status_code}): check it",
                            field=found.key_variable) from None
    finally:
        client.close()
    return None


def provider_answers(store: Store, provider: str) -> None:
    """The key check got an answer: an earlier "unreachable" mark is out of date."""
    store.clear_provider_down(provider)


def check_host(settings: Settings, provider: str) -> None:
    """A provider base URL whose host does not resolve is a typo or no network, not an outage to
    wait out: one line and exit 3 at once."""
    found = entry(provider)
    if not found.needs_key:    # the simulator: a local process, started by `run`
        return
    url = found.base_url(settings)
    host = urlsplit(url).hostname
    if not host:
        return
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as exc:
        why = exc.strerror if isinstance(exc, socket.gaierror) else "not a host name"
        raise ServiceUnavailable(f"{provider}: the host {host!r} of {found.url_variable} ({url}) "
                                 f"does not resolve ({why}): check the URL and the network") from None

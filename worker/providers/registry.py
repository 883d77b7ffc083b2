"""One entry per provider: its client, where its key and base URL are set, and whether it runs
without a key. What a provider can do beyond the ``Provider`` protocol is what its client class
implements of the capability protocols in base.py (``abilities``); docs/providers.md says how to
add one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from reelbatch.jobs.errors import PermanentProviderError
from reelbatch.jobs.settings import Settings, variable_of
from reelbatch.worker.providers import base
from reelbatch.worker.providers.aimlapi import AimlapiProvider
from reelbatch.worker.providers.fal import FalProvider, build_fal
from reelbatch.worker.providers.oxen import OxenProvider

Builder = Callable[[Settings, str, httpx.BaseTransport | None, Callable[[str], None] | None], base.Provider]
CAPABILITIES: tuple[type, ...] = (base.Cancels, base.StreamsEvents, base.FollowsRequests,
                                  base.ListsGenerations, base.FindsLostSubmits, base.ListsMadeGenerations,
                                  base.PublishesPrices)


def build_simulated_fal(settings: Settings, key: str, transport: httpx.BaseTransport | None = None,
                        tally: Callable[[str], None] | None = None) -> base.Provider:
    """fal's client against the simulator's fal routes (queue, platform API and uploads)."""
    url = settings.simulator_url
    here = settings.model_copy(update={"fal_queue_url": url, "fal_api_url": url, "fal_rest_url": url})
    client = build_fal(here, key, transport, tally)
    client.name = "simulator_fal"
    return client


@dataclass(frozen=True)
class ProviderEntry:
    name: str
    client: type                 # the client class, built as client(http, name=, download_credential=)
    key_field: str               # the Settings field of its API key (its variable is the field's alias)
    url_field: str               # the Settings field of its base URL
    needs_key: bool = True       # the simulator runs without one
    build: Builder | None = None  # a client that needs more than one base URL builds itself (fal)
    # past the account's running limit a submit waits in the provider's queue (True), is refused
    # (False: no generation is ever kept queued there), or nobody documented which (None: one
    # submit past the limit is tried, and a refusal turns queue depth off; worker/engine/depth.py)
    queues_beyond_limit: bool | None = True

    @property
    def key_variable(self) -> str:
        return variable_of(self.key_field)

    @property
    def url_variable(self) -> str:
        return variable_of(self.url_field)

    def key(self, settings: Settings) -> str | None:
        """The API key its client sends; None when it is not configured."""
        secret = getattr(settings, self.key_field)
        return secret.get_secret_value() if isinstance(secret, SecretStr) else None

    def base_url(self, settings: Settings) -> str:
        return str(getattr(settings, self.url_field))

    def environment(self, settings: Settings) -> dict[str, str]:
        """Its key and URL as environment variables, however this process got them (its environment
        or the working folder's .env), for a child process that reads no .env of the user's."""
        env = {self.url_variable: self.base_url(settings)}
        key = self.key(settings)
        if key:
            env[self.key_variable] = key
        return env

    def abilities(self) -> list[str]:
        """The capability protocols its client implements (names from base.py)."""
        return [cap.__name__ for cap in CAPABILITIES if issubclass(self.client, cap)]


REGISTRY: dict[str, ProviderEntry] = {entry.name: entry for entry in (
    ProviderEntry("oxen", OxenProvider, "oxen_api_key", "oxen_base_url"),
    # the AI/ML API documents 429 for "rate or concurrency limit" and also queued/waiting statuses
    ProviderEntry("aimlapi", AimlapiProvider, "aimlapi_key", "aimlapi_base_url", queues_beyond_limit=None),
    ProviderEntry("fal", FalProvider, "fal_key", "fal_queue_url", build=build_fal),
    # the simulator speaks Oxen's protocol (and the AI/ML API's and fal's under their own routes,
    # each an account of its own for a batch over several providers)
    ProviderEntry("simulator", OxenProvider, "simulator_key", "simulator_url", needs_key=False),
    ProviderEntry("simulator_aimlapi", AimlapiProvider, "simulator_key", "simulator_url", needs_key=False),
    ProviderEntry("simulator_fal", FalProvider, "simulator_key", "simulator_url", needs_key=False,
                  build=build_simulated_fal),
)}
SIMULATED_PROVIDERS = frozenset(name for name, e in REGISTRY.items() if e.key_field == "simulator_key")
PROVIDERS = tuple(REGISTRY)


def entry(name: str) -> ProviderEntry:
    """The registry entry of ``name``; a PermanentProviderError for a name it does not hold."""
    if name not in REGISTRY:
        raise PermanentProviderError(name, None, None, f"unknown provider {name!r}")
    return REGISTRY[name]

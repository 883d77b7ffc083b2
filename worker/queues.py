"""Which Celery queue a step goes to, and which queues a worker consumes.

Every step of an item asks its provider, so it goes to that provider's queue
(``reelbatch.<provider>``); what asks no provider (the sweep) goes to the default queue. A worker
consumes the default queue and the queues of the providers it serves: those it has a key for, and
those that need none (the simulator), narrowed by ``REELBATCH_WORKER_PROVIDERS``
(`reelbatch worker --providers`). An item of a provider no worker has a key for waits untouched in
its queue, and `status` says so."""

from __future__ import annotations

import re

from reelbatch.jobs.settings import Settings
from reelbatch.worker.providers.registry import REGISTRY

QUEUE = "reelbatch"


def queue_for(provider: str | None) -> str:
    """The queue of a step that asks ``provider`` (None: the default queue)."""
    return f"{QUEUE}.{provider}" if provider else QUEUE


def chosen(settings: Settings) -> list[str]:
    """The providers REELBATCH_WORKER_PROVIDERS names (comma or space separated); empty: all."""
    return [name for name in re.split(r"[,\s]+", settings.worker_providers.strip()) if name]


def has_key(settings: Settings, provider: str) -> bool:
    found = REGISTRY[provider]
    return not found.needs_key or found.key(settings) is not None


def served(settings: Settings) -> list[str]:
    """The providers this worker serves: those chosen (all when none is) that it can reach."""
    names = chosen(settings) or list(REGISTRY)
    return [name for name in names if name in REGISTRY and has_key(settings, name)]


def unserved_here(settings: Settings) -> list[str]:
    """Providers this worker leaves to others: chosen (or all) but without their key here."""
    names = chosen(settings) or list(REGISTRY)
    return [name for name in names if name in REGISTRY and not has_key(settings, name)]


def consumed(settings: Settings) -> list[str]:
    """Every queue this worker consumes: the default one, then its providers'."""
    return [QUEUE, *(queue_for(p) for p in served(settings))]

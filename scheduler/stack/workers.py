"""`reelbatch worker`: a Celery worker on the configured broker (or the embedded Redis's folder, so
`submit` then `worker` also works on one machine)."""

from __future__ import annotations

import sys

from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.stack.broker import broker
from reelbatch.scheduler.stack.embedded import WorkerProcess, run_foreground
from reelbatch.worker.providers import REGISTRY


def run_worker(settings: Settings, concurrency: int | None, extra: list[str]) -> int:
    """A worker in the foreground, logging to stderr; the embedded Redis it may have started is
    stopped when it ends (unless another command still uses it)."""
    url = broker(settings)
    warn_missing_keys(settings)
    env = {"REELBATCH_BROKER_URL": url, **worker_keys(settings)}
    proc = WorkerProcess(env, settings.data_dir / "logs" / "worker.log",
                         concurrency or settings.worker_concurrency)
    return run_foreground(proc.command() + extra, env, settings.data_dir)


def worker_keys(settings: Settings) -> dict[str, str]:
    """Every provider's key and URL as this command read them (a .env in the working folder
    included): the worker runs from the data dir and would not read that .env."""
    env: dict[str, str] = {}
    for found in REGISTRY.values():
        env.update(found.environment(settings))
    return env


def keyless_providers(settings: Settings) -> list[str]:
    return [e.name for e in REGISTRY.values() if e.needs_key and e.key(settings) is None]


def warn_missing_keys(settings: Settings) -> None:
    """One line at start naming the providers this worker has no key for."""
    missing = keyless_providers(settings)
    if missing:
        named = ", ".join(f"{p} ({REGISTRY[p].key_variable})" for p in missing)
        print(f"warning: this worker has no key for {named}: items of a batch on "
              f"{'these providers' if len(missing) > 1 else 'it'} that reach this worker fail with "
              "\"no API key\"; give every worker the keys of the batches' providers", file=sys.stderr)

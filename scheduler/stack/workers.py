"""`reelbatch worker`: a Celery worker on the configured broker (or the embedded Redis's folder, so
`submit` then `worker` also works on one machine). It consumes the queues of the providers it has
a key for (worker/queues.py); asked to serve a provider it has no key for, it does not start."""

from __future__ import annotations

import sys

from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.stack.broker import broker
from reelbatch.scheduler.stack.embedded import WorkerProcess, run_foreground
from reelbatch.worker.providers import REGISTRY
from reelbatch.worker.queues import chosen, served, unserved_here

PROVIDERS_VARIABLE = "REELBATCH_WORKER_PROVIDERS"


def run_worker(settings: Settings, concurrency: int | None, extra: list[str],
               providers: str | None = None) -> int:
    """A worker in the foreground, logging to stderr; the embedded Redis it may have started is
    stopped when it ends (unless another command still uses it). Exit 2, with one line, when it
    is asked to serve a provider it has no key for."""
    if providers is not None:
        settings = settings.model_copy(update={"worker_providers": providers})
    refused = refusal(settings)
    if refused:
        print(f"reelbatch worker: {refused}", file=sys.stderr)
        return 2
    url = broker(settings)
    say_served(settings)
    env = {"REELBATCH_BROKER_URL": url, PROVIDERS_VARIABLE: settings.worker_providers,
           **worker_keys(settings)}
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


def refusal(settings: Settings) -> str | None:
    """Why the worker must not start: it was asked (--providers) to serve an unknown provider, or
    one it has no key for; None when it may."""
    asked = chosen(settings)
    unknown = [name for name in asked if name not in REGISTRY]
    if unknown:
        return (f"{PROVIDERS_VARIABLE} (--providers): unknown provider {unknown[0]!r}; expected "
                f"some of {', '.join(REGISTRY)}")
    missing = unserved_here(settings) if asked else []
    if missing:
        return f"no key for {_named(missing)}: set {_variables(missing)} or leave it out of --providers"
    return None


def say_served(settings: Settings) -> None:
    """One line at start: the providers this worker serves, and those it leaves to workers with
    their key (their items wait untouched until one comes)."""
    missing = unserved_here(settings)
    line = f"this worker serves {', '.join(served(settings))}"
    if missing:
        line += (f"; it has no key for {_named(missing)} ({_variables(missing)}): their items wait "
                 "for a worker with the key")
    print(line, file=sys.stderr)


def _named(providers: list[str]) -> str:
    return ", ".join(providers)


def _variables(providers: list[str]) -> str:
    return ", ".join(REGISTRY[p].key_variable for p in providers)

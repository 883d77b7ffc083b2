"""`reelbatch run`: the one-machine path. Start what is missing (embedded Redis, the simulator, a
worker), submit, show progress, wait until every item is terminal, write the index, stop what we
started. Running it again resumes."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import redis
from kombu.exceptions import OperationalError
from pydantic import SecretStr
from rich.console import Console

from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.state import TERMINAL
from reelbatch.jobs.state import ItemState as S
from reelbatch.scheduler.embedded import EmbeddedRedis, WorkerProcess
from reelbatch.scheduler.notify import notify_run
from reelbatch.scheduler.plan import plan_batch
from reelbatch.scheduler.progress import NORMAL, QUIET, make_progress
from reelbatch.scheduler.simproc import SimulatorProcess
from reelbatch.worker.app import use_broker
from reelbatch.worker.context import WorkerContext
from reelbatch.worker.control import Registration, recheck_batch, register_batch, start_batch, sweep_batch
from reelbatch.worker.listener import start_listeners
from reelbatch.worker.providers import KEY_VARIABLE
from reelbatch.worker.results import refresh_index

SWEEP_EVERY_S = 5.0
TICK_S = 0.25
OUTAGE_LIMIT_S = 300.0   # how long `run` waits for a lost Redis before giving up (exit 3)
BROKER_DOWN = (redis.ConnectionError, redis.TimeoutError, OperationalError)


@dataclass
class Stack:
    """The services `run` uses, and the environment a worker needs to reach them."""

    settings: Settings
    env: dict[str, str]
    local_worker: bool


def start_services(stack: ExitStack, settings: Settings, provider: str) -> Stack:
    env: dict[str, str] = {}
    broker = settings.broker_url
    if broker is None:
        broker = stack.enter_context(EmbeddedRedis(settings.data_dir)).url
    env["REELBATCH_BROKER_URL"] = broker
    update = {"broker_url": broker}
    if provider == "simulator" and "REELBATCH_SIMULATOR_URL" not in os.environ:
        sim = stack.enter_context(SimulatorProcess(settings))
        env.update(sim.env())
        update.update(simulator_url=sim.url, simulator_key=SecretStr(sim.key))
    use_broker(broker)
    return Stack(settings.model_copy(update=update), env, settings.broker_url is None)


def describe_registration(name: str, total: int, reg: Registration) -> str:
    parts = [f"{reg.new} new", f"{reg.kept} known"]
    parts += [f"{n} {what}" for n, what in (
        (reg.changed, "changed (a new version; a paid one is kept aside)"),
        (reg.readopted, "back to an earlier paid version"),
        (reg.dropped, "left the manifest and dropped"),
        (reg.retired, "left the manifest (videos kept aside)"),
        (reg.finishing, "left the manifest and finish what they started")) if n]
    return f"batch [bold]{name}[/]: {total} items ({', '.join(parts)})"


def run_batch(manifest: Path, settings: Settings, console: Console, adopt: bool = False,
              verify: bool = False, verbosity: int = NORMAL) -> int:
    plan = plan_batch(manifest, settings)
    name = plan.manifest.name
    if settings.broker_url is None:
        _check_key(settings, plan.manifest.provider)
    with ExitStack() as stack:
        services = start_services(stack, settings, plan.manifest.provider)
        ctx = WorkerContext(services.settings)
        reg = register_batch(ctx.store, plan, adopt=adopt)
        if verbosity > QUIET:
            console.print(describe_registration(name, len(plan.items), reg))
        lost = recheck_batch(ctx, name, verify)
        if lost:
            console.print(f"{lost} videos are missing or changed on disk: downloading them again "
                          "from their generations")
        worker = _start_worker(stack, services) if services.local_worker else None
        _start_listener(stack, services.settings, plan.manifest.provider)
        try:
            start_batch(ctx, name)
            _watch(ctx, name, worker, console, verbosity)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: every submitted generation is recorded; "
                          "run the same command again to resume")
            return 130
        finally:
            refresh_index(ctx.store, ctx.store.batch(name))
        code = _summary(ctx, name, console)
        notify_run(ctx.store, name, plan.manifest.notify, services.settings)
        return code


def _start_worker(stack: ExitStack, services: Stack) -> WorkerProcess:
    log = services.settings.data_dir / "logs" / "worker.log"
    worker = WorkerProcess(services.env, log, services.settings.worker_concurrency)
    worker.start()
    stack.callback(worker.stop)
    return worker


def _start_listener(stack: ExitStack, settings: Settings, provider: str) -> None:
    """Completions as events, where the provider has an event stream."""
    for listener in start_listeners(settings, [provider]):
        stack.callback(listener.stop)


def _check_key(settings: Settings, provider: str) -> None:
    """The local worker would fail every item without a key: say so before submitting anything."""
    if provider != "simulator" and settings.key_for(provider) is None:
        raise ManifestError(f"{KEY_VARIABLE[provider]} is not set; the {provider} provider needs it",
                            field="provider")


def _watch(ctx: WorkerContext, name: str, worker: WorkerProcess | None, console: Console,
           verbosity: int = NORMAL) -> None:
    last_sweep, lost_since = 0.0, None
    with make_progress(ctx.store, name, console, ctx.settings, verbosity) as progress:
        while True:
            try:
                if _finished(ctx, name):
                    break
                progress.refresh()
                if time.monotonic() - last_sweep > SWEEP_EVERY_S:
                    sweep_batch(ctx, name)
                    last_sweep = time.monotonic()
                    if worker is not None and not worker.alive():
                        console.print("[yellow]the worker stopped; starting it again[/]")
                        worker.start()
                lost_since = None
            except BROKER_DOWN as exc:
                lost_since = _broker_lost(exc, lost_since, console)
            time.sleep(TICK_S)
        progress.refresh()


def _broker_lost(exc: Exception, since: float | None, console: Console) -> float:
    """Redis went away (a restart, a network blip): wait for it, up to OUTAGE_LIMIT_S."""
    now = time.monotonic()
    if since is None:
        console.print(f"[yellow]lost Redis ({type(exc).__name__}); waiting for it to come back[/]")
        return now
    if now - since > OUTAGE_LIMIT_S:
        raise exc
    return since


def _finished(ctx: WorkerContext, name: str) -> bool:
    """Every item terminal, or nothing left that can move (pending items parked by the budget)."""
    counts = ctx.store.counts(name)
    open_states = [s for s in S if s not in TERMINAL]
    if sum(counts[s] for s in open_states) == 0:
        return True
    if any(counts[s] for s in open_states if s is not S.PENDING):
        return False
    return all(rec.error_kind == "budget" for rec in ctx.store.items(name, S.PENDING))


def _summary(ctx: WorkerContext, name: str, console: Console) -> int:
    counts = ctx.store.counts(name)
    meta = ctx.store.batch(name)
    parts = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    console.print(f"[bold]{name}[/]: {parts}; {ctx.store.spend(name).label()}; "
                  f"results in {Path(meta.output) / 'results.jsonl'}")
    for rec in ctx.store.items(name, S.FAILED):
        console.print(f"  [red]failed[/] {rec.item_id}: [{rec.error_kind}] {rec.error}")
    if counts[S.PENDING]:
        console.print(f"  {counts[S.PENDING]} items wait for the budget: raise "
                      "limits.max_cost_usd and run again")
    return 0 if counts[S.SUCCEEDED] == sum(counts.values()) else 1

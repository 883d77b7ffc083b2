"""`reelbatch run`: the one-machine path. Check what can be checked before anything is submitted,
start what is missing (the embedded Redis and the simulator, shared with other commands on the same
data dir, and a worker tied to this process), submit, show progress, wait until every item is
terminal or the batch pauses, write the index, stop what we started. Running it again resumes.

It always ends: with every item terminal (exit 0, or 1 with failures), or paused because its
provider cannot be reached or its output folder cannot be written (exit 3, the reason on one line),
or stopped by a signal (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from reelbatch.jobs.errors import ServiceUnavailable
from reelbatch.jobs.offers import serving
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.state import OPEN, ItemState as S
from reelbatch.jobs.store import Store
from reelbatch.jobs.tuning import (
    OUTAGE_LIMIT_S,
    RUN_SWEEP_EVERY_S as SWEEP_EVERY_S,
    RUN_TICK_S as TICK_S,
    WORKER_READY_S,
)
from reelbatch.jobs.unclaimed import unclaimed_lines
from reelbatch.scheduler import preflight
from reelbatch.scheduler.plan import Plan, plan_batch
from reelbatch.scheduler.reuse import describe_reuse, reuse_videos
from reelbatch.scheduler.stack.broker import check_broker
from reelbatch.scheduler.stack.embedded import EmbeddedRedis
from reelbatch.scheduler.stack.simproc import SimulatorProcess
from reelbatch.scheduler.stack.worker_group import WorkerGroup
from reelbatch.scheduler.views.metrics import serve_metrics
from reelbatch.scheduler.views.notify import PAUSED, notify_batch, notify_run, urls_for
from reelbatch.scheduler.views.progress import NORMAL, QUIET, Display, make_progress
from reelbatch.scheduler.views.status import SIMULATED, no_key_line, ran, rerun_command
from reelbatch.worker.app import use_broker
from reelbatch.worker.control import (
    Registration,
    fetch_lost_files,
    find_unclaimed,
    recheck_batch,
    register_batch,
    settle_charges,
    start_batch,
    sweep_batch,
)
from reelbatch.worker.event_stream import start_watchers
from reelbatch.worker.providers import entry
from reelbatch.worker.providers.registry import SIMULATED_PROVIDERS
from reelbatch.worker.results import RESULTS, refresh_index
from reelbatch.worker.runtime import Runtime
from reelbatch.worker.tasks import BROKER_DOWN

FETCH_LOST_ROUNDS = 3    # a folder deleted again and again: the summary then says what is missing


class BatchPaused(ServiceUnavailable):
    """The batch cannot go on for now (exit 3); the same command resumes it."""

    kind = "paused"


@dataclass
class Stack:
    """The services `run` uses, and the environment a worker needs to reach them."""

    settings: Settings
    env: dict[str, str]
    local_worker: bool


def start_services(stack: ExitStack, settings: Settings, providers: tuple[str, ...]) -> Stack:
    env: dict[str, str] = {}
    for provider in providers:
        env.update(entry(provider).environment(settings))   # a key in the working folder's .env included
    broker = settings.broker_url
    if broker is None:
        broker = stack.enter_context(EmbeddedRedis(settings.data_dir)).url
    else:
        check_broker(broker)
    env["REELBATCH_BROKER_URL"] = broker
    update: dict[str, Any] = {"broker_url": broker}
    if SIMULATED_PROVIDERS & set(providers) and "REELBATCH_SIMULATOR_URL" not in os.environ:
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
        (reg.finishing, "left the manifest and finish what they started"),
        (reg.adopted, "made in the output folder by another store: adopted"),
        (reg.renamed, "of them under a new id, with the same content: kept")) if n]
    return f"batch [bold]{escape(name)}[/]: {total} items ({', '.join(parts)})"


def run_batch(manifest: Path | Plan, settings: Settings, console: Console, adopt: bool = False,
              verify: bool = False, verbosity: int = NORMAL, reuse: tuple[str, ...] = ()) -> int:
    plan = manifest if isinstance(manifest, Plan) else plan_batch(manifest, settings)
    _preflight(plan, settings)
    with ExitStack() as stack:
        services = start_services(stack, settings, plan.manifest.providers)
        ctx = Runtime(services.settings)
        stack.enter_context(serve_metrics(ctx.store, services.settings))   # REELBATCH_METRICS_PORT
        for provider in serving(plan.manifest):
            warning = preflight.check_key(services.settings, provider, plan.manifest.model)
            if warning:
                console.print(f"[yellow]{warning}; retrying (the batch pauses after "
                              f"{settings.provider_unreachable_s:.0f} s)[/]")
            else:
                preflight.provider_answers(ctx.store, provider)
        return _carry_out(stack, ctx, plan, services, console, Options(adopt, verify, verbosity, reuse))


def _preflight(plan: Plan, settings: Settings) -> None:
    """Before anything starts (nothing made, not even a folder): the key's presence and form,
    the output folder."""
    for provider in plan.manifest.providers:
        if settings.broker_url is None:      # with a broker, the fleet's workers hold the keys
            preflight.check_key_present(settings, provider)
        preflight.check_key_format(settings, provider)
        preflight.check_host(settings, provider)
    preflight.check_output(plan.manifest)


@dataclass(frozen=True)
class Options:
    adopt: bool = False
    verify: bool = False
    verbosity: int = NORMAL
    reuse: tuple[str, ...] = ()   # --reuse: batches whose identical succeeded requests are taken


def _carry_out(stack: ExitStack, ctx: Runtime, plan: Plan, services: Stack, console: Console,
               options: Options) -> int:
    name = plan.manifest.name
    reg = register_batch(ctx.store, plan, adopt=options.adopt)
    ctx.store.clear_output_problem(name)    # the preflight wrote to the folder: there is room now
    if options.verbosity > QUIET:
        console.print(describe_registration(name, len(plan.items), reg))
    said = describe_reuse(reuse_videos(ctx.store, name, [*plan.manifest.reuse, *options.reuse]))
    if said and options.verbosity > QUIET:
        console.print(said, markup=False, highlight=False)
    lost = recheck_batch(ctx, name, options.verify)
    if lost:
        console.print(f"{lost} videos are missing or changed on disk: downloading them again "
                      "from their generations")
    worker = _start_worker(stack, services) if services.local_worker else None
    _start_listener(stack, services.settings, plan.manifest.providers)
    try:
        if worker is not None and plan.manifest.fanout:
            _until_served(ctx, worker, plan.manifest.providers)
        start_batch(ctx, name)
        _watch(ctx, name, worker, console, options.verbosity)
        _fetch_lost(ctx, name, worker, console, options.verbosity)
        _adopt_unclaimed(ctx, name, worker, console, options.verbosity)
        for provider in plan.manifest.providers:
            settle_charges(ctx, provider)   # the last costs the provider's history holds
    except BatchPaused as paused:
        notify_batch(ctx.store, name, urls_for(plan.manifest.notify, ctx.settings), PAUSED, str(paused),
                     scope="run")
        raise
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: every submitted generation is recorded; "
                      "run the same command again to resume")
        raise
    finally:
        _write_index(ctx, name, console)
    code = summary(ctx.store, name, console)
    notify_run(ctx.store, name, plan.manifest.notify, ctx.settings)
    return code


def _fetch_lost(ctx: Runtime, name: str, worker: WorkerGroup | None, console: Console,
                verbosity: int) -> None:
    """Before a run says its items succeeded, their videos are on disk: what went missing while it
    ran (a deleted folder) is downloaded again from its generation, a few rounds at most."""
    for _ in range(FETCH_LOST_ROUNDS):
        lost = fetch_lost_files(ctx, name)
        if not lost:
            return
        console.print(f"{lost} videos went missing from the output folder during the run: "
                      "downloading them again from their generations")
        _watch(ctx, name, worker, console, verbosity)


def _adopt_unclaimed(ctx: Runtime, name: str, worker: WorkerGroup | None, console: Console,
                     verbosity: int) -> None:
    """The provider's generations of the batch's model made during the run that no item claims:
    a pending item they match adopts them (and the run waits for it); the rest the summary lists."""
    adopted, _ = find_unclaimed(ctx, name)
    if adopted:
        console.print(f"{adopted} pending items adopted a generation the provider made for them "
                      "whose answer was lost")
        _watch(ctx, name, worker, console, verbosity)


def _write_index(ctx: Runtime, name: str, console: Console) -> None:
    meta = ctx.store.batch(name)
    assert meta is not None, name   # registered by this run
    try:
        refresh_index(ctx.store, meta)
    except OSError as exc:
        console.print(f"[yellow]results.jsonl could not be written ({exc.strerror}); "
                      "`reelbatch export` writes it once there is room[/]")


def _start_worker(stack: ExitStack, services: Stack) -> WorkerGroup:
    settings = services.settings
    env = {**services.env, "REELBATCH_WORKER_PROVIDERS": ""}   # every provider it has a key for
    worker = WorkerGroup(env, settings.data_dir / "logs" / "worker.log", settings.worker_processes,
                         settings.worker_concurrency, tied=True)
    worker.start()
    stack.callback(worker.stop)
    return worker


def _until_served(ctx: Runtime, worker: WorkerGroup, providers: tuple[str, ...],
                  within_s: float = WORKER_READY_S) -> None:
    """A batch over several providers routes items only to providers a live worker has the key
    for: wait (a few seconds) for the worker just started to say which, rather than route to none
    and wait for the first sweep."""
    deadline = time.monotonic() + within_s
    while (worker.alive() and time.monotonic() < deadline
           and len(ctx.store.unserved(providers)) == len(providers)):
        time.sleep(TICK_S)


def _start_listener(stack: ExitStack, settings: Settings, providers: tuple[str, ...]) -> None:
    """Completions as events, where a provider has an event stream."""
    for listener in start_watchers(settings, list(providers)):
        stack.callback(listener.stop)


class Watch:
    """The loop `run` waits in: progress, a sweep every few seconds, a worker kept alive, the
    batch's pause noticed, a lost Redis waited for."""

    def __init__(self, ctx: Runtime, name: str, worker: WorkerGroup | None, console: Console):
        self.ctx, self.name, self.worker, self.console = ctx, name, worker, console
        self.last_sweep = 0.0
        self.lost_since: float | None = None
        self.started = time.monotonic()
        self.warned_no_worker = False

    def tick(self, progress: Display) -> bool:
        """One turn; True when the batch is done."""
        try:
            if _finished(self.ctx, self.name):
                return True
            progress.refresh()
            if time.monotonic() - self.last_sweep > SWEEP_EVERY_S:
                self._sweep()
            self.lost_since = None
        except BROKER_DOWN as exc:
            self.lost_since = _broker_lost(exc, self.lost_since, self.console)
        return False

    def _sweep(self) -> None:
        sweep_batch(self.ctx, self.name)
        self.last_sweep = time.monotonic()
        meta = self.ctx.store.batch(self.name)
        if meta is not None and meta.paused:
            raise BatchPaused(f"paused: {meta.paused}. Nothing submitted is lost; run the same "
                              "command again to resume")
        if self.worker is not None and not self.worker.alive():
            self.console.print("[yellow]the worker stopped; starting it again[/]")
            self.worker.start()
        self._warn_without_worker()

    def _warn_without_worker(self) -> None:
        """With a configured broker nobody here runs a worker: say so when none is consuming, or
        none has the key of the batch's provider."""
        if self.worker is not None or self.warned_no_worker:
            return
        if time.monotonic() - self.started <= self.ctx.settings.no_worker_grace_s:
            return
        if not self.ctx.store.workers():
            self.warned_no_worker = True
            self.console.print("[yellow]no worker is consuming the queue: start one with "
                               "`reelbatch worker` (same REELBATCH_BROKER_URL)[/]")
            return
        meta = self.ctx.store.batch(self.name)
        line = no_key_line(self.ctx.store.unserved(list(self.ctx.store.providers_of(meta))),
                           self.ctx.store.open_items(self.name)) if meta else None
        if line:
            self.warned_no_worker = True
            self.console.print(f"[yellow]{escape(line)}[/]")


def _watch(ctx: Runtime, name: str, worker: WorkerGroup | None, console: Console,
           verbosity: int = NORMAL) -> None:
    watch = Watch(ctx, name, worker, console)
    with make_progress(ctx.store, name, console, ctx.settings, verbosity) as progress:
        while not watch.tick(progress):
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


def _finished(ctx: Runtime, name: str) -> bool:
    """Every item terminal, or nothing left that can move (pending items parked by the budget)."""
    counts = ctx.store.counts(name)
    if sum(counts[s] for s in OPEN) == 0:
        return True
    if any(counts[s] for s in OPEN if s is not S.PENDING):
        return False
    return ctx.store.budget_waiting(name) >= counts[S.PENDING]   # counted, not read one by one


def summary(store: Store, name: str, console: Console) -> int:
    """The last lines of a run; its exit code. Ids, kinds and provider messages are text, never
    markup (a provider error may hold ``[/b]``)."""
    counts = store.counts(name)
    meta = store.batch(name)
    assert meta is not None, name   # registered by this run
    parts = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    took = ran(*store.pace(name))
    money = store.spend(name).label() + (SIMULATED if set(store.providers_of(meta)) <= SIMULATED_PROVIDERS else "")
    console.print(f"[bold]{escape(name)}[/]: {parts}; {escape(money)}{'; ' + took if took else ''}; "
                  f"results in {escape(str(Path(meta.output) / RESULTS))}", soft_wrap=True)
    failed = list(store.items(name, S.FAILED))
    for rec in failed:
        console.print(Text.assemble("  ", ("failed", "red"),
                                    f" {rec.item_id}: [{rec.error_kind}] {rec.error}"))
    for line in unclaimed_lines(store.orphans(name)):
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    if counts[S.PENDING]:
        console.print(f"  {counts[S.PENDING]} items wait for the budget: raise "
                      "limits.max_cost_usd and run again")
    if failed:    # the last line: the command that tries them again
        console.print(f"rerun the failed: {rerun_command(name, meta.manifest, (r.error_kind for r in failed))}",
                      markup=False, highlight=False, soft_wrap=True)
    return 0 if counts[S.SUCCEEDED] == sum(counts.values()) else 1

"""The fleet's long-running commands: `reelbatch worker`, `reelbatch scheduler`, `reelbatch flower`."""

from __future__ import annotations

import sys

import click

from reelbatch.scheduler.commands.app import App, examples, pass_app


@click.command(context_settings={"ignore_unknown_options": True},
               epilog=examples("REELBATCH_BROKER_URL=redis://:pw@redis:6379/0 reelbatch worker -c 16"))
@click.option("--concurrency", "-c", type=int, default=None, help="Threads in this worker.")
@click.option("--providers", default=None, envvar="REELBATCH_WORKER_PROVIDERS",
              help="Serve only these providers (comma separated); each needs its key. "
                   "Default: every provider this worker has a key for, and the simulator.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@pass_app
def worker(app: App, concurrency: int | None, providers: str | None, celery_args: tuple[str, ...]) -> None:
    """Start a Celery worker against REELBATCH_BROKER_URL (extra arguments go to Celery). It takes
    the items of the providers it has a key for; the others wait for a worker with their key."""
    from reelbatch.scheduler.stack.workers import run_worker

    sys.exit(run_worker(app.settings, concurrency, list(celery_args), providers))


@click.command(epilog=examples("REELBATCH_BROKER_URL=redis://:pw@redis:6379/0 reelbatch scheduler"))
@pass_app
def scheduler(app: App) -> None:
    """Run the fleet's scheduler: the periodic sweeper (Celery beat) and the Oxen event listener."""
    from reelbatch.scheduler.stack.service import run_scheduler

    sys.exit(run_scheduler(app.settings))


@click.command(epilog=examples("FLOWER_BASIC_AUTH=me:secret reelbatch flower --port 5555"))
@click.option("--address", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=5555, show_default=True)
@click.option("--no-auth", is_flag=True, help="Allow starting without FLOWER_BASIC_AUTH "
              "(user:password); then Flower listens on 127.0.0.1 only.")
@pass_app
def flower(app: App, address: str, port: int, no_auth: bool) -> None:
    """Start Flower on the configured broker, behind basic auth from FLOWER_BASIC_AUTH."""
    from reelbatch.scheduler.stack.flower import run_flower

    sys.exit(run_flower(app.settings, address, port, no_auth))

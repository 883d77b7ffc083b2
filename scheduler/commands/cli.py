"""The `reelbatch` command line: parse, call the Python API, print its answer. One module per
command (``commands/plan.py``, ``run.py``, ...); this one holds the group, the signals and the one
table that turns exceptions into exit codes.

Exit codes: 0 every item succeeded; 1 the batch finished with failed items; 2 bad input or usage
(nothing was submitted); 3 a broker or another service could not be reached, or the batch paused;
128 + the signal when stopped by one (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP). For `plan`, 1 means
the plan is valid but limits.max_cost_usd does not cover it (`run` would stop early).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from functools import cache
from typing import Any

import click

from reelbatch.jobs.errors import BadInput, ManifestErrors, ServiceUnavailable
from reelbatch.jobs.files import NotARegularFile
from reelbatch.scheduler.commands import export, fleet, operations, plan, report, run, status, submit
from reelbatch.scheduler.commands.app import EXIT_BAD_INPUT, EXIT_SERVICE, fail


def _service(exc: ServiceUnavailable) -> list[str]:
    return [str(exc) if exc.kind != "service" else f"cannot reach a service: {exc}"]   # paused, ...


ExitCodes = tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], int, Callable[[Any], list[str]]], ...]


@cache
def exit_codes() -> ExitCodes:
    """What is raised -> the exit code and the stderr lines (after "reelbatch: "); the first match wins.
    docs/api.md has the same table from the API's side. Built on first failure: the broker's, Redis's
    and pydantic's exceptions are imported only then, which keeps every command's start light."""
    from kombu.exceptions import OperationalError
    from pydantic import ValidationError
    from redis.exceptions import ConnectionError as RedisConnectionError

    from reelbatch.jobs.settings import settings_error

    return (
        (ManifestErrors, EXIT_BAD_INPUT, lambda exc: [f"error: {line}" for line in exc.lines()]),
        ((BadInput, NotARegularFile), EXIT_BAD_INPUT, lambda exc: [f"error: {exc}"]),
        (ValidationError, EXIT_BAD_INPUT, lambda exc: [f"error: {settings_error(exc)}"]),   # a setting
        (ServiceUnavailable, EXIT_SERVICE, _service),
        ((OperationalError, RedisConnectionError), EXIT_SERVICE, lambda exc: [f"cannot reach the broker: {exc}"]),
        (click.UsageError, EXIT_BAD_INPUT, lambda exc: [exc.format_message()]),    )


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stop like Ctrl-C (children stopped, state kept), exit 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, _frame: object) -> None:
    raise Stopped(signum)


def stop_on_signals() -> None:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop)


class _Group(click.Group):
    """Turns what a command raises into stderr lines and the documented exit code (``exit_codes()``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            sys.exit(128 + getattr(exc, "signum", signal.SIGINT))
        except Exception as exc:
            for raised, code, lines in exit_codes():
                if isinstance(exc, raised):
                    *before, last = lines(exc)
                    for line in before:
                        click.echo(f"reelbatch: {line}", err=True)
                    fail(last, code)
            raise


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="reelbatch")
def main() -> None:
    """Run large batches of hosted video generations and bring every result home."""
    stop_on_signals()


for _command in (plan.plan, run.run, submit.submit, status.status, export.export, report.report,
                 operations.retry, operations.cancel, fleet.worker, fleet.scheduler, fleet.flower):
    main.add_command(_command)


def _register_simulator() -> None:
    from reelbatch.simulator.cli import simulator_command

    main.add_command(simulator_command, name="simulator")


_register_simulator()


if __name__ == "__main__":
    main()

"""The `reelbatch` command line: parse, call, print. No logic of its own.

Exit codes: 0 every item succeeded; 1 the batch finished with failed items; 2 bad input or usage
(nothing was submitted); 3 a broker or another service could not be reached.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from jobs.errors import ManifestError, ServiceUnavailable

EXIT_OK, EXIT_FAILED_ITEMS, EXIT_BAD_INPUT, EXIT_SERVICE = 0, 1, 2, 3

manifest_arg = click.argument("manifest", type=click.Path(path_type=Path))


def _fail(message: str, code: int) -> None:
    click.echo(f"reelbatch: {message}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Turns the error tree into one stderr line and the documented exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ManifestError as exc:
            _fail(f"error: {exc}", EXIT_BAD_INPUT)
        except ServiceUnavailable as exc:
            _fail(f"cannot reach a service: {exc}", EXIT_SERVICE)
        except click.UsageError as exc:
            _fail(exc.format_message(), EXIT_BAD_INPUT)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="reelbatch")
def main() -> None:
    """Run large batches of hosted video generations and bring every result home."""


@main.command()
@manifest_arg
@click.option("--json", "as_json", is_flag=True, help="Print the expanded items as JSON lines.")
def plan(manifest: Path, as_json: bool) -> None:
    """Validate and expand MANIFEST; print items, video seconds and estimated cost. Submits nothing."""
    from scheduler.plan import show_plan

    sys.exit(show_plan(manifest, as_json=as_json))


def _register_simulator() -> None:
    from simulator.cli import simulator_command

    main.add_command(simulator_command, name="simulator")


_register_simulator()


if __name__ == "__main__":
    main()

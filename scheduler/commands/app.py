"""What every command shares (as pypa/hatch's CLI does): an ``App`` carrying the settings and the
console, read on first use; the options several commands declare; the exit codes."""

from __future__ import annotations

import sys
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

if TYPE_CHECKING:
    from rich.console import Console

    from reelbatch.jobs.settings import Settings

EXIT_OK, EXIT_FAILED_ITEMS, EXIT_BAD_INPUT, EXIT_SERVICE = 0, 1, 2, 3


class App:
    """The command's settings (the environment and ``.env``, read once) and its console."""

    @cached_property
    def settings(self) -> Settings:
        from reelbatch.jobs.settings import get_settings

        return get_settings()

    @cached_property
    def console(self) -> Console:
        from reelbatch.scheduler.views.console import output_console

        return output_console()


pass_app = click.make_pass_decorator(App, ensure=True)


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr, then the exit code."""
    click.echo(f"reelbatch: {message}", err=True)
    sys.exit(code)


def examples(*lines: str) -> str:
    """A command's --help ends with these (``\\b`` keeps click from rewrapping them)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


manifest_arg = click.argument("manifest", type=click.Path(path_type=Path))
adopt_option = click.option("--adopt", is_flag=True, help="Take over a batch of the same name that "
                            "another manifest file started.")

"""The console every command prints through: at a terminal, its width; in a log or a pipe, lines
as long as they are (rich's default of 80 columns would wrap them mid-sentence)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

LOG_WIDTH = 4096   # no wrapping short of this: a log line is one line


def output_console(**kw: Any) -> Console:
    console = Console(**kw)
    if not console.is_terminal and "width" not in kw:
        console = Console(width=LOG_WIDTH, **kw)
    return console

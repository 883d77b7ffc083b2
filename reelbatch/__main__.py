"""``python -m reelbatch``: the command line (child processes start this way, never by a bare
top-level module name that a folder in the working directory could shadow)."""

from reelbatch.scheduler.commands.cli import main

main()

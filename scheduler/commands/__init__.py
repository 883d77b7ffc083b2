"""The command line: one module per command (an ``App`` carrying settings and console, from
``app.py``), each calling the Python API and printing its answer; ``cli.py`` holds the group and the
table that maps exceptions to exit codes."""

__all__ = ["cli", "app", "plan", "run", "submit", "status", "export", "report", "operations", "fleet"]

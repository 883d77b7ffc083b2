"""The command line and what it runs: the stack (embedded Redis, simulator, workers), progress,
status, reports and exports. Its face is the CLI."""

__all__ = ["cli"]

"""The command line: parse, call the API, print its answer, map its exceptions to exit codes."""

__all__ = ["cli", "operations"]

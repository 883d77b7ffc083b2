"""reelbatch: run large batches of hosted video generations and bring every result home.

The Python API (the command line is a layer over it; see docs/api.md)::

    import reelbatch

    plan = reelbatch.plan("batch.yaml")         # or a dict; validates and prices, submits nothing
    batch = reelbatch.run(plan)                  # blocks until done; embedded Redis when no broker
    batch.status(), batch.results(), batch.retry(), batch.to_dataset()

The repository keeps its folders at the top (``jobs/``, ``worker/``, ``scheduler/``, ``simulator/``,
``configs/``); setuptools installs them under this one import name (``reelbatch.jobs``, ...), so
nothing in a user's working folder can stand in for them. The API's names are loaded on first use,
so ``import reelbatch`` (and every child process) stays light.
"""

from importlib import import_module
from typing import Any

__all__ = [
    "plan", "run", "submit", "batch", "batches",
    "Batch", "Plan", "PlannedItem", "BatchStatus", "Result", "RetryReport", "CancelReport",
    "RunReport", "SubmitReport", "ExportReport",
    "ReelbatchError", "BadInput", "ManifestError", "ServiceUnavailable",
    "__version__",
]

_HOMES = {
    "reelbatch.scheduler.api": ("plan", "run", "submit", "batch", "batches", "Batch"),
    "reelbatch.scheduler.records": ("Plan", "PlannedItem", "BatchStatus", "Result", "RetryReport",
                                    "CancelReport", "RunReport", "SubmitReport", "ExportReport"),
    "reelbatch.jobs.errors": ("ReelbatchError", "BadInput", "ManifestError", "ServiceUnavailable"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

def _version() -> str:
    """Read on first use: importlib.metadata costs every child process a tenth of its start."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reelbatch")
    except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = _version()
        return globals()[name]
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'reelbatch' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

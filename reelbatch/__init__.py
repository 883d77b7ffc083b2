"""reelbatch: run large batches of hosted video generations and bring every result home.

The repository keeps its folders at the top (``jobs/``, ``worker/``, ``scheduler/``, ``simulator/``,
``configs/``); setuptools installs them under this one import name (``reelbatch.jobs``, ...), so
nothing in a user's working folder can stand in for them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("reelbatch")
except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
    __version__ = "0+unknown"

"""The import layers, read from the source with ast (every import, function-local ones included):
the CLI/API (``reelbatch/``'s own modules) above ``scheduler`` above ``worker`` above ``jobs``, arrows
pointing down only; ``simulator`` beside them, importing only from ``jobs`` (and itself), used only by
the command line; ``configs`` is data that imports nothing of ours. Each package declares its public
face with ``__all__``, and the other packages import only what is in it."""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP = "reelbatch"
# Rank of each layer by package prefix (the longest prefix wins): a module imports only its own rank
# or lower. The CLI/API is reelbatch/'s own modules and the commands (scheduler/commands/), above the
# control plane (scheduler/: the API's functions, its stack and views).
COMMANDS = f"{TOP}.scheduler.commands"
RANKS = {TOP: 4, COMMANDS: 4, f"{TOP}.scheduler": 3, f"{TOP}.worker": 2, f"{TOP}.jobs": 1, f"{TOP}.configs": 0}
SIMULATOR = f"{TOP}.simulator"
SIMULATOR_MAY_IMPORT = (SIMULATOR, f"{TOP}.jobs", f"{TOP}.configs")
SIMULATOR_USED_BY = (TOP, COMMANDS)   # the command line serves it
NOT_IN_JOBS = ("celery", "kombu", "httpx", "httpx_sse")


@dataclass(frozen=True)
class Import:
    module: str      # the importing module
    target: str      # what it imports: a module, or module.name for `from module import name`
    where: str       # file:line, for the message

    def __str__(self) -> str:
        return f"{self.where}: {self.module} imports {self.target}"


@cache
def packages() -> dict[str, Path]:
    """Every package the wheel installs, with its folder (pyproject.toml's setuptools tables)."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    dirs = tool["package-dir"]
    found = {}
    for name in tool["packages"]:
        base = max((p for p in dirs if name == p or name.startswith(p + ".")), key=len, default=None)
        rest = name[len(base):].lstrip(".").split(".") if base else name.split(".")
        folder = ROOT / (dirs[base] if base else "") / "/".join(p for p in rest if p)
        found[name] = folder
    return found


@cache
def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name: its __init__)."""
    found = {}
    for package, folder in packages().items():
        for path in sorted(folder.glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


@cache
def imports() -> tuple[Import, ...]:
    found = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                found += [Import(module, alias.name, where) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{where}: a relative import (the package's imports are absolute)"
                found += [Import(module, f"{node.module}.{alias.name}", where) for alias in node.names]
    return tuple(found)


def ours(target: str) -> bool:
    return target == TOP or target.startswith(TOP + ".")


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def beside(i: Import) -> bool:
    """An import from or of the simulator: it has no rank (its own tests below)."""
    return under(i.module, SIMULATOR) or under(i.target, SIMULATOR)


def rank(name: str) -> int:
    return RANKS[max((p for p in RANKS if under(name, p)), key=len)]


def package_of(module: str) -> str:
    """The package a module (or a module's name) belongs to: the deepest one that holds it."""
    return max((p for p in packages() if under(module, p) and (p != module or p in modules())), key=len)


def test_the_source_is_found():
    assert len(modules()) > 80 and len(imports()) > 500
    assert {f"{TOP}.jobs.store", f"{TOP}.worker.engine.poll", f"{TOP}.simulator.server",
            f"{TOP}.__main__"} <= set(modules())


def test_arrows_point_down_only():
    upward = [str(i) for i in imports() if ours(i.target) and not beside(i) and rank(i.target) > rank(i.module)]
    assert upward == []


def test_nothing_under_worker_or_jobs_imports_scheduler():
    found = [str(i) for i in imports() if (under(i.module, f"{TOP}.worker") or under(i.module, f"{TOP}.jobs"))
             and under(i.target, f"{TOP}.scheduler")]
    assert found == []


def test_jobs_imports_neither_celery_nor_httpx():
    found = [str(i) for i in imports() if under(i.module, f"{TOP}.jobs")
             and any(under(i.target, name) for name in NOT_IN_JOBS)]
    assert found == []


def test_the_simulator_imports_only_from_jobs_and_itself():
    found = [str(i) for i in imports() if under(i.module, SIMULATOR) and ours(i.target)
             and not any(under(i.target, p) for p in SIMULATOR_MAY_IMPORT)]
    assert found == []


def test_only_the_command_line_imports_the_simulator():
    found = [str(i) for i in imports() if under(i.target, SIMULATOR) and not under(i.module, SIMULATOR)
             and package_of(i.module) not in SIMULATOR_USED_BY]
    assert found == []


def face(package: str) -> list[str]:
    """The names in a package's ``__all__`` (a literal list in its __init__.py)."""
    tree = ast.parse(modules()[package].read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None and any(
                isinstance(t, ast.Name) and t.id == "__all__"
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list), f"{package}: __all__ is a literal list"
            return value
    raise AssertionError(f"{package}/__init__.py declares no __all__")


SUBPACKAGES = sorted(p for p in packages() if p != TOP)


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_each_package_declares_its_face(package):
    """``__all__`` names what exists: a module or subpackage, or a name the __init__ defines."""
    tree = ast.parse(modules()[package].read_text(encoding="utf-8"))
    defined = {alias.asname or alias.name for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom | ast.Import) for alias in node.names}
    defined |= {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    defined |= {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                if isinstance(t, ast.Name)}
    missing = [name for name in face(package)
               if name not in defined and f"{package}.{name}" not in modules()]
    assert missing == [], f"{package}.__all__ names what is not there"


def test_other_packages_import_only_a_package_s_face():
    """An import from outside a package names one of its ``__all__`` (a new module another package
    needs goes into that list: the face is declared, not grown by accident)."""
    leaks = []
    for i in imports():
        if not ours(i.target):
            continue
        for package in SUBPACKAGES:
            inside = under(i.module, package)
            if inside or not i.target.startswith(package + "."):
                continue
            name = i.target[len(package) + 1:].split(".")[0]
            if name not in face(package):
                leaks.append(f"{i} (not in {package}.__all__)")
    assert leaks == []

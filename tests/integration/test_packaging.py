"""One import name: the wheel's only top-level package is `reelbatch`, and a batch runs from a
folder that holds decoy `worker/`, `scheduler/`, `jobs/`, `simulator/`, `configs/` (and even
`reelbatch/`) packages without importing any of them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.helpers import cli_env, results, write_manifest

pytestmark = pytest.mark.integration
DECOYS = ("worker", "scheduler", "jobs", "simulator", "configs", "reelbatch")


def test_the_wheel_has_one_top_level_name(tmp_path):
    source = tmp_path / "src"        # a clean copy: no build/ left from an earlier build can hide a gap
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "out", "wheelhouse", "*.egg-info", "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path), str(source)], check=True, timeout=300)
    wheel = next(tmp_path.glob("reelbatch-*.whl"))
    tops = {name.split("/", 1)[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"reelbatch", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    names = set(zipfile.ZipFile(wheel).namelist())
    # the tree as built: the demo's outputs (jobs/examples/out/, from the README's first command) are
    # not part of it
    sources = {f"reelbatch/{path.relative_to(source).as_posix()}"
               for folder in ("jobs", "worker", "scheduler", "simulator", "configs")
               for path in (source / folder).rglob("*") if path.is_file()
               and path.suffix in (".py", ".yaml", ".json", ".j2", ".conf", ".csv") and "__pycache__" not in path.parts}
    assert sources - names == set()         # every module and data file of the tree is in the wheel
    assert {"reelbatch/worker/engine/submit.py", "reelbatch/configs/schemas/oxen/kling-video-o1-image-to-video.json",
            "reelbatch/jobs/examples/demo.yaml", "reelbatch/scheduler/views/templates/report.html.j2"} <= names


def _decoys(folder: Path) -> Path:
    """Packages that leave a mark (and fail) when anything imports them."""
    marks = folder / "marks"
    marks.mkdir()
    for name in DECOYS:
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(
            f"import pathlib\npathlib.Path({str(marks)!r}, {name!r}).touch()\n"
            f"raise ImportError('decoy {name} imported')\n")
        (folder / name / "app.py").write_text("raise ImportError('decoy')\n")
    return marks


def test_a_batch_runs_from_a_folder_of_decoy_packages(tmp_path, sim_factory):
    sim = sim_factory(time_scale=1 / 600, queue_delay=0.0, seed=3)
    work = tmp_path / "work"
    work.mkdir()
    marks = _decoys(work)
    manifest = write_manifest(work, "decoyed", 3)
    console_script = Path(sys.executable).with_name("reelbatch")
    done = subprocess.run([str(console_script), "run", str(manifest)], cwd=work, timeout=300,
                          env=cli_env(tmp_path / "data", sim), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert [r["status"] for r in results(work / "out")] == ["succeeded"] * 3
    assert list(marks.iterdir()) == []

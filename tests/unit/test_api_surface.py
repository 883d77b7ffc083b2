"""The Python API's surface: the names `reelbatch` exports (pinned, so a change is deliberate), bad
input as `reelbatch.BadInput` with file, line and field and the command line's one-line text, and
`to_dataset` without `datasets`. No Redis: planning submits nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import reelbatch
from reelbatch.jobs.errors import ManifestError
from tests.conftest import REPO

PINNED = [
    "plan", "run", "submit", "batch", "batches",
    "Batch", "Plan", "PlannedItem", "BatchStatus", "Result", "RetryReport", "CancelReport",
    "RunReport", "SubmitReport", "ExportReport",
    "ReelbatchError", "BadInput", "ManifestError", "ServiceUnavailable",
    "__version__",
]
IMAGE = "https://example.org/ox.png"


def manifest(**overrides) -> dict:
    doc = {"version": 1, "name": "api", "provider": "simulator", "model": "kling-o1/image-to-video",
           "output": "out", "defaults": {"duration": 5, "start_image": IMAGE},
           "items": [{"id": "a", "prompt": "An ox"}, {"id": "b", "prompt": "A sea"}]}
    doc.update(overrides)
    return doc


def test_the_exported_names_are_pinned():
    assert reelbatch.__all__ == PINNED
    for name in PINNED:
        assert getattr(reelbatch, name) is not None, name


def test_every_public_callable_says_what_it_does():
    for name in PINNED[:-1]:
        assert (getattr(reelbatch, name).__doc__ or "").strip(), name
    for method in ("status", "results", "wait", "retry", "cancel", "export", "export_report", "write_report",
                   "to_dataset"):
        assert getattr(reelbatch.Batch, method).__doc__, method


def test_bad_input_is_the_parent_of_manifest_error():
    assert issubclass(ManifestError, reelbatch.BadInput)
    assert reelbatch.ManifestError is ManifestError


def test_a_plan_from_a_dict_takes_relative_paths_from_base_dir(tmp_path):
    plan = reelbatch.plan(manifest(), base_dir=tmp_path)
    assert [i.id for i in plan.items] == ["a", "b"]
    assert plan.items[0].params == {"prompt": "An ox", "start_image": IMAGE, "duration": 5}
    assert plan.video_seconds == 10 and plan.output == tmp_path / "out"
    assert plan.estimated_cost_usd == pytest.approx(sum(i.estimated_cost_usd for i in plan.items), abs=0.01)
    assert plan.estimated_cost_usd > 0


def test_a_plan_from_a_file_is_the_same_plan(tmp_path):
    path = tmp_path / "api.yaml"
    path.write_text(yaml.safe_dump(manifest()))
    from_file, from_dict = reelbatch.plan(path), reelbatch.plan(manifest(), base_dir=tmp_path)
    assert from_file.items == from_dict.items and from_file.output == from_dict.output


def bad(tmp_path: Path, text: str) -> reelbatch.BadInput:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(reelbatch.BadInput) as caught:
        reelbatch.plan(path)
    return caught.value


GOOD_TOP = ("version: 1\nname: bad\nprovider: simulator\nmodel: kling-o1/image-to-video\n"
            "output: out\n")


def test_a_duration_the_model_does_not_offer_names_file_line_and_field(tmp_path):
    exc = bad(tmp_path, GOOD_TOP + "items:\n  - id: a\n    prompt: An ox\n    start_image: https://example.org/ox.png\n"
                                   "    duration: 7\n")
    assert (exc.file, exc.line, exc.field) == (str(tmp_path / "bad.yaml"), 10, "items[0].duration")
    assert str(exc).startswith(f"{tmp_path / 'bad.yaml'}:10: items[0].duration: ")


def test_an_unknown_key_names_file_line_and_field(tmp_path):
    exc = bad(tmp_path, GOOD_TOP + "items:\n  - id: a\n    promt: An ox\n")
    assert (exc.file, exc.line, exc.field) == (str(tmp_path / "bad.yaml"), 8, "items[0].promt")


def test_a_dict_manifest_names_the_dict_and_the_field(tmp_path):
    with pytest.raises(reelbatch.BadInput) as caught:
        reelbatch.plan(manifest(model="kling-o9/dream"), base_dir=tmp_path)
    exc = caught.value
    assert (exc.file, exc.line, exc.field) == ("<dict>", None, "model")
    assert str(exc).startswith("<dict>: model: ")


@pytest.mark.cli
def test_the_command_line_prints_the_same_line_as_the_exception(tmp_path):
    exc = bad(tmp_path, GOOD_TOP + "items:\n  - id: a\n    promt: An ox\n")
    done = subprocess.run([sys.executable, "-m", "reelbatch", "plan", str(tmp_path / "bad.yaml")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr == f"reelbatch: error: {exc}\n"


def test_to_dataset_without_datasets_is_one_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)   # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'reelbatch\[datasets\]'"):
        reelbatch.Batch("any").to_dataset()


def test_export_refuses_an_unknown_format():
    with pytest.raises(reelbatch.BadInput, match="expected one of jsonl, csv, dataset"):
        reelbatch.Batch("any").export(format="parquet")


@pytest.mark.parametrize(("widgets", "display"), [(True, "BatchProgress"), (False, "PlainProgress")])
def test_a_notebook_gets_a_bar_redrawn_in_place_or_plain_lines(monkeypatch, widgets, display, redis_url):
    """rich draws its live bar into one ipywidgets output in a notebook; without ipywidgets it would
    draw nothing, so the plain lines come instead (never one line per refresh)."""
    import types

    from rich.console import Console

    from reelbatch.jobs.settings import get_settings
    from reelbatch.jobs.store import Store
    from reelbatch.scheduler.views.progress import make_progress

    monkeypatch.setitem(sys.modules, "ipywidgets", types.ModuleType("ipywidgets") if widgets else None)
    shown = make_progress(Store.from_url(redis_url), "b", Console(force_jupyter=True), get_settings())
    assert type(shown).__name__ == display


@pytest.mark.cli
def test_a_bad_setting_names_its_variable_as_the_field_with_the_command_line_s_text(tmp_path, monkeypatch):
    monkeypatch.setenv("REELBATCH_PROGRESS_EVERY_S", "often")
    with pytest.raises(reelbatch.BadInput) as caught:
        reelbatch.plan(manifest(), base_dir=tmp_path)
    exc = caught.value
    assert exc.field == "REELBATCH_PROGRESS_EVERY_S" and exc.file == "" and exc.line is None
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(manifest()))
    env = {**os.environ, "REELBATCH_PROGRESS_EVERY_S": "often"}
    done = subprocess.run([sys.executable, "-m", "reelbatch", "plan", str(path)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120, env=env)
    assert done.returncode == 2 and done.stderr == f"reelbatch: error: {exc}\n"


def test_every_failure_the_api_raises_has_its_exit_code_in_one_table():
    from reelbatch.scheduler.commands.cli import exit_codes

    def code(exc: BaseException) -> int:
        return next(c for raised, c, _ in exit_codes() if isinstance(exc, raised))

    assert code(reelbatch.BadInput("x")) == code(reelbatch.ManifestError("x")) == 2
    assert code(reelbatch.ServiceUnavailable("x")) == 3


def test_a_script_s_progress_goes_to_its_log_as_unwrapped_lines_and_a_notebook_s_to_its_cell(monkeypatch):
    """Under pytest stdout is not a terminal, as in a script writing to a log: the command line's
    console (lines as long as they are). In Jupyter, rich's own console, which it draws in the cell."""
    from rich.console import Console

    from reelbatch.scheduler.api import progress_console
    from reelbatch.scheduler.views.console import LOG_WIDTH

    assert progress_console(True).width == LOG_WIDTH and not progress_console(True).quiet
    assert progress_console(False).quiet
    mine = Console()
    assert progress_console(mine) is mine
    monkeypatch.setattr("rich.console._is_jupyter", lambda: True)
    assert progress_console(True).is_jupyter and progress_console(True).width != LOG_WIDTH

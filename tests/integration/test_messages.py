"""Messages that tell the next step (issue 24.6): status after a retry on one machine, the run
summary's times and rerun command, notification types and titles, `status MANIFEST`, a closed pipe
under `export --out -`, examples at the end of every `--help`. A real redis-server; batches built
through the Store API."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from rich.console import Console

from reelbatch.jobs.settings import Settings
from reelbatch.jobs.store import Store
from reelbatch.scheduler.commands.cli import main
from reelbatch.scheduler.run import summary as run_summary
from reelbatch.scheduler.views.notify import ENDED, notify_batch
from reelbatch.scheduler.views.status import render, summary
from reelbatch.worker.runtime import Runtime
from tests.batchfill import fail, make_item, new_batch, succeed
from tests.integration.helpers import cli_env, reelbatch
from tests.integration.test_notify import Receiver

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_url) -> Store:
    return Store.from_url(redis_url)


def batch_of(store: Store, tmp_path, name: str = "night", ok=("a",), failed=("b",), pending=("c", "d"),
             kind: str = "generation_failed") -> None:
    new_batch(store, name, tmp_path / "out", [make_item(i, f"prompt {i}") for i in (*ok, *failed, *pending)])
    store.update_batch(name, manifest=str(tmp_path / "night.yaml"), created_at=1_700_000_000.0)
    for item_id in ok:
        succeed(store, name, item_id, tmp_path / "out")
    for item_id in failed:
        fail(store, name, item_id, kind=kind, error="the provider failed it")


def text_of(renderable) -> str:
    console = Console(file=io.StringIO(), width=200)
    console.print(renderable)
    return console.file.getvalue()


def test_status_after_retry_on_one_machine_says_run_the_manifest_and_no_eta(store, tmp_path):
    batch_of(store, tmp_path)                                 # pending items, no worker: nothing can move
    info = summary(store, "night")
    shown = text_of(render(info))
    assert f"2 items wait: run `reelbatch run {tmp_path / 'night.yaml'}`" in shown
    assert "reelbatch worker" not in shown and "left" not in shown and info["eta_s"] is None
    assert info["created_at"].startswith("2023-11-14") and info["started_at"] and info["finished_at"] is None
    assert "(or start a worker with `reelbatch worker`)" in text_of(render(info, fleet=True))


def test_the_run_summary_gives_its_times_and_ends_with_the_rerun_command(store, tmp_path, redis_url):
    batch_of(store, tmp_path, pending=())
    store.update_batch("night", first_submitted_at=1_700_000_000.0, last_completed_at=1_700_000_095.0)
    console = Console(file=io.StringIO(), width=80)
    code = run_summary(Runtime(Settings(REELBATCH_BROKER_URL=redis_url)).store, "night", console)
    lines = console.file.getvalue().splitlines()
    assert code == 1 and "ran 1:35, " in lines[0] and "estimated by the simulator (not real money)" in lines[0]
    assert lines[-1] == f"rerun the failed: reelbatch retry night && reelbatch run {tmp_path / 'night.yaml'}"
    info = json.loads(reelbatch("status", "night", "--json", env=cli_env(tmp_path / "data",
                                                                          REELBATCH_BROKER_URL=redis_url)).stdout)
    assert info["started_at"] and info["finished_at"] and info["created_at"]


def test_only_permanent_failures_rerun_with_include_permanent(store, tmp_path, redis_url):
    batch_of(store, tmp_path, pending=(), kind="content_policy")
    console = Console(file=io.StringIO(), width=80)
    run_summary(Runtime(Settings(REELBATCH_BROKER_URL=redis_url)).store, "night", console)
    assert console.file.getvalue().splitlines()[-1].startswith(
        "rerun the failed: reelbatch retry night --include-permanent && reelbatch run ")


@pytest.mark.parametrize("ok, failed, cancel, title, kind", [
    (("a",), (), False, "finished", "success"),
    (("a",), ("b",), False, "finished", "warning"),
    ((), ("b",), False, "finished", "failure"),
    (("a",), (), True, "cancelled", "warning"),
])
def test_notification_type_and_title(store, tmp_path, ok, failed, cancel, title, kind):
    receiver = Receiver()
    try:
        batch_of(store, tmp_path, ok=ok, failed=failed, pending=())
        if cancel:
            store.update_batch("night", cancelled=True)
        assert notify_batch(store, "night", [receiver.url("/hook")], ENDED)
        [got] = receiver.at("/hook")
    finally:
        receiver.stop()
    assert (got["title"], got["type"]) == (f"reelbatch: night {title}", kind)
    assert "created 2023-11-14" in got["message"]


def test_status_finds_the_batch_by_its_manifest(store, tmp_path, redis_url):
    batch_of(store, tmp_path)
    manifest = tmp_path / "night.yaml"
    manifest.write_text("version: 1\nname: night\nprovider: simulator\nmodel: kling-o1/image-to-video\n"
                        "items:\n  - {id: a, prompt: hi, start_image: https://e.org/a.png}\n")
    done = reelbatch("status", str(manifest), "--json", env=cli_env(tmp_path / "data", REELBATCH_BROKER_URL=redis_url))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["batch"] == "night"


def test_export_to_a_closed_pipe_exits_0_quietly(store, tmp_path, redis_url):
    batch_of(store, tmp_path)
    env = cli_env(tmp_path / "data", REELBATCH_BROKER_URL=redis_url)
    done = subprocess.run(f"{sys.executable} -m reelbatch export night --out - | head -1; "
                          "echo \"exit ${PIPESTATUS[0]}\"",
                          shell=True, executable="/bin/bash", env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.stdout.splitlines()[-1] == "exit 0", done.stderr
    assert json.loads(done.stdout.splitlines()[0])["item_id"] == "a"
    assert "Traceback" not in done.stderr and "Broken pipe" not in done.stderr


def test_every_help_ends_with_examples():
    runner = CliRunner()
    for name in main.list_commands(None):
        shown = runner.invoke(main, [name, "--help"]).output.rstrip().splitlines()
        examples = [line for line in shown[-3:] if "reelbatch " in line and "--help" not in line]
        assert examples, f"{name} --help ends without an example: {shown[-3:]}"


def test_a_provider_host_that_does_not_resolve_is_one_line_and_exit_3(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text("version: 1\nname: typo\nprovider: oxen\nmodel: kling-o1/image-to-video\n"
                        f"output: {tmp_path / 'out'}\n"
                        "items:\n  - {id: a, prompt: hi, start_image: https://e.org/a.png}\n")
    env = cli_env(tmp_path / "data", OXEN_BASE_URL="https://hub.oxen-typo.invalid", OXEN_API_KEY="k-123")
    done = reelbatch("run", str(manifest), env=env, timeout=60)
    assert done.returncode == 3, done.stderr
    [line] = done.stderr.splitlines()
    assert "'hub.oxen-typo.invalid' of OXEN_BASE_URL" in line and "does not resolve" in line
    assert not (tmp_path / "data" / "redis.port").exists()                 # nothing was started


def test_a_batch_held_by_the_request_rate_says_so_in_its_progress_line(store, tmp_path, redis_url):
    from reelbatch.scheduler.views.progress import PlainProgress

    batch_of(store, tmp_path)
    store.update_batch("night", requests_per_minute=2)
    rate = store.request_rate(redis_url, "simulator")
    assert rate.take(2) == 0 and rate.take(2) == 0                # the window is full
    console = Console(file=io.StringIO(), width=80)
    PlainProgress(store, "night", console, 60, broker_url=redis_url).refresh()
    line = console.file.getvalue().strip()
    assert "waiting: rate limit 2/min until " in line and "\n" not in line


def test_a_batch_over_several_providers_waits_on_the_rate_only_when_every_window_is_full(store, tmp_path, redis_url):
    from reelbatch.jobs.fanout import Fanout
    from reelbatch.scheduler.views.progress import PlainProgress

    batch_of(store, tmp_path)
    store.fanouts.save("night", Fanout(providers=("simulator", "aimlapi"),
                                       limits={"simulator": (5, 2), "aimlapi": (5, 3)}))
    full = store.request_rate(redis_url, "simulator")
    assert full.take(2) == 0 and full.take(2) == 0                # the simulator's window is full

    def line() -> str:
        console = Console(file=io.StringIO(), width=200)
        PlainProgress(store, "night", console, 60, broker_url=redis_url).refresh()
        return console.file.getvalue().strip()

    assert "rate limit" not in line()                              # the AI/ML API still has room
    other = store.request_rate(redis_url, "aimlapi")
    assert all(other.take(3) == 0 for _ in range(3))
    assert "waiting: rate limit simulator 2/min until " in line() and "aimlapi 3/min until " in line()

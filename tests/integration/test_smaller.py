"""Issue 22.7, the smaller cases that need a store: provider text in the run summary is never
markup; `submit --at` holds back tasks an earlier submit sent; a run whose output folder was deleted
downloads the videos again before it says they succeeded."""

from __future__ import annotations

import io
import shutil

import pytest
from rich.console import Console

from reelbatch.jobs.item import Item, Params
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import BatchMeta, Store
from reelbatch.scheduler.run import summary
from tests.integration.helpers import (
    cli_env,
    reelbatch,
    results,
    spawn,
    status_counts,
    wait_for,
    write_manifest,
)

pytestmark = pytest.mark.integration
FAST = dict(time_scale=1 / 600, queue_delay=0.0, seed=7)


def _failed_item(store: Store, tmp_path, error: str) -> None:
    store.save_batch(BatchMeta(name="b", provider="simulator", model="m", output=str(tmp_path)))
    store.add_items("b", [Item(item_id="clip[1]", source_id="clip", content_key="k", provider="simulator",
                               model="kling-o1/image-to-video", provider_model="x",
                               params=Params(prompt="p"), video_seconds=5, estimated_cost_usd=0.5)])
    store.transition("b", "clip[1]", S.SUBMITTING)
    store.transition("b", "clip[1]", S.FAILED, error_kind="remote_failure", error=error)


def test_the_run_summary_shows_provider_text_as_it_is(tmp_path, redis_url):
    store = Store.from_url(redis_url)
    _failed_item(store, tmp_path, "upstream said [/b] and [bold]no[/bold]")
    out = io.StringIO()
    assert summary(store, "b", Console(file=out, width=200)) == 1
    assert "failed clip[1]: [remote_failure] upstream said [/b] and [bold]no[/bold]" in out.getvalue()


def test_submit_at_again_holds_back_what_an_earlier_submit_sent(tmp_path, sim_factory, redis_url, workers,
                                                                 redis_client):
    sim = sim_factory(**FAST)
    env = cli_env(tmp_path / "data", sim, REELBATCH_BROKER_URL=redis_url)
    manifest = write_manifest(tmp_path, "morning", 3)
    first = reelbatch("submit", str(manifest), env=env)
    assert first.returncode == 0 and "3 tasks sent" in first.stdout, first.stdout + first.stderr
    later = reelbatch("submit", str(manifest), "--at", "2999-01-01T07:00", env=env)
    assert later.returncode == 0 and "starting at" in later.stdout, later.stdout + later.stderr
    workers(sim, concurrency=2)
    wait_for(lambda: redis_client.llen("reelbatch.simulator") == 0 and not redis_client.zcard("rb:slots:simulator"),
             60, "the sent submit tasks to be handled")
    store = Store.from_url(redis_url)
    assert store.counts("morning")[S.PENDING] == 3
    assert sum(sim.stats()["enqueues"].values()) == 0


def test_an_output_folder_deleted_during_a_run_is_filled_again(tmp_path, sim_factory):
    """The folder is deleted once the first video is in it, while the others are still made: the
    run ends with every succeeded video on disk, downloaded again, never generated again."""
    sim = sim_factory(time_scale=1 / 300, queue_delay=0.0, seed=7)
    env = cli_env(tmp_path / "data", sim)
    manifest = write_manifest(tmp_path, "vanish", 4, limits={"max_concurrency": 1,
                                                             "requests_per_minute": 6000})
    out = tmp_path / "out"
    run = spawn("run", str(manifest), env=env)
    try:
        wait_for(lambda: list(out.glob("clip*.mp4")), 60, "the first video")
        shutil.rmtree(out)
        stdout, stderr = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 0, stdout + stderr
    assert "went missing from the output folder during the run" in " ".join(stdout.split()), stdout
    rows = results(out)
    assert status_counts(rows) == {"succeeded": 4}
    assert all((out / r["file"]).is_file() for r in rows)
    assert sum(sim.stats()["enqueues"].values()) == 4

"""Issue 22.3-22.5 end to end: a batch's money does not depend on where it runs from, and an output
folder belongs to one batch. The real CLI, the embedded Redis, a real worker and the simulator."""

from __future__ import annotations

import shutil

import pytest

from tests.integration.helpers import cli_env, reelbatch, results, status_counts, write_manifest
from tests.media import png

pytestmark = pytest.mark.integration
FAST = dict(time_scale=1 / 600, queue_delay=0.0, seed=5)


def enqueues(sim) -> int:
    return sum(sim.stats()["enqueues"].values())


def local_image_project(folder, n: int = 2):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ox.png").write_bytes(png())
    return write_manifest(folder, "moved", n, defaults={"duration": 5, "start_image": "ox.png"})


def test_a_moved_project_pays_nothing_again(tmp_path, sim_factory):
    """22.3: the same manifest and image in another folder is the same work: 0 new submits."""
    sim = sim_factory(**FAST)
    env = cli_env(tmp_path / "data", sim)
    manifest = local_image_project(tmp_path / "a")
    first = reelbatch("run", str(manifest), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert enqueues(sim) == 2
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    again = reelbatch("run", str(tmp_path / "b" / manifest.name), env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 new, 2 known" in again.stdout, again.stdout
    assert enqueues(sim) == 2
    assert status_counts(results(tmp_path / "b" / "out")) == {"succeeded": 2}


# --- batches saved when a local input was keyed by its path ------------------------------------

def _legacy(plan):
    """The plan as the store saw it before: each local input keyed by its absolute path."""
    from reelbatch.jobs.content import legacy_key

    items = [i.model_copy(update={"content_key": legacy_key(i)}) for i in plan.items]
    return type(plan)(plan.manifest, items, plan.total_video_seconds, plan.estimated_cost_usd)


@pytest.fixture
def store(redis_url):
    from reelbatch.jobs.store import Store

    return Store.from_url(redis_url)


def test_old_path_keys_are_kept_when_the_files_only_moved(tmp_path, store):
    from reelbatch.jobs.settings import Settings
    from reelbatch.scheduler.plan import plan_batch
    from reelbatch.worker.engine.batch import register

    old = plan_batch(local_image_project(tmp_path / "a"), Settings())
    register(store, _legacy(old))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    moved = plan_batch(tmp_path / "b" / "moved.yaml", Settings())
    assert [i.content_key for i in moved.items] == [i.content_key for i in old.items]
    reg = register(store, moved)
    assert (reg.kept, reg.changed, reg.new) == (2, 0, 0)
    assert {r.item.content_key for r in store.items("moved")} == {i.content_key for i in moved.items}


def test_old_path_keys_of_a_changed_image_are_a_new_version(tmp_path, store):
    from reelbatch.jobs.settings import Settings
    from reelbatch.scheduler.plan import plan_batch
    from reelbatch.worker.engine.batch import register

    register(store, _legacy(plan_batch(local_image_project(tmp_path / "a"), Settings())))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b" / "ox.png").write_bytes(png(shade=200))
    reg = register(store, plan_batch(tmp_path / "b" / "moved.yaml", Settings()))
    assert (reg.kept, reg.changed) == (0, 2)


# --- 22.4: another store, the same output folder ------------------------------------------------

def test_another_store_adopts_what_was_made_in_the_folder(tmp_path, sim_factory):
    """A second data dir runs the same manifest into the same folder: the videos listed in
    results.jsonl with their sha256 are adopted; only the one whose file changed is made again."""
    sim = sim_factory(**FAST)
    manifest = write_manifest(tmp_path, "shared", 3)
    first = reelbatch("run", str(manifest), env=cli_env(tmp_path / "data-a", sim))
    assert first.returncode == 0, first.stdout + first.stderr
    out = tmp_path / "out"
    made = {r["item_id"]: r for r in results(out)}
    (out / made["clip002"]["file"]).write_bytes(b"not the video")
    second = reelbatch("run", str(manifest), env=cli_env(tmp_path / "data-b", sim))
    assert second.returncode == 0, second.stdout + second.stderr
    said = " ".join(second.stdout.split())   # the registration line wraps at 80 columns
    assert "1 new, 0 known, 2 made in the output folder by another store: adopted" in said, said
    assert enqueues(sim) == 4
    rows = {r["item_id"]: r for r in results(out)}
    assert status_counts(rows.values()) == {"succeeded": 3}
    for item_id in ("clip000", "clip001"):
        assert rows[item_id]["generation_id"] == made[item_id]["generation_id"]
        assert rows[item_id]["sha256"] == made[item_id]["sha256"]


# --- 22.5: an output folder belongs to one batch ------------------------------------------------

def test_another_batch_is_refused_in_a_folder_that_belongs_to_one(tmp_path, sim_factory):
    sim = sim_factory(**FAST)
    env = cli_env(tmp_path / "data", sim)
    part1 = write_manifest(tmp_path, "part1", 2)
    assert reelbatch("run", str(part1), env=env).returncode == 0
    part2 = write_manifest(tmp_path, "part2", 2,
                           items=[{"id": f"clip{i:03d}", "prompt": f"A cat, take {i}"} for i in (0, 5)])
    for command in ("plan", "run", "submit"):
        done = reelbatch(command, str(part2), env=env)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "belongs to batch 'part1'" in done.stderr and len(done.stderr.splitlines()) == 1
    assert enqueues(sim) == 2
    rows = results(tmp_path / "out")
    assert {r["item_id"] for r in rows} == {"clip000", "clip001"}
    assert all("An ox walks" in r["params"]["prompt"] for r in rows)

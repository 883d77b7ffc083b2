"""Issue 24.1: a matrix value's id comes from what it is, not where it stands, so reordering,
inserting or removing values pays only for new content; batches saved with positional ids keep
their videos (adopted by content). The real CLI, the embedded Redis, a worker and the simulator."""

from __future__ import annotations

import pytest

from tests.integration.helpers import cli_env, reelbatch, results, status_counts, write_manifest

pytestmark = pytest.mark.integration
FAST = dict(time_scale=1 / 600, queue_delay=0.0, seed=3)
PROMPTS = ["the ox turns its head", "the ox walks into the snow", "the ox lies down"]
IMAGES = [f"https://example.org/{name}.png" for name in ("ox", "yak", "bison")]


def enqueues(sim) -> int:
    return sum(sim.stats()["enqueues"].values())


def variants_manifest(folder, prompts, images):
    return write_manifest(folder, "variants", 1, items=[{"id": "herd"}],
                          defaults={"duration": 5}, matrix={"start_image": images, "prompt": prompts})


def test_reordering_inserting_and_removing_values_pays_only_for_new_content(tmp_path, sim_factory):
    sim = sim_factory(**FAST)
    env = cli_env(tmp_path / "data", sim)
    counts = []
    for prompts, images in (
            (PROMPTS[:2], IMAGES[:2]),                      # 2 x 2 = 4 generations
            (PROMPTS[1::-1], IMAGES[1::-1]),                # both swapped: nothing new
            (PROMPTS[:1] + PROMPTS[2:3] + PROMPTS[1:2], IMAGES[:2]),   # a prompt inserted: 2 new
            (PROMPTS[:2], IMAGES[:1] + IMAGES[2:3] + IMAGES[1:2]),     # an image inserted: 2 new
            (PROMPTS[1:2], IMAGES[1:3])):                   # values removed: nothing new
        done = reelbatch("run", str(variants_manifest(tmp_path, prompts, images)), env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        counts.append(enqueues(sim))
    assert counts == [4, 4, 6, 8, 8]
    rows = results(tmp_path / "out")
    assert status_counts(rows) == {"succeeded": 2}
    assert {r["item_id"].split(".")[1] for r in rows} == {"yak", "bison"}   # a URL's stem is its tag


def test_a_mapping_names_its_values(tmp_path, sim_factory):
    sim = sim_factory(**FAST)
    env = cli_env(tmp_path / "data", sim)
    matrix = {"prompt": {"turn": PROMPTS[0], "walk": PROMPTS[1]}}
    manifest = write_manifest(tmp_path, "named", 1, items=[{"id": "ox"}],
                              defaults={"duration": 5, "start_image": IMAGES[0]}, matrix=matrix)
    assert reelbatch("run", str(manifest), env=env).returncode == 0
    assert {r["item_id"] for r in results(tmp_path / "out")} == {"ox.turn", "ox.walk"}
    matrix = {"prompt": {"walk": PROMPTS[1], "turn": PROMPTS[0]}}
    manifest = write_manifest(tmp_path, "named", 1, items=[{"id": "ox"}],
                              defaults={"duration": 5, "start_image": IMAGES[0]}, matrix=matrix)
    assert reelbatch("run", str(manifest), env=env).returncode == 0
    assert enqueues(sim) == 2


# --- batches saved with positional ids -----------------------------------------------------------

@pytest.fixture
def store(redis_url):
    from reelbatch.jobs.store import Store

    return Store.from_url(redis_url)


def test_positional_ids_of_an_older_batch_are_adopted_by_content(tmp_path, store):
    from reelbatch.jobs.settings import Settings
    from reelbatch.jobs.state import ItemState as S
    from reelbatch.scheduler.plan import plan_batch
    from reelbatch.worker.engine.batch import register

    plan = plan_batch(variants_manifest(tmp_path, PROMPTS[:2], IMAGES[:1]), Settings())
    positional = {item.params.prompt: f"herd.img1.p{PROMPTS.index(item.params.prompt) + 1}"
                  for item in plan.items}
    old_items = [i.model_copy(update={"item_id": positional[i.params.prompt]}) for i in plan.items]
    register(store, type(plan)(plan.manifest, old_items, plan.total_video_seconds, plan.estimated_cost_usd))
    store.transition("variants", "herd.img1.p1", S.SUBMITTING)
    store.transition("variants", "herd.img1.p1", S.QUEUED, generation_id="g1")
    store.transition("variants", "herd.img1.p1", S.DOWNLOADING)
    store.transition("variants", "herd.img1.p1", S.SUCCEEDED, file="herd.img1.p1.mp4", bytes=3, sha256="x")
    (tmp_path / "out").mkdir(exist_ok=True)
    (tmp_path / "out" / "herd.img1.p1.mp4").write_bytes(b"mp4")
    reg = register(store, plan)
    assert (reg.new, reg.dropped, reg.retired, reg.renamed) == (0, 0, 0, 2)
    made = next(r for r in store.items("variants") if r.state is S.SUCCEEDED)
    assert made.item.params.prompt == PROMPTS[0] and made.generation_id == "g1"
    assert made.item_id != "herd.img1.p1" and (tmp_path / "out" / made.file).read_bytes() == b"mp4"
    assert sorted(store.item_ids("variants")) == sorted(i.item_id for i in plan.items)

"""One batch over several providers end to end (issue 27): the real CLI, the embedded Redis and
worker, a simulator per provider (each with its own limit and timing) over real HTTP, real MP4s.
The batch uses all of them; with one provider's key refused mid-run it still ends, and no item is
generated twice (generations counted at the simulators)."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.conftest import SIM_KEY
from tests.integration.helpers import assert_files_match_simulator, cli_env, reap, reelbatch, results, write_manifest

pytestmark = pytest.mark.integration
N = 12
FAST = dict(queue_delay=0.0, seed=27)
PROVIDERS = ["simulator", "aimlapi", "fal"]


@pytest.fixture
def data_dir(tmp_path):
    yield tmp_path / "data"
    reap(tmp_path / "data")


def three(sim_factory, **simulator_knobs):
    """A simulator per provider: Oxen's protocol for `simulator`, the AI/ML API's, fal's; each
    with its own limit and generation time (1-3 s, 2-4 s, 1-2 s)."""
    return {"simulator": sim_factory(concurrency=3, time_scale=1 / 300, **FAST, **simulator_knobs),
            "aimlapi": sim_factory(concurrency=2, time_scale=1 / 225, **FAST),
            "fal": sim_factory(concurrency=2, time_scale=1 / 600, **FAST)}


def fanout_env(data_dir, sims):
    return cli_env(data_dir, sims["simulator"], AIMLAPI_KEY=SIM_KEY, AIMLAPI_BASE_URL=sims["aimlapi"].base_url,
                   FAL_KEY=SIM_KEY, FAL_QUEUE_URL=sims["fal"].base_url, FAL_API_URL=sims["fal"].base_url)


def fanout_manifest(tmp_path, name):
    return write_manifest(tmp_path, name, N, provider=PROVIDERS,
                          limits={"max_concurrency": 20, "requests_per_minute": 6000, "max_cost_usd": 50,
                                  "simulator": {"max_concurrency": 3}, "aimlapi": {"max_concurrency": 2},
                                  "fal": {"max_concurrency": 2}})


def check_made_once(tmp_path, sims) -> list[dict]:
    """Every item succeeded, on a provider that made exactly its items: generations at each
    simulator are the items results.jsonl says it made, and each file is the one it served."""
    rows = results(tmp_path / "out")
    assert [r["status"] for r in rows] == ["succeeded"] * N
    made = Counter(r["provider"] for r in rows)
    for provider, sim in sims.items():
        stats = sim.stats()
        print(f"{provider}: {made[provider]} videos, {stats['generations_total']} generations, "
              f"peak {stats['peak_in_flight']} running")
        assert stats["generations_total"] == made[provider], provider
        assert_files_match_simulator([r for r in rows if r["provider"] == provider], tmp_path / "out", stats)
    return rows


def test_a_batch_over_three_providers_uses_each_at_its_limit_and_runs_to_the_end(tmp_path, sim_factory, data_dir):
    sims = three(sim_factory)
    done = reelbatch("run", str(fanout_manifest(tmp_path, "fan3")), env=fanout_env(data_dir, sims), timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    rows = check_made_once(tmp_path, sims)
    assert set(r["provider"] for r in rows) == set(PROVIDERS)       # every provider took some
    assert all(r["cost_usd"] for r in rows)
    limits = {"simulator": 3, "aimlapi": 2, "fal": 2}
    assert all(sims[p].stats()["peak_in_flight"] <= limits[p] for p in PROVIDERS)
    status = reelbatch("status", "fan3", "--json", env=fanout_env(data_dir, sims))
    assert '"providers"' in status.stdout and '"state": "active"' in status.stdout, status.stdout


def test_a_key_refused_mid_run_moves_the_work_to_the_others_and_nothing_is_made_twice(tmp_path, sim_factory,
                                                                                    data_dir):
    sims = three(sim_factory, revoke_key_after=6)
    env = fanout_env(data_dir, sims)
    manifest = fanout_manifest(tmp_path, "fanrevoked")
    first = reelbatch("run", str(manifest), env=env, timeout=240)
    assert first.returncode in (0, 3), first.stdout[-3000:] + first.stderr
    print(sims["simulator"].stats()["requests"])
    status = reelbatch("status", "fanrevoked", "--json", env=env)
    assert "refuses the key" in status.stdout, status.stdout      # status: the provider paused, and why
    if first.returncode == 3:   # the refused provider still held generations: the same command resumes
        assert "refuses the key" in first.stderr, first.stderr
        sims["simulator"].rotate_key("sim-key-rotated")
        env["REELBATCH_SIMULATOR_KEY"] = "sim-key-rotated"
        again = reelbatch("run", str(manifest), env=env, timeout=240)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    rows = check_made_once(tmp_path, sims)
    refused = sims["simulator"].stats()["generations_total"]
    print(f"first run exit {first.returncode}; the refused provider made {refused} of {N}")
    assert refused < N and sum(s.stats()["generations_total"] for s in sims.values()) == N
    assert len({r["generation_id"] for r in rows}) == N

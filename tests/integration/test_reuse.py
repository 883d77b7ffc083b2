"""Repeating a batch under a new name (issue 24.4): by default it generates anew (a new sample);
`plan` says how many identical requests other batches made and what they cost; `reuse: [batch]`
(or `run --reuse BATCH`) takes those succeeded videos, sha256 checked, instead of paying again.
Counted at the simulator: real redis-server, worker and simulator over HTTP, real MP4s."""

from __future__ import annotations

import json

import pytest

from tests.integration.helpers import cli_env, reelbatch, write_manifest

pytestmark = pytest.mark.integration
FAST = dict(time_scale=1 / 600, queue_delay=0.0, seed=7)


def submits(sim) -> int:
    return sum(n for key, n in sim.stats()["requests"].items() if key.startswith("POST"))


def test_reuse_takes_identical_videos_and_plan_says_so(tmp_path, sim_factory):
    sim = sim_factory(concurrency=20, **FAST)
    env = cli_env(tmp_path / "data", sim)
    first = write_manifest(tmp_path, "demo", 3, output=str(tmp_path / "out-demo"))
    done = reelbatch("run", str(first), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    paid = submits(sim)
    assert paid >= 3

    second = write_manifest(tmp_path, "demo-v2", 4, output=str(tmp_path / "out-v2"), reuse=["demo"])
    shown = reelbatch("plan", str(second), env=env)
    assert shown.returncode == 0, shown.stderr
    assert "identical requests in batch 'demo': 3 ($1.68)" in shown.stdout

    done = reelbatch("run", str(second), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reused 3 videos of identical requests" in done.stdout
    assert submits(sim) - paid == 1                                     # only the new item is generated
    rows = {r["item_id"]: r for r in map(json.loads, (tmp_path / "out-v2" / "results.jsonl").read_text().splitlines())}
    first_rows = {r["item_id"]: r for r in
                  map(json.loads, (tmp_path / "out-demo" / "results.jsonl").read_text().splitlines())}
    assert all(rows[i]["status"] == "succeeded" for i in rows) and len(rows) == 4
    for item_id, row in first_rows.items():
        assert rows[item_id]["sha256"] == row["sha256"] and rows[item_id]["cost_usd"] == 0
        assert (tmp_path / "out-v2" / f"{item_id}.mp4").read_bytes() == \
            (tmp_path / "out-demo" / f"{item_id}.mp4").read_bytes()


def test_without_reuse_a_new_name_generates_anew(tmp_path, sim_factory):
    sim = sim_factory(concurrency=20, **FAST)
    env = cli_env(tmp_path / "data", sim)
    first = write_manifest(tmp_path, "demo", 2, output=str(tmp_path / "a"))
    assert reelbatch("run", str(first), env=env).returncode == 0
    paid = submits(sim)
    done = reelbatch("run", str(write_manifest(tmp_path, "demo-v2", 2, output=str(tmp_path / "b"))), env=env)
    assert done.returncode == 0 and submits(sim) - paid == 2


def test_reuse_of_an_unknown_batch_is_one_line_and_exit_2(tmp_path, sim_factory):
    sim = sim_factory(concurrency=20, **FAST)
    env = cli_env(tmp_path / "data", sim)
    done = reelbatch("run", str(write_manifest(tmp_path, "v3", 1, output=str(tmp_path / "c"))), "--reuse", "nope",
                     env=env)
    assert done.returncode == 2 and "no other batch named 'nope' to reuse" in done.stderr
    assert submits(sim) == 0

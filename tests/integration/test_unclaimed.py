"""Issue 23.7, the end of a run: the provider's generations of the batch's model made since the
batch started that no item claims are listed (id, model, when made, cost), in the run's summary,
`status` and the report. Here a submit's answer is lost after the generation was created, its row shows in
the provider's lists only later (after its item gave up: `submit_unknown`, resubmits capped at 0),
and the next run's end finds it."""

from __future__ import annotations

import json

import pytest

from tests.integration.helpers import cli_env, reelbatch, write_manifest

pytestmark = pytest.mark.integration
HIDDEN_S = 1e6     # the generation's row does not show in lists during the first run


def test_a_generation_no_item_claims_is_listed_at_the_end_of_the_run(tmp_path, sim_factory):
    sim = sim_factory(time_scale=1 / 600, queue_delay=0.0, seed=3, drop_after_submit_rate=1.0,
                      oxen_list_lag_s=HIDDEN_S)
    env = cli_env(tmp_path / "data", sim, REELBATCH_HTTP_READ_TIMEOUT_S="1", REELBATCH_RECONCILE_MARGIN_S="1",
                  REELBATCH_RECONCILE_RESUBMITS="0")
    manifest = write_manifest(tmp_path, "lost", 1)
    first = reelbatch("run", str(manifest), env=env)
    assert first.returncode == 1 and "[submit_unknown]" in first.stdout, first.stdout + first.stderr
    assert "unclaimed generation" not in first.stdout                  # its row has not shown yet
    (made,) = sim.stats()["generations"].values()                        # paid, and no item has it
    sim.set_knobs(oxen_list_lag_s=0.0, drop_after_submit_rate=0.0)
    again = reelbatch("run", str(manifest), env=env)
    assert again.returncode == 1, again.stdout + again.stderr
    line = next(x for x in again.stdout.splitlines() if "unclaimed generation" in x)
    assert made["public_id"] in line and "kling-video-o1-image-to-video" in line and "$0.56" in line, line
    assert "made 20" in line and "succeeded" in line, line
    shown = json.loads(reelbatch("status", "lost", "--json", env=env).stdout)
    (orphan,) = shown["orphans"]
    assert orphan["generation_id"] == made["public_id"] and orphan["unclaimed"] and orphan["cost_usd"] == 0.56
    assert shown["counts"]["failed"] == 1 and sum(sim.stats()["enqueues"].values()) == 1
    assert reelbatch("report", "lost", env=env).returncode == 0
    assert f"unclaimed generation {made['public_id']}" in (tmp_path / "out" / "report.html").read_text()

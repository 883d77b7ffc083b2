"""Issue 11 end to end: a generation that succeeded is never generated again unless the user asks;
the manifest decides what exists; money shown is money made; commands say what they did. The real
CLI, the embedded Redis, a real worker and the simulator over HTTP, with its fault knobs."""

from __future__ import annotations

import hashlib
import json
import subprocess

import imageio_ffmpeg
import pytest
import yaml

from tests.integration.helpers import (
    assert_files_match_simulator,
    assert_no_duplicate_generation,
    cli_env,
    reelbatch,
    results,
    status_counts,
    write_manifest,
)

pytestmark = pytest.mark.integration
FAST = dict(time_scale=1 / 600, queue_delay=0.0, seed=5)
QUICK = dict(REELBATCH_MAX_COUNTDOWN_S="1")     # every backoff clipped to a second: budgets in seconds


def enqueues(sim) -> int:
    return sum(sim.stats()["enqueues"].values())


def decodes(path) -> bool:
    done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "null",
                           "-"], capture_output=True, text=True)
    return done.returncode == 0 and not done.stderr


def test_bad_downloads_are_retried_and_never_kept(tmp_path, sim_factory):
    """A 404 on the result URL, an HTML page or an empty body sent as video/mp4: downloaded again,
    never counted as a video, never a new generation."""
    sim = sim_factory(media_404_rate=0.3, media_html_rate=0.2, media_empty_rate=0.2, **FAST)
    manifest = write_manifest(tmp_path, "cdn", 12)
    done = reelbatch("run", str(manifest), env=cli_env(tmp_path / "data", sim, **QUICK))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = results(tmp_path / "out")
    stats = sim.stats()
    assert status_counts(rows) == {"succeeded": 12} and enqueues(sim) == 12
    assert sum(stats["faults"].get(f, 0) for f in ("media_404", "media_html", "media_empty")) >= 5
    assert_files_match_simulator(rows, tmp_path / "out", stats)
    assert all(decodes(tmp_path / "out" / r["file"]) for r in rows)


def test_a_stalled_transfer_is_downloaded_again(tmp_path, sim_factory):
    sim = sim_factory(media_stall_rate=0.4, stall_s=5, **FAST)
    manifest = write_manifest(tmp_path, "stall", 6)
    env = cli_env(tmp_path / "data", sim, REELBATCH_HTTP_READ_TIMEOUT_S="1", **QUICK)
    done = reelbatch("run", str(manifest), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sim.stats()["faults"].get("media_stall", 0) >= 1
    assert status_counts(results(tmp_path / "out")) == {"succeeded": 6} and enqueues(sim) == 6


def test_a_spent_download_budget_keeps_the_generation_and_retry_downloads_it(tmp_path, sim_factory):
    sim = sim_factory(media_404_rate=1.0, **FAST)
    manifest = write_manifest(tmp_path, "nocdn", 4)
    env = cli_env(tmp_path / "data", sim, **QUICK)
    assert reelbatch("run", str(manifest), env=env).returncode == 1
    rows = results(tmp_path / "out")
    assert {r["error_kind"] for r in rows} == {"download"} and all(r["generation_id"] for r in rows)
    status = json.loads(reelbatch("status", "nocdn", "--json", env=env).stdout)
    # made, so paid: counted, at the figure the provider's history charged (events carry none)
    assert status["charged_usd"] == pytest.approx(4 * 5 * 0.112) and status["estimated_usd"] == pytest.approx(0)
    sim.set_knobs(media_404_rate=0.0)
    retried = reelbatch("retry", "nocdn", env=env)
    assert "4 items sent back to work (4 to download from their generation)" in retried.stdout
    assert reelbatch("run", str(manifest), env=env).returncode == 0
    assert status_counts(results(tmp_path / "out")) == {"succeeded": 4} and enqueues(sim) == 4


def test_a_401_on_a_poll_never_costs_a_new_generation(tmp_path, sim_factory):
    sim = sim_factory(poll_401_rate=1.0, **{**FAST, "time_scale": 1 / 100})
    manifest = write_manifest(tmp_path, "authpoll", 3)
    env = cli_env(tmp_path / "data", sim, REELBATCH_EVENT_LISTENER="false")
    assert reelbatch("run", str(manifest), env=env).returncode == 1
    rows = results(tmp_path / "out")
    assert status_counts(rows) == {"failed": 3} and all(r["generation_id"] for r in rows)
    sim.set_knobs(poll_401_rate=0.0)
    retried = reelbatch("retry", "authpoll", env=env)
    assert "3 items sent back to work (3 to poll their generation)" in retried.stdout, retried.stdout
    assert reelbatch("run", str(manifest), env=env).returncode == 0
    assert status_counts(results(tmp_path / "out")) == {"succeeded": 3} and enqueues(sim) == 3


def test_deleted_or_changed_videos_are_downloaded_again_never_regenerated(tmp_path, sim_factory):
    sim = sim_factory(**FAST)
    manifest = write_manifest(tmp_path, "disk", 4)
    env = cli_env(tmp_path / "data", sim)
    assert reelbatch("run", str(manifest), env=env).returncode == 0
    out = tmp_path / "out"
    files = {r["item_id"]: out / r["file"] for r in results(out)}
    files["clip000"].unlink()                                    # deleted
    files["clip001"].write_bytes(files["clip001"].read_bytes() + b"junk")   # grew
    same_size = bytearray(files["clip002"].read_bytes())
    same_size[-1] ^= 0xFF                                        # changed, same size
    files["clip002"].write_bytes(bytes(same_size))
    again = reelbatch("run", str(manifest), env=env)
    assert again.returncode == 0 and "2 videos are missing or changed" in again.stdout, again.stdout
    verified = reelbatch("run", str(manifest), "--verify", env=env)
    assert verified.returncode == 0 and "1 videos are missing or changed" in verified.stdout
    rows = results(out)
    assert enqueues(sim) == 4 and status_counts(rows) == {"succeeded": 4}
    assert_files_match_simulator(rows, out, sim.stats())


def test_a_video_the_provider_no_longer_has_is_reported_and_regenerated_on_request(tmp_path, sim_factory):
    sim = sim_factory(**FAST)
    manifest = write_manifest(tmp_path, "gone", 2)
    env = cli_env(tmp_path / "data", sim)
    assert reelbatch("run", str(manifest), env=env).returncode == 0
    (tmp_path / "out" / "clip001.mp4").unlink()
    sim.reset()                                    # the provider forgot every generation
    lost = reelbatch("run", str(manifest), env=env)
    assert lost.returncode == 1, lost.stdout
    row = next(r for r in results(tmp_path / "out") if r["item_id"] == "clip001")
    assert row["status"] == "failed" and row["error_kind"] == "missing"
    assert enqueues(sim) == 0                      # reported, not regenerated silently
    assert "1 items sent back" in reelbatch("retry", "gone", "--kind", "missing", env=env).stdout
    assert reelbatch("run", str(manifest), env=env).returncode == 0
    assert enqueues(sim) == 1


def test_the_manifest_decides_what_exists(tmp_path, sim_factory):
    """Items left out are not submitted; an edit keeps the paid video aside and undoing it brings
    it back without a new generation; equal content under two ids is two items."""
    sim = sim_factory(**FAST)
    env = cli_env(tmp_path / "data", sim)
    six = write_manifest(tmp_path, "shape", 6)
    assert reelbatch("submit", str(six), env=env).returncode == 0     # registered, nobody ran it
    three = write_manifest(tmp_path, "shape", 3)
    done = reelbatch("run", str(three), env=env)
    assert done.returncode == 0 and "3 left the manifest and dropped" in done.stdout, done.stdout
    assert enqueues(sim) == 3 and len(results(tmp_path / "out")) == 3

    doc = yaml.safe_load(three.read_text())
    original = (tmp_path / "out" / "clip000.mp4").read_bytes()
    doc["items"][0]["prompt"] = "An ox walks, edited"
    three.write_text(yaml.safe_dump(doc))
    edited = reelbatch("run", str(three), env=env)
    assert edited.returncode == 0 and "1 changed" in edited.stdout, edited.stdout
    assert enqueues(sim) == 4 and len(results(tmp_path / "out")) == 3
    kept = [p for p in (tmp_path / "out").glob("clip000.v*.mp4")]
    assert len(kept) == 1 and kept[0].read_bytes() == original and kept[0].with_suffix(".json").exists()

    doc["items"][0]["prompt"] = "An ox walks, take 0"
    three.write_text(yaml.safe_dump(doc))
    undone = reelbatch("run", str(three), env=env)
    assert undone.returncode == 0 and "1 back to an earlier paid version" in undone.stdout
    assert enqueues(sim) == 4                                          # nothing generated
    row = next(r for r in results(tmp_path / "out") if r["item_id"] == "clip000")
    assert row["sha256"] == hashlib.sha256(original).hexdigest()
    assert (tmp_path / "out" / "clip000.mp4").read_bytes() == original


def test_two_ids_with_the_same_content_are_both_made(tmp_path, sim_factory):
    sim = sim_factory(**FAST)
    manifest = write_manifest(tmp_path, "twins", 0, items=[{"id": "a", "prompt": "same"},
                                                           {"id": "b", "prompt": "same"}])
    assert reelbatch("run", str(manifest), env=cli_env(tmp_path / "data", sim)).returncode == 0
    assert sorted(r["item_id"] for r in results(tmp_path / "out")) == ["a", "b"]
    assert enqueues(sim) == 2


def test_another_manifest_under_the_same_name_needs_adopt(tmp_path, sim_factory):
    sim = sim_factory(**FAST)
    env = cli_env(tmp_path / "data", sim)
    first = write_manifest(tmp_path, "same", 2)
    assert reelbatch("run", str(first), env=env).returncode == 0
    copy = tmp_path / "checkout"
    copy.mkdir()
    (copy / "same.yaml").write_text(first.read_text())          # the same text elsewhere: the same
    assert reelbatch("run", str(copy / "same.yaml"), env=env).returncode == 0
    other = tmp_path / "elsewhere"
    other.mkdir()
    second = write_manifest(other, "same", 3)
    refused = reelbatch("run", str(second), env=env)
    assert refused.returncode == 2 and "belongs to" in refused.stderr and "--adopt" in refused.stderr
    assert reelbatch("run", str(second), "--adopt", env=env).returncode == 0


def test_cancel_takes_effect_at_once_and_retry_brings_it_back(tmp_path, sim_factory):
    sim = sim_factory(**FAST)
    env = cli_env(tmp_path / "data", sim)
    manifest = write_manifest(tmp_path, "halt", 5)
    assert reelbatch("submit", str(manifest), env=env).returncode == 0
    stopped = reelbatch("cancel", "halt", env=env)
    assert stopped.returncode == 0 and "5 items cancelled" in stopped.stdout, stopped.stdout
    rerun = reelbatch("run", str(manifest), env=env)
    assert status_counts(results(tmp_path / "out")) == {"cancelled": 5} and enqueues(sim) == 0
    assert rerun.returncode == 1
    back = reelbatch("retry", "halt", "--kind", "cancelled", env=env)
    assert "5 items sent back to work (5 to submit again)" in back.stdout
    assert reelbatch("run", str(manifest), env=env).returncode == 0
    assert status_counts(results(tmp_path / "out")) == {"succeeded": 5}
    assert_no_duplicate_generation(sim.stats())


@pytest.mark.parametrize("policy", ["fail", "resubmit"])
def test_lost_aimlapi_submits_are_found_whatever_lost_submit_says(tmp_path, sim_factory, policy):
    """Issue 13.11, revised by 23.8: the AI/ML API can be asked after all (its request log by the
    client request id), so `retry.lost_submit` no longer decides: each lost submit is found, none
    is paid twice."""
    sim = sim_factory(drop_after_submit_rate=0.5, **FAST)
    manifest = write_manifest(tmp_path, f"aiml-{policy}", 6, provider="aimlapi",
                              retry={"max_attempts": 3, "lost_submit": policy})
    env = cli_env(tmp_path / "data", AIMLAPI_BASE_URL=sim.base_url, AIMLAPI_KEY="sim-test-key",
                  REELBATCH_EVENT_LISTENER="false")
    done = reelbatch("run", str(manifest), env=env)
    rows = results(tmp_path / "out")
    assert sim.stats()["faults"].get("drop_after", 0) >= 1
    assert done.returncode == 0, done.stdout + done.stderr
    assert status_counts(rows) == {"succeeded": 6} and enqueues(sim) == 6

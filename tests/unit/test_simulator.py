"""The provider simulator over real HTTP: every protocol path, fault knob and counter."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from reelbatch.simulator.server import Knobs, Simulator

KEY = "sim-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
REF = "kling-video-o1-reference-to-video"
AIML_I2V = "klingai/video-o1-image-to-video"
FAST = dict(time_scale=1 / 300, gen_time_min=60, gen_time_max=60, queue_delay=0, seed=1)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("sim-media"))


@pytest.fixture
def make(cache_dir):
    """Start a simulator with FAST knobs overridden by the given ones."""
    started = []

    def start(state_file=None, **knobs) -> tuple[Simulator, httpx.Client]:
        sim = Simulator(knobs=Knobs(**{**FAST, "cache_dir": cache_dir, **knobs}), api_key=KEY,
                        state_file=state_file).start()
        client = httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=10)
        started.append((sim, client))
        return sim, client

    yield start
    for sim, client in started:
        client.close()
        sim.stop()


def body(**extra) -> dict:
    return {"model": REF, "prompt": "a cat", "input_image": ["https://x/a.png"], "duration": 5, **extra}


def enqueue(client, **extra) -> list[str]:
    response = client.post("/api/ai/queue", json=body(**extra))
    assert response.status_code == 200, response.text
    return [g["generation_id"] for g in response.json()["generations"]]


def wait_for(check, timeout: float = 8.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise AssertionError("condition not met in time")


def finished_row(client, gen_id: str) -> dict:
    def terminal():
        row = client.get(f"/api/ai/queue/{gen_id}").json()
        return row if row["status"] in ("succeeded", "failed", "cancelled") else None
    return wait_for(terminal)


# --- Oxen queue ---------------------------------------------------------------------------

def test_enqueue_walks_queued_processing_succeeded(make):
    sim, client = make(queue_delay=30)
    ids = enqueue(client, num_generations=2, aspect_ratio="9:16", seed=7)
    assert len(set(ids)) == 2
    first = client.get(f"/api/ai/queue/{ids[0]}").json()
    assert first["status"] == "queued" and first["started_at"] is None
    wait_for(lambda: client.get(f"/api/ai/queue/{ids[0]}").json()["status"] == "processing", every=0.01)
    row = finished_row(client, ids[0])
    assert row["status"] == "succeeded" and row["error_message"] is None
    assert row["result_url"].startswith(sim.base_url + "/media/")
    assert row["model_name"] == REF and row["media_type"] == "video" and row["prompt"] == "a cat"
    assert row["aspect_ratio"] == "9:16" and row["seed"] == 7 and "num_generations" not in row
    assert row["enqueued_at"] <= row["started_at"] <= row["completed_at"]


def test_enqueue_rejections_and_not_found(make):
    _, client = make()
    unknown = client.post("/api/ai/queue", json=body(model="nope"))
    assert unknown.status_code == 404 and unknown.json() == {"error": {"message": "Model not found: nope"}}
    too_many = client.post("/api/ai/queue", json=body(num_generations=5))
    assert too_many.status_code == 400
    assert too_many.json()["error"]["detail"] == "num_generations must be an integer between 1 and 4"
    missing = {"error": {"type": "resource_not_found", "title": "The requested resource could not be found"},
               "status": "error", "status_message": "resource_not_found"}
    for method in ("GET", "DELETE"):
        response = client.request(method, "/api/ai/queue/00000000-0000-4000-8000-000000000000")
        assert response.status_code == 404 and response.json() == missing


def test_bad_parameters_fail_at_run_time(make):
    _, client = make()
    gen_id = enqueue(client, duration=2)[0]
    row = finished_row(client, gen_id)
    assert row["status"] == "failed" and row["result_url"] is None
    assert row["error_message"].startswith("duration value '2' is invalid")


def test_unauthenticated_in_each_api_shape(make):
    sim, _ = make()
    bad = {"Authorization": "Bearer wrong"}
    oxen = httpx.get(f"{sim.base_url}/api/ai/queue", headers=bad)
    assert oxen.status_code == 401 and oxen.json()["error"]["type"] == "unauthenticated"
    assert oxen.json()["status_message"] == "unauthenticated"
    aiml = httpx.post(f"{sim.base_url}/v2/video/generations", json={})
    assert aiml.status_code == 401
    assert set(aiml.json()) == {"message", "path", "requestId", "statusCode", "timestamp"}
    assert aiml.json()["statusCode"] == "401"


def test_list_filters_and_count(make):
    _, client = make(concurrency=1, gen_time_min=300, gen_time_max=300)
    enqueue(client, num_generations=3)
    wait_for(lambda: client.get("/api/ai/queue", params={"status": "processing"}).json()["count"] == 1)
    active = client.get("/api/ai/queue").json()
    assert active["count"] == 3 and len(active["generations"]) == 3
    assert client.get("/api/ai/queue", params={"status": "queued"}).json()["count"] == 2
    assert client.get("/api/ai/queue", params={"model": "kling-video-o1-image-to-video"}).json()["count"] == 0
    assert client.get("/api/ai/queue", params={"media_type": "image"}).json()["count"] == 0
    assert client.get("/api/ai/queue", params={"namespace": "sim-user"}).json()["count"] == 3


def test_history_with_cost_and_detail(make):
    _, client = make()
    ids = enqueue(client, num_generations=3, duration=10)
    for gen_id in ids:
        finished_row(client, gen_id)
    page = client.get("/api/ai/generations", params={"page_size": 2}).json()
    assert page["total_entries"] == 3 and page["total_pages"] == 2 and page["count"] == 2
    assert page["total_cost"] == "3.3600" and page["generations"][0]["cost"] == "1.1200"
    detail = client.get(f"/api/ai/generations/{ids[0]}").json()
    assert detail["status"] == "success" and detail["status_message"] == "resource_found"
    assert detail["generation"]["generation_id"] == ids[0]


def test_models_schema_under_both_keys(make):
    _, client = make()
    listed = client.get("/api/ai/models").json()
    assert listed["object"] == "list" and {m["id"] for m in listed["data"]} == {
        "kling-video-o1-image-to-video", REF, "kling-video-o1-video-to-video-edit",
        "kling-video-o1-video-to-video-reference"}
    model = client.get(f"/api/ai/models/{REF}").json()
    assert model["request_schema"] == model["json_request_schema"]
    assert model["request_schema"]["properties"]["duration"]["enum"] == [5, 10]
    assert model["endpoint"] == "/videos/generate" and model["pricing"]["method"] == "per_video_output_second"
    missing = client.get("/api/ai/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "Model not found: nope"


# --- SSE ----------------------------------------------------------------------------------

def read_events(client, until, timeout: float = 8.0, before=None) -> list[str]:
    """Lines of /api/events until `until(lines)` holds; `before` runs once the stream is open."""
    lines: list[str] = []
    with client.stream("GET", "/api/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        if before:
            before()
        deadline = time.monotonic() + timeout
        for line in response.iter_lines():
            lines.append(line)
            if until(lines) or time.monotonic() > deadline:
                break
    return lines


# Oxen's history row (OpenAPI 0.231.0 GenerationsController.index/show): these fields and the
# request parameters; no status, no media_type (issue 23.6)
HISTORY_FIELDS = {"generation_id", "model_name", "enqueued_at", "started_at", "completed_at", "cost",
                  "error_message", "result_url", "target_directory", "target_namespace", "target_repo",
                  "user_id", "user_image", "username"}


def test_history_rows_carry_exactly_the_documented_fields(make):
    _, client = make()
    gen_id = enqueue(client, seed=7)[0]
    finished_row(client, gen_id)
    listed = client.get("/api/ai/generations").json()["generations"][0]
    detail = client.get(f"/api/ai/generations/{gen_id}").json()["generation"]
    params = {"prompt", "input_image", "duration", "seed"}
    assert set(listed) == set(detail) == HISTORY_FIELDS | params


def test_empty_failure_messages_and_the_status_filter(make):
    _, client = make(fail_rate=1.0, empty_failure_messages=True, keepalive_interval=0.1)
    gen_id = []
    lines = read_events(client, lambda ls: any(gen_id and gen_id[0] in x for x in ls),
                        before=lambda: gen_id.extend(enqueue(client)))
    assert '"error":""' in next(line for line in lines if gen_id[0] in line)
    row = finished_row(client, gen_id[0])
    assert row["status"] == "failed" and row["error_message"] == ""
    history = client.get(f"/api/ai/generations/{gen_id[0]}").json()["generation"]
    assert history["completed_at"] and not history["error_message"] and not history["result_url"]
    failed = client.get("/api/ai/generations", params={"status": "failed"}).json()["generations"]
    cancelled = client.get("/api/ai/generations", params={"status": "cancelled"}).json()["generations"]
    assert [r["generation_id"] for r in failed] == gen_id and cancelled == []


@pytest.mark.parametrize("billed, cost", [(False, "0.0000"), (True, "0.5600")])
def test_cancel_while_processing_may_be_billed(make, billed, cost):
    _, client = make(cancel_billed=billed, gen_time_min=600, gen_time_max=600, concurrency=1)
    running, waiting = enqueue(client, num_generations=2)
    wait_for(lambda: client.get(f"/api/ai/queue/{running}").json()["status"] == "processing")
    client.delete(f"/api/ai/queue/{waiting}")   # first: the running one's slot would start it
    client.delete(f"/api/ai/queue/{running}")
    assert client.get(f"/api/ai/generations/{running}").json()["generation"]["cost"] == cost
    assert client.get(f"/api/ai/generations/{waiting}").json()["generation"]["cost"] == "0.0000"


def test_events_completion_keepalive_unrelated_and_no_cancel_event(make):
    _, client = make(keepalive_interval=0.1, other_event_interval=0.3, gen_time_min=150, gen_time_max=150)
    ids = []

    def start():
        ids.extend(enqueue(client, num_generations=2))
        client.delete(f"/api/ai/queue/{ids[1]}")

    def done(lines):
        return any(ids[0] in line for line in lines) and "event: deployment_status" in lines and len(lines) > 20

    lines = read_events(client, done, before=start)
    assert ": keep-alive" in lines
    data = [line for line in lines if line.startswith("data:") and ids[0] in line]
    assert lines[lines.index(data[0]) - 1] == "event: media_generation_completed"
    assert '"status":"succeeded"' in data[0] and '"url":"http' in data[0]
    assert not any(ids[1] in line for line in lines)
    assert client.get(f"/api/ai/queue/{ids[1]}").json()["status"] == "cancelled"
    again = client.delete(f"/api/ai/queue/{ids[0]}")
    assert again.json() == {"status": "success", "generation_id": ids[0]}
    assert client.get(f"/api/ai/queue/{ids[0]}").json()["status"] == "succeeded"


def test_events_are_not_replayed_and_failures_carry_error(make):
    _, client = make(keepalive_interval=0.1, fail_rate=1.0)
    early = enqueue(client)[0]
    finished_row(client, early)
    late = []
    lines = read_events(client, lambda ls: any(late and late[0] in x for x in ls),
                        before=lambda: late.extend(enqueue(client)))
    assert not any(early in line for line in lines)
    failed = next(line for line in lines if late[0] in line)
    assert '"status":"failed"' in failed and '"error":' in failed and '"url"' not in failed


def test_sse_disconnect_every(make):
    _, client = make(keepalive_interval=0.1, sse_disconnect_every=0.5)
    started = time.monotonic()
    read_events(client, lambda lines: False, timeout=5)
    assert time.monotonic() - started < 3


# --- AI/ML API ----------------------------------------------------------------------------

def aiml_create(client, **extra) -> httpx.Response:
    return client.post("/v2/video/generations",
                       json={"model": AIML_I2V, "prompt": "a dog", "image_url": "https://x/a.png", **extra})


def aiml_poll(client, gen_id: str) -> dict:
    return client.get("/v2/video/generations", params={"generation_id": gen_id}).json()


def test_aiml_walk_with_waiting_and_active(make):
    # a run of 1 s, so its "active" tenth (0.1 s) spans several 20 ms polls even on a busy machine
    sim, client = make(queue_delay=150, time_scale=1 / 60)
    created = aiml_create(client).json()
    assert created["status"] == "queued" and created["id"].endswith(f":{AIML_I2V}")
    seen = []

    def poll():
        task = aiml_poll(client, created["id"])
        if not seen or seen[-1] != task["status"]:
            seen.append(task["status"])
        return task if task["status"] in ("completed", "error") else None

    task = wait_for(poll, every=0.02)
    assert seen == ["queued", "waiting", "active", "generating", "completed"]
    assert task["video"]["url"].startswith(sim.base_url) and task["meta"]["usage"]["usd_spent"] == 0.56


@pytest.mark.parametrize("shape", ["name", "detail"])
def test_aiml_error_shapes(make, shape):
    _, client = make(fail_rate=1.0, aiml_error_shape=shape)
    gen_id = aiml_create(client).json()["id"]
    task = wait_for(lambda: (t := aiml_poll(client, gen_id))["status"] == "error" and t)
    if shape == "name":
        assert set(task["error"]) == {"name", "message"}
    else:
        assert task["error"]["detail"][0]["msg"] and task["error"]["detail"][0]["loc"]


def test_aiml_validation_and_not_found(make):
    _, client = make()
    bad = aiml_create(client, duration=7)
    assert bad.status_code == 400 and bad.json()["message"].startswith("Body validation error!")
    assert bad.json()["path"] == "/v2/video/generations"
    missing = client.get("/v2/video/generations", params={"generation_id": "x:y"})
    assert missing.status_code == 404 and missing.json()["statusCode"] == "404"


# --- concurrency, faults, media, stats ----------------------------------------------------

def test_aiml_request_tracing_headers_and_the_request_log(make):
    """Issue 23.8: the create echoes a valid X-Client-Request-Id, names its generation in
    x-inference-id, and GET /v2/logs lists each create with both ids (a refused one as failed)."""
    sim, client = make()
    made = client.post("/v2/video/generations", headers={"X-Client-Request-Id": "rb:a:1"},
                       json={"model": AIML_I2V, "prompt": "a dog", "image_url": "https://x/a.png"})
    gen_id = made.json()["id"]
    assert made.headers["x-inference-id"] == gen_id and made.headers["x-client-request-id"] == "rb:a:1"
    dropped = client.post("/v2/video/generations", headers={"X-Client-Request-Id": "no spaces/allowed"},
                          json={"model": AIML_I2V, "prompt": "a cat", "image_url": "https://x/a.png"})
    assert "x-client-request-id" not in dropped.headers and dropped.headers["x-inference-id"]
    refused = client.post("/v2/video/generations", headers={"X-Client-Request-Id": "rb:b:1"},
                          json={"model": AIML_I2V})
    assert refused.status_code == 400 and refused.headers["x-inference-id"]
    assert client.get("/v2/video/generations", params={"generation_id": gen_id}).headers["x-inference-id"] == gen_id
    rows = client.get("/v2/logs", params={"period": "1h"}).json()
    assert rows["pagination"] == {"limit": 50, "offset": 0, "total": 3, "has_more": False}
    newest, middle, oldest = rows["data"]
    assert (oldest["client_request_id"], oldest["inference_id"], oldest["status"]) == ("rb:a:1", gen_id, "succeeded")
    assert middle["client_request_id"] is None and newest["status"] == "failed"
    assert newest["cost"] == {"usd": 0, "credits": 0}
    assert set(oldest) == {"created", "status", "origin", "model", "cost", "tokens", "request_id",
                           "inference_id", "client_request_id"}
    failed = client.get("/v2/logs", params={"period": "1h", "status": "failed", "limit": 1}).json()
    assert [r["client_request_id"] for r in failed["data"]] == ["rb:b:1"]
    assert client.get("/v2/logs").status_code == 400     # neither period nor start+end
    sim.set_knobs(aiml_logs_lag=60)
    assert client.get("/v2/logs", params={"period": "1h"}).json()["data"] == []


def test_concurrency_cap_respected(make):
    sim, client = make(concurrency=3)
    ids = enqueue(client, num_generations=4) + enqueue(client, num_generations=4)
    for gen_id in ids:
        finished_row(client, gen_id)
    stats = sim.stats()
    assert stats["peak_in_flight"] == 3 and stats["by_status"] == {"succeeded": 8}
    runs = [g["run_time"] for g in stats["generations"].values()]
    assert all(abs(run - 0.2) < 0.01 for run in runs)


@pytest.mark.parametrize("knob,status,retry_after", [
    ("rate_limit_rate", 429, "3"), ("rate_limit_bare_rate", 429, None), ("server_error_rate", None, None)])
def test_error_faults(make, knob, status, retry_after):
    sim, client = make(**{knob: 1.0}, retry_after=3)
    for response in (client.post("/api/ai/queue", json=body()), aiml_create(client)):
        assert response.status_code == status if status else response.status_code >= 500
        assert response.headers.get("retry-after") == retry_after
    assert client.get("/_sim/stats").status_code == 200      # never faulted
    assert sim.stats()["generations_total"] == 0


def test_drop_before_creates_nothing(make):
    sim, client = make(drop_before_rate=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):    # a body not yet read gets an RST
        client.post("/api/ai/queue", json=body())
    assert sim.stats()["generations_total"] == 0 and sim.stats()["faults"] == {"drop_before": 1}


def test_drop_after_creates_an_unheard_generation(make):
    sim, client = make(drop_after_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/api/ai/queue", json=body(num_generations=2))
    assert sim.stats()["generations_total"] == 2


def test_truncated_download(make):
    _, client = make()
    url = finished_row(client, enqueue(client)[0])["result_url"]
    client.post("/_sim/knobs", json={"truncate_rate": 1.0})
    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", url) as response:
        promised = int(response.headers["content-length"])
        for chunk in response.iter_raw():
            received += chunk
    assert 0 < len(received) < promised


def test_expired_url_then_fresh_url(make):
    sim, client = make(url_ttl=0.5)
    gen_id = enqueue(client)[0]
    old = finished_row(client, gen_id)["result_url"]
    time.sleep(1.6)
    expired = httpx.get(old)
    assert expired.status_code == 403 and "expired" in expired.text
    fresh = client.get(f"/api/ai/queue/{gen_id}").json()["result_url"]
    assert fresh != old and httpx.get(fresh).status_code == 200
    assert httpx.get(fresh.replace("sig=", "sig=0")).status_code == 403
    sim.set_knobs(expire_rate=1.0)
    assert httpx.get(client.get(f"/api/ai/queue/{gen_id}").json()["result_url"]).status_code == 403


def test_legacy_switches(make):
    _, client = make(legacy_enqueue_processing=True, legacy_404_terminal=True)
    response = client.post("/api/ai/queue", json=body())
    gen = response.json()["generations"][0]
    assert gen["status"] == "processing"
    wait_for(lambda: client.get(f"/api/ai/queue/{gen['generation_id']}").status_code == 404)
    history = client.get(f"/api/ai/generations/{gen['generation_id']}")
    assert history.status_code == 200 and history.json()["generation"]["result_url"]


def test_media_is_unique_valid_mp4_and_counted(make, tmp_path):
    import imageio_ffmpeg

    sim, client = make()
    ids = enqueue(client, aspect_ratio="1:1") + enqueue(client, aspect_ratio="1:1")   # one key, 2 enqueues
    rows = [finished_row(client, gen_id) for gen_id in ids]
    files = []
    for row in rows:
        response = httpx.get(row["result_url"])
        assert response.headers["content-type"] == "video/mp4"
        assert int(response.headers["content-length"]) == len(response.content)
        assert response.content.endswith(row["generation_id"].encode())
        files.append(response.content)
    assert files[0] != files[1]
    path = tmp_path / "a.mp4"
    path.write_bytes(files[0])
    decoded = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path),
                              "-frames:v", "1", "-f", "null", "-"], capture_output=True)
    assert decoded.returncode == 0 and not decoded.stderr
    httpx.get(rows[0]["result_url"])
    stats = sim.stats()
    assert list(stats["enqueues"].values()) == [2] and stats["requests"]["POST /api/ai/queue"] == 2
    served = stats["generations"][rows[0]["generation_id"]]
    assert served["downloads"] == 2 and served["sha256"] == hashlib.sha256(files[0]).hexdigest()
    assert served["bytes"] == len(files[0])
    client.post("/_sim/reset")
    assert sim.stats()["generations_total"] == 0 and sim.stats()["requests_total"] == 0


def test_padded_media_streams_with_exact_length(make):
    _, client = make(media_pad_bytes=12 << 20)
    row = finished_row(client, enqueue(client)[0])
    digest, size = hashlib.sha256(), 0
    with httpx.stream("GET", row["result_url"]) as response:
        for chunk in response.iter_bytes():
            digest.update(chunk)
            size += len(chunk)
    assert size == int(response.headers["content-length"]) > 12 << 20
    stats = client.get("/_sim/stats").json()["generations"][row["generation_id"]]
    assert stats["sha256"] == digest.hexdigest() and stats["bytes"] == size


def test_sync_generate_holds_the_connection(make):
    _, client = make()
    response = client.post("/api/ai/videos/generate", json=body())
    assert response.status_code == 200 and response.json()["videos"][0]["url"].startswith("http")


def test_knobs_endpoint_and_seed_reproducible(make):
    _, client = make()
    assert client.post("/_sim/knobs", json={"nope": 1}).status_code == 400
    assert client.post("/_sim/knobs", json={"concurrency": "5"}).json()["concurrency"] == 5
    first = [make(seed=42)[1] for _ in range(2)]
    assert enqueue(first[0]) == enqueue(first[1])


def test_cli_help_lists_the_knobs():
    from click.testing import CliRunner

    from reelbatch.simulator.cli import simulator_command

    result = CliRunner().invoke(simulator_command, ["--help"])
    assert result.exit_code == 0 and "--truncate-rate" in result.output and "--time-scale" in result.output
    assert "--empty-failure-messages" in result.output and "--cancel-billed" in result.output
    assert "--aiml-logs-lag" in result.output


def test_stats_carry_request_key_and_detail_can_be_left_out(make):
    sim, client = make()
    twice = enqueue(client, num_generations=2) + enqueue(client, num_generations=2)
    other = enqueue(client, prompt="a dog")
    for gen_id in twice + other:
        finished_row(client, gen_id)
    stats = client.get("/_sim/stats").json()
    same = {stats["generations"][gen_id]["request_key"] for gen_id in twice}
    assert len(same) == 1 and stats["enqueues"][same.pop()] == 2
    assert stats["enqueues"][stats["generations"][other[0]]["request_key"]] == 1
    brief = client.get("/_sim/stats", params={"detail": "0"}).json()
    assert "generations" not in brief and brief["enqueues"] == stats["enqueues"]
    assert brief["by_status"] == {"succeeded": 5} and "generations" not in sim.stats(detail=False)


def test_state_file_survives_a_restart(make, tmp_path):
    state = tmp_path / "sim-state.json"
    sim, client = make(state_file=state)
    done = enqueue(client)[0]
    old_url = finished_row(client, done)["result_url"]
    aiml = aiml_create(client).json()["id"]
    wait_for(lambda: aiml_poll(client, aiml)["status"] == "completed")
    sim.set_knobs(gen_time_min=150, gen_time_max=150)        # 0.5 s: finishes while the simulator is down
    short = enqueue(client)[0]
    sim.set_knobs(gen_time_min=750, gen_time_max=750)        # 2.5 s: still running after the restart
    long = enqueue(client)[0]
    wait_for(lambda: all(client.get(f"/api/ai/queue/{g}").json()["status"] == "processing" for g in (short, long)),
             every=0.01)
    before = {g: client.get(f"/api/ai/queue/{g}").json() for g in (done, short, long)}
    counts = sim.stats()
    sim.stop()
    assert json.loads(state.read_text())["stats"]["enqueues"] == counts["enqueues"]
    time.sleep(0.6)

    sim2, client2 = make(state_file=state)
    rows = {g: client2.get(f"/api/ai/queue/{g}").json() for g in (done, short, long)}
    assert rows[done]["status"] == "succeeded" and rows[short]["status"] == "succeeded"
    assert rows[long]["status"] == "processing"
    for gen_id in (done, short, long):
        assert rows[gen_id]["enqueued_at"] == before[gen_id]["enqueued_at"]
        assert rows[gen_id]["started_at"] == before[gen_id]["started_at"]
    assert rows[short]["completed_at"] - rows[short]["started_at"] <= 1        # at its planned time
    assert aiml_poll(client2, aiml)["status"] == "completed"
    logged = client2.get("/v2/logs", params={"period": "1h"}).json()["data"]
    assert [(r["inference_id"], r["status"]) for r in logged] == [(aiml, "succeeded")]   # the request log too
    assert httpx.get(old_url.replace(sim.base_url, sim2.base_url)).status_code == 200   # issued before
    finished = finished_row(client2, long)
    assert finished["status"] == "succeeded"
    media = httpx.get(finished["result_url"])
    assert media.status_code == 200 and media.content.endswith(long.encode())

    after = sim2.stats()
    assert after["enqueues"] == counts["enqueues"] and list(after["enqueues"].values()) == [3, 1]
    assert after["requests"]["POST /api/ai/queue"] == counts["requests"]["POST /api/ai/queue"]
    assert after["generations"][long]["request_key"] == counts["generations"][long]["request_key"]
    fresh = enqueue(client2)[0]                               # the same seed must not hand out an old id
    assert fresh not in rows and sim2.stats()["generations_total"] == 5


@pytest.mark.cli
def test_cli_saves_state_on_sigterm(cache_dir, tmp_path):
    state = tmp_path / "state.json"
    code = "from simulator.cli import simulator_command; simulator_command()"
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", code, "--port", "0", "--time-scale", str(1 / 300), "--seed", "1",
         "--cache-dir", cache_dir, "--state-file", str(state)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "REELBATCH_SIMULATOR_KEY": KEY})
    try:
        base_url = proc.stdout.readline().split()[-1]
        with httpx.Client(base_url=base_url, headers=AUTH, timeout=10) as client:
            gen_id = enqueue(client)[0]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        proc.stdout.close()
    saved = json.loads(state.read_text())
    assert [g["key"] for g in saved["generations"]] == [gen_id]
    assert list(saved["stats"]["enqueues"].values()) == [1]


# --- the providers' schemas, enforced as each provider does (issue 13) ---------------------

@pytest.mark.parametrize("extra, message", [
    ({"input_image": None}, "Getting model response error: 422 - Field required: 'input_image'"),
    ({"duration": 7}, "duration value '7' is invalid. Try using duration='5' instead"),
    ({"aspect_ratio": "4:3"}, "Getting model response error: 422 - Value error, aspect_ratio: '4:3' is not one of"),
    ({"elements": [{"reference_image_urls": ["https://x/r.png"]}]},
     "Getting model response error: 422 - Field required: 'elements.0.frontal_image_url'"),
])
def test_oxen_accepts_then_fails_at_run_time_on_its_schema(make, extra, message):
    _, client = make()
    body_ = {k: v for k, v in body(**extra).items() if v is not None}
    response = client.post("/api/ai/queue", json=body_)
    assert response.status_code == 200          # Oxen checks model parameters only when it runs them
    row = finished_row(client, response.json()["generations"][0]["generation_id"])
    assert row["status"] == "failed" and row["error_message"].startswith(message)


def test_oxen_queue_fields_are_not_model_parameters(make):
    _, client = make()
    gen_id = enqueue(client, target_namespace="my-org", response_format="url")[0]
    assert finished_row(client, gen_id)["status"] == "succeeded"


@pytest.mark.parametrize("extra, detail", [
    ({"image_url": None}, "Required at image_url"),
    ({"duration": 7}, "7 is not one of [5, 10] at duration"),
    ({"prompt": "x" * 2501}, "is too long at prompt"),
])
def test_aiml_refuses_at_post_on_its_schema(make, extra, detail):
    _, client = make()
    body_ = {k: v for k, v in {"model": AIML_I2V, "prompt": "a dog", "image_url": "https://x/a.png",
                                **extra}.items() if v is not None}
    response = client.post("/v2/video/generations", json=body_)
    assert response.status_code == 400
    assert response.json()["message"].startswith("Body validation error!") and detail in response.json()["message"]


def test_aiml_refuses_an_element_without_views_and_an_empty_image_list(make):
    _, client = make()
    ref = "klingai/video-o1-reference-to-video"
    element = client.post("/v2/video/generations", json={
        "model": ref, "prompt": "p",
        "elements": [{"frontal_image_url": "https://x/f.png", "reference_image_urls": []}]})
    assert element.status_code == 400 and "reference_image_urls" in element.json()["message"]
    images = client.post("/v2/video/generations", json={"model": ref, "prompt": "p", "image_list": []})
    assert images.status_code == 400 and "image_list" in images.json()["message"]
    fine = client.post("/v2/video/generations", json={"model": ref, "prompt": "p"})   # the docs' own example
    assert fine.status_code == 200


def test_image_to_video_output_ignores_aspect_ratio(make):
    sim, client = make()
    response = client.post("/api/ai/queue", json={"model": "kling-video-o1-image-to-video", "prompt": "p",
                                                  "input_image": "https://x/a.png", "aspect_ratio": "9:16"})
    gen_id = response.json()["generations"][0]["generation_id"]
    finished_row(client, gen_id)
    assert sim.core.clock.gens[gen_id].aspect_ratio == "16:9"


def test_prices_follow_the_cost_knob(make):
    _, client = make(cost_per_second=0.05)
    pricing = client.get(f"/api/ai/models/{REF}").json()["pricing"]
    assert pricing["cost_per_second"] == 0.05 and pricing["cost_per_second_with_audio"] == 0.05
    gen_id = enqueue(client, duration=10)[0]
    finished_row(client, gen_id)
    assert client.get(f"/api/ai/generations/{gen_id}").json()["generation"]["cost"] == "0.5000"
    assert "cost" not in client.get(f"/api/ai/queue/{gen_id}").json()   # queue rows carry no cost


def test_rest_result_url_that_needs_the_key(make):
    sim, client = make(result_url_needs_key=True)
    is_event = lambda line: line.startswith('data: {"generation_id"')   # noqa: E731
    lines = read_events(client, lambda ls: any(map(is_event, ls)), before=lambda: enqueue(client))
    event = json.loads(next(filter(is_event, lines))[6:])
    event_url, gen_id = event["url"], event["generation_id"]
    rest_url = finished_row(client, gen_id)["result_url"]
    assert rest_url == f"{sim.base_url}/api/repos/sim-user/files/{gen_id}.mp4"
    assert httpx.get(rest_url).status_code == 401
    assert client.get(rest_url).content[4:8] == b"ftyp"
    assert "/media/" in event_url and httpx.get(event_url).status_code == 200   # presigned: no key


def element(views: int) -> dict:
    return {"frontal_image_url": "https://x/f.png",
            "reference_image_urls": [f"https://x/{n}.png" for n in range(views)]}


def test_four_views_per_element_fail_when_the_generation_runs(make):
    """Issue 23.11: what plan now refuses, as the providers do it: Oxen accepts, then fails the
    generation; the AI/ML API accepts (its schema allows 4), then fails it on its fal backend."""
    _, client = make()
    oxen_ids = enqueue(client, elements=[element(4)], prompt="@Element1 waves")
    assert "Max 3 images per element" in finished_row(client, oxen_ids[0])["error_message"]
    assert finished_row(client, enqueue(client, elements=[element(3)], prompt="@Element1 waves")[0])["status"] \
        == "succeeded"
    made = {backend: aiml_create(client, model="klingai/video-o1-reference-to-video", prompt="@Element1 waves",
                                 image_url=None, elements=[element(4)], provider=backend).json()["id"]
            for backend in ("fal", "auto", "kling")}
    ended = {b: wait_for(lambda g=g: (t := aiml_poll(client, g))["status"] in ("completed", "error") and t)
             for b, g in made.items()}
    assert {b: t["status"] for b, t in ended.items()} == {"fal": "error", "auto": "error", "kling": "completed"}


# --- account knobs (issue 23) -------------------------------------------------------------------

def test_a_key_revoked_after_n_requests_and_a_new_one(make):
    sim, client = make(revoke_key_after=2)
    assert [client.get("/api/ai/queue").status_code for _ in range(3)] == [200, 200, 401]
    assert client.get(f"/api/ai/models/{REF}").status_code == 401      # the key check too
    client.post("/_sim/key", json={"key": "rotated"})
    fresh = {"Authorization": "Bearer rotated"}
    assert httpx.get(f"{sim.base_url}/api/ai/queue", headers=fresh).status_code == 200
    assert client.get("/api/ai/queue").status_code == 401                # the old key stays refused


def test_credits_run_out_then_a_top_up(make):
    _, client = make(credits_usd=0.56)                                   # one 5 s video at $0.112/s
    paid, unpaid = enqueue(client)[0], enqueue(client)[0]
    assert finished_row(client, paid)["status"] == "succeeded"
    row = finished_row(client, unpaid)
    assert row["status"] == "failed" and row["error_message"] == "Insufficient credits"
    refused = aiml_create(client)
    assert refused.status_code == 403 and "run out of credits" in refused.json()["message"]
    assert client.post("/_sim/top-up", json={"usd": 1.0}).json() == {"credits_usd": 1.0}
    assert aiml_create(client).status_code == 200


def test_a_vanished_model_and_a_stuck_generation(make):
    sim, client = make(vanished_models=REF, stuck_rate=1.0)
    gone = client.post("/api/ai/queue", json=body())
    assert gone.status_code == 404 and gone.json() == {"error": {"message": f"Model not found: {REF}"}}
    assert client.get(f"/api/ai/models/{REF}").status_code == 404
    sim.set_knobs(vanished_models="")
    gen_id = enqueue(client)[0]
    time.sleep(1.0)                                                      # 5 times its nominal 60 s
    assert client.get(f"/api/ai/queue/{gen_id}").json()["status"] == "processing"

"""Notifications over real HTTP: Apprise's generic JSON webhook (``json://127.0.0.1:PORT/path``)
posts to a local receiver, one path of which answers 500, beside a closed port and a URL Apprise
does not know. A failing notifier is logged and never fails the batch; a message goes once per
batch, event and outcome; webhook tokens in the URLs land nowhere (Redis, files, output, logs)."""

from __future__ import annotations

import json
import logging
import secrets
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
import yaml

from reelbatch.jobs.settings import Settings
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import Store
from reelbatch.scheduler.stack.embedded import EmbeddedRedis
from reelbatch.scheduler.views.notify import ENDED, PAUSED, BatchWatcher, notify_batch, parse_urls, urls_for
from tests.batchfill import fail, make_item, new_batch, start, succeed
from tests.integration.helpers import cli_env, reelbatch, write_manifest
from tests.integration.test_secrets import files_under, redis_dump

pytestmark = pytest.mark.integration
TOKEN = secrets.token_hex(12)
FAST = dict(time_scale=1 / 600, queue_delay=0.0, seed=7)


class Receiver:
    """A webhook receiver on loopback: records every POST; paths under /fail answer 500."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append((self.path, json.loads(body)))
                self.send_response(500 if self.path.startswith("/fail") else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.server.server_port}{path}"

    def at(self, prefix: str) -> list[dict]:
        return [body for path, body in self.received if path.startswith(prefix)]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def store(redis_url) -> Store:
    return Store.from_url(redis_url)


def mixed_batch(store: Store, tmp_path, name: str = "night") -> None:
    new_batch(store, name, tmp_path / "out", [make_item(i, f"prompt {i}") for i in ("a", "b", "c", "d")])
    succeed(store, name, "a", tmp_path / "out", charged=True, cost=0.5)
    succeed(store, name, "b", tmp_path / "out")
    fail(store, name, "c", kind="content_policy", error="refused by the provider")
    fail(store, name, "d", kind="content_policy", error="refused by the provider")


def test_urls_from_the_environment_are_split_on_spaces_and_commas():
    assert parse_urls(" json://a/x,  ntfy://t ,mailto://u:p@h \n") == ["json://a/x", "ntfy://t", "mailto://u:p@h"]
    settings = Settings(REELBATCH_NOTIFY="json://a/x ntfy://t")
    assert urls_for(["ntfy://t", "json://m/y"], settings) == ["ntfy://t", "json://m/y", "json://a/x"]
    assert TOKEN not in repr(Settings(REELBATCH_NOTIFY=f"json://h/{TOKEN}"))


def test_one_message_per_outcome_and_failing_notifiers_only_logged(store, tmp_path, receiver, caplog):
    mixed_batch(store, tmp_path)
    urls = [receiver.url(f"/hook/{TOKEN}"), receiver.url("/fail"), f"json://127.0.0.1:{closed_port()}/x",
            f"nosuchservice://{TOKEN}"]
    with caplog.at_level(logging.DEBUG):
        assert notify_batch(store, "night", urls, ENDED) is True
    [got] = receiver.at("/hook")
    assert got["title"] == "reelbatch: night finished"
    body = got["message"].splitlines()
    assert body[0] == "4 items: 2 succeeded, 2 failed"
    assert body[1] == "cost: $0.50 charged + $0.56 estimated"
    assert body[2:4] == ["failures:", "  2 × content_policy: refused by the provider (e.g. c, d)"]
    assert body[-1] == f"results: {tmp_path / 'out' / 'results.jsonl'}"
    assert len(receiver.at("/fail")) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sorted(warnings) == ["notifier 2 of 4 (json://) did not take the message",
                                "notifier 3 of 4 (json://) did not take the message",
                                "notifier 4 of 4 (nosuchservice://) is not an Apprise URL; not notified"]
    assert TOKEN not in caplog.text and str(receiver.server.server_port) not in caplog.text

    assert notify_batch(store, "night", urls, ENDED) is False           # the same end: sent already
    assert len(receiver.at("/hook")) == 1
    store.transition("night", "c", S.PENDING)                           # a retry that ends again
    succeed(store, "night", "c", tmp_path / "out")
    assert notify_batch(store, "night", urls[:1], ENDED) is True
    assert receiver.at("/hook")[-1]["message"].startswith("4 items: 3 succeeded, 1 failed")


def test_a_pause_names_its_reason(store, tmp_path, receiver):
    mixed_batch(store, tmp_path)
    assert notify_batch(store, "night", [receiver.url("/hook")], PAUSED, "provider unreachable for 600 s")
    [got] = receiver.at("/hook")
    assert got["title"] == "reelbatch: night paused"
    assert got["message"].splitlines()[0] == "paused: provider unreachable for 600 s"


def test_the_fleet_watcher_tells_of_batches_it_saw_open(store, tmp_path, receiver):
    mixed_batch(store, tmp_path, "old")                                 # ended before it looked
    new_batch(store, "live", tmp_path / "live", [make_item(f"x{i}", "p") for i in range(3)])
    start(store, "live", "x0")
    watcher = BatchWatcher(store, [receiver.url("/fleet")])
    assert watcher.check() == []
    succeed(store, "live", "x0", tmp_path / "live")
    succeed(store, "live", "x1", tmp_path / "live")
    start(store, "live", "x2", S.SUBMITTING)
    assert watcher.check() == []
    store.transition("live", "x2", S.PENDING, error_kind="budget", error="over the budget")
    assert watcher.check() == [("live", PAUSED)]
    assert "budget reached: 1 items wait" in receiver.at("/fleet")[0]["message"]
    store.clear_errors("live", ["x2"])
    assert watcher.check() == []                                        # open again
    succeed(store, "live", "x2", tmp_path / "live")
    assert watcher.check() == [("live", ENDED)]
    assert watcher.check() == []
    assert [m["title"] for m in receiver.at("/fleet")] == ["reelbatch: live paused", "reelbatch: live finished"]


def test_plan_refuses_a_notify_entry_apprise_cannot_send_to(tmp_path):
    manifest = write_manifest(tmp_path, "bad-notify", 1, notify=["json://ok.example/x", f"nope://{TOKEN}"])
    done = reelbatch("plan", str(manifest), env=cli_env(tmp_path / "data"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    line = [n for n, text in enumerate(manifest.read_text().splitlines(), 1) if "nope://" in text][0]
    assert f"bad-notify.yaml:{line}: notify[1]: not an Apprise URL" in done.stderr
    assert TOKEN not in done.stderr


def test_submit_says_notify_is_for_run_only(tmp_path, redis_url):
    manifest = write_manifest(tmp_path, "fleet-notify", 2, notify=[f"json://127.0.0.1:9/{TOKEN}"])
    done = reelbatch("submit", str(manifest), env=cli_env(tmp_path / "data", REELBATCH_BROKER_URL=redis_url))
    assert done.returncode == 0, done.stderr
    assert "notify: is used by `reelbatch run` only" in done.stderr and TOKEN not in done.stdout + done.stderr
    dump, _ = redis_dump(redis.Redis.from_url(redis_url))
    assert b"rb:{fleet-notify}:meta" in dump and TOKEN.encode() not in dump


def _run(tmp_path, sim, name: str, env_urls: str, **manifest):
    env = cli_env(tmp_path / "data", sim, REELBATCH_NOTIFY=env_urls)
    path = write_manifest(tmp_path, name, 4, **manifest)
    return reelbatch("run", str(path), env=env, timeout=300), path


def test_run_notifies_the_manifest_and_the_environment_and_leaks_no_url(tmp_path, sim_factory, receiver):
    sim = sim_factory(concurrency=20, **FAST)
    done, manifest = _run(tmp_path, sim, "told", f"{receiver.url('/fail')}, {receiver.url(f'/env/{TOKEN}')}",
                          notify=[receiver.url(f"/manifest/{TOKEN}")])
    assert done.returncode == 0, done.stdout + done.stderr
    [from_manifest], [from_env] = receiver.at("/manifest"), receiver.at("/env")
    assert from_manifest == from_env and from_env["title"] == "reelbatch: told finished"
    assert "4 items: 4 succeeded" in from_env["message"] and "$2.24 charged" in from_env["message"]
    assert len(receiver.at("/fail")) == 1
    assert "notifier 2 of 3 (json://) did not take the message" in done.stderr
    assert TOKEN not in done.stdout + done.stderr

    again = reelbatch("run", str(manifest), env=cli_env(tmp_path / "data", sim,
                                                          REELBATCH_NOTIFY=receiver.url(f"/env/{TOKEN}")))
    assert again.returncode == 0 and len(receiver.at("/env")) == 1   # nothing new happened: no message
    data, out = tmp_path / "data", tmp_path / "out"
    server = EmbeddedRedis(data)
    server.start()
    try:
        dump, _ = redis_dump(redis.Redis.from_url(server.url))
    finally:
        server.stop()
    assert b"rb:{told}:notified" in dump and TOKEN.encode() not in dump
    leaked = [name for name, blob in {**files_under(data), **files_under(out)}.items() if TOKEN.encode() in blob]
    assert leaked == []


def test_run_that_stops_at_the_budget_notifies_a_pause(tmp_path, sim_factory, receiver):
    sim = sim_factory(concurrency=20, **FAST)
    done, _ = _run(tmp_path, sim, "capped", receiver.url("/hook"),
                   limits={"max_concurrency": 1, "requests_per_minute": 6000, "max_cost_usd": 1.2})
    assert done.returncode == 1, done.stdout + done.stderr
    [got] = receiver.at("/hook")
    assert got["title"] == "reelbatch: capped paused"
    assert got["message"].startswith("paused: budget reached: 2 items wait")
    assert yaml.safe_load((tmp_path / "capped.yaml").read_text())["limits"]["max_cost_usd"] == 1.2

"""Provider keys never land anywhere: after a full `reelbatch run` (embedded Redis, its worker, an
external simulator that only answers the canary key), the keys appear in no Redis key or value, no
Celery task message (decoded from every LPUSH in the append-only file, so messages long consumed
count too), no file under the data folder (append-only file, logs, configs), no file under the
output folder (videos, results.jsonl, sidecars, report.html, posters), and no command output.
Flower's API answers are checked in test_flower.py."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import pytest
import redis

from reelbatch.scheduler.stack.embedded import EmbeddedRedis
from reelbatch.simulator.server import Knobs, Simulator
from tests.integration.helpers import cli_env, reap, reelbatch, results, status_counts, write_manifest

pytestmark = pytest.mark.integration
TOKEN = secrets.token_hex(8)
SIM_CANARY = f"sk-SECRET-canary-{TOKEN}"
OXEN_CANARY = f"sk-SECRET-oxen-canary-{TOKEN}"
AIML_CANARY = f"sk-SECRET-aiml-canary-{TOKEN}"
# faults put error messages into records, attempts and logs: where a careless one would echo a key
FAULTS = dict(server_error_rate=0.1, fail_rate=0.1, drop_after_rate=0.05, expire_rate=0.1,
              rate_limit_rate=0.05)


def needles(secret: str) -> list[bytes]:
    """The secret as is, its random part alone, and base64 of it at each of the three alignments
    (Celery message bodies are base64)."""
    raw = secret.encode()
    found = [raw, TOKEN.encode()]
    for offset, skip in ((0, 0), (1, 2), (2, 3)):
        encoded = base64.b64encode(b"\0" * offset + raw)
        found.append(encoded[skip:-4])
    return found


NEEDLES = [n for s in (SIM_CANARY, OXEN_CANARY, AIML_CANARY) for n in needles(s)]


def hits(blob: bytes) -> list[bytes]:
    return [n for n in NEEDLES if n in blob]


def test_needles_find_a_key_inside_base64():
    assert hits(base64.b64encode(b'{"key": "' + SIM_CANARY.encode() + b'"}'))
    assert hits(b"x" + base64.b64encode(b"ab" + OXEN_CANARY.encode()))
    assert not hits(b"sk-SECRET-canary-0000")


def redis_dump(client: redis.Redis) -> tuple[bytes, int]:
    """Every key name and value, read by type; and how many keys there were."""
    parts, keys = [], 0
    for key in client.scan_iter(count=1000):
        keys += 1
        kind = client.type(key).decode()
        parts.append(key)
        if kind == "string":
            parts.append(client.get(key) or b"")
        elif kind == "hash":
            parts += [b for pair in client.hgetall(key).items() for b in pair]
        elif kind == "list":
            parts += client.lrange(key, 0, -1)
        elif kind == "set":
            parts += list(client.smembers(key))
        elif kind == "zset":
            parts += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            parts += [json.dumps({k.decode(): v.decode() for k, v in fields.items()}).encode()
                      for _, fields in client.xrange(key)]
    return b"\n".join(parts), keys


def aof_bulk_strings(data: bytes) -> list[bytes]:
    """Every argument of every command in a RESP append-only file."""
    out, pos = [], 0
    while (start := data.find(b"\r\n$", pos)) != -1:
        end = data.index(b"\r\n", start + 3)
        size = int(data[start + 3:end])
        out.append(data[end + 2:end + 2 + size])
        pos = end + 2 + size
    return out


def task_messages(strings: list[bytes]) -> list[dict]:
    """Kombu messages pushed onto the queue lists, with their bodies decoded."""
    found = []
    for s in strings:
        if not s.startswith(b"{") or b'"body"' not in s:
            continue
        try:
            message = json.loads(s)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("properties", {}).get("body_encoding") == "base64":
            message["decoded"] = base64.b64decode(message["body"]).decode()
            found.append(message)
    return found


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def canary_sim():
    sim = Simulator(knobs=Knobs(time_scale=1 / 600, queue_delay=0.0, seed=31, **FAULTS),
                    api_key=SIM_CANARY, host="127.0.0.1", port=0)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def data(tmp_path):
    yield tmp_path / "data"
    reap(tmp_path / "data")     # whatever a timed-out run left running


def test_no_key_anywhere_after_a_full_run(tmp_path, canary_sim, data):
    out = tmp_path / "out"
    manifest = write_manifest(tmp_path, "secrets", 20)
    env = cli_env(data, REELBATCH_SIMULATOR_URL=canary_sim.base_url,
                  REELBATCH_SIMULATOR_KEY=SIM_CANARY, OXEN_API_KEY=OXEN_CANARY,
                  AIMLAPI_KEY=AIML_CANARY)
    done = reelbatch("run", str(manifest), env=env)
    assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr
    assert status_counts(results(out))["succeeded"] >= 15      # the simulator took the canary key
    report = reelbatch("report", "secrets", env=env)
    assert report.returncode == 0, report.stderr
    assert (out / "report.html").exists()
    assert not hits((done.stdout + done.stderr + report.stdout + report.stderr).encode())

    server = EmbeddedRedis(data)
    server.start()
    try:
        dump, keys = redis_dump(redis.Redis.from_url(server.url))
    finally:
        server.stop()
    assert keys > 20 and b"rb:{secrets}:meta" in dump
    assert not hits(dump), "a key is in Redis"

    on_disk = files_under(data)
    aof = b"".join(v for name, v in on_disk.items() if name.endswith(".aof"))
    messages = task_messages(aof_bulk_strings(aof))
    assert len(messages) >= 20 and {"reelbatch.submit", "reelbatch.download"} <= \
        {m["headers"].get("task") for m in messages}
    for message in messages:
        assert not hits(json.dumps(message).encode()), f"a key in task message {message['headers']}"
    assert any(name.startswith("logs/") for name in on_disk)
    leaked = {name: hits(blob) for name, blob in {**on_disk, **files_under(out)}.items() if hits(blob)}
    assert leaked == {}, f"a key in files: {sorted(leaked)}"

"""Issue 22.6: an embedded Redis that cannot start says why in one line as soon as redis-server
exits (read from its own log), with the fix; it used to wait 30 s and say "did not come up". The
real redis-server binary, a plain socket listener on its port, a real full disk (a tiny tmpfs)."""

from __future__ import annotations

import socket
import subprocess

import pytest
import redis

from reelbatch.scheduler.stack.embedded import EmbeddedRedis
from reelbatch.scheduler.stack.redislog import RedisCannotStart
from tests.integration.helpers import cli_env, reelbatch

pytestmark = pytest.mark.integration   # redis-server processes and the CLI as a subprocess

DAMAGED_AOF = b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\nGARBAGE\r\n*3\r\n$3\r\nset\r\n$1\r\na\r\n$1\r\nb\r\n"


def answers(server: EmbeddedRedis) -> bool:
    return bool(redis.Redis.from_url(server.url, socket_timeout=5).ping())


def test_a_damaged_append_only_file_is_named_with_its_repair(tmp_path):
    (tmp_path / "appendonly.aof").write_bytes(DAMAGED_AOF)
    server = EmbeddedRedis(tmp_path)
    with pytest.raises(RedisCannotStart) as caught:
        server.start()
    said = str(caught.value)
    aof = tmp_path / "appendonly.aof"
    assert "damaged" in said and f"--fix {aof}" in said and "\n" not in said
    tool = said.split("`")[1].split(" --fix")[0]
    repaired = subprocess.run([tool, "--fix", str(aof)], input="y\n", capture_output=True, text=True)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr    # the advice works...
    with EmbeddedRedis(tmp_path) as again:                                # ...and it starts
        assert answers(again)


def test_the_cli_says_it_in_one_line_without_a_traceback(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "appendonly.aof").write_bytes(DAMAGED_AOF)
    done = reelbatch("status", env=cli_env(tmp_path / "data"), timeout=20)
    assert done.returncode == 3 and "redis-check-aof --fix" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_remembered_port_another_program_took_is_replaced_by_a_free_one(tmp_path):
    with EmbeddedRedis(tmp_path) as first:
        remembered = first.port
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # the old one's TIME_WAIT
    squatter.bind(("127.0.0.1", remembered))
    squatter.listen()
    try:
        with EmbeddedRedis(tmp_path) as second:
            assert second.port != remembered and answers(second)
            assert (tmp_path / "redis.port").read_text() == str(second.port)
    finally:
        squatter.close()


def test_a_full_disk_is_said_and_leaves_no_empty_password(full_disk):
    data = full_disk.path / "data"
    with pytest.raises(RedisCannotStart) as caught:
        EmbeddedRedis(data).start()
    assert "no space left" in str(caught.value) and "free some space" in str(caught.value)
    assert not (data / "redis.password").exists()
    full_disk.free()
    with EmbeddedRedis(data) as server:
        assert answers(server) and (data / "redis.password").read_text().strip()


def test_a_full_disk_under_a_remembered_port_is_said_too(full_disk):
    """The password is read (and made) before the remembered port is tried."""
    full_disk.free()
    data = full_disk.path / "data"
    data.mkdir()
    (data / "redis.port").write_text("6999")
    (data / "redis.password").write_text("")
    full_disk.fill()
    with pytest.raises(RedisCannotStart, match="no space left"):
        EmbeddedRedis(data).start()
    assert not (data / "users").exists() or not list((data / "users").iterdir())   # left again


def test_an_empty_password_file_counts_as_none(tmp_path):
    """What a full disk left before writes were atomic: that data dir used to fail forever."""
    (tmp_path / "redis.password").write_text("")
    with EmbeddedRedis(tmp_path) as server:
        assert answers(server) and len((tmp_path / "redis.password").read_text()) > 20


def test_a_running_server_that_refuses_our_password_is_not_doubled(tmp_path):
    """Its port is taken, but by our own server on these files: a second one would share its
    append-only file. Say which process to stop instead."""
    with EmbeddedRedis(tmp_path) as first:
        password = (tmp_path / "redis.password").read_text()
        (tmp_path / "redis.password").write_text("another")
        try:
            with pytest.raises(RedisCannotStart, match=f"pid {first.proc.pid}.*kill {first.proc.pid}"):
                EmbeddedRedis(tmp_path).start()
        finally:
            (tmp_path / "redis.password").write_text(password)
        assert answers(first)

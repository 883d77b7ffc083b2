"""The data folder's lease within one process: each service counts its holders, so a `run` ending in
one thread does not stop the Redis that the Python API (or another thread) still uses, and the
simulator still stops when its last holder leaves while Redis is held."""

from __future__ import annotations

import os

from reelbatch.scheduler.stack.lease import Lease


def test_a_service_stops_only_when_its_last_holder_in_this_process_leaves(tmp_path):
    run, api = Lease(tmp_path, "redis"), Lease(tmp_path, "redis")
    with run.locked():
        run.join()
        api.join()
        assert run.leave() is False          # the API still holds it: keep it running
        assert os.listdir(tmp_path / "users") == [run.me]
        assert api.leave() is True
        assert os.listdir(tmp_path / "users") == []


def test_the_simulator_stops_while_redis_is_still_held(tmp_path):
    redis, sim = Lease(tmp_path, "redis"), Lease(tmp_path, "simulator")
    with redis.locked():
        redis.join()
        sim.join()
        assert sim.leave() is True           # nobody else uses the simulator
        assert os.listdir(tmp_path / "users") == [redis.me]   # this process still uses Redis
        assert redis.leave() is True
        assert os.listdir(tmp_path / "users") == []


def test_a_holder_that_starts_its_service_again_still_holds_it_once(tmp_path):
    """A fault test kills its Redis and starts it again on the same object: one stop must stop it
    (before, the second start counted a second holder and the server outlived the test)."""
    redis = Lease(tmp_path, "redis")
    with redis.locked():
        redis.join()
        redis.join()
        assert redis.leave() is True
        assert os.listdir(tmp_path / "users") == []

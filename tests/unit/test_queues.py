"""Issue 23.1 (fleet): each provider's steps go to its own queue, and a worker consumes only the
queues of the providers it has a key for (and of the simulator, which needs none)."""

from __future__ import annotations

from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.stack.workers import refusal
from reelbatch.worker.queues import QUEUE, consumed, queue_for, served, unserved_here


def settings(**values) -> Settings:
    base = dict(oxen_api_key=None, aimlapi_key=None, fal_key=None, simulator_key=None)
    return Settings(_env_file=None, **{**base, **values})


def test_each_provider_has_its_queue_and_the_rest_goes_to_the_default_one():
    assert queue_for("oxen") == "reelbatch.oxen" and queue_for("simulator") == "reelbatch.simulator"
    assert queue_for(None) == QUEUE == "reelbatch"


def test_a_worker_consumes_the_queues_of_the_providers_it_has_a_key_for():
    keyed = settings(aimlapi_key="k")
    # the simulator's accounts need no key
    assert served(keyed) == ["aimlapi", "simulator", "simulator_aimlapi", "simulator_fal"]
    assert consumed(keyed) == ["reelbatch", "reelbatch.aimlapi", "reelbatch.simulator",
                               "reelbatch.simulator_aimlapi", "reelbatch.simulator_fal"]
    assert unserved_here(keyed) == ["oxen", "fal"]


def test_without_any_key_a_worker_serves_the_simulator_only():
    assert consumed(settings()) == ["reelbatch", "reelbatch.simulator", "reelbatch.simulator_aimlapi",
                                    "reelbatch.simulator_fal"]


def test_providers_named_for_the_worker_narrow_what_it_consumes():
    assert consumed(settings(oxen_api_key="k", fal_key="f", worker_providers="oxen")) == \
        ["reelbatch", "reelbatch.oxen"]
    assert served(settings(oxen_api_key="k", worker_providers="oxen, simulator")) == ["oxen", "simulator"]


def test_a_worker_asked_for_a_provider_it_has_no_key_for_refuses_naming_the_variable():
    said = refusal(settings(worker_providers="oxen,simulator"))
    assert said == "no key for oxen: set OXEN_API_KEY or leave it out of --providers"
    assert refusal(settings(oxen_api_key="k", worker_providers="oxen")) is None
    assert refusal(settings()) is None   # nothing asked: it serves what it can (the simulator)
    assert "unknown provider 'oxn'" in (refusal(settings(worker_providers="oxn")) or "")

"""The provider seam (docs/providers.md): every registry entry builds a client that is a Provider,
its abilities are the capability protocols it implements, and the engine never asks a client what it
has by name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from reelbatch.jobs.settings import Settings
from reelbatch.worker.providers import REGISTRY, build_provider

ENGINE = Path(__file__).resolve().parents[2] / "worker" / "engine"
EXPECTED = {
    "oxen": ["Cancels", "StreamsEvents", "ListsGenerations", "FindsLostSubmits", "ListsMadeGenerations",
             "PublishesPrices"],
    "aimlapi": ["FindsLostSubmits", "ListsMadeGenerations"],
    "fal": ["Cancels", "StreamsEvents", "FollowsRequests", "FindsLostSubmits", "PublishesPrices"],
    "simulator": ["Cancels", "StreamsEvents", "ListsGenerations", "FindsLostSubmits", "ListsMadeGenerations",
                  "PublishesPrices"],
}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_entry_builds_a_provider_with_its_declared_members(name):
    found = REGISTRY[name]
    settings = Settings(_env_file=None, **{found.key_field: "k-test"})
    client = build_provider(name, settings)
    try:
        for member in ("name", "charges_in_history", "download_credential", "submit", "get",
                       "charged_cost", "check_key", "close"):
            assert hasattr(client, member), f"{name} lacks {member}"
        assert client.name == name and isinstance(client.charges_in_history, bool)
    finally:
        client.close()


def test_abilities_are_the_capability_protocols_each_client_implements():
    assert {name: entry.abilities() for name, entry in REGISTRY.items() if name in EXPECTED} == \
        {name: EXPECTED[name] for name in REGISTRY if name in EXPECTED}


def test_each_entry_names_its_key_and_url_variables():
    assert REGISTRY["oxen"].key_variable == "OXEN_API_KEY"
    assert REGISTRY["aimlapi"].key_variable == "AIMLAPI_KEY"
    assert REGISTRY["fal"].key_variable == "FAL_KEY" and REGISTRY["fal"].url_variable == "FAL_QUEUE_URL"
    assert REGISTRY["simulator"].url_variable == "REELBATCH_SIMULATOR_URL"
    assert not REGISTRY["simulator"].needs_key and REGISTRY["oxen"].needs_key


def test_the_engine_never_asks_a_client_what_it_has_by_name():
    """No hasattr in worker/engine/: abilities are protocols checked with isinstance."""
    offenders = []
    for path in ENGINE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "hasattr":
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []

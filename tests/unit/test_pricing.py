"""Plan and budget use the provider's own prices (issue 13.8): read from Oxen's models endpoint (here
the simulator, over HTTP) when a key is set, cached in the data dir, never requested without a key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from reelbatch.jobs.catalog import catalog
from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.plan import plan_batch
from reelbatch.simulator.server import Knobs, Simulator
from reelbatch.worker.pricing import (
    CACHE_FILE,
    PRICE_TTL_S,
    RETRY_AFTER_FAILURE_S,
    _write_cache,
    price_from,
    provider_pricing,
    with_provider_prices,
)

KEY = "sim-price-key"
MODEL_ID = "kling-video-o1-image-to-video"


@pytest.fixture(scope="module")
def sim():
    server = Simulator(knobs=Knobs(time_scale=0.001, seed=3, cost_per_second=0.05), api_key=KEY).start()
    yield server
    server.stop()


def settings_for(sim, tmp_path: Path, key: str | None = KEY, **extra) -> Settings:
    return Settings(simulator_key=key, simulator_url=sim.base_url, data_dir=tmp_path / "data", **extra)


def model_requests(sim) -> int:
    return sim.stats()["requests"].get("GET /api/ai/models/{id}", 0)


def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "name": "p", "provider": "simulator",
                                    "model": "kling-o1/image-to-video", "defaults": {"duration": 10},
                                    "items": [{"id": "a", "prompt": "go", "start_image": "https://e.org/a.png"}]}))
    return path


def test_the_plan_uses_the_providers_price_and_caches_it(sim, tmp_path):
    before = model_requests(sim)
    plan = plan_batch(manifest(tmp_path), settings_for(sim, tmp_path))
    assert plan.items[0].estimated_cost_usd == pytest.approx(10 * 0.05)
    assert model_requests(sim) == before + 1
    cached = json.loads((tmp_path / "data" / CACHE_FILE).read_text())
    assert cached[f"{sim.base_url} {MODEL_ID}"]["pricing"]["cost_per_second"] == 0.05
    plan_batch(manifest(tmp_path), settings_for(sim, tmp_path))
    assert model_requests(sim) == before + 1        # the second plan reads the cache


def test_no_key_no_request_and_the_catalogue_price(sim, tmp_path):
    before = model_requests(sim)
    plan = plan_batch(manifest(tmp_path), settings_for(sim, tmp_path, key=None))
    assert plan.items[0].estimated_cost_usd == pytest.approx(10 * 0.112)
    assert model_requests(sim) == before and not (tmp_path / "data" / CACHE_FILE).exists()


def test_a_users_price_override_wins(sim, tmp_path):
    before = model_requests(sim)
    settings = settings_for(sim, tmp_path, price_overrides={"simulator:kling-o1/image-to-video": 0.3})
    assert plan_batch(manifest(tmp_path), settings).items[0].estimated_cost_usd == pytest.approx(3.0)
    assert model_requests(sim) == before


def test_stale_prices_are_fetched_again(sim, tmp_path):
    settings = settings_for(sim, tmp_path)
    provider_pricing(settings, "simulator", MODEL_ID, now=1000)
    before = model_requests(sim)
    provider_pricing(settings, "simulator", MODEL_ID, now=1000 + PRICE_TTL_S - 1)
    assert model_requests(sim) == before
    provider_pricing(settings, "simulator", MODEL_ID, now=1000 + PRICE_TTL_S + 1)
    assert model_requests(sim) == before + 1


def test_offline_uses_the_stale_cache_then_the_catalogue_and_does_not_retry_at_once(sim, tmp_path):
    settings = settings_for(sim, tmp_path)
    assert provider_pricing(settings, "simulator", MODEL_ID, now=1000)["cost_per_second"] == 0.05
    offline = Settings(simulator_key=KEY, simulator_url="http://127.0.0.1:9", data_dir=tmp_path / "data")
    # a different base URL is a different cache entry: nothing cached for it, nothing reachable
    assert provider_pricing(offline, "simulator", MODEL_ID, now=1000) is None
    assert with_provider_prices(offline, "simulator", "kling-o1/image-to-video") == offline
    cache = json.loads((tmp_path / "data" / CACHE_FILE).read_text())
    assert "failed_at" in cache[f"http://127.0.0.1:9 {MODEL_ID}"]
    # the reachable entry, stale and with its provider down: the stale price stands
    down = settings_for(sim, tmp_path, key="wrong-key")
    assert provider_pricing(down, "simulator", MODEL_ID, now=1000 + PRICE_TTL_S + 1)["cost_per_second"] == 0.05
    before = model_requests(sim)
    provider_pricing(down, "simulator", MODEL_ID, now=1000 + PRICE_TTL_S + RETRY_AFTER_FAILURE_S / 2)
    assert model_requests(sim) == before        # a failure is not retried for a while


def test_providers_without_a_prices_endpoint_keep_the_catalogue(sim, tmp_path):
    settings = Settings(aimlapi_key="k", aimlapi_base_url=sim.base_url, data_dir=tmp_path / "data")
    assert with_provider_prices(settings, "aimlapi", "kling-o1/image-to-video") == settings


def test_kept_sound_takes_the_higher_price():
    pricing = {"cost_per_second": 0.1, "cost_per_second_with_audio": 0.14, "cost_per_second_high_res": 0.3}
    assert price_from(pricing, catalog().model_for("oxen", "kling-o1/video-edit")) == 0.14
    assert price_from(pricing, catalog().model_for("oxen", "kling-o1/image-to-video")) == 0.1
    assert price_from({"cost_per_second": None}, catalog().model_for("oxen", "kling-o1/image-to-video")) is None


def test_a_cache_that_cannot_be_written_leaves_no_temporary_file(full_disk):
    """Issue 21.6: the hand-rolled write leaked its temporary file when the disk was full."""
    path = full_disk.path / CACHE_FILE
    _write_cache(path, {"k": {"pricing": {"cost_per_second": 0.1}, "pad": "x" * 300_000}})
    assert list(full_disk.path.iterdir()) == [full_disk.path / "filler"]

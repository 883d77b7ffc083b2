"""The engine's in-process tier: a real Runtime over the embedded redis-server (real store,
real Lua), whose provider clients are the real ones (worker/providers/) talking to fakes over
``httpx.MockTransport``, and a driver that runs each returned step through the task boundary on
a virtual clock. Fast: no Celery worker, no subprocess, no sleep."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from reelbatch.jobs.limits import holder
from reelbatch.jobs.money import Spend
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.store import ItemRecord
from reelbatch.scheduler.plan import plan_batch
from reelbatch.worker.engine import batch as batches, timing
from reelbatch.worker.providers import build_provider
from reelbatch.worker.providers.http import build_download_client
from reelbatch.worker.runtime import Runtime
from tests.engine.driver import Driver
from tests.engine.fakes import FAL_QUEUE, FakeAimlapi, FakeCdn, FakeFal, FakeOxen

IMAGE = "https://example.org/ox.png"
MODEL = "kling-o1/image-to-video"


@dataclass
class Engine:
    """One test's engine: the context, the fakes behind its providers, the driver."""

    ctx: Runtime
    oxen: FakeOxen     # the "simulator" provider: Oxen's protocol
    aiml: FakeAimlapi  # the "aimlapi" provider
    fal: FakeFal       # the "fal" provider
    cdn: FakeCdn
    driver: Driver
    folder: Path

    def batch(self, n: int = 1, name: str = "b", provider: str = "simulator",
              start_at: float | None = None, **manifest) -> str:
        """Register a batch of ``n`` items (``i0``, ``i1``, ...) from a real manifest."""
        doc = {"version": 1, "name": name, "provider": provider, "model": MODEL,
               "output": str(self.folder / name), "defaults": {"duration": 5, "start_image": IMAGE},
               "items": [{"id": f"i{k}", "prompt": f"An ox walks, take {k}"} for k in range(n)],
               "limits": {"max_concurrency": 20, "requests_per_minute": 6000},
               "retry": {"max_attempts": 3},
               "polling": {"first_after_s": 5, "min_interval_s": 2, "max_interval_s": 10}}
        doc.update(manifest)
        path = self.folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        batches.register(self.ctx.store, plan_batch(path, self.ctx.settings), start_at)
        return name

    def start(self, name: str = "b") -> int:
        """Put the batch to work (what `run` and `submit` do) and queue the steps."""
        return self.driver.send(batches.enqueue(self.ctx, name))

    def run(self, n: int = 1, name: str = "b", until: float | None = None, **manifest) -> ItemRecord:
        """Register, start and run a batch to its end; the first item's record."""
        self.batch(n, name, **manifest)
        self.start(name)
        self.driver.run(until)
        return self.item("i0", name)

    def item(self, item_id: str = "i0", name: str = "b") -> ItemRecord:
        rec = self.ctx.store.item(name, item_id)
        assert rec is not None
        return rec

    def holds_slot(self, item_id: str = "i0", name: str = "b", provider: str = "simulator") -> bool:
        return holder(name, item_id) in self.ctx.slots(provider).holders()

    def spend(self, name: str = "b") -> Spend:
        return self.ctx.store.spend(name)

    def kinds(self, item_id: str = "i0", name: str = "b") -> list[str]:
        """The kinds of the item's recorded attempts, oldest first."""
        return [a["kind"] for a in self.ctx.store.attempts(name, item_id)]


def engine_settings(redis_url: str, data_dir: Path, **overrides) -> Settings:
    """Settings from nothing but these arguments (no environment file): the simulator without a
    key (so planning asks no price), the AI/ML API and fal with one."""
    values = dict(broker_url=redis_url, data_dir=data_dir, simulator_url="http://sim.test",
                  simulator_key=None, aimlapi_key="aiml-test-key", aimlapi_base_url="https://aiml.test",
                  fal_key="fal-test-key", fal_queue_url=FAL_QUEUE, fal_api_url="https://api.fal.test",
                  fal_rest_url="https://rest.fal.test", event_listener=False)
    return Settings(_env_file=None, **{**values, **overrides})


@pytest.fixture
def engine(redis_url, tmp_path) -> Engine:
    settings = engine_settings(redis_url, tmp_path / "data")
    ctx = Runtime(settings)
    oxen, aiml, fal, cdn = FakeOxen(), FakeAimlapi(), FakeFal(), FakeCdn()
    ctx._providers.update(simulator=build_provider("simulator", settings, oxen.transport),
                          aimlapi=build_provider("aimlapi", settings, aiml.transport),
                          fal=build_provider("fal", settings, fal.transport))
    ctx.download_client = build_download_client(settings, cdn.transport)
    timing.forget()   # learned generation times are cached per process
    yield Engine(ctx, oxen, aiml, fal, cdn, Driver(ctx), tmp_path)
    ctx.close()
    ctx.download_client.close()

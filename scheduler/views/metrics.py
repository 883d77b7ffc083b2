"""Prometheus metrics of every batch, read from the store's counters at each scrape.

A custom Collector (not counters bumped by the workers): the store already keeps every figure per
batch (per-state sets, spend, the budget's waiting set, pauses, provider slots, learned generation
times), so a scrape is a few Redis calls per batch whatever its size, several processes can serve
the same figures, and nothing is lost when a worker restarts. Labels are batch, state, provider,
model, duration: never an item id, so the number of series stays bounded by batches x states.

Served by `reelbatch run` when REELBATCH_METRICS_PORT is set, and by the fleet's `scheduler`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from reelbatch.jobs.fanout import Fanout
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import BatchMeta, Store
from reelbatch.worker.providers import PROVIDERS

log = logging.getLogger("reelbatch.metrics")
BUCKETS_S = (30, 60, 90, 120, 180, 240, 300, 450, 600, 900, 1200, 1800, 3600)
REASON_CHARS = 80   # a pause reason is a label value: kept short (one per paused batch)


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"reelbatch_{name}", doc, labels=labels)


class BatchCollector(Collector):
    """Batch-level series from the store, read on each scrape."""

    def __init__(self, store: Store):
        self.store = store

    def collect(self) -> Iterator[Metric]:
        yield from self._batches()
        yield from self._providers()
        yield self._generation_times()

    def _batches(self) -> Iterator[Metric]:
        items = _gauge("items", "Items of the batch in each state.", ["batch", "provider", "state"])
        spend = _gauge("spend_usd", "What the batch's generations cost: charged (the provider's "
                       "figure) or estimated (the catalogue's price).", ["batch", "provider", "source"])
        ceiling = _gauge("max_cost_usd", "The batch's cost ceiling (limits.max_cost_usd).", ["batch"])
        budget = _gauge("budget_waiting_items", "Pending items parked by the batch's budget.", ["batch"])
        paused = _gauge("batch_paused", "1 while the batch is paused, with the reason.", ["batch", "reason"])
        for name in self.store.batches():
            meta = self.store.batch(name)
            if meta is None:
                continue
            fanout = self.store.fanouts.load(name)
            for (provider, state), count in self._items(meta, fanout).items():
                items.add_metric([name, provider, state.value], count)
            money = self.store.spend(name)
            provider = "" if fanout else meta.provider   # the store keeps a batch's spend, not a provider's
            spend.add_metric([name, provider, "charged"], money.charged_usd)
            spend.add_metric([name, provider, "estimated"], money.estimated_usd)
            if meta.max_cost_usd:
                ceiling.add_metric([name], meta.max_cost_usd)
            budget.add_metric([name], self.store.budget_waiting(name))
            paused.add_metric([name, (meta.paused or "")[:REASON_CHARS]], 1 if meta.paused else 0)
        yield from (items, spend, ceiling, budget, paused)

    def _items(self, meta: BatchMeta, fanout: Fanout | None) -> dict[tuple[str, S], int]:
        """Items per (provider, state). A batch over several providers: per provider each item is
        bound to (one pipelined read per state; "" for pending items not yet bound)."""
        name = meta.name
        if fanout is None:
            return {(meta.provider, state): n for state, n in self.store.counts(name).items()}
        found: dict[tuple[str, S], int] = {}
        for state in S:
            bound = Counter(self.store.fanouts.bindings(name, self.store.item_ids(name, state)).values())
            for provider in (*fanout.providers, None):
                if bound[provider] or provider is not None:
                    found[(provider or "", state)] = bound[provider]
        return found

    def _providers(self) -> Iterator[Metric]:
        flight = _gauge("in_flight", "Generations holding a concurrency slot at the provider.", ["provider"])
        waiting = _gauge("slot_waiting", "Items waiting in line for a provider slot.", ["provider"])
        down = _gauge("provider_unreachable", "1 while the provider cannot be reached.", ["provider"])
        serving = _gauge("provider_workers", "Live workers with the provider's key, consuming its "
                         "queue (0 with items open: no worker has a key for it).", ["provider"])
        asked = CounterMetricFamily("reelbatch_provider_requests", "Requests to the provider by outcome "
                                    "(ok, transient: retried, permanent: not).", labels=["provider", "outcome"])
        for provider in PROVIDERS:
            for outcome, count in sorted(self.store.requests(provider).items()):
                asked.add_metric([provider, outcome], count)
            slots = self.store.slots(provider)
            flight.add_metric([provider], slots.held())
            waiting.add_metric([provider], slots.waiting())
            down.add_metric([provider], 1 if self.store.provider_down(provider) else 0)
            serving.add_metric([provider], self.store.serving(provider))
        workers = _gauge("workers", "Workers whose heartbeat is live.", [])
        workers.add_metric([], len(self.store.workers()))
        yield from (flight, waiting, down, serving, asked, workers)

    def _generation_times(self) -> Metric:
        """The generation times the workers learned (the last ones kept per model and duration)."""
        family = HistogramMetricFamily("reelbatch_generation_seconds", "Generation time, submit to "
                                       "finished, of the recent generations of a model and duration.",
                                       labels=["provider", "model", "duration"])
        for (provider, model, seconds), times in sorted(self.store.learned_times().items()):
            buckets = [(str(b), float(sum(t <= b for t in times))) for b in BUCKETS_S]
            family.add_metric([provider, model, str(seconds)], buckets + [("+Inf", float(len(times)))],
                              sum(times))
        return family


def registry_for(store: Store) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BatchCollector(store))
    return registry


class MetricsServer(AbstractContextManager["MetricsServer"]):
    """The endpoint on ``settings.metrics_port`` (``/metrics``), stopped on exit."""

    def __init__(self, store: Store, settings: Settings):
        self.store, self.settings = store, settings
        self.server: Any = None

    def __enter__(self) -> MetricsServer:
        port = self.settings.metrics_port
        self.server, _thread = start_http_server(port or 0, addr=self.settings.metrics_address,
                                                 registry=registry_for(self.store))
        log.info("metrics on http://%s:%s/metrics", self.settings.metrics_address, port)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_metrics(store: Store, settings: Settings) -> AbstractContextManager[Any]:
    """The metrics endpoint when REELBATCH_METRICS_PORT is set, else nothing."""
    return MetricsServer(store, settings) if settings.metrics_port else nullcontext()

"""A provider's own per-second prices for plan and budget, where it publishes them.

Oxen publishes each model's prices at ``GET /api/ai/models/{id}`` (``pricing.cost_per_second``,
``cost_per_second_with_audio``, ``cost_per_second_high_res``; inference-api/overview.mdx). With a key,
``with_provider_prices`` reads them (at most once per ``PRICE_TTL_S``, cached as JSON in the data dir)
and puts them under the settings' ``price_overrides``, so the plan's estimates and the budget use the
provider's own numbers. Without a key, or offline, nothing is requested and the catalogue's cited
prices stand. A price the user set in ``price_overrides`` always wins.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from reelbatch.jobs.catalog import ModelSpec, catalog
from reelbatch.jobs.errors import ManifestError, ProviderError
from reelbatch.jobs.files import write_text
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.tuning import PRICE_RETRY_AFTER_FAILURE_S as RETRY_AFTER_FAILURE_S, PRICE_TTL_S

log = logging.getLogger(__name__)

CACHE_FILE = "provider-prices.json"
PLAN_TIMEOUTS = {"http_connect_timeout_s": 3.0, "http_read_timeout_s": 5.0, "http_pool_timeout_s": 3.0}


def price_from(pricing: dict[str, Any], spec: ModelSpec) -> float | None:
    """USD per output second. For a model that keeps the source's sound (it takes keep_audio) the
    higher of the plain and with-audio price, so the budget errs high: which one Oxen bills for a
    kept soundtrack is undocumented. ``cost_per_second_high_res`` does not apply: O1 has no
    resolution parameter."""
    prices = [pricing.get("cost_per_second")]
    if "keep_audio" in spec.takes:
        prices.append(pricing.get("cost_per_second_with_audio"))
    numbers = [float(p) for p in prices if isinstance(p, (int, float, str)) and _is_number(p)]
    return max(numbers) if numbers else None


def _is_number(value: Any) -> bool:
    try:
        return float(value) >= 0 and not isinstance(value, bool)
    except (TypeError, ValueError):
        return False


def _cache_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / CACHE_FILE


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: dict[str, Any]) -> None:
    try:
        write_text(path, json.dumps(data, indent=1, sort_keys=True))
    except OSError as exc:
        log.info("could not cache provider prices in %s: %s", path, exc)


def _fetch(settings: Settings, provider: str, model_id: str) -> dict[str, Any] | None:
    # imported here, not at the top: a plan that needs no fetch (no key, fresh cache) never loads
    # httpx and the clients (~0.1 s of `reelbatch plan`)
    from reelbatch.worker.providers import build_provider
    from reelbatch.worker.providers.base import PublishesPrices

    client = build_provider(provider, settings.model_copy(update=PLAN_TIMEOUTS))
    try:
        return client.model_pricing(model_id) if isinstance(client, PublishesPrices) else None
    finally:
        client.close()


def provider_pricing(settings: Settings, provider: str, model_id: str,
                     now: float | None = None) -> dict[str, Any] | None:
    """The model's ``pricing`` object: from the cache while fresh, else from the provider (and
    cached); a stale entry when the provider cannot be reached; None without a key."""
    from reelbatch.worker.providers.base import PublishesPrices  # see _fetch
    from reelbatch.worker.providers.registry import entry as registry_entry

    found = registry_entry(provider)
    if not issubclass(found.client, PublishesPrices) or not found.key(settings):
        return None
    now = time.time() if now is None else now
    path, key = _cache_path(settings), f"{found.base_url(settings)} {model_id}"
    cache = _read_cache(path)
    entry: dict[str, Any] = cache[key] if isinstance(cache.get(key), dict) else {}
    if entry.get("pricing") and now - entry.get("fetched_at", 0) < PRICE_TTL_S:
        return entry["pricing"]
    if now - entry.get("failed_at", 0) < RETRY_AFTER_FAILURE_S:
        return entry.get("pricing")
    try:
        pricing = _fetch(settings, provider, model_id)
    except ProviderError as exc:
        log.info("using cached or catalogue prices: %s", exc)
        cache[key] = {**entry, "failed_at": now}
        _write_cache(path, cache)
        return entry.get("pricing")
    cache[key] = {"fetched_at": now, "pricing": pricing}
    _write_cache(path, cache)
    return pricing


def with_provider_prices(settings: Settings, provider: str, model: str) -> Settings:
    """``settings`` with the provider's own price for ``model`` under ``price_overrides``
    (``"<provider>:<neutral model>"``), unless the user set one there already."""
    try:
        spec = catalog().model_for(provider, model)
    except ManifestError:
        return settings   # the plan reports it, with its line
    key = f"{provider}:{spec.name}"
    if key in settings.price_overrides:
        return settings
    pricing = provider_pricing(settings, provider, spec.ids[provider])
    price = price_from(pricing, spec) if pricing else None
    if price is None:
        return settings
    return settings.model_copy(update={"price_overrides": {**settings.price_overrides, key: price}})

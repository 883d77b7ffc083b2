"""The model catalogue (configs/models.yaml): per-model constraints, prices and provider mapping.

A model's neutral constraints hold for every provider unless that provider's entry overrides them
(Oxen requires reference images where the AI/ML API does not, the AI/ML API requires views on every
element, ...). ``catalog().model_for(provider, model)`` gives that provider's view of a model: the
overrides applied, the provider's model id, its typical generation time as ``expected_seconds``.

The catalogue's parts, each its own module:

    catalog_models.py   the models, the catalogue loaded once, a provider's view, prices
    catalog_checks.py   validation of an item's parameters against its model (``check_params``)
    catalog_wire.py     the provider's wire fields, the schema check, the request's trace id
"""

from __future__ import annotations

from reelbatch.jobs.catalog_checks import check_params
from reelbatch.jobs.catalog_models import (
    DEFAULT_BACKEND,
    GIVE_UP_FACTOR,
    GIVE_UP_FLOOR_S,
    Catalog,
    Dialect,
    MediaLimits,
    ModelSpec,
    ProviderInfo,
    Tier,
    catalog,
    for_backend,
    price_per_second,
    tier_model_id,
    tier_price,
)
from reelbatch.jobs.catalog_wire import check_wire, client_request_id, provider_request, wire_body

__all__ = [
    "DEFAULT_BACKEND", "GIVE_UP_FACTOR", "GIVE_UP_FLOOR_S", "Catalog", "Dialect", "MediaLimits", "ModelSpec",
    "ProviderInfo", "Tier", "catalog", "check_params", "check_wire", "client_request_id", "for_backend",
    "price_per_second", "provider_request", "tier_model_id", "tier_price", "wire_body",
]

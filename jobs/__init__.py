"""The domain: manifests, items, states, errors, policies and the Redis state store. Imports neither
Celery nor httpx; every other package builds on it."""

__all__ = [
    "catalog", "content", "depth", "errors", "expand", "fanout", "files", "inputs", "item", "limits",
    "manifest", "money", "leases", "manifest_yaml", "names", "offers", "policy", "schemas", "settings", "state",
    "store", "tuning", "unclaimed",
]

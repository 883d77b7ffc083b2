"""What runs inside a Celery worker: the app and its tasks, the engine (worker/engine/, reached
through control.py), the provider clients (worker/providers/), downloads and the output folder."""

__all__ = [
    "app", "context", "control", "folder", "listener", "logs", "outputs", "pricing", "providers", "queues",
    "results", "storage", "tasks", "tether",
]

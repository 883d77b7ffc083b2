"""What runs inside a Celery worker: the app and its tasks, the engine (worker/engine/, reached
through control.py), the provider clients (worker/providers/), downloads and the output folder."""

__all__ = [
    "app", "control", "event_stream", "folder", "history_watch", "logs", "outputs", "pricing", "providers", "results", "runtime", "storage",
    "tasks", "tether",
]

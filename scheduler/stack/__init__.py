"""The services a batch runs on: the embedded Redis and the simulator process (shared per data dir
through leases), the broker connection, Celery workers, Flower and the fleet's scheduler."""

__all__ = ["embedded", "simproc", "lease", "broker", "service", "redislog", "flower", "workers", "worker_group"]

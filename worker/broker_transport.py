"""kombu's Redis transport with one Redis client per channel for what it sends.

kombu builds a new ``redis.Redis`` for every message and every task event it publishes
(``Channel._create_client``), and redis-py fills a table of response callbacks in each: about a
tenth of a busy worker's GIL time (py-spy --gil on `bench_makespan.py --only f`). redis-py's
client is safe to share between threads (each command takes a connection from the pool), so a
channel keeps one, on the same connection pool kombu's would use, made again when kombu replaces
that pool. Only for ``redis://`` URLs: a ``rediss://`` one keeps kombu's own transport and its TLS
defaults.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

TRANSPORT = "reelbatch.worker.broker_transport:Transport"


def transport_for(url: str | None) -> str | None:
    """The kombu transport for a broker URL: ours for plain Redis, else kombu's choice (None)."""
    return TRANSPORT if url is not None and url.startswith("redis://") else None


class Channel(kombu_redis.Channel):
    _sender: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:   # kombu already keeps the one it consumes with
            return super()._create_client(asynchronous=True)
        if self._sender is None or self._sender.connection_pool is not self.pool:
            self._sender = super()._create_client()
        return self._sender


class Transport(kombu_redis.Transport):
    Channel = Channel

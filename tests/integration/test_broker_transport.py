"""kombu's Redis transport with one client per channel for what it sends
(worker/broker_transport.py), on the embedded Redis."""

from __future__ import annotations

import pytest
from kombu import Connection
from kombu.transport import redis as kombu_redis

from reelbatch.worker.broker_transport import TRANSPORT, Channel, Transport, transport_for

pytestmark = pytest.mark.integration


def test_plain_redis_urls_use_it_and_tls_ones_keep_kombus():
    assert transport_for("redis://:pw@127.0.0.1:6379/0") == TRANSPORT
    assert transport_for("rediss://:pw@cache.example:6380/0") is None   # kombu's TLS defaults
    assert transport_for(None) is None


def test_a_channel_sends_through_one_client_and_messages_arrive(redis_url):
    with Connection(redis_url, transport=TRANSPORT) as conn:
        assert isinstance(conn.transport, Transport)
        channel = conn.default_channel
        assert isinstance(channel, Channel)
        first = channel._create_client()
        with conn.Producer() as producer:
            for i in range(3):
                producer.publish({"n": i}, routing_key="probe", exchange="")
        assert channel._create_client() is first            # kombu's would be a new one each time
        assert first.connection_pool is channel.pool
        queue = conn.SimpleQueue("probe")
        received = [queue.get(timeout=5) for _ in range(3)]
        for message in received:
            message.ack()
        assert [m.payload for m in received] == [{"n": 0}, {"n": 1}, {"n": 2}]
        queue.close()


def test_a_replaced_pool_gets_a_new_client(redis_url):
    with Connection(redis_url, transport=TRANSPORT) as conn:
        channel = conn.default_channel
        first = channel._create_client()
        channel._pool = None                                 # as kombu does when it drops its pools
        second = channel._create_client()
        assert second is not first and second.connection_pool is channel.pool
        assert second.ping()


def test_the_consuming_client_is_kombus_own(redis_url):
    with Connection(redis_url, transport=TRANSPORT) as conn:
        channel = conn.default_channel
        assert channel.client is channel.client               # kombu's cached asynchronous client
        assert channel.client is not channel._create_client()
        assert isinstance(channel, kombu_redis.Channel)

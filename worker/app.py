"""The Celery app, configured from settings. Importing this module builds nothing but the app object;
the broker URL is read when the app first connects."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import celeryd_after_setup, setup_logging, worker_init
from kombu import pools as kombu_pools

from reelbatch.jobs.settings import get_settings
from reelbatch.worker import beat, logs, queues, tether
from reelbatch.worker.broker_transport import transport_for

QUEUE = queues.QUEUE


def configure(app: Celery) -> None:
    settings = get_settings()
    app.conf.update(
        broker_url=settings.broker_url,
        broker_transport=transport_for(settings.broker_url),
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        task_serializer="json", accept_content=["json"], result_serializer="json",
        task_ignore_result=True,            # results live in the state store, not in Celery
        task_acks_late=True,                # a task lost with its worker is delivered again...
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_eta_task_limit=settings.worker_eta_task_limit,
        task_default_queue=QUEUE,
        task_send_sent_event=True, worker_send_task_events=True,   # Flower sees every task
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        broker_pool_limit=settings.worker_concurrency + 4,
        beat_schedule={"reelbatch-sweep": {"task": "reelbatch.sweep",
                                           "schedule": beat.every(settings.sweep_every_s)}},
    )


app = Celery("reelbatch", include=["reelbatch.worker.tasks"])


@setup_logging.connect
def _logging(loglevel: int | str | None = None, **_: object) -> None:
    """Our own log setup replaces Celery's: a private rotating file, no URLs at INFO."""
    logs.configure(loglevel or "INFO")


@worker_init.connect
def _watch_parent(**_: object) -> None:
    """A worker `run` started stops when `run` dies (the watchdog, where prctl is missing)."""
    tether.watch_parent_from_env()


@celeryd_after_setup.connect
def _provider_queues(sender: object = None, instance: Any = None, **_: object) -> None:
    """Besides the default queue (``-Q``), the worker consumes the queues of the providers it has
    a key for (worker/queues.py): another provider's items are left to a worker with its key."""
    for name in queues.consumed(get_settings())[1:]:
        instance.app.amqp.queues.select_add(name)


app.on_configure.connect(lambda sender, **_: configure(sender), weak=False)


def use_broker(url: str) -> None:
    """Point this process's app at ``url`` (the embedded Redis, decided at run time). A process
    that moves to another URL (the Python API, after an embedded Redis was restarted on another
    port) drops the connections it pooled for the old one."""
    _ = app.conf.broker_url   # configure from settings first, so this override sticks
    if app.conf.broker_url != url and app._pool is not None:
        drop_pools()
    app.conf.broker_url = url
    app.conf.broker_transport = transport_for(url)


def drop_pools() -> None:
    """Close and forget the connections and producers this process pooled: the next message
    connects anew (to another URL, or with another transport)."""
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None
    kombu_pools.reset()   # kombu's own registry keeps the closed pools, keyed by URL

"""`reelbatch flower`: Flower on the configured broker, behind basic auth.

Credentials come from FLOWER_BASIC_AUTH (``user:password``, several joined by commas), which Flower
reads itself, so they never appear on a command line. Without them Flower starts only when asked with
``--no-auth``, and then only on 127.0.0.1. The broker URL reaches Celery through the environment too.
"""

from __future__ import annotations

import os
import sys
from importlib import resources

import click

from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.stack.broker import broker
from reelbatch.scheduler.stack.embedded import run_foreground

AUTH_ENV = "FLOWER_BASIC_AUTH"
LOOPBACK = "127.0.0.1"


def flower_config() -> str:
    """The path of configs/flowerconfig.py (persistence, task limits, columns)."""
    return str(resources.files("reelbatch.configs").joinpath("flowerconfig.py"))


def check_auth(credentials: str | None, no_auth: bool, address: str) -> None:
    """Refuse a Flower that anyone on the network could open."""
    if credentials:
        pairs = [pair.partition(":") for pair in credentials.split(",")]
        if not all(user and sep and password for user, sep, password in pairs):
            raise click.UsageError(f"{AUTH_ENV} must be user:password (several joined by commas)")
        return
    if not no_auth:
        raise click.UsageError(f"set {AUTH_ENV}=user:password, or pass --no-auth to serve "
                               f"Flower without a password on {LOOPBACK} only")
    if address != LOOPBACK:
        raise click.UsageError(f"--no-auth serves only on {LOOPBACK}, not on {address!r}")


def flower_command(address: str, port: int) -> list[str]:
    return [sys.executable, "-P", "-m", "celery", "-A", "reelbatch.worker.app:app", "flower",
            f"--address={address}", f"--port={port}", f"--conf={flower_config()}"]


def run_flower(settings: Settings, address: str, port: int, no_auth: bool) -> int:
    check_auth(os.environ.get(AUTH_ENV), no_auth, address)
    return run_foreground(flower_command(address, port), {"REELBATCH_BROKER_URL": broker(settings)},
                          settings.data_dir)

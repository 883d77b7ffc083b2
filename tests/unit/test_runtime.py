"""A worker without the Redis URL says so, instead of failing inside redis-py."""

import pytest

from reelbatch.jobs.errors import ServiceUnavailable
from reelbatch.jobs.settings import Settings
from reelbatch.worker.runtime import Runtime


def test_a_worker_without_a_broker_url_says_which_setting_is_missing():
    ctx = Runtime(Settings(broker_url=None))
    with pytest.raises(ServiceUnavailable, match="REELBATCH_BROKER_URL"):
        _ = ctx.store
    with pytest.raises(ServiceUnavailable, match="REELBATCH_BROKER_URL"):
        ctx.rate("simulator")

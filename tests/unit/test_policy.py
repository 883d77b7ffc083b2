import random

import pytest

from jobs.policy import PollPolicy, RetryPolicy
from jobs.state import TERMINAL, TRANSITIONS, ItemState, can_transition


@pytest.mark.parametrize("retries", range(10))
def test_backoff_grows_with_jitter_and_is_capped(retries):
    policy = RetryPolicy(base_s=1, factor=2, max_s=30)
    delays = [policy.backoff(retries, rng=random.Random(seed)) for seed in range(50)]
    ceiling = min(30, 2 ** retries)
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1  # jitter


def test_retry_after_wins_over_backoff():
    policy = RetryPolicy(max_s=60)
    assert 7 <= policy.backoff(0, retry_after=7) <= 7.25
    assert policy.backoff(3, retry_after=500) <= 60.25


def test_first_poll_lands_early_then_polls_tighten():
    policy = PollPolicy(expected_s=600, early_s=480, min_interval_s=5, max_interval_s=60)
    assert policy.first_delay() == 480
    assert policy.next_delay(480) == 60        # half of 120 s remaining
    assert policy.next_delay(590) == 5         # clamped to the minimum
    assert policy.next_delay(900) == 5         # late: poll at the minimum interval
    assert policy.next_delay(0) == 60          # never more than the maximum


def test_state_machine_has_no_exit_from_success():
    assert TRANSITIONS[ItemState.SUCCEEDED] == frozenset()
    assert not can_transition(ItemState.PENDING, ItemState.SUCCEEDED)
    assert can_transition(ItemState.FAILED, ItemState.PENDING)   # `reelbatch retry`
    assert ItemState.SUCCEEDED in TERMINAL

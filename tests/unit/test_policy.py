import random

import pytest

from reelbatch.jobs.policy import RETRIES, PollPolicy, Retry
from reelbatch.jobs.state import TERMINAL, TRANSITIONS, ItemState, can_transition


@pytest.mark.parametrize("retries", range(10))
def test_backoff_grows_with_jitter_and_is_capped(retries):
    policy = Retry(base_s=1, max_s=30)
    delays = [policy.delay(retries, rng=random.Random(seed)) for seed in range(50)]
    ceiling = min(30, 2 ** retries)
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1  # jitter


def test_retry_after_wins_over_backoff():
    policy = Retry(max_s=60)
    assert 7 <= policy.delay(0, retry_after=7) <= 7.25
    assert policy.delay(3, retry_after=500) <= 60.25


def test_every_step_has_a_bounded_retry_within_the_countdown_cap():
    from reelbatch.jobs.state import Step

    assert set(RETRIES) == set(Step)
    assert all(r.max_attempts > 0 and r.max_s <= 300 for r in RETRIES.values())
    assert Retry(3).exhausted(4) and not Retry(3).exhausted(3) and not Retry(0).exhausted(10**6)


def test_first_poll_lands_early_then_polls_tighten():
    policy = PollPolicy(expected_s=600, early_s=480, late_s=840, min_interval_s=5, max_interval_s=600)
    assert policy.first_delay() == 480
    assert policy.next_delay(480) == 120       # (840 - 480) / 3: three polls cross the bulk
    assert policy.next_delay(700) == 120       # a steady step, not a countdown to the median
    assert policy.next_delay(1240) == 200      # the slow tail: half of how late it is
    assert policy.next_delay(5000) == 600      # never more than the maximum


def test_polls_are_clamped_to_the_manifest_intervals():
    policy = PollPolicy(expected_s=600, early_s=480, late_s=840, min_interval_s=5, max_interval_s=60)
    assert policy.next_delay(480) == 60
    narrow = PollPolicy(expected_s=10, early_s=9.9, late_s=10.1, min_interval_s=5, max_interval_s=60)
    assert narrow.next_delay(10) == 5
    assert PollPolicy(expected_s=1, early_s=0.5, min_interval_s=2).first_delay() == 2


def test_a_first_poll_held_early_by_the_maximum_is_followed_by_one_at_the_early_part():
    """The maximum interval forced the first poll before the early part (a generation is rarely
    done by then): the next comes at the early part, not a step after the forced one."""
    policy = PollPolicy(expected_s=600, early_s=480, late_s=840, min_interval_s=5, max_interval_s=300)
    assert policy.first_delay() == 300
    assert policy.next_delay(300) == 180       # to 480, not 300 + 120
    assert policy.next_delay(400) == 120       # the step, when the early part is nearer
    held = PollPolicy(expected_s=600, early_s=480, late_s=840, min_interval_s=5, max_interval_s=100)
    assert held.next_delay(100) == 100         # never past the maximum


def test_before_anything_is_learned_the_bulk_is_guessed_around_the_expected_time():
    policy = PollPolicy(expected_s=600, early_s=600, min_interval_s=1, max_interval_s=600)
    assert policy.next_delay(600) == 50        # expected +- a quarter: (750 - 600) / 3
    default = PollPolicy(expected_s=600, min_interval_s=1, max_interval_s=600)
    assert default.first_delay() == 480 and default.next_delay(480) == 90   # 480..750


def test_a_uniform_spread_costs_about_three_polls_and_a_tenth_of_the_time():
    """Generation times uniform 5..15 minutes, with the quantiles the engine would have learned."""
    rng = random.Random(3)
    times = sorted(rng.uniform(300, 900) for _ in range(5000))
    q = lambda p: times[int(p * len(times))]
    policy = PollPolicy(expected_s=q(0.5), early_s=q(0.2), late_s=q(0.9), min_interval_s=5,
                        max_interval_s=600)
    polls, delays = [], []
    for t in times:
        at, n = policy.first_delay(), 1
        while at < t:
            at, n = at + policy.next_delay(at), n + 1
        polls.append(n)
        delays.append((at - t) / t)
    assert sum(polls) / len(polls) <= 3.0
    assert sorted(delays)[len(delays) // 2] <= 0.15


def test_relaxed_is_the_same_shape_slower():
    policy = PollPolicy(expected_s=600, early_s=480, late_s=840, min_interval_s=5, max_interval_s=600)
    slow = policy.relaxed(3)
    assert slow.first_delay() == 3 * policy.first_delay()
    assert slow.next_delay(3 * 480) == 3 * policy.next_delay(480)


def test_state_machine_has_no_exit_from_success():
    assert TRANSITIONS[ItemState.SUCCEEDED] == {ItemState.DOWNLOADING}   # a lost file, fetched again
    assert not can_transition(ItemState.SUCCEEDED, ItemState.PENDING)    # never generated again
    assert not can_transition(ItemState.PENDING, ItemState.SUCCEEDED)
    assert can_transition(ItemState.FAILED, ItemState.PENDING)   # `reelbatch retry`
    assert ItemState.SUCCEEDED in TERMINAL


def test_max_interval_bounds_the_first_wait_too():
    """A manifest's max_interval_s of 2 s with a 600 s prior: the first poll comes after 2 s."""
    assert PollPolicy(expected_s=600, min_interval_s=0.5, max_interval_s=2).first_delay() == 2
    assert PollPolicy(expected_s=600, early_s=480, late_s=840, min_interval_s=5,
                      max_interval_s=60).first_delay() == 60


def test_a_backstop_may_wait_past_max_interval_up_to_the_late_part():
    """Behind an event stream or a lister, per-item polls need not come every max_interval_s."""
    policy = PollPolicy(expected_s=600, early_s=480, late_s=840, min_interval_s=5, max_interval_s=60)
    slow = policy.relaxed(3)
    assert slow.first_delay() == 3 * 480 and slow.max_interval_s == 3 * 840


def test_learning_starts_with_the_first_finished_item():
    from reelbatch.worker.engine.timing import estimate

    assert estimate([], (0.2, 0.5, 0.9)) is None
    assert estimate([90.0], (0.2, 0.5, 0.9)) == (90.0, 90.0, None)
    assert estimate([120.0, 80.0, 100.0], (0.2, 0.5, 0.9)) == (80.0, 100.0, None)
    five = estimate([float(x) for x in range(100, 600, 100)], (0.2, 0.5, 0.9))
    assert five == (200.0, 300.0, 500.0)

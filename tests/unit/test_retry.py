"""RetryPolicy: the state of a delivery after an attempt; parse_schedule: TRACKER_RETRY_SCHEDULE."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from tracker.callbacks.retry import (
    DEFAULT_RETRY_SCHEDULE,
    MAX_DELIVERY_RETRY_AFTER,
    RETRY_JITTER,
    RetryPolicy,
    parse_schedule,
)
from tracker.domain import DeliveryState, SendResult
from tracker.exceptions import ConfigError

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
FAILED = SendResult(ok=False, status_code=500, error="HTTP 500")


def policy(schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE, seed: int = 1) -> RetryPolicy:
    return RetryPolicy(schedule, rng=random.Random(seed))


def delay_of(next_at: datetime | None) -> float:
    assert next_at is not None
    return (next_at - NOW).total_seconds()


# -- RetryPolicy.after ---------------------------------------------------------


def test_success_is_delivered_with_no_next_attempt() -> None:
    result = SendResult(ok=True, status_code=200)
    assert policy().after(result, attempts_before=0, now=NOW) == (DeliveryState.DELIVERED, None)


def test_success_is_delivered_even_after_the_schedule_is_used_up() -> None:
    result = SendResult(ok=True, status_code=204)
    state, next_at = policy((5.0,)).after(result, attempts_before=10, now=NOW)
    assert (state, next_at) == (DeliveryState.DELIVERED, None)


def test_permanent_failure_is_dead_at_once() -> None:
    result = SendResult(ok=False, status_code=410, error="HTTP 410", permanent=True)
    assert policy().after(result, attempts_before=0, now=NOW) == (DeliveryState.DEAD, None)


def test_permanent_failure_ignores_retry_after() -> None:
    result = SendResult(ok=False, status_code=410, permanent=True, retry_after=60.0)
    assert policy().after(result, attempts_before=0, now=NOW) == (DeliveryState.DEAD, None)


@pytest.mark.parametrize("attempts_before", [0, 1])
def test_failures_within_the_schedule_are_retried(attempts_before: int) -> None:
    state, next_at = policy((5.0, 300.0)).after(FAILED, attempts_before=attempts_before, now=NOW)
    assert state is DeliveryState.PENDING
    assert next_at is not None
    assert next_at > NOW


@pytest.mark.parametrize("attempts_before", [2, 3, 100])
def test_failure_after_the_last_scheduled_retry_is_dead(attempts_before: int) -> None:
    state, next_at = policy((5.0, 300.0)).after(FAILED, attempts_before=attempts_before, now=NOW)
    assert (state, next_at) == (DeliveryState.DEAD, None)


def test_empty_schedule_makes_the_first_failure_dead() -> None:
    assert policy(()).after(FAILED, attempts_before=0, now=NOW) == (DeliveryState.DEAD, None)


def test_the_default_schedule_gives_up_after_seven_retries() -> None:
    p = policy()
    assert p.after(FAILED, attempts_before=6, now=NOW)[0] is DeliveryState.PENDING
    assert p.after(FAILED, attempts_before=7, now=NOW) == (DeliveryState.DEAD, None)


@pytest.mark.parametrize("attempts_before", range(len(DEFAULT_RETRY_SCHEDULE)))
def test_delay_is_the_scheduled_one_within_jitter(attempts_before: int) -> None:
    p = policy(seed=attempts_before)
    base = DEFAULT_RETRY_SCHEDULE[attempts_before]
    for _ in range(200):
        state, next_at = p.after(FAILED, attempts_before=attempts_before, now=NOW)
        assert state is DeliveryState.PENDING
        assert base * (1 - RETRY_JITTER) <= delay_of(next_at) <= base * (1 + RETRY_JITTER)


def test_delay_uses_the_entry_for_this_attempt_not_another() -> None:
    p = policy((10.0, 1000.0, 100000.0))
    assert 9 <= delay_of(p.after(FAILED, attempts_before=0, now=NOW)[1]) <= 11
    assert 900 <= delay_of(p.after(FAILED, attempts_before=1, now=NOW)[1]) <= 1100
    assert 90000 <= delay_of(p.after(FAILED, attempts_before=2, now=NOW)[1]) <= 110000


def test_jitter_actually_varies_the_delay() -> None:
    p = policy((1000.0,), seed=42)
    delays = {delay_of(p.after(FAILED, attempts_before=0, now=NOW)[1]) for _ in range(50)}
    assert len(delays) > 1
    assert min(delays) < 1000.0 < max(delays)


def test_same_seed_gives_the_same_delays() -> None:
    a, b = policy(seed=7), policy(seed=7)
    for attempts in range(len(DEFAULT_RETRY_SCHEDULE)):
        assert a.after(FAILED, attempts_before=attempts, now=NOW) == b.after(
            FAILED, attempts_before=attempts, now=NOW
        )


def test_next_attempt_is_relative_to_now() -> None:
    later = NOW + timedelta(days=3)
    state, next_at = policy((60.0,)).after(FAILED, attempts_before=0, now=later)
    assert state is DeliveryState.PENDING
    assert next_at is not None
    assert 54 <= (next_at - later).total_seconds() <= 66


def test_longer_retry_after_wins_over_the_schedule() -> None:
    result = SendResult(ok=False, status_code=429, retry_after=120.0)
    state, next_at = policy((5.0,)).after(result, attempts_before=0, now=NOW)
    assert state is DeliveryState.PENDING
    assert delay_of(next_at) == pytest.approx(120.0)


def test_shorter_retry_after_does_not_shorten_the_schedule() -> None:
    result = SendResult(ok=False, status_code=503, retry_after=1.0)
    _, next_at = policy((300.0,)).after(result, attempts_before=0, now=NOW)
    assert 300 * (1 - RETRY_JITTER) <= delay_of(next_at) <= 300 * (1 + RETRY_JITTER)


def test_zero_retry_after_keeps_the_schedule() -> None:
    result = SendResult(ok=False, status_code=429, retry_after=0.0)
    _, next_at = policy((50.0,)).after(result, attempts_before=0, now=NOW)
    assert 45 <= delay_of(next_at) <= 55


def test_retry_after_is_capped() -> None:
    result = SendResult(ok=False, status_code=429, retry_after=10 * MAX_DELIVERY_RETRY_AFTER)
    state, next_at = policy((5.0,)).after(result, attempts_before=0, now=NOW)
    assert state is DeliveryState.PENDING
    assert delay_of(next_at) == pytest.approx(MAX_DELIVERY_RETRY_AFTER)


def test_retry_after_does_not_revive_a_used_up_schedule() -> None:
    result = SendResult(ok=False, status_code=429, retry_after=30.0)
    assert policy((5.0,)).after(result, attempts_before=1, now=NOW) == (DeliveryState.DEAD, None)


# -- parse_schedule --------------------------------------------------------------


def test_default_schedule_is_the_documented_one() -> None:
    assert DEFAULT_RETRY_SCHEDULE == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert RetryPolicy().schedule == DEFAULT_RETRY_SCHEDULE


def test_parse_schedule_gives_floats() -> None:
    parsed = parse_schedule("5,300,1800")
    assert parsed == (5.0, 300.0, 1800.0)
    assert all(isinstance(d, float) for d in parsed)


def test_parse_schedule_allows_spaces_and_fractions() -> None:
    assert parse_schedule(" 5 , 300,  1800 ") == (5.0, 300.0, 1800.0)
    assert parse_schedule("0.5,1.25") == (0.5, 1.25)


def test_parse_schedule_allows_zero() -> None:
    assert parse_schedule("0,0") == (0.0, 0.0)


@pytest.mark.parametrize("text", ["", " ", ","])
def test_parse_schedule_empty_means_no_retries(text: str) -> None:
    assert parse_schedule(text) == ()


def test_parse_schedule_round_trips_the_default() -> None:
    text = ",".join(str(d) for d in DEFAULT_RETRY_SCHEDULE)
    assert parse_schedule(text) == DEFAULT_RETRY_SCHEDULE


@pytest.mark.parametrize("text", ["-1", "5,-300", "nan", "5,NaN", "five", "5;300", "5,3oo", "5s"])
def test_parse_schedule_rejects_bad_delays(text: str) -> None:
    with pytest.raises(ConfigError, match="retry schedule"):
        parse_schedule(text)


@pytest.mark.parametrize("text", ["inf", "5,Infinity", "1e300"])
def test_parse_schedule_rejects_delays_no_datetime_can_hold(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_schedule(text)


def test_schedule_delays_that_parse_can_be_used_by_the_policy() -> None:
    """Whatever parse_schedule accepts must not crash RetryPolicy.after."""
    schedule = parse_schedule("5,36000")
    p = policy(schedule)
    for attempts in range(len(schedule)):
        assert p.after(FAILED, attempts_before=attempts, now=NOW)[0] is DeliveryState.PENDING

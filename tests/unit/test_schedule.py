"""PollPolicy: poll soon after a change, back off while nothing happens, back off on errors."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from tracker.domain import NextPoll
from tracker.poll.schedule import ERROR_BACKOFF_CAP, GROWTH, POLL_JITTER, PollPolicy

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class LowRandom(random.Random):
    """Always the lowest value of a range: the strongest jitter."""

    def uniform(self, a: float, b: float) -> float:
        return a


class HighRandom(random.Random):
    """Always the highest value of a range: no jitter."""

    def uniform(self, a: float, b: float) -> float:
        return b


def policy(rng: random.Random | None = None, *, poll_min: float = 2.0, poll_max: float = 30.0):
    return PollPolicy(poll_min=poll_min, poll_max=poll_max, rng=rng or random.Random(1234))


def wait_of(next_poll: NextPoll) -> float:
    assert next_poll.at is not None
    return (next_poll.at - NOW).total_seconds()


# --- after_answer ---------------------------------------------------------------------------


@pytest.mark.parametrize("rng", [random.Random(1), LowRandom(), HighRandom()])
def test_first_answer_polls_after_poll_min(rng: random.Random) -> None:
    p = policy(rng)
    nxt = p.after_answer(previous_interval=None, changed=False, terminal=False, now=NOW)
    assert nxt.interval == p.poll_min
    assert wait_of(nxt) == pytest.approx(p.poll_min)


@pytest.mark.parametrize("previous", [2.0, 13.5, 30.0])
def test_a_change_resets_to_poll_min(previous: float) -> None:
    p = policy()
    nxt = p.after_answer(previous_interval=previous, changed=True, terminal=False, now=NOW)
    assert nxt.interval == p.poll_min
    assert wait_of(nxt) == pytest.approx(p.poll_min)


def test_unchanged_answers_grow_by_growth_up_to_poll_max() -> None:
    p = policy(random.Random(7))
    interval: float | None = None
    intervals: list[float] = []
    for _ in range(15):
        nxt = p.after_answer(previous_interval=interval, changed=False, terminal=False, now=NOW)
        assert nxt.interval is not None
        wait = wait_of(nxt)
        assert nxt.interval * (1 - POLL_JITTER) - 1e-9 <= wait <= nxt.interval + 1e-9
        assert p.poll_min <= wait <= p.poll_max
        intervals.append(nxt.interval)
        interval = nxt.interval

    assert intervals[0] == p.poll_min
    for before, after in itertools.pairwise(intervals):
        assert after == pytest.approx(min(p.poll_max, before * GROWTH))
    assert intervals[1] == pytest.approx(p.poll_min * GROWTH)
    assert intervals[-1] == p.poll_max
    assert max(intervals) == p.poll_max


def test_interval_never_exceeds_poll_max_even_from_a_larger_previous() -> None:
    p = policy(HighRandom())
    nxt = p.after_answer(previous_interval=500.0, changed=False, terminal=False, now=NOW)
    assert nxt.interval == p.poll_max
    assert wait_of(nxt) == pytest.approx(p.poll_max)


def test_interval_never_below_poll_min_from_a_smaller_previous() -> None:
    p = policy(HighRandom())
    nxt = p.after_answer(previous_interval=0.01, changed=False, terminal=False, now=NOW)
    assert nxt.interval == p.poll_min


def test_strongest_jitter_never_goes_below_poll_min() -> None:
    p = policy(LowRandom())
    nxt = p.after_answer(previous_interval=None, changed=False, terminal=False, now=NOW)
    # poll_min * (1 - POLL_JITTER) would be shorter; the floor keeps it at poll_min
    assert wait_of(nxt) == pytest.approx(p.poll_min)
    grown = p.after_answer(previous_interval=20.0, changed=False, terminal=False, now=NOW)
    assert wait_of(grown) == pytest.approx(p.poll_max * (1 - POLL_JITTER))


def test_waits_stay_within_bounds_for_many_random_intervals() -> None:
    p = policy(random.Random(99))
    sampler = random.Random(5)
    waits = []
    for _ in range(2000):
        previous = sampler.choice([None, sampler.uniform(0.0, 100.0)])
        nxt = p.after_answer(
            previous_interval=previous,
            changed=sampler.random() < 0.3,
            terminal=False,
            now=NOW,
        )
        assert nxt.interval is not None
        assert p.poll_min <= nxt.interval <= p.poll_max
        wait = wait_of(nxt)
        assert p.poll_min - 1e-9 <= wait <= p.poll_max + 1e-9
        waits.append(wait)
    # the jitter really spreads the waits (not all on the same few values)
    assert len({round(w, 6) for w in waits}) > 100


def test_same_seed_gives_the_same_schedule() -> None:
    a, b = policy(random.Random(42)), policy(random.Random(42))
    for previous in (3.0, 4.5, 6.75, 10.0):
        kwargs = {"previous_interval": previous, "changed": False, "terminal": False, "now": NOW}
        assert a.after_answer(**kwargs) == b.after_answer(**kwargs)


@pytest.mark.parametrize("changed", [True, False])
@pytest.mark.parametrize("previous", [None, 5.0])
def test_terminal_needs_no_more_polls(changed: bool, previous: float | None) -> None:
    p = policy()
    nxt = p.after_answer(previous_interval=previous, changed=changed, terminal=True, now=NOW)
    assert nxt == NextPoll(at=None, interval=None)


# --- after_error ----------------------------------------------------------------------------


def test_error_backoff_grows_with_consecutive_errors_then_caps() -> None:
    p = policy(HighRandom(), poll_min=1.0)
    delays = [wait_of(p.after_error(consecutive_errors=n, now=NOW)) for n in range(0, 14)]
    assert delays[:9] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
    assert delays[9:] == [ERROR_BACKOFF_CAP] * 5


def test_error_backoff_with_strongest_jitter_is_half_but_not_below_poll_min() -> None:
    p = policy(LowRandom(), poll_min=1.0)
    delays = [wait_of(p.after_error(consecutive_errors=n, now=NOW)) for n in range(0, 12)]
    assert delays[:4] == [1.0, 1.0, 2.0, 4.0]
    assert delays[-1] == ERROR_BACKOFF_CAP / 2


@pytest.mark.parametrize("seed", range(5))
def test_error_backoff_stays_in_its_band(seed: int) -> None:
    p = policy(random.Random(seed), poll_min=2.0)
    for n in range(0, 40):
        nxt = p.after_error(consecutive_errors=n, now=NOW)
        assert nxt.interval is None
        base = min(ERROR_BACKOFF_CAP, p.poll_min * 2**n)
        delay = wait_of(nxt)
        assert max(p.poll_min, base / 2) - 1e-9 <= delay <= base + 1e-9
        assert p.poll_min <= delay <= ERROR_BACKOFF_CAP


def test_error_backoff_on_average_grows_with_errors() -> None:
    p = policy(random.Random(3), poll_min=1.0)

    def mean_delay(n: int) -> float:
        return sum(wait_of(p.after_error(consecutive_errors=n, now=NOW)) for _ in range(200)) / 200

    means = [mean_delay(n) for n in (1, 3, 5, 7)]
    assert means == sorted(means)
    assert means[-1] > 4 * means[0]


def test_huge_error_count_does_not_overflow() -> None:
    p = policy(random.Random(0))
    delay = wait_of(p.after_error(consecutive_errors=10**6, now=NOW))
    assert ERROR_BACKOFF_CAP / 2 <= delay <= ERROR_BACKOFF_CAP


def test_error_backoff_never_below_a_large_poll_min() -> None:
    p = policy(LowRandom(), poll_min=20.0, poll_max=60.0)
    for n in range(0, 5):
        assert wait_of(p.after_error(consecutive_errors=n, now=NOW)) >= 20.0


# --- after_pause ----------------------------------------------------------------------------


@pytest.mark.parametrize("previous", [None, 7.5])
def test_after_pause_waits_at_least_until_the_moment(previous: float | None) -> None:
    p = policy(random.Random(11), poll_min=2.0)
    until = NOW + timedelta(seconds=42)
    spreads = []
    for _ in range(200):
        nxt = p.after_pause(until=until, previous_interval=previous)
        assert nxt.at is not None
        assert nxt.at >= until
        spread = (nxt.at - until).total_seconds()
        assert spread <= 1.0
        assert nxt.interval == previous
        spreads.append(spread)
    # several predictions released by one pause do not all fire at the same instant
    assert len(set(spreads)) > 50


def test_after_pause_spread_is_bounded_by_a_small_poll_min() -> None:
    p = policy(HighRandom(), poll_min=0.2, poll_max=5.0)
    until = NOW + timedelta(seconds=5)
    nxt = p.after_pause(until=until, previous_interval=None)
    assert nxt.at == until + timedelta(seconds=0.2)


def test_after_pause_with_lowest_spread_is_exactly_the_moment() -> None:
    p = policy(LowRandom())
    until = NOW + timedelta(seconds=5)
    assert p.after_pause(until=until, previous_interval=3.0) == NextPoll(at=until, interval=3.0)

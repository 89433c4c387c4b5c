"""Learning model run times, and polling where completions are likely."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from tracker.poll.runtimes import MIN_SAMPLES, RunTimes, RunWindow, quantile
from tracker.poll.schedule import OVERRUN_SHARE, PollPolicy

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_quantile_is_percentile_cont() -> None:
    assert quantile([10.0, 20.0, 30.0, 40.0], 0.5) == 25.0
    assert quantile([10.0, 20.0, 30.0, 40.0], 0.95) == pytest.approx(38.5)
    assert quantile([7.0], 0.95) == 7.0


def test_no_window_until_enough_samples() -> None:
    times = RunTimes()
    for i in range(MIN_SAMPLES - 1):
        times.add("m", float(i))
    assert times.likely_window("m") is None
    times.add("m", 100.0)
    window = times.likely_window("m")
    assert window is not None and window.opens < window.closes < window.longest == 100.0
    assert times.likely_window("other") is None
    assert times.likely_window(None) is None


def test_window_follows_recent_samples_only() -> None:
    times = RunTimes(window=50, min_samples=10)
    times.load({"m": [1.0] * 50})
    assert times.likely_window("m") == (1.0, 1.0, 1.0)
    for _ in range(50):
        times.add("m", 9.0)
    assert times.likely_window("m") == (9.0, 9.0, 9.0)


def test_negative_durations_are_ignored() -> None:
    times = RunTimes(min_samples=1)
    times.add("m", -5.0, processing=-1.0)
    assert times.likely_window("m") is None
    assert times.processing_window("m") is None


def test_processing_times_are_a_window_of_their_own() -> None:
    """Start-to-completion times leave out the queue: learned only as runs end with a
    known start, never from creation-to-completion times alone."""
    times = RunTimes(min_samples=3)
    times.load({"m": [30.0, 40.0, 50.0]})
    assert times.processing_window("m") is None
    for total, processing in ((31.0, 10.0), (42.0, 12.0), (53.0, 14.0)):
        times.add("m", total, processing=processing)
    assert times.processing_window("m") == (10.0 + 0.1 * 2, 14.0 - 0.1 * 2, 14.0)
    window = times.likely_window("m")
    assert window is not None and window.longest == 53.0


WINDOW = RunWindow(20.0, 60.0, 90.0)


def policy() -> PollPolicy:
    return PollPolicy(poll_min=1.0, poll_max=30.0, rng=random.Random(1))


def wait(next_poll) -> float:  # type: ignore[no-untyped-def]
    return (next_poll.at - NOW).total_seconds()


def test_before_the_likely_window_one_poll_when_it_opens() -> None:
    nxt = policy().after_answer(
        previous_interval=1.0,
        changed=True,
        terminal=False,
        now=NOW,
        elapsed=2.0,
        likely=WINDOW,
    )
    assert wait(nxt) == pytest.approx(18.0)


def test_long_waits_are_capped_at_poll_max() -> None:
    nxt = policy().after_answer(
        previous_interval=1.0,
        changed=False,
        terminal=False,
        now=NOW,
        elapsed=0.0,
        likely=RunWindow(300.0, 900.0),
    )
    assert wait(nxt) == pytest.approx(30.0)


def test_inside_the_window_polls_are_dense_even_without_changes() -> None:
    nxt = policy().after_answer(
        previous_interval=20.0,
        changed=False,
        terminal=False,
        now=NOW,
        elapsed=30.0,
        likely=WINDOW,
    )
    assert 0.9 <= wait(nxt) <= 1.0


def test_past_the_window_the_usual_backoff() -> None:
    nxt = policy().after_answer(
        previous_interval=4.0,
        changed=False,
        terminal=False,
        now=NOW,
        elapsed=80.0,
        likely=WINDOW,
    )
    assert 6.0 * 0.9 <= wait(nxt) <= 6.0


def test_past_the_longest_run_unchanged_answers_back_off_as_usual_at_least() -> None:
    nxt = policy().after_answer(
        previous_interval=4.0,
        changed=False,
        terminal=False,
        now=NOW,
        elapsed=WINDOW.longest + 4.0,
        likely=WINDOW,
    )
    assert nxt.interval == 6.0


def test_terminal_needs_no_poll_whatever_the_window() -> None:
    nxt = policy().after_answer(
        previous_interval=1.0,
        changed=True,
        terminal=True,
        now=NOW,
        elapsed=1.0,
        likely=WINDOW,
    )
    assert nxt.at is None


@pytest.mark.parametrize(
    ("remaining", "expected"),
    [(40.0, 30.0), (20.0, 15.0), (2.0, 1.5), (0.4, 1.0), (0.0, 1.0)],
)
def test_with_a_progress_bar_the_next_poll_comes_before_the_run_should_end(
    remaining: float, expected: float
) -> None:
    """A share of the remaining time (never below poll_min nor above poll_max),
    whatever the run-time window says."""
    nxt = policy().after_answer(
        previous_interval=1.0,
        changed=True,
        terminal=False,
        now=NOW,
        elapsed=5.0,
        likely=RunWindow(10.0, 30.0),
        remaining=remaining,
    )
    assert wait(nxt) == pytest.approx(expected)
    assert nxt.interval == 1.0


def test_between_the_window_and_the_longest_run_the_usual_backoff_or_poll_min() -> None:
    """Past the 95th percentile but not past the longest run seen: a change (new log
    lines) polls again after poll-min, as before the window."""
    nxt = policy().after_answer(
        previous_interval=1.0, changed=True, terminal=False, now=NOW, elapsed=80.0, likely=WINDOW
    )
    assert 0.9 <= wait(nxt) <= 1.0


@pytest.mark.parametrize(("overrun", "expected"), [(2.0, 1.0), (20.0, 5.0), (1000.0, 30.0)])
def test_past_the_longest_run_the_wait_grows_with_the_overrun_up_to_poll_max(
    overrun: float, expected: float
) -> None:
    """A run longer than any before is still polled, on a backoff bounded by poll-max,
    even while every answer brings new log lines."""
    assert expected == min(30.0, max(1.0, OVERRUN_SHARE * overrun))
    nxt = policy().after_answer(
        previous_interval=1.0,
        changed=True,
        terminal=False,
        now=NOW,
        elapsed=WINDOW.longest + overrun,
        likely=WINDOW,
    )
    assert max(1.0, 0.9 * expected) <= wait(nxt) <= expected
    assert nxt.interval == expected


def test_under_a_budget_the_runs_inside_their_window_are_due_first() -> None:
    """The daemon claims due predictions in next_poll_at order, so when the request
    budget binds, the ones inside their model's window (due after poll-min) go before
    the ones far from it: not yet in it (due when it opens) or long past it."""
    p = policy()
    decide = {
        "inside": 30.0,
        "before": 2.0,
        "past the longest": WINDOW.longest + 60.0,
    }
    due = {
        name: wait(
            p.after_answer(
                previous_interval=1.0,
                changed=True,
                terminal=False,
                now=NOW,
                elapsed=elapsed,
                likely=WINDOW,
            )
        )
        for name, elapsed in decide.items()
    }
    assert due["inside"] <= 1.0
    assert due["before"] == pytest.approx(WINDOW.opens - 2.0)
    assert due["past the longest"] >= 0.9 * 15.0

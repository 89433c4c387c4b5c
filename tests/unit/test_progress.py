"""Reading a run's progress from its logs."""

from __future__ import annotations

import pytest

from tracker.poll.progress import Progress, fraction_done, newest_progress, remaining_seconds

TQDM = "  45%|████▌     | 9/20 [00:02<00:02,  4.51it/s]"


@pytest.mark.parametrize(
    ("logs", "fraction"),
    [
        ("Using seed: 42\nstep 9/20 |  45% | 2.00 it/s\n", 0.45),
        (TQDM, 0.45),
        # tqdm redraws in place: the newest bar is the last one after a carriage return
        ("  5%|▌ | 1/20 [00:00<00:04, 4.5it/s]\r" + TQDM + "\r 50%|█████ | 10/20 [00:02]", 0.5),
        # the newest bar counts, not the first one of the tail
        ("step 2/10 | 20% | 1.0 it/s\nstep 3/10 | 30% | 1.0 it/s\nsaving\n", 0.3),
        ("100%|██████████| 28/28 [00:05<00:00,  5.01it/s]\n", 1.0),
        ("1.52s/it 3/4", 0.75),
    ],
)
def test_progress_bars_are_read(logs: str, fraction: float) -> None:
    assert fraction_done(logs) == pytest.approx(fraction)


@pytest.mark.parametrize(
    ("line", "rate"),
    [
        (TQDM, 4.51),
        ("step 9/20 |  45% | 2.00 it/s", 2.0),
        ("Sampling:  45%|████▌ | 9/20 [00:30<00:36,  4.00s/it]", 0.25),
        ("  5%|▌ | 1/20 [00:00<?, ?it/s]", None),
        ("step 9/20 |  45% |", None),
    ],
)
def test_the_rate_a_bar_shows_is_read(line: str, rate: float | None) -> None:
    progress = newest_progress(line)
    assert progress is not None
    assert progress.rate == (pytest.approx(rate) if rate is not None else None)


@pytest.mark.parametrize(
    "logs",
    [
        "",
        "Using seed: 42\n",
        "Total safe images: 1 out of 1\n",
        "downloading weights 3/8 files\n",  # a counter, but no progress mark
        "date 2026/11/26 at 50%\n",  # a date is no counter
        "  0%|          | 0/20 [00:00<?, ?it/s]",  # nothing done yet
        "step 25/20 | 125% |",  # impossible counts are ignored
    ],
)
def test_lines_without_usable_progress_are_ignored(logs: str) -> None:
    assert newest_progress(logs) is None


def test_remaining_time_by_the_rate_the_bar_shows() -> None:
    # 5 of 20 done at 2 steps/s: the 6th may be about to finish, 14 remain after it
    assert remaining_seconds("step 5/20 | 25% | 2 it/s", run_seconds=100.0) == pytest.approx(7.0)
    # a second stage's bar is timed by its own rate, not by the whole run's pace
    logs = "100%|██| 40/40 [00:20<00:00, 2.00it/s]\n 20%|█ | 2/10 [00:01<00:04, 2.00it/s]"
    assert remaining_seconds(logs, run_seconds=21.0) == pytest.approx(3.5)


def test_remaining_time_by_the_pace_so_far_when_the_bar_shows_no_rate() -> None:
    # 5 of 20 after 10 s: at most 14 steps of 10/6 s each remain
    assert remaining_seconds("step 5/20 | 25% |", run_seconds=10.0) == pytest.approx(10 * 14 / 6)
    assert remaining_seconds("step 5/20 | 25% |", run_seconds=0.0) is None  # clocks disagree


def test_remaining_time_edge_cases() -> None:
    assert remaining_seconds("step 20/20 | 100% | 2 it/s", run_seconds=10.0) == 0.0
    assert remaining_seconds("step 19/20 | 95% |", run_seconds=10.0) == 0.0
    # too early to tell a pace: 1 step of 100
    assert remaining_seconds("step 1/100 | 1% | 2 it/s", run_seconds=2.0) is None
    assert remaining_seconds("Using seed: 1", run_seconds=10.0) is None
    assert Progress(1, 2).rate is None

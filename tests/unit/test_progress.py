"""Reading a run's progress from its logs."""

from __future__ import annotations

import pytest

from tracker.progress import fraction_done, remaining_seconds

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
    assert fraction_done(logs) is None


def test_remaining_time_follows_the_pace_so_far() -> None:
    # 5 of 20 steps shown after 10 s: the 6th may be about to finish, so at most
    # 14 steps of 10/6 s each remain
    remaining = remaining_seconds("step 5/20 | 25% | 2 it/s", run_seconds=10.0)
    assert remaining == pytest.approx(10.0 * 14 / 6)
    assert remaining_seconds("step 20/20 | 100% |", run_seconds=10.0) == 0.0
    assert remaining_seconds("step 5/20 | 25% |", run_seconds=0.0) is None  # clocks disagree
    # too early to tell a pace: 1 step of 100
    assert remaining_seconds("step 1/100 | 1% |", run_seconds=2.0) is None
    assert remaining_seconds("Using seed: 1", run_seconds=10.0) is None

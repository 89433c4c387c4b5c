"""The time spent in each state (tracker.cli.timeline), as `tracker show` prints it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker.cli import timeline as bars
from tracker.cli.timeline import bar
from tracker.domain import Prediction, Transition
from tracker.text.timeline import Phase, duration, in_words, phases

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def prediction(**fields: object) -> Prediction:
    base = Prediction(
        id="p-1", status=None, tracking="active", model=None, version=None, input=None,
        output=None, error=None, logs="", metrics=None, predict_time=None, created_at=None,
        started_at=None, completed_at=None, data_removed=None, urls=None, labels={},
        registered_at=T0, last_polled_at=None, next_poll_at=None, poll_count=0, error_count=0,
        last_error=None,
    )  # fmt: skip
    return replace(base, **fields)  # type: ignore[arg-type]


def moved(frm: str | None, to: str, observed: float, upstream: float | None) -> Transition:
    return Transition(frm, to, at(observed), None if upstream is None else at(upstream))


def test_upstream_times_win_over_observed_ones() -> None:
    transitions = [
        moved(None, "starting", 1, 0),
        moved("starting", "processing", 9, 4.2),
        moved("processing", "succeeded", 73, 72.2),
    ]
    found = phases(prediction(tracking="done"), transitions, now=NOW)
    assert [(p.status, p.seconds, p.current) for p in found] == [
        ("starting", pytest.approx(4.2), False),
        ("processing", pytest.approx(68.0), False),
        ("succeeded", None, True),
    ]
    assert in_words(found, tracking="done") == (
        "queued 4.2 s, ran 68 s, then succeeded (72 s in all)"
    )


def test_observed_times_when_upstream_gave_none() -> None:
    transitions = [moved(None, "starting", 0, None), moved("starting", "paused", 30, None)]
    transitions.append(moved("paused", "processing", 150, None))
    found = phases(prediction(), transitions, now=at(160))
    assert [p.seconds for p in found] == [30, 120, 10]
    assert in_words(found, tracking="active") == (
        "queued 30 s, paused 2 min, running for 10 s so far"
    )


def test_states_never_seen_come_from_the_row() -> None:
    """First seen finished: queued and ran from created_at, started_at, completed_at."""
    row = prediction(tracking="done", created_at=at(0), started_at=at(3), completed_at=at(10))
    found = phases(row, [moved(None, "failed", 11, 10)], now=NOW)
    assert [(p.status, p.seconds) for p in found] == [
        ("starting", 3),
        ("processing", 7),
        ("failed", None),
    ]
    assert in_words(found, tracking="done") == "queued 3.0 s, ran 7.0 s, then failed (10 s in all)"


def test_a_lost_prediction_ends_when_last_seen() -> None:
    row = prediction(tracking="lost", last_polled_at=at(100))
    found = phases(row, [moved(None, "processing", 40, 40)], now=NOW)
    assert found[-1].seconds == 60
    assert in_words(found, tracking="lost") == "running for 60 s when last seen"


def test_clocks_that_disagree_never_give_negative_times() -> None:
    # upstream's clock says it started before the tracker saw it queued
    transitions = [moved(None, "starting", 10, None), moved("starting", "processing", 12, 5)]
    assert phases(prediction(), transitions, now=at(20))[0].seconds == 0


def test_nothing_seen_yet_says_nothing() -> None:
    assert phases(prediction(), [], now=NOW) == []
    assert in_words([], tracking="active") == ""
    assert bar([], 80) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.35, "0.35 s"),
        (4.24, "4.2 s"),
        (68.4, "68 s"),
        (99.4, "99 s"),
        (100, "1 min 40 s"),
        (120, "2 min"),
        (3600 * 3 + 1200, "3 h 20 min"),
        (86400 * 2 + 3600 * 4 + 59, "2 d 4 h"),
    ],
)
def test_durations_read_as_people_say_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_the_bar_is_drawn_to_scale_and_named() -> None:
    found = [
        Phase("starting", at(0), 10.0),
        Phase("processing", at(10), 90.0),
        Phase("succeeded", at(100), None, current=True),
    ]
    drawn = bar(found, 100)  # 98 cells shared 1:9, one each besides
    assert drawn is not None
    assert drawn.plain == "queued " + "░" * 4 + "ran " + "█" * 85
    assert [span.style for span in drawn.spans] == ["bold yellow", "yellow", "bold blue", "blue"]


def test_a_state_too_short_for_its_name_gets_its_letter_and_one_cell() -> None:
    found = [Phase("starting", at(0), 0.01), Phase("processing", at(0), 1000.0, current=True)]
    drawn = bar(found, 30)
    assert drawn is not None
    assert drawn.plain == "q" + "running " + "█" * 21


@given(
    st.lists(st.floats(min_value=0.001, max_value=1e7), min_size=1, max_size=8),
    st.integers(min_value=8, max_value=300),
)
def test_the_cells_always_add_up_to_the_width(seconds: list[float], width: int) -> None:
    cells = bars._shares(seconds, width)
    assert sum(cells) == width and min(cells) >= 1
    found = [Phase(f"s{i}", at(0), s) for i, s in enumerate(seconds)]
    drawn = bar(found, width)
    assert drawn is not None and len(drawn.plain) == width

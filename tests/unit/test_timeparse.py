"""parse_timestamp: the lenient RFC 3339 reader for upstream timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tracker.timeparse import parse_duration, parse_moment, parse_timestamp, utcnow


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_seed_example_with_nanoseconds_and_z() -> None:
    parsed = parse_timestamp("2025-07-12T07:27:54.587120975Z")
    assert parsed == utc(2025, 7, 12, 7, 27, 54, 587120)
    assert parsed is not None
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-07-12T07:27:54.587Z", utc(2025, 7, 12, 7, 27, 54, 587000)),
        ("2025-07-12T07:27:54.5Z", utc(2025, 7, 12, 7, 27, 54, 500000)),
        ("2025-07-12T07:27:54.123456Z", utc(2025, 7, 12, 7, 27, 54, 123456)),
        ("2025-07-12T07:27:54.9999999Z", utc(2025, 7, 12, 7, 27, 54, 999999)),
        ("2025-07-12T07:27:54Z", utc(2025, 7, 12, 7, 27, 54)),
        ("2025-07-12T07:27:54z", utc(2025, 7, 12, 7, 27, 54)),
    ],
)
def test_fractions_and_z(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-07-12T09:27:54+02:00", utc(2025, 7, 12, 7, 27, 54)),
        ("2025-07-12T09:27:54+0200", utc(2025, 7, 12, 7, 27, 54)),
        ("2025-07-12T09:27:54.587+02:00", utc(2025, 7, 12, 7, 27, 54, 587000)),
        ("2025-07-12T02:27:54.587120975-05:00", utc(2025, 7, 12, 7, 27, 54, 587120)),
        ("2025-07-12T01:57:54-0530", utc(2025, 7, 12, 7, 27, 54)),
        ("2025-07-12T07:27:54+00:00", utc(2025, 7, 12, 7, 27, 54)),
        # an offset that crosses midnight changes the date too
        ("2025-07-13T01:00:00+03:00", utc(2025, 7, 12, 22, 0, 0)),
    ],
)
def test_offsets_are_converted_to_utc(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(0)
    assert parsed.tzinfo is UTC


def test_no_zone_is_taken_as_utc() -> None:
    parsed = parse_timestamp("2025-07-12T07:27:54.587")
    assert parsed == utc(2025, 7, 12, 7, 27, 54, 587000)
    assert parsed is not None
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text", ["2025-07-12 07:27:54Z", "2025-07-12 07:27:54.587120975Z", "2025-07-12 07:27:54"]
)
def test_space_separator(text: str) -> None:
    parsed = parse_timestamp(text)
    assert parsed is not None
    assert parsed.replace(microsecond=0) == utc(2025, 7, 12, 7, 27, 54)


def test_surrounding_white_space_is_ignored() -> None:
    assert parse_timestamp("  2025-07-12T07:27:54Z\n") == utc(2025, 7, 12, 7, 27, 54)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "garbage",
        "2025-07-12",  # date only
        "07:27:54",  # time only
        "2025-07-12T07:27",  # no seconds
        "2025-13-12T07:27:54Z",  # month 13
        "2025-02-30T07:27:54Z",  # no such day
        "2025-07-12T25:00:00Z",  # hour 25
        "2025-07-12T07:27:54.Z",  # empty fraction
        "2025-07-12T07:27:54+02",  # short offset
        "2025-07-12T07:27:54+24:00",  # offset out of range
        "2025-07-12T07:27:54 UTC",
        "2025-07-12T07:27:54Z trailing",
        "Sat, 12 Jul 2025 07:27:54 GMT",
        "1752305274",
        1752305274,
        1752305274.5,
        True,
        b"2025-07-12T07:27:54Z",
        ["2025-07-12T07:27:54Z"],
        {"at": "2025-07-12T07:27:54Z"},
        datetime(2025, 7, 12, 7, 27, 54, tzinfo=UTC),
    ],
)
def test_anything_else_is_none(value: object) -> None:
    assert parse_timestamp(value) is None


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_out_of_range_after_conversion_is_none(text: str) -> None:
    assert parse_timestamp(text) is None


def test_utcnow_is_aware_utc() -> None:
    before = datetime.now(UTC)
    now = utcnow()
    after = datetime.now(UTC)
    assert now.tzinfo is UTC
    assert before <= now <= after


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("30m", 1800.0), ("12h", 43200.0), (" 1.5 d ", 129600.0), ("2w", 1209600.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    now = utc(2026, 1, 1)
    assert parse_moment(text, now=now) == now - timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "h", "-1h", "1y", "1h30m", "1e3s"])
def test_not_durations(text: str) -> None:
    assert parse_duration(text) is None

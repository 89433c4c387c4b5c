"""Times on the command line: parse_moment and the --since/--until options (tracker.cli.when)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from tracker.cli.when import since_option, since_until_options, until_option
from tracker.exceptions import InvalidInput
from tracker.timeparse import MOMENT_FORMS, parse_moment, read_moment

NOW = datetime(2026, 6, 15, 12, 34, 56, 789000, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01", utc(2026, 11, 1)),
        ("2026-11-01T10:30", utc(2026, 11, 1, 10, 30)),
        ("2026-11-01 10:30", utc(2026, 11, 1, 10, 30)),
        ("2026-11-01t10:30:15", utc(2026, 11, 1, 10, 30, 15)),
        ("2026-11-01 10:30:15.5", utc(2026, 11, 1, 10, 30, 15, 500000)),
        ("2026-11-01T10:30:15,25", utc(2026, 11, 1, 10, 30, 15, 250000)),
        ("2026-11-01T10:30:15.123456789Z", utc(2026, 11, 1, 10, 30, 15, 123456)),
        ("2026-11-01T10:30Z", utc(2026, 11, 1, 10, 30)),
        ("2026-11-01 10:30 Z", utc(2026, 11, 1, 10, 30)),
        ("2026-11-01T10:30+02:00", utc(2026, 11, 1, 8, 30)),
        ("2026-11-01T10:30+0200", utc(2026, 11, 1, 8, 30)),
        ("2026-11-01T10:30+02", utc(2026, 11, 1, 8, 30)),
        ("2026-11-01 10:30:00-05:30", utc(2026, 11, 1, 16, 0)),
        ("2026-11-01T01:00:00+03:00", utc(2026, 10, 31, 22, 0)),  # the day changes too
        ("  2026-11-01  ", utc(2026, 11, 1)),
    ],
)
def test_iso_dates_and_times_are_utc_unless_a_zone_is_given(text: str, expected: datetime) -> None:
    moment = parse_moment(text, now=NOW)
    assert moment == expected
    assert moment is not None and moment.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("today", utc(2026, 6, 15)),
        ("TODAY", utc(2026, 6, 15)),
        ("yesterday", utc(2026, 6, 14)),
        (" Yesterday ", utc(2026, 6, 14)),
        ("10m", NOW - timedelta(minutes=10)),
        ("36h", NOW - timedelta(hours=36)),
        ("30d", NOW - timedelta(days=30)),
        ("2w", NOW - timedelta(weeks=2)),
    ],
)
def test_words_and_durations(text: str, expected: datetime) -> None:
    moment = parse_moment(text, now=NOW)
    assert moment == expected
    assert moment is not None and moment.tzinfo is UTC


def test_today_is_midnight_utc_even_when_now_is_in_another_zone() -> None:
    # 01:00 on the 16th in Tokyo is 16:00 on the 15th in UTC
    tokyo = datetime(2026, 6, 16, 1, 0, tzinfo=timezone(timedelta(hours=9)))
    assert parse_moment("today", now=tokyo) == utc(2026, 6, 15)
    assert parse_moment("yesterday", now=tokyo) == utc(2026, 6, 14)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tomorrow",
        "now",
        "last tuesday",
        "2026-11-01Z",  # a zone needs a time
        "2026-11-01T10",  # an hour alone
        "2026-11-01T10:30:",
        "2026-11-01T24:00",
        "2026-11-01T10:60",
        "2026-13-01",
        "2026-02-30",
        "2026-11-01T10:30+25:00",
        "2026-11-01T10:30 UTC",
        "20261101",
        "2026-W44",
        "0001-01-01T00:00+01:00",  # before year 1 in UTC
        "-7d",
        "7",
        "1y",
        "9" * 400 + "s",  # longer than the calendar
        "100000000w",
    ],
)
def test_anything_else_is_unreadable(text: str) -> None:
    assert parse_moment(text, now=NOW) is None
    with pytest.raises(InvalidInput) as refused:
        read_moment(text, "--since", now=NOW)
    assert str(refused.value) == f"cannot read --since {text!r}: use {MOMENT_FORMS}"


@given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9998, 12, 31)))
def test_any_written_time_reads_back(moment: datetime) -> None:
    moment = moment.replace(tzinfo=UTC)
    for text in (moment.isoformat(), moment.isoformat(sep=" "), f"{moment:%Y-%m-%dT%H:%M:%S.%fZ}"):
        assert parse_moment(text, now=NOW) == moment


@given(
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
)
def test_any_offset_is_converted_to_utc(local: datetime, minutes: int) -> None:
    zone = timezone(timedelta(minutes=minutes))
    moment = parse_moment(local.replace(tzinfo=zone).isoformat(), now=NOW)
    assert moment == local.replace(tzinfo=zone)
    assert moment is not None and moment.tzinfo is UTC


@given(st.text(max_size=30))
def test_any_text_is_a_utc_moment_or_none(text: str) -> None:
    moment = parse_moment(text, now=NOW)
    assert moment is None or moment.tzinfo is UTC


# -- the options ---------------------------------------------------------------------------


@click.command()
@since_until_options("Rows made")
def window(since: datetime | None, until: datetime | None) -> None:
    click.echo(f"{since} | {until}")


def test_the_options_give_aware_utc_datetimes() -> None:
    result = CliRunner().invoke(
        window, ["--since", "2026-11-01 10:30+02:00", "--until", "2026-11-02"]
    )
    assert result.exit_code == 0, result.output
    assert result.output == "2026-11-01 08:30:00+00:00 | 2026-11-02 00:00:00+00:00\n"
    assert CliRunner().invoke(window, []).output == "None | None\n"


@pytest.mark.parametrize(
    "args", [["--since", "1d", "--until", "2d"], ["--until", "2d", "--since", "1d"]]
)
def test_until_before_since_is_a_usage_error(args: list[str]) -> None:
    result = CliRunner().invoke(window, args, standalone_mode=False)
    assert isinstance(result.exception, click.UsageError)
    assert "--until (" in str(result.exception) and ") is before --since (" in str(result.exception)


def test_until_equal_to_since_is_fine() -> None:
    result = CliRunner().invoke(window, ["--since", "today", "--until", "today"])
    assert result.exit_code == 0


def test_unreadable_time_is_a_usage_error_naming_the_option_and_the_forms() -> None:
    result = CliRunner().invoke(window, ["--until", "soon"], standalone_mode=False)
    assert isinstance(result.exception, click.UsageError)
    assert str(result.exception) == f"cannot read --until 'soon': use {MOMENT_FORMS}"


def test_help_shows_one_placeholder_and_one_wording() -> None:
    @click.command()
    @since_option("Things made")
    @until_option("Things made")
    def alone(since: datetime | None, until: datetime | None) -> None: ...

    together = CliRunner().invoke(window, ["--help"], terminal_width=200).output
    separate = CliRunner().invoke(alone, ["--help"], terminal_width=200).output
    assert "--since WHEN  Rows made since WHEN: " + MOMENT_FORMS in together
    assert "--until WHEN  Rows made before WHEN (the same forms as --since)." in together
    assert "--until WHEN  Things made before WHEN: " + MOMENT_FORMS in separate


def test_the_shell_completes_the_words() -> None:
    from click.shell_completion import ShellComplete

    complete = ShellComplete(window, {}, "window", "_WINDOW_COMPLETE")
    assert [c.value for c in complete.get_completions(["--since"], "y")] == ["yesterday"]
    assert [c.value for c in complete.get_completions(["--until"], "")] == ["today", "yesterday"]

"""How rows are printed (tracker.cli.output, tracker.cli.human): units for people,
columns that fit, the same JSON and CSV text as before rows were streamed."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from tracker.cli import output
from tracker.cli.output import Col, emit, fit
from tracker.cli.report import run_chart
from tracker.text import human
from tracker.text.display import json_text

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, ""),
        (0, "0 s"),
        (0.25, "0.25 s"),
        (3.21, "3.2 s"),
        (68.4, "68 s"),
        (270, "4.5 min"),
        (725, "12 min"),
        (11_160, "3.1 h"),
        (216_000, "2 d"),
    ],
)
def test_seconds(value: float | None, shown: str) -> None:
    assert human.seconds(value) == shown


def test_relative_times_percent_and_counts() -> None:
    assert human.ago(NOW - timedelta(seconds=12), NOW) == "12 s ago"
    assert human.ago(NOW + timedelta(seconds=3), NOW) == "in 3 s"
    assert human.ago(NOW - timedelta(minutes=5, seconds=59), NOW) == "5 min ago"
    assert human.ago(NOW - timedelta(hours=30), NOW) == "30 h ago"
    assert human.ago(NOW - timedelta(days=9), NOW) == "9 d ago"
    assert human.ago(NOW, NOW) == "now" and human.ago(None, NOW) == ""
    assert [human.percent(r) for r in (0.7, 0.6667, 1.0, 0.995, 0.004, 0, None)] == [
        "70 %",
        "67 %",
        "100 %",
        "99.5 %",
        "0.4 %",
        "0 %",
        "",
    ]
    assert human.count(100_000) == "100,000" and human.number(2.5) == "2.5"


def test_sizes_in_decimal_units() -> None:
    sizes = (None, 0, 1, 999, 1000, 12_500, 1_500_000, 2_147_483_648, 3 * 10**12)
    assert [human.size(n) for n in sizes] == [
        "",
        "0 bytes",
        "1 byte",
        "999 bytes",
        "1.0 kB",
        "12.5 kB",
        "1.5 MB",
        "2.1 GB",
        "3.0 TB",
    ]


def test_sparkline_and_run_chart() -> None:
    assert human.sparkline([0, 1, 4, 8]) == " ▁▄█"
    assert human.sparkline([]) == "" and human.sparkline([0, 0]) == ""
    # one run of 125 s among runs of 2 s: log buckets put it at the far end
    chart = run_chart([2.0] * 20 + [125.0], buckets=6)
    assert chart == "2.0 s █    ▁ 2.1 min"
    assert run_chart([]) == "" and run_chart([5.0, 5.0]) == "5.0 s █ 5.0 s"


COLS = [
    Col("id", kind="key"),
    Col("status", priority=3),
    Col("model", priority=2),
    Col("age", kind="ago"),
    Col("error", priority=1),
]


def test_fit_cuts_text_then_drops_the_least_important_but_never_the_key() -> None:
    shown = [["r" * 26, "succeeded", "black-forest-labs/flux-schnell", "12 s ago", "x" * 60]]
    cols, widths = fit(COLS, shown, 120)  # the widest text column is cut
    assert [c.name for c in cols] == ["id", "status", "model", "age", "error"]
    assert widths == [26, 9, 30, 8, 39] and sum(widths) + 8 == 120
    cols, widths = fit(COLS, shown, 100)  # model and error cut, neither below 20
    assert widths == [26, 9, 24, 8, 25] and sum(widths) + 8 == 100
    cols, widths = fit(COLS, shown, 80)  # rather than cut to 20 each, error goes
    assert [c.name for c in cols] == ["id", "status", "model", "age"] and widths[2] == 30
    cols, widths = fit(COLS, shown, 60)  # then age (priority 1), and model is cut
    assert [c.name for c in cols] == ["id", "status", "model"] and widths == [26, 9, 21]
    cols, widths = fit(COLS, shown, 20)  # the key stays whole, even wider than the screen
    assert [c.name for c in cols] == ["id"] and widths == [26]
    cols, widths = fit(COLS, shown, 60, drop=False)  # --wide: nothing left out, cut more
    assert len(cols) == 5 and widths == [26, 8, 8, 8, 8]


def printed(capsys: pytest.CaptureFixture[str]) -> str:
    """What was printed to stdout (captured: not a terminal)."""
    return capsys.readouterr().out


ROWS = [
    {"id": "a-1", "n": 3, "when": NOW, "data": {"k": ["v", None]}, "text": "tab\there\u009b"},
    {"id": "a-2", "n": None, "when": None, "data": None, "text": "cr\ronly"},
]


def test_streamed_json_is_the_json_of_the_whole_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert emit(iter(ROWS), "json", ["id", "n", "when", "data", "text"]) == 2
    expected = json_text([output.to_jsonable(r) for r in ROWS], indent=2)
    assert printed(capsys) == expected + "\n"
    emit(iter([]), "json", ["id"])
    assert printed(capsys) == "[]\n"


def test_streamed_csv_quotes_a_lone_cr(capsys: pytest.CaptureFixture[str]) -> None:
    emit(iter(ROWS), "csv", ["id", "n", "when", "data", "text"])
    rows = list(csv.reader(io.StringIO(printed(capsys), newline="")))
    assert rows[0] == ["id", "n", "when", "data", "text"]
    assert rows[1] == ["a-1", "3", NOW.isoformat(), '{"k":["v",null]}', "tab\there\u009b"]
    assert rows[2] == ["a-2", "", "", "", "cr\ronly"]


def test_piped_table_is_one_escaped_line_per_row(capsys: pytest.CaptureFixture[str]) -> None:
    emit(iter(ROWS), "table", [Col("id", kind="key"), Col("when", kind="ago"), Col("text")])
    assert printed(capsys).split("\n") == [
        "id\twhen\ttext",
        "a-1\t2026-11-20T12:00:00Z\ttab\\x09here\\x9b",
        "a-2\t\tcr\\x0donly",
        "",
    ]


def test_later_pages_are_laid_out_as_rich_lays_out_the_first() -> None:
    rows = [
        ["r" * 26, "succeeded", "black-forest-labs/flux-schnell", "12 s ago", "x" * 60],
        ["s" * 26, "failed", "日本語のモデル名/とても長い", "3 d ago", "short"],
        ["t" * 26, "processing", "a/b", "in 4 s", ""],
    ]
    cols, widths = fit(COLS, rows, 100)
    assert len(cols) == 5 and widths[2] < 29  # the double-width model name is cut
    screen = Console(width=100, file=io.StringIO(), record=True)
    output._print_page(screen, cols, widths, rows, header=False, title=None)
    assert list(output._plain_lines(cols, widths, rows)) == screen.export_text().splitlines()

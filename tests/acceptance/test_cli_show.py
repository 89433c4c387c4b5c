"""`tracker show`: the last 40 log lines by default (--tail N, --logs all), the time
spent in each state, and in a terminal a bar of the states, never piped or in JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta

import pytest

from tests.clirun import fork_tracker, forked
from tests.showcase import answer, long_run
from tests.terminal import Screen, run_in_terminal
from tracker.store.store import Store
from tracker.timeparse import utcnow

LINES = 31_244
NOTE = f"… {LINES - 40:,} earlier lines not shown (--tail N, --logs all)"
WORDS = "time in state  queued 4.2 s, ran 68 s, then succeeded (72 s in all)"
BAR_CHARACTERS = re.compile("[░▒█]")


def environment(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    return {**env, "TRACKER_DATABASE_URL": url}


def show(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return fork_tracker(["show", *args], environment(url), timeout=120)


def in_terminal(url: str, *args: str, columns: int = 100) -> Screen:
    command = [sys.executable, "-m", "tracker", "show", *args]
    return run_in_terminal(command, env=environment(url), columns=columns, popen=forked)


@pytest.fixture
def big(db_url: str) -> str:
    """A prediction with 31,244 lines (1.5 MB) of logs, queued 4.2 s and run 68 s."""
    store = Store.from_url(db_url)
    try:
        long_run(store, "big-1", utcnow() - timedelta(hours=1), lines=LINES)
    finally:
        store.close()
    return db_url


def log_part(text: str) -> list[str]:
    """The lines after the logs' heading line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("logs  "))
    return lines[start + 1 :]


def line(n: int) -> str:
    return f"step {n:>6}/31244 loss=0.{n % 997:03d} lr=3e-4 it/s=12.5"


def test_a_terminal_gets_the_last_40_lines_the_durations_and_a_bar(big: str) -> None:
    screen = in_terminal(big, "big-1")
    assert screen.returncode == 0, screen.text
    text = screen.text
    assert f"logs  {LINES:,} lines, 1.5 MB in 4 chunks" in text
    shown = log_part(text)
    assert shown[0] == NOTE
    assert shown[1:] == [line(n) for n in range(LINES - 39, LINES + 1)]
    assert len(text.splitlines()) < 80  # not 31,000 lines
    lines = text.splitlines()
    at = lines.index(WORDS)
    bar = lines[at + 1]
    assert bar.startswith(" " * 15 + "q░") and "ran █" in bar
    assert len(bar) == 100  # 15 for the indent, 85 for the states
    assert bar.count("░") + 1 < bar.count("█") / 10  # drawn to scale: 4.2 s against 68 s
    rows = [row.split() for row in lines if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ ", row)]
    assert len(rows) == 3
    assert [(row[-5], " ".join(row[-2:])) for row in rows[:2]] == [
        ("starting", "4.2 s"),
        ("processing", "68 s"),
    ]
    assert rows[2][-3] == "succeeded"  # a terminal state lasts no time


def test_piped_output_has_the_words_but_no_bar(big: str) -> None:
    result = show(big, "big-1")
    assert result.returncode == 0, result.stderr
    assert WORDS in result.stdout.splitlines()
    assert not BAR_CHARACTERS.search(result.stdout)
    shown = log_part(result.stdout)
    assert shown[0] == NOTE and len(shown) == 41


@pytest.mark.parametrize(
    ("args", "count", "note"),
    [
        (("--tail", "5"), 5, f"… {LINES - 5:,} earlier lines not shown (--tail N, --logs all)"),
        (("--tail", "0"), 0, None),
        (("--logs", "none"), 0, None),
        (("--tail", str(LINES)), LINES, None),
        (("--logs", "all"), LINES, None),
    ],
)
def test_tail_and_logs_choose_the_lines(
    big: str, args: tuple[str, ...], count: int, note: str | None
) -> None:
    result = show(big, "big-1", *args)
    assert result.returncode == 0, result.stderr
    shown = log_part(result.stdout)
    if note is not None:
        assert shown.pop(0) == note
    assert len(shown) == count
    if count:
        assert shown[-1] == line(LINES)
        assert shown[0] == line(LINES - count + 1)


def test_tail_with_logs_all_is_a_usage_error(big: str) -> None:
    result = show(big, "big-1", "--tail", "3", "--logs", "all")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "Error: --tail cannot be combined with --logs all\n"
    bad = show(big, "big-1", "--tail", "-1")
    assert bad.returncode == 2 and bad.stderr.startswith("Error: Invalid value for '--tail'")


def test_json_is_complete_and_has_no_pictures(big: str) -> None:
    screen = in_terminal(big, "big-1", "--format", "json")
    assert screen.returncode == 0
    assert not BAR_CHARACTERS.search(screen.text)
    piped = show(big, "big-1", "--format", "json")
    document = json.loads(piped.stdout)
    logs = document["prediction"]["logs"]
    assert logs.count("\n") == LINES and logs.startswith("step      1/31244")
    assert "".join(chunk["text"] for chunk in document["logs"]) == logs


def test_a_running_prediction_counts_so_far(sqlite_url: str) -> None:
    store = Store.from_url(sqlite_url)
    try:
        long_run(store, "run-1", utcnow() - timedelta(seconds=40), lines=12, final=None)
    finally:
        store.close()
    result = show(sqlite_url, "run-1")
    lines = result.stdout.splitlines()
    [words] = [line for line in lines if line.startswith("time in state")]
    assert re.fullmatch(r"time in state  queued 4\.2 s, running for 3\d s so far", words), words
    assert log_part(result.stdout) == [line(n) for n in range(1, 10)]  # 3 chunks of 3
    screen = in_terminal(sqlite_url, "run-1", columns=80)
    seen = screen.text.splitlines()
    bar = seen[next(n for n, text in enumerate(seen) if text.startswith("time in state")) + 1]
    assert "running █" in bar and len(bar) == 80


def test_upstream_text_stays_escaped(sqlite_url: str) -> None:
    store = Store.from_url(sqlite_url)
    created = utcnow() - timedelta(minutes=5)
    try:
        store.add_predictions(["esc-1"], now=created, first_poll_at=created)
        logs = (
            "".join(f"line {n}\n" for n in range(100)) + "red \x1b[31mRED\x1b[0m [bold]x[/bold]\n"
        )
        answer(store, "esc-1", created, status="[red]warming", logs=logs)
    finally:
        store.close()
    for text in (show(sqlite_url, "esc-1").stdout, in_terminal(sqlite_url, "esc-1").raw):
        assert "\x1b[31mRED" not in text
        assert "red \\x1b[31mRED\\x1b[0m [bold]x[/bold]" in text
        assert "running for" not in text and "[red]warming for " in text  # markup as text

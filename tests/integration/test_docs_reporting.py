"""docs/reporting.md stays true: its SQL runs and gives the expected answers on the
engines it is written for, it describes every column of the views and reports,
and its `tracker report` command lines run.

Every fenced block must be tagged: ``sql`` (runs on both engines), ``sql sqlite``
followed by its ``sql postgresql`` twin, or ``sh`` (command lines). SQL is sent
verbatim through the driver, as an analyst's ``sqlite3`` or ``psql`` would,
against a known history whose times are relative to the real current time, so
that the queries about "this week" or "the last 24 hours" have a known answer.
"""

from __future__ import annotations

import os
import re
import shlex
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests import docblocks
from tests.clirun import run_tracker
from tests.docblocks import ENGINES_FOR_TAG, Block
from tests.integration.test_reports import (
    HOOK_A,
    HOOK_B,
    OPS,
    TERMINAL,
    VIEWS,
    Callback,
    Delivery,
    Prediction,
    normal,
    select_all,
    write,
)
from tracker.cli.report import REPORTS
from tracker.store.store import Store
from tracker.timeparse import utcnow

DOC = Path(__file__).resolve().parents[2] / "docs" / "reporting.md"
OTHER_TAGS = {"sh"}
EXAMPLES = "Example queries"


# -- the page ------------------------------------------------------------------


def column_table(markdown: str, heading: str) -> list[str]:
    """The backquoted names in the first column of the table whose header starts
    with ``| column |``, in the section under ``heading``."""
    names: list[str] = []
    in_section = in_table = False
    for line in markdown.splitlines():
        if title := docblocks.HEADING.match(line):
            in_section, in_table = title[2] == heading, False
            continue
        if not in_section or not line.startswith("|"):
            in_table = False
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "column":
            in_table = True
        elif in_table and (name := re.fullmatch(r"`(\w+)`", cells[0])):
            names.append(name[1])
    return names


DOC_TEXT = DOC.read_text(encoding="utf-8")
BLOCKS, HEADINGS = docblocks.parse(DOC_TEXT, DOC.name)
SQL_BLOCKS = [b for b in BLOCKS if b.tag in ENGINES_FOR_TAG]


# -- the known history, relative to now -----------------------------------------

MIN, HOUR, DAY = 60, 3600, 86400
FLUX, SDXL, VIDEO = "acme/flux", "acme/sdxl", "acme/video"
CUDA, NSFW = "CUDA out of memory", "NSFW content detected"


@dataclass(frozen=True)
class History:
    now: datetime  #: the moment every time of the history is relative to
    predictions: list[Prediction]

    def at(self, seconds: float) -> datetime:
        return self.now + timedelta(seconds=seconds)

    def ts(self, seconds: float) -> str:
        """now + seconds as SQLite stores it (PostgreSQL values are normalised to this)."""
        return normal("", self.at(seconds))


def finished(
    now: datetime,
    pid: str,
    model: str,
    status: str,
    created: float,
    started: float | None,
    completed: float,
    *,
    detect: float = 1.0,
    registered: float | None = None,
    **more: Any,
) -> Prediction:
    """A prediction the tracker followed to the end; times are seconds from ``now``,
    ``started`` and ``completed`` from ``created``."""
    at = lambda seconds: now + timedelta(seconds=seconds)  # noqa: E731
    registered_at = at(created if registered is None else registered)
    end = at(created + completed)
    seen_end = max(end, registered_at) + timedelta(seconds=detect)
    return Prediction(
        pid,
        registered_at,
        model,
        status,
        created=at(created),
        started=None if started is None else at(created + started),
        completed=end,
        seen=[(None, status, seen_end)]  # first seen when it had already finished
        if registered_at > end
        else [(None, "starting", registered_at), ("starting", status, seen_end)],
        **more,
    )


def make_history(now: datetime) -> tuple[History, list[Callback]]:
    png = "https://cdn.example.com/{}.png".format
    posters, banners = {"project": "posters"}, {"project": "banners"}

    def done(pid: str, model: str, status: str, *times: Any, **more: Any) -> Prediction:
        if status == "succeeded" and "output" not in more:
            more |= {"output": [png(pid)], "data_removed": False}
        return finished(now, pid, model, status, *times, **more)

    def active(
        pid: str, status: str | None, created: float, started: float | None = None
    ) -> Prediction:
        at = lambda seconds: now + timedelta(seconds=seconds)  # noqa: E731
        return Prediction(
            pid,
            at(created),
            None if status is None else VIDEO,
            status,
            "active",
            created=None if status is None else at(created),
            started=None if started is None else at(created + started),
            seen=[] if status is None else [(None, status, at(created + 1))],
        )

    predictions = [
        # acme/flux: run 10, 20, 30, 40 s this week, 100 s ten days ago
        done("a1", FLUX, "succeeded", -2 * HOUR, 4, 14, predict_time=9.5, labels=posters),
        done("a2", FLUX, "succeeded", -25 * HOUR, 2, 22, detect=0.5, labels=posters),
        done("a3", FLUX, "succeeded", -3 * DAY, 6, 36, detect=2.0, labels=banners),
        # registered an hour after it finished: upstream had removed the output
        done(
            "a4",
            FLUX,
            "succeeded",
            -5 * DAY,
            8,
            48,
            registered=-5 * DAY + HOUR,
            output=None,
            data_removed=True,
        ),
        done("a5", FLUX, "succeeded", -10 * DAY, 1, 101),
        # acme/sdxl: four failures, one success
        done("b1", SDXL, "failed", -3 * HOUR, 1, 3, detect=3.0, error=CUDA, labels=banners),
        done("b2", SDXL, "failed", -2 * DAY, 5, 8, error=CUDA, labels=posters),
        done("b3", SDXL, "failed", -4 * DAY, 2, 3, error=NSFW),
        done("b4", SDXL, "succeeded", -6 * HOUR, 2, 32, predict_time=29.0, labels=posters),
        done("b5", SDXL, "failed", -9 * DAY, 1, 2, error=CUDA),
        # acme/video: ended without starting, queued, running, and one success
        done("c1", VIDEO, "canceled", -HOUR, None, 900, detect=2.0),
        done("c2", VIDEO, "aborted", -2 * DAY, None, 20, detect=5.0),
        active("c3", "starting", -30 * MIN),
        active("c4", "starting", -5 * MIN),
        active("c5", "processing", -3 * HOUR, 10),
        done("c6", VIDEO, "succeeded", -12 * HOUR, 20, 70, predict_time=48.0, labels=posters),
        # never answered
        active("n1", None, -20 * MIN),
    ]
    by_id = {p.id: p for p in predictions}

    def event(pid: str) -> datetime:
        return by_id[pid].seen[-1][2]  # queued with the answer that showed the end

    def later(pid: str, seconds: float) -> datetime:
        return event(pid) + timedelta(seconds=seconds)

    hooks = [
        Callback("a1", "webhook", HOOK_A, [Delivery("delivered", 1, event("a1"), later("a1", 1))]),
        Callback("a2", "webhook", HOOK_A, [Delivery("delivered", 2, event("a2"), later("a2", 3))]),
        Callback(
            "b1", "webhook", HOOK_A, [Delivery("dead", 8, event("b1"), last_error="HTTP 500")]
        ),
        Callback(
            "b2", "webhook", HOOK_A, [Delivery("dead", 8, event("b2"), last_error="HTTP 500")]
        ),
        Callback(
            "b4",
            "webhook",
            HOOK_A,
            [Delivery("pending", 3, event("b4"), next_attempt=later("b4", 7200))],
        ),
        Callback("b3", "email", OPS, [Delivery("dead", 1, event("b3"), last_status_code=550)]),
        Callback(
            "c6", "webhook", HOOK_B, [Delivery("delivered", 1, event("c6"), later("c6", 0.5))]
        ),
    ]
    return History(now, predictions), hooks


def write_history(store: Store) -> History:
    history, hooks = make_history(utcnow().replace(microsecond=0))
    write(store, history.predictions, hooks)
    return history


# -- what the documented queries must answer --------------------------------------


@dataclass(frozen=True)
class Expected:
    columns: tuple[str, ...]  #: the result columns compared (others are not)
    rows: Callable[[History], list[tuple[Any, ...]]]


def _last_week_per_day(h: History) -> list[tuple[Any, ...]]:
    """daily_stats for today and the six days before, worked out from the history."""
    registered: Counter[str] = Counter()
    ended: defaultdict[str, Counter[str]] = defaultdict(Counter)
    runs: defaultdict[str, list[float]] = defaultdict(list)
    for p in h.predictions:
        registered[p.registered.date().isoformat()] += 1
        if p.status in TERMINAL and p.completed is not None:
            day = p.completed.date().isoformat()
            ended[day][p.status] += 1
            if p.started is not None:
                runs[day].append((p.completed - p.started).total_seconds())
    first = (utcnow() - timedelta(days=6)).date().isoformat()
    return [
        (
            day,
            registered[day],
            *(ended[day][status] for status in TERMINAL),
            round(sum(runs[day]) / len(runs[day]), 3) if runs[day] else None,
        )
        for day in sorted(set(registered) | set(ended))
        if day >= first
    ]


EXPECTED: dict[str, Expected] = {
    "Slowest models this week": Expected(
        ("model", "finished", "mean_run_seconds", "max_run_seconds"),
        lambda _: [(VIDEO, 1, 50.0, 50.0), (FLUX, 4, 25.0, 40.0), (SDXL, 4, 9.0, 30.0)],
    ),
    "Failure reasons, grouped by error text": Expected(
        ("error_text", "failures", "models", "example_id", "last_completed"),
        lambda h: [
            (CUDA, 3, 1, "b1", h.ts(-3 * HOUR + 3)),
            (NSFW, 1, 1, "b3", h.ts(-4 * DAY + 3)),
        ],
    ),
    "Predictions stuck in starting for over 10 minutes": Expected(
        ("id", "model", "waiting_since"), lambda h: [("c3", VIDEO, h.ts(-30 * MIN))]
    ),
    "Share of outputs already removed upstream": Expected(
        ("model", "succeeded", "removed_upstream", "without_output", "removed_percent"),
        lambda _: [(FLUX, 5, 1, 1, 20.0), (SDXL, 1, 0, 0, 0.0), (VIDEO, 1, 0, 0, 0.0)],
    ),
    "Callbacks that keep failing": Expected(
        ("kind", "target", "dead", "retrying", "most_attempts", "last_failed_event"),
        lambda h: [("webhook", HOOK_A, 2, 1, 8, h.ts(-3 * HOUR + 6))],
    ),
    "Success rate and run-time percentiles per model": Expected(
        ("model", "predictions", "success_rate", "run_seconds_p50", "run_seconds_p95"),
        lambda _: [
            (SDXL, 5, 0.2, 2.0, 24.6),  # run 1, 1, 2, 3, 30
            (VIDEO, 6, 0.3333, 50.0, 50.0),
            (FLUX, 5, 1.0, 30.0, 88.0),  # run 10, 20, 30, 40, 100
        ],
    ),
    "Queue-time percentiles over the last 24 hours": Expected(
        ("model", "started", "queue_p50", "queue_p95"),
        lambda _: [(VIDEO, 2, 15.0, 19.5), (FLUX, 1, 4.0, 4.0), (SDXL, 2, 1.5, 1.95)],
    ),
    "Registrations and completions per UTC day, last 7 days": Expected(
        ("day", "registered", "succeeded", "failed", "canceled", "aborted", "mean_run_seconds"),
        _last_week_per_day,
    ),
    "How soon the tracker notices that a prediction finished": Expected(
        ("model", "finished", "mean_detect_seconds", "max_detect_seconds"),
        lambda _: [(VIDEO, 3, 2.667, 5.0), (SDXL, 5, 1.4, 3.0), (FLUX, 4, 1.125, 2.0)],
    ),
    "Failure rate per project label this week": Expected(
        ("project", "finished", "failed", "failed_percent"),
        lambda _: [("banners", 2, 1, 50.0), ("posters", 5, 1, 20.0)],
    ),
    "Predictions that ended without starting": Expected(
        ("model", "status", "predictions", "mean_total_seconds"),
        lambda _: [(VIDEO, "aborted", 1, 20.0), (VIDEO, "canceled", 1, 900.0)],
    ),
    "Delivery health per callback target": Expected(
        (
            "kind",
            "target",
            "deliveries",
            "delivered",
            "dead",
            "pending",
            "mean_attempts",
            "p95_delivery_seconds",
        ),
        lambda _: [
            ("webhook", HOOK_A, 5, 2, 2, 1, 4.4, 2.9),  # p95 of 1 and 3 s
            ("email", OPS, 1, 0, 1, 0, 1.0, None),
            ("webhook", HOOK_B, 1, 1, 0, 0, 1.0, 0.5),
        ],
    ),
    "Longest-running predictions right now": Expected(
        ("id", "status", "model", "since"),
        lambda h: [
            ("c5", "processing", VIDEO, h.ts(-3 * HOUR + 10)),
            ("c3", "starting", VIDEO, h.ts(-30 * MIN)),
            ("n1", None, None, h.ts(-20 * MIN)),
            ("c4", "starting", VIDEO, h.ts(-5 * MIN)),
        ],
    ),
}


# -- tests ---------------------------------------------------------------------------


def test_every_code_block_is_tagged() -> None:
    untagged = docblocks.untagged(BLOCKS, OTHER_TAGS)
    assert not untagged, (
        "every fenced block in docs/reporting.md must be tagged `sql` (both engines),"
        f" `sql sqlite`, `sql postgresql` or `sh`: {untagged}"
    )
    for i, block in enumerate(BLOCKS):
        docblocks.check_twins(BLOCKS, i)
        if block.tag in ENGINES_FOR_TAG:
            statement = docblocks.statement(block)
            assert statement and ";" not in statement, f"line {block.line}: one statement"
            assert not re.search(r"(?<![:\w]):\w|%\(|\?", statement), (
                f"line {block.line}: literal values only, no bind parameters"
            )


def test_at_least_ten_examples_each_with_a_query_for_both_engines_and_an_answer() -> None:
    examples = [text_ for level, text_, section in HEADINGS if level == 3 and section == EXAMPLES]
    assert len(examples) >= 10
    for heading in examples:
        engines = {e for b in SQL_BLOCKS if b.heading == heading for e in ENGINES_FOR_TAG[b.tag]}
        assert engines == {"sqlite", "postgresql"}, f"no query for both engines under {heading!r}"
    assert set(EXPECTED) == set(examples), "every example has its expected answer here"
    assert all(b.section == EXAMPLES for b in SQL_BLOCKS)


@pytest.mark.parametrize(("block", "db_url"), docblocks.cases(SQL_BLOCKS), indirect=["db_url"])
def test_documented_query(block: Block, store: Store) -> None:
    history = write_history(store)
    columns, rows = docblocks.run_verbatim(store, block.body, normal)
    assert rows, f"line {block.line}: the query shows nothing for the known history"
    expected = EXPECTED[block.heading]
    missing = [c for c in expected.columns if c not in columns]
    assert not missing, f"line {block.line}: result has no column(s) {missing}: {columns}"
    picked = [tuple(row[columns.index(c)] for c in expected.columns) for row in rows]
    assert picked == expected.rows(history), f"line {block.line}"


@pytest.mark.parametrize(("block", "db_url"), docblocks.cases(SQL_BLOCKS), indirect=["db_url"])
def test_documented_query_on_empty_tables(block: Block, store: Store) -> None:
    columns, rows = docblocks.run_verbatim(store, block.body, normal)
    assert columns and rows == []


def test_the_doc_describes_every_column_of_every_view(store: Store) -> None:
    for name in VIEWS:
        actual, _ = select_all(store, f"SELECT * FROM {name} WHERE 1 = 0")
        assert column_table(DOC_TEXT, f"`{name}`") == actual, f"{name}: doc and view differ"


def test_the_doc_describes_every_report_and_its_columns() -> None:
    for name, report in REPORTS.items():
        documented = column_table(DOC_TEXT, f"`tracker report {name}`")
        assert documented == list(report.columns), f"report {name}: doc and command differ"
    documented_reports = {
        m[1]
        for level, text_, _ in HEADINGS
        if level == 3 and (m := re.fullmatch(r"`tracker report (\w+)`", text_))
    }
    assert documented_reports == set(REPORTS)


COMMANDS = [
    line.strip()
    for block in BLOCKS
    if block.tag == "sh"
    for line in block.body.splitlines()
    if line.strip().startswith("tracker report ")
]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_documented_report_commands_run(store: Store, db_url: str) -> None:
    assert len(COMMANDS) >= 6
    write_history(store)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    for command in COMMANDS:
        args = shlex.split(command)[1:]
        result = run_tracker([*args, "--database-url", db_url], env)
        assert result.returncode == 0, f"{command}: {result.stderr}"
        assert result.stderr == "" and result.stdout.strip(), command

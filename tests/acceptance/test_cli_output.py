"""The command line's tables as operators meet them (issue 13, items 1, 2, 7 and 10):
in a terminal of 80 and 120 columns (a pseudo-terminal), piped into grep, cut and
head, and as JSON and CSV; newest first, 50 rows unless --limit says otherwise."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert, select, update

from tests.acceptance.conftest import Tracker
from tests.clirun import forked
from tests.terminal import run_in_terminal
from tracker.cli.deliveries import RECORD_COLUMNS as DELIVERY_RECORD
from tracker.cli.predictions import RECORD_COLUMNS
from tracker.cli.report import REPORTS
from tracker.store.store import Store
from tracker.store.tables import callbacks, deliveries, predictions
from tracker.text.human import BLOCKS
from tracker.timeparse import utcnow

COUNT = 60
#: upstream text that would break a row or act on the terminal
NASTY = "boom\tcol\nFORGED ROW\x1b[2J\u202e"
HOOK = "https://user:hunter2@hooks.example.com/receive?token=s3cr3t"
MODELS = ("stability-ai/sdxl", "black-forest-labs/flux-1.1-pro-ultra-finetuned", "meta/llama")


def pid(n: int) -> str:
    """A Replicate-like ID: 26 characters."""
    return f"r{n:05d}q8x2mbdv1rm80cqzp4a7"


@pytest.fixture
def now() -> datetime:
    """The moment the database is filled: rows are registered whole minutes before it."""
    return utcnow().replace(microsecond=0)


@pytest.fixture
def cli(db_url: str, now: datetime) -> Tracker:
    """COUNT predictions registered a minute apart (pid(COUNT - 1) the newest), each
    with a webhook delivery; every fifth one failed with NASTY as its last error."""
    rows = [
        {
            "id": pid(n),
            "status": "failed" if n % 5 == 0 else ("processing" if n % 7 == 0 else "succeeded"),
            "tracking": "active" if n % 7 == 0 and n % 5 else "done",
            "model": MODELS[n % 3],
            "labels": {"team": "vision" if n % 2 else "speech"},
            "registered_at": now - timedelta(minutes=COUNT - n),
            "last_polled_at": now - timedelta(seconds=12),
            "poll_count": n,
            "last_error": NASTY if n % 5 == 0 else None,
            "output": {"image": "x" * 50},
        }
        for n in range(COUNT)
    ]
    with Store.from_url(db_url) as store, store.engine.begin() as conn:
        conn.execute(insert(predictions), rows)
        made = conn.execute(
            insert(callbacks).returning(callbacks.c.id, callbacks.c.prediction_id),
            [
                {"prediction_id": r["id"], "kind": "webhook", "target": HOOK, "events": "completed"}
                | {"created_at": now}
                for r in rows
            ],
        ).all()
        conn.execute(
            insert(deliveries),
            [
                {
                    "callback_id": cid,
                    "prediction_id": prediction,
                    "event": "completed",
                    "state": "dead" if n % 4 == 0 else "delivered",
                    "attempts": 1 + n % 9,
                    "last_error": NASTY if n % 4 == 0 else None,
                    "created_at": now - timedelta(minutes=COUNT - n),
                    "payload": "{}",
                    "message_id": f"msg_{cid}",
                }
                for n, (cid, prediction) in enumerate(made)
            ],
        )
    return Tracker(database_url=db_url, api_base="http://127.0.0.1:9/v1")


def screen(cli: Tracker, *args: str, columns: int) -> list[str]:
    shown = run_in_terminal(cli.command(*args), env=cli.env(), columns=columns, popen=forked)
    assert shown.returncode == 0, shown.text
    return shown.text.splitlines()


def piped(cli: Tracker, *args: str) -> subprocess.CompletedProcess[str]:
    result = cli.run(*args)
    assert result.returncode == 0, result.stderr
    return result


NEWEST_50 = [pid(n) for n in reversed(range(COUNT - 50, COUNT))]


# -- item 1: tables in a terminal ------------------------------------------------------


@pytest.mark.parametrize("columns", [80, 120])
def test_list_in_a_terminal_fits_and_never_breaks_an_id(cli: Tracker, columns: int) -> None:
    lines = screen(cli, "list", columns=columns)
    header, rows, footer = lines[0], lines[1:-1], lines[-1]
    assert header.split()[:2] == ["id", "status"] and "registered" in header
    assert all(len(line) <= columns for line in lines), lines
    # one line per prediction, newest first, each starting with its whole ID
    assert [line.split()[0] for line in rows] == NEWEST_50
    assert footer == f"showing 50 of {COUNT} (--limit 0 for all)"
    assert not any("FORGED" in line.split()[0] for line in rows)  # no forged line
    newest = rows[0]
    assert re.search(r"\b\d+ s ago\b", newest) and "succeeded" in newest
    # the age column is right-aligned: its values end where its header ends
    end = header.index("registered") + len("registered")
    assert all(line[:end].endswith(" ago") for line in rows)
    failed = next(line for line in rows if line.startswith(pid(55)))
    assert "failed" in failed
    if columns == 120:
        assert "stability-ai/sdxl" in rows[2]  # pid(57): the whole model name
        assert "boom\\x09col" in failed  # escaped, on its row


def test_wide_shows_the_other_columns(cli: Tracker) -> None:
    (header, *_rest) = screen(cli, "list", "--wide", "--limit", "3", columns=120)
    narrow = screen(cli, "list", "--limit", "3", columns=120)[0]
    for title in ("tracking", "polls", "next poll", "labels"):
        assert title in header and title not in narrow


@pytest.mark.parametrize("columns", [80, 120])
def test_deliveries_in_a_terminal(cli: Tracker, columns: int) -> None:
    lines = screen(cli, "deliveries", "list", columns=columns)
    assert lines[0].split()[:2] == ["id", "prediction"]
    assert all(len(line) <= columns for line in lines), lines
    rows = lines[1:-1]
    assert [int(line.split()[0]) for line in rows] == list(range(COUNT, COUNT - 50, -1))
    assert [line.split()[1] for line in rows] == NEWEST_50
    assert lines[-1] == f"showing 50 of {COUNT} (--limit 0 for all)"
    text = "\n".join(lines)
    assert "hunter2" not in text and "s3cr3t" not in text
    if columns == 120:
        assert "https://user:***@" in text


@pytest.mark.parametrize("columns", [80, 120])
def test_report_models_in_a_terminal_with_a_chart(cli: Tracker, db_url: str, columns: int) -> None:
    with Store.from_url(db_url) as store, store.engine.begin() as conn:
        succeeded = conn.execute(
            select(predictions.c.id, predictions.c.registered_at).where(
                predictions.c.status == "succeeded"
            )
        ).all()
        for prediction, registered in succeeded:  # runs of 2 s, and one of 125 s
            ran = timedelta(seconds=125 if prediction == pid(59) else 2)
            conn.execute(
                update(predictions)
                .where(predictions.c.id == prediction)
                .values(created_at=registered, started_at=registered, completed_at=registered + ran)
            )
    lines = screen(cli, "report", "models", "--chart", columns=columns)
    assert lines[0].split()[:3] == ["model", "total", "success"]
    assert all(len(line) <= columns for line in lines), lines
    charts = [line for line in lines[1:] if any(b in line for b in BLOCKS)]
    assert len(charts) == 3, lines  # one sparkline per model
    assert any(re.search(r"2\.0 s [▁-█ ]+ 2\.1 min", line) for line in charts), charts
    assert re.search(r"\b\d+ %", lines[1])  # success rate as a percentage
    plain = screen(cli, "report", "models", columns=columns)
    assert not any(b in "\n".join(plain) for b in BLOCKS)
    # never in piped, JSON or CSV output
    for fmt in ("table", "json", "csv"):
        out = piped(cli, "report", "models", "--chart", "--format", fmt).stdout
        assert not any(b in out for b in BLOCKS)
        assert out == piped(cli, "report", "models", "--format", fmt).stdout


def test_chart_goes_with_the_models_report_only(cli: Tracker) -> None:
    result = cli.run("report", "status", "--chart")
    assert result.returncode == 2 and result.stderr.startswith("Error:")


# -- item 1: piped output ---------------------------------------------------------------


def test_piped_list_is_one_tab_separated_line_per_row(cli: Tracker, now: datetime) -> None:
    result = piped(cli, "list")
    assert result.stderr == ""  # no footer outside a terminal
    header, *rows = result.stdout.splitlines()
    assert header.split("\t") == ["id", "status", "model", "registered_at", "last_error"]
    cells = [row.split("\t") for row in rows]
    assert [len(c) for c in cells] == [5] * 50
    assert [c[0] for c in cells] == NEWEST_50
    newest = cells[0]
    assert newest[3] == (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    failed = next(c for c in cells if c[0] == pid(55))
    assert failed[1] == "failed" and failed[4] == "boom\\x09col\\x0aFORGED ROW\\x1b[2J\\u202e"
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
    # cut -f and grep see the columns and rows
    cut = subprocess.run(
        f"{subprocess.list2cmdline(cli.command('list'))} | grep failed | cut -f1",
        shell=True,
        capture_output=True,
        text=True,
        env=cli.env(),
    )
    assert cut.stdout.split() == [pid(n) for n in reversed(range(10, COUNT)) if n % 5 == 0]


def test_piped_wide_and_reports(cli: Tracker) -> None:
    header = piped(cli, "list", "--wide", "--limit", "1").stdout.splitlines()[0].split("\t")
    assert header[:3] == ["id", "status", "tracking"] and "poll_count" in header
    lines = piped(cli, "report", "status").stdout.splitlines()
    assert lines[0] == "status\ttracking\tpredictions"
    assert sorted(lines[1:]) == ["failed\tdone\t12", "processing\tactive\t7", "succeeded\tdone\t41"]


def test_head_gets_its_lines_and_the_listing_stops(cli: Tracker) -> None:
    command = subprocess.list2cmdline(cli.command("list", "--limit", "0"))
    started = time.monotonic()
    result = subprocess.run(
        f"{command} | head -3", shell=True, capture_output=True, text=True, env=cli.env()
    )
    assert time.monotonic() - started < 30
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["id", *NEWEST_50[:2]]
    assert "Traceback" not in result.stderr and "Error" not in result.stderr


# -- item 2: limits, streaming, filters -----------------------------------------------------


def test_limit_zero_is_everything_and_json_csv_are_whole(cli: Tracker) -> None:
    records = json.loads(piped(cli, "list", "--limit", "0", "--format", "json").stdout)
    assert [r["id"] for r in records] == [pid(n) for n in reversed(range(COUNT))]
    assert all(list(r) == list(RECORD_COLUMNS) for r in records)
    assert records[4]["last_error"] == NASTY  # exact data, escaped only as JSON escapes
    table = list(csv.DictReader(io.StringIO(piped(cli, "list", "--format", "csv").stdout)))
    assert len(table) == 50 and list(table[0]) == list(RECORD_COLUMNS)
    assert table[4]["last_error"] == NASTY and json.loads(table[0]["output"]) == {"image": "x" * 50}
    sent = json.loads(piped(cli, "deliveries", "list", "--limit", "0", "--format", "json").stdout)
    assert len(sent) == COUNT and list(sent[0]) == list(DELIVERY_RECORD)
    assert sent[0]["target"] == "https://user:***@hooks.example.com/receive?token=***"
    bad = cli.run("list", "--limit", "-1")
    assert bad.returncode == 2 and bad.stderr.startswith("Error:")


def test_since_until_and_labels_on_list_and_deliveries(cli: Tracker, now: datetime) -> None:
    def ids(*args: str) -> list[str]:
        return [r["id"] for r in json.loads(piped(cli, "list", *args, "--format", "json").stdout)]

    assert ids("--since", "10m") == [pid(n) for n in reversed(range(51, COUNT))]
    until = (now - timedelta(minutes=55)).isoformat()
    assert ids("--until", until) == [pid(n) for n in reversed(range(5))]
    assert ids("--since", "30m", "--label", "team=vision", "--status", "failed") == [
        pid(n) for n in reversed(range(31, COUNT)) if n % 10 == 5
    ]

    def delivered(*args: str) -> list[str]:
        out = piped(cli, "deliveries", "list", *args, "--format", "json").stdout
        return [d["prediction_id"] for d in json.loads(out)]

    assert delivered("--since", "5m", "--state", "dead") == [pid(56)]
    assert delivered("--label", "team=speech", "--limit", "2") == [pid(58), pid(56)]
    for args in (
        ["list", "--since", "1h", "--until", "2h"],
        ["deliveries", "list", "--since", "x"],
    ):
        result = cli.run(*args)
        assert result.returncode == 2, result
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr


# -- item 7: choices and format words ------------------------------------------------------


def test_statuses_and_report_names_are_choices(cli: Tracker) -> None:
    result = cli.run("list", "--status", "finished")
    assert result.returncode == 2 and "'finished' is not one of" in result.stderr
    assert "succeeded" in result.stderr and len(result.stderr.splitlines()) == 1
    helped = piped(cli, "list", "--help").stdout
    status_help = helped[helped.index("--status") : helped.index("--active")]
    for status in ("starting", "processing", "succeeded", "failed", "canceled", "aborted"):
        assert status in status_help
    report_help = piped(cli, "report", "--help").stdout
    names = "{" + "|".join(REPORTS) + "}"  # every report (help wraps the list)
    assert "deadlines" in REPORTS and names in "".join(report_help.split())
    completion = subprocess.run(
        cli.command(),
        capture_output=True,
        text=True,
        env=cli.env(
            _TRACKER_COMPLETE="bash_complete", COMP_WORDS="tracker report m", COMP_CWORD="2"
        ),
    )
    assert "models" in completion.stdout


@pytest.mark.parametrize(
    ("command", "accepted"),
    [
        (["list"], ("table", "json", "csv")),
        (["deliveries", "list"], ("table", "json", "csv")),
        (["report"], ("table", "json", "csv")),
        (["show"], ("text", "json")),
    ],
)
def test_format_help_names_what_the_command_takes(
    cli: Tracker, command: list[str], accepted: tuple[str, ...]
) -> None:
    helped = piped(cli, *command, "--help").stdout
    start = helped.index("\n  --format [") + 1
    option = helped[start : helped.index("\n  -", start + 1)]
    words = set(re.findall(r"\b(table|text|json|csv)\b", option))
    assert words == set(accepted), option


def test_help_runs_without_a_database() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tracker", "list", "--help"], capture_output=True, text=True
    ).stdout
    assert "--limit" in out and "--since WHEN" in out and "--label KEY=VALUE" in out

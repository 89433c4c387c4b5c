"""Hostile data and careless input meet the command line (issue 11, items 11-13, 15, 17):
what is shown is escaped and masked, what is read is bounded, a newer database is named."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, text

from tests.acceptance.conftest import Tracker
from tracker.store.store import SCHEMA_HEAD, Store
from tracker.store.tables import (
    callbacks,
    deliveries,
    delivery_attempts,
    prediction_logs,
    predictions,
    status_transitions,
)


@pytest.fixture
def cli(db_url: str) -> Tracker:
    return Tracker(database_url=db_url, api_base="http://127.0.0.1:9/v1")


def one_error_line(result: object) -> str:
    stderr = result.stderr  # type: ignore[attr-defined]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), stderr
    return str(lines[0])


# -- item 17: a database migrated by a newer tracker --------------------------


def set_revision(db_url: str, revision: str) -> None:
    store = Store.from_url(db_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        store.close()


@pytest.mark.parametrize("args", [["list"], ["add", "x-1"], ["status"], ["db", "upgrade"]])
def test_a_newer_database_asks_for_a_newer_tracker(
    cli: Tracker, db_url: str, args: list[str]
) -> None:
    set_revision(db_url, "0099_from_the_future")
    result = cli.run(*args)
    assert result.returncode == (3 if args == ["status"] else 1)  # status: health unknown
    line = one_error_line(result)
    assert "newer than this tracker" in line and "upgrade the tracker" in line, line
    assert "0099_from_the_future" in line and SCHEMA_HEAD in line
    assert "db upgrade" not in line and "Can't locate" not in line


def test_db_current_names_a_newer_revision(cli: Tracker, db_url: str) -> None:
    set_revision(db_url, "0099")
    result = cli.ok("db", "current")
    assert result.stdout.strip() == "0099"
    assert "newer than this tracker" in result.stderr


def test_an_older_database_still_asks_for_db_upgrade(cli: Tracker, db_url: str) -> None:
    set_revision(db_url, "0005")
    line = one_error_line(cli.run("list"))
    assert "run `tracker db upgrade`" in line


# -- item 12: ID files are read with bounds -----------------------------------


@pytest.fixture
def lite(sqlite_url: str) -> Tracker:
    return Tracker(database_url=sqlite_url, api_base="http://127.0.0.1:9/v1")


def test_add_file_dev_zero_ends_at_once_with_one_short_line(lite: Tracker) -> None:
    result = lite.run("add", "--file", "/dev/zero", timeout=30)
    assert result.returncode == 2
    line = one_error_line(result)
    assert "/dev/zero, line 1: longer than 1024 bytes" in line and len(line) < 200


def test_add_file_with_a_huge_line_does_not_echo_it(lite: Tracker, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("ok-1\n" + "x" * 1_000_000 + "\n", encoding="utf-8")
    line = one_error_line(lite.run("add", "--file", str(ids)))
    assert "line 2" in line and len(line) < 200
    assert lite.ok("list", "--format", "csv").stdout.count("\n") == 1  # nothing written


def test_add_file_a_bad_id_is_shown_short_and_escaped(lite: Tracker, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("ok-1\n" + "\x1b[2J" + "y" * 1000 + "\n", encoding="utf-8")
    line = one_error_line(lite.run("add", "--file", str(ids)))
    assert "line 2" in line and "\\x1b[2J" in line and "\x1b" not in line and len(line) < 300


def test_add_file_not_utf8_names_the_line(lite: Tracker, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"\xef\xbb\xbfok-1\r\nok-2\nab\xffc\n")
    line = one_error_line(lite.run("add", "--file", str(ids)))
    assert "line 3" in line and "UTF-8" in line and "unexpected" not in line, line


def test_add_file_bom_and_crlf_still_read(lite: Tracker, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"\xef\xbb\xbfok-1\r\nok-2\n")
    assert "registered 2 predictions" in lite.ok("add", "--file", str(ids)).stdout


def test_add_file_larger_than_the_cap_is_refused(lite: Tracker, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    comment = b"# " + b"c" * 1000 + b"\n"
    with ids.open("wb") as f:
        f.write(b"ok-1\n" + comment * (33 * 1024 * 1024 // len(comment) + 1))
    line = one_error_line(lite.run("add", "--file", str(ids)))
    assert "more than 32 MiB" in line


# -- item 11: lists read only what they print ---------------------------------

#: runs each command given (a JSON list of arguments each) in this interpreter, one
#: after the other, and writes its exit code and its peak RSS (VmHWM, kB) to stderr; the
#: peak is brought down to what is resident before each command starts (/proc's
#: clear_refs), so that each is measured as if it ran alone, without an interpreter each
PEAK_RSS = """
import json
import sys
from tracker.cli.main import main

def peak_kb():
    with open("/proc/self/status") as status:
        return next(line for line in status if line.startswith("VmHWM")).split()[1]

for argument in sys.argv[1:]:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    try:
        main(json.loads(argument))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    print("PEAK", peak_kb(), code, argument, file=sys.stderr)
"""
BIG = 50 * 2**20


def peaks_mb(cli: Tracker, commands: Sequence[list[str]]) -> dict[str, int]:
    """Each command's peak RSS in MB, by its arguments joined; each must exit 0."""
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *(json.dumps(args) for args in commands)],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli.env(),
    )
    assert result.returncode == 0, result.stderr
    peaks = {}
    for line in result.stderr.splitlines():
        if line.startswith("PEAK "):
            _, kb, code, argument = line.split(" ", 3)
            assert code == "0", f"{argument} exited {code}:\n{result.stderr}"
            peaks[" ".join(json.loads(argument))] = int(kb) // 1024
    assert len(peaks) == len(commands), result.stderr
    return peaks


def store_big_rows(db_url: str) -> None:
    """Two predictions with 50 MB of logs and raw body each, and a 50 MB webhook payload."""
    big, now = "x" * BIG, datetime.now(UTC)
    store = Store.from_url(db_url)
    try:
        with store.engine.begin() as conn:
            for n in range(2):
                conn.execute(
                    insert(predictions).values(
                        id=f"big-{n}",
                        tracking="done",
                        status="failed",
                        registered_at=now,
                        logs=big,
                        raw={"logs": big},
                        error="boom",
                    )
                )
            cb = conn.execute(
                insert(callbacks).values(
                    prediction_id="big-0",
                    kind="webhook",
                    target="https://example.com/h",
                    events="completed",
                    created_at=now,
                )
            ).inserted_primary_key[0]
            conn.execute(
                insert(deliveries).values(
                    callback_id=cb,
                    prediction_id="big-0",
                    event="completed",
                    state="dead",
                    created_at=now,
                    payload=big,
                    message_id="msg_big",
                )
            )
    finally:
        store.close()


#: every listing of predictions or deliveries, and the reports that touch their tables
LISTINGS: tuple[list[str], ...] = (
    ["list"],
    ["list", "--format", "json"],
    ["list", "--format", "csv"],
    ["deliveries", "list"],
    ["deliveries", "list", "--format", "json"],
    ["report", "failures"],
    ["report", "deliveries"],
)


def test_lists_do_not_read_logs_raw_bodies_or_payloads(cli: Tracker, db_url: str) -> None:
    store_big_rows(db_url)
    # an idle command peaks near 70 MB; reading the rows took 678 (PostgreSQL) to 922 MB
    peaks = peaks_mb(cli, LISTINGS)
    assert max(peaks.values()) < 200, peaks


def test_list_json_keeps_its_keys(cli: Tracker, db_url: str) -> None:
    cli.ok("add", "k-1", "--label", "a=b")
    (record,) = json.loads(cli.ok("list", "--format", "json").stdout)
    assert list(record) == [
        "id",
        "status",
        "tracking",
        "model",
        "version",
        "input",
        "output",
        "error",
        "metrics",
        "predict_time",
        "created_at",
        "started_at",
        "completed_at",
        "data_removed",
        "urls",
        "labels",
        "registered_at",
        "last_polled_at",
        "next_poll_at",
        "poll_count",
        "error_count",
        "last_error",
        "deadline_at",
        "cancel_requested_at",
        "cancel_reason",
        "cancel_outcome",
        "cancel_detail",
    ]
    assert record["labels"] == {"a": "b"}
    header = cli.ok("list", "--format", "csv").stdout.splitlines()[0]
    assert header.split(",") == list(record)


# -- items 13 and 15: upstream text shown as text, webhook secrets masked ------

#: markup, a hidden hyperlink, a screen clear, BEL, CR, a C1 CSI and a bidi override
EVIL = (
    "[/bold] [link=https://evil.example]click[/link] \x1b[2J\x1b]8;;https://evil\x07X"
    "\x1b]8;;\x07 bell\x07 cr\rFORGED \x9b31m \u202egnp.exe :smile:"
)
#: what a terminal would act on
CONTROLS = ("\x1b", "\x07", "\r", "\x9b", "\u202e")
HOOK = "https://user:hunter2@hooks.example.com/h?token=s3cr3t"
SECRETS = ("hunter2", "s3cr3t")


def store_hostile(db_url: str) -> None:
    """A failed prediction whose every upstream text is hostile, with a webhook
    whose URL holds a password and a token, one dead delivery and its attempt."""
    now = datetime.now(UTC)
    store = Store.from_url(db_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(
                insert(predictions).values(
                    id="evil-1",
                    tracking="done",
                    status="failed",
                    registered_at=now,
                    model="m/" + EVIL,
                    logs="line one\n" + EVIL + "\nlast\tline\n",
                    error=EVIL,
                    last_error=EVIL,
                    output=[EVIL],
                    metrics={"k": EVIL},
                )
            )
            conn.execute(
                insert(status_transitions).values(
                    prediction_id="evil-1", to_status="failed", observed_at=now
                )
            )
            conn.execute(
                insert(prediction_logs).values(
                    prediction_id="evil-1", seq=1, observed_at=now, text="line one\n"
                )
            )
            cb = conn.execute(
                insert(callbacks).values(
                    prediction_id="evil-1",
                    kind="webhook",
                    target=HOOK,
                    events="completed",
                    created_at=now,
                )
            ).inserted_primary_key[0]
            delivery = conn.execute(
                insert(deliveries).values(
                    callback_id=cb,
                    prediction_id="evil-1",
                    event="completed",
                    state="dead",
                    created_at=now,
                    payload="{}",
                    message_id="msg_evil",
                    last_error=EVIL,
                )
            ).inserted_primary_key[0]
            conn.execute(
                insert(delivery_attempts).values(
                    delivery_id=delivery, attempted_at=now, status_code=500, error=EVIL
                )
            )
    finally:
        store.close()


#: every command that shows upstream text or callback targets to a person
SHOWN = (
    ["show", "evil-1"],
    ["list"],
    ["list", "--status", "failed"],
    ["deliveries", "list"],
    ["report", "failures"],
    ["report", "deliveries"],
    ["report", "status"],
    ["report", "models"],
    ["status"],
)


@pytest.mark.parametrize("args", SHOWN, ids=" ".join)
def test_upstream_text_is_shown_as_text(cli: Tracker, db_url: str, args: list[str]) -> None:
    store_hostile(db_url)
    result = cli.run(*args)
    # status exits 1 when unhealthy; anything else, MarkupError included, is a failure
    assert result.returncode in ((0, 1) if args == ["status"] else (0,)), result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert not [c for c in CONTROLS if c in out], out
    assert not [s for s in SECRETS if s in out], out
    if args not in (["status"], ["report", "status"], ["report", "deliveries"]):
        assert "[/bold" in out, out  # markup shown as text, never interpreted


def test_show_escapes_but_keeps_the_logs_lines(cli: Tracker, db_url: str) -> None:
    store_hostile(db_url)
    out = cli.ok("show", "evil-1").stdout
    assert "\nline one\n" in out and "\nlast\tline\n" in out
    assert "\\x1b[2J" in out and "\\x0dFORGED" in out and "\\u202egnp" in out
    assert "https://user:***@hooks.example.com/h?token=***" in out
    assert "delivery attempts" in out  # deliveries and attempts are shown too


@pytest.mark.parametrize(
    "args",
    [
        ["show", "evil-1", "--format", "json"],
        ["deliveries", "list", "--format", "json"],
        ["deliveries", "list", "--format", "csv"],
        ["report", "deliveries", "--format", "json"],
        ["report", "deliveries", "--format", "csv"],
    ],
    ids=" ".join,
)
def test_webhook_secrets_never_reach_any_output(cli: Tracker, db_url: str, args: list[str]) -> None:
    store_hostile(db_url)
    out = cli.ok(*args).stdout
    assert not [s for s in SECRETS if s in out], out
    assert "https://user:***@hooks.example.com/h?token=***" in out


def test_json_and_csv_stay_exact_data(cli: Tracker, db_url: str) -> None:
    store_hostile(db_url)
    out = cli.ok("list", "--format", "json").stdout
    assert not [c for c in CONTROLS if c in out]  # escaped as JSON, the same data
    (record,) = json.loads(out)
    assert record["last_error"] == EVIL and record["model"] == "m/" + EVIL
    (detail,) = [json.loads(cli.ok("show", "evil-1", "--format", "json").stdout)]
    assert detail["prediction"]["logs"].endswith(EVIL + "\nlast\tline\n")
    piped = subprocess.run(
        cli.command("list", "--format", "csv"), capture_output=True, env=cli.env()
    )
    (row,) = csv.DictReader(io.StringIO(piped.stdout.decode(), newline=""))
    assert row["last_error"] == EVIL  # piped CSV is the bytes as stored
    stored = Store.from_url(db_url)
    try:
        assert stored.get_detail("evil-1").callbacks[0].target == HOOK  # type: ignore[union-attr]
    finally:
        stored.close()

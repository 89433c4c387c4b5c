"""Nothing written by mistake: read commands never create a SQLite file, and
`tracker prune --all` deletes predictions only when confirmed (a terminal asks;
elsewhere --yes is needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.clirun import fork_tracker, forked
from tests.integration.test_prune import ALL_COUNTS, CUTOFF, DEFAULT_COUNTS, write_history
from tests.terminal import run_in_terminal
from tracker import Tracker
from tracker.exceptions import DatabaseMissing
from tracker.store.store import Store

READ_COMMANDS = [
    ["list"],
    ["show", "p-1"],
    ["report", "status"],
    ["deliveries", "list"],
    ["deliveries", "retry", "--since", "1d"],
    ["db", "current"],
    ["prune", "--older-than", "30d", "--dry-run"],
    ["add", "p-1"],  # a database without the schema could not take it either
]


def tracker(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    return fork_tracker([*args, "--database-url", url], env, timeout=120)  # stdin: empty


def environment(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    return {**env, "TRACKER_DATABASE_URL": url}


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda args: "-".join(args))
@pytest.mark.parametrize("where", ["tracker.db", "missing-dir/tracker.db"])
def test_a_missing_sqlite_file_is_named_and_not_created(
    tmp_path: Path, args: list[str], where: str
) -> None:
    path = tmp_path / where
    result = tracker(f"sqlite:///{path}", *args)
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert result.stderr == f"Error: no database at {path} (run tracker db upgrade to create it)\n"
    assert list(tmp_path.iterdir()) == []  # no file, no -wal, no directory


def test_db_upgrade_creates_it_and_then_it_reads(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    assert "migrated from empty" in tracker(url, "db", "upgrade").stdout
    assert (tmp_path / "tracker.db").is_file()
    assert tracker(url, "list").returncode == 0
    assert tracker(url, "db", "current").returncode == 0


def test_the_python_api_creates_nothing_either(tmp_path: Path) -> None:
    path = tmp_path / "tracker.db"
    with Tracker(f"sqlite:///{path}") as t, pytest.raises(DatabaseMissing) as refused:
        t.list()
    assert str(refused.value) == f"no database at {path} (run tracker db upgrade to create it)"
    assert not path.exists()


def test_a_relative_path_is_read_from_the_working_directory(tmp_path: Path) -> None:
    env = environment("sqlite:///here.db")
    missing = fork_tracker(["list"], env, timeout=60, cwd=tmp_path)
    assert missing.stderr == "Error: no database at here.db (run tracker db upgrade to create it)\n"
    assert not (tmp_path / "here.db").exists()
    assert fork_tracker(["db", "upgrade"], env, timeout=60, cwd=tmp_path).returncode == 0
    assert fork_tracker(["list"], env, timeout=60, cwd=tmp_path).returncode == 0


# -- prune --all ---------------------------------------------------------------------------


@pytest.fixture
def history_url(sqlite_url: str) -> str:
    store = Store.from_url(sqlite_url)
    try:
        write_history(store)
    finally:
        store.close()
    return sqlite_url


def predictions(url: str) -> int:
    store = Store.from_url(url)
    try:
        with store.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM predictions")).scalar_one())
    finally:
        store.close()


CUTOFF_ARG = CUTOFF.date().isoformat()


def test_all_without_a_terminal_needs_yes(history_url: str) -> None:
    before = predictions(history_url)
    refused = tracker(history_url, "prune", "--older-than", CUTOFF_ARG, "--all")
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr == (
        "Error: --all deletes predictions for good: add --yes to confirm"
        " (stdin is not a terminal)\n"
    )
    assert predictions(history_url) == before
    done = tracker(history_url, "prune", "--older-than", CUTOFF_ARG, "--all", "-y")
    assert done.returncode == 0, done.stderr
    assert predictions(history_url) == before - ALL_COUNTS.predictions_deleted


@pytest.mark.parametrize(("answer", "deleted"), [("n\n", False), ("\n", False), ("y\n", True)])
def test_all_asks_in_a_terminal(history_url: str, answer: str, deleted: bool) -> None:
    before = predictions(history_url)
    screen = run_in_terminal(
        [sys.executable, "-m", "tracker", "prune", "--older-than", CUTOFF_ARG, "--all"],
        env=environment(history_url),
        answer=answer,
        after="[y/N]",
        popen=forked,
    )
    text = screen.text
    assert (
        f"Delete {ALL_COUNTS.predictions_deleted} predictions that finished before"
        f" {CUTOFF_ARG} 00:00:00Z, with their transitions, logs, callbacks and deliveries?"
        " [y/N]"
    ) in text
    if deleted:
        assert screen.returncode == 0, text
        assert "predictions deleted" in text
        assert predictions(history_url) == before - ALL_COUNTS.predictions_deleted
    else:
        assert screen.returncode == 1, text
        assert text.rstrip().endswith("nothing was deleted")
        assert predictions(history_url) == before


def test_all_with_yes_or_dry_run_does_not_ask_in_a_terminal(history_url: str) -> None:
    before = predictions(history_url)
    command = [sys.executable, "-m", "tracker", "prune", "--older-than", CUTOFF_ARG, "--all"]
    dry = run_in_terminal([*command, "--dry-run"], env=environment(history_url), popen=forked)
    assert dry.returncode == 0 and "[y/N]" not in dry.text
    assert predictions(history_url) == before
    done = run_in_terminal([*command, "--yes"], env=environment(history_url), popen=forked)
    assert done.returncode == 0 and "[y/N]" not in done.text
    assert predictions(history_url) == before - ALL_COUNTS.predictions_deleted


def test_dry_run_says_what_it_would_delete(history_url: str) -> None:
    dry = tracker(history_url, "prune", "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"{DEFAULT_COUNTS.examined} finished predictions examined",
        f"would prune {DEFAULT_COUNTS.affected} predictions",
        f"would delete {DEFAULT_COUNTS.log_rows_deleted} log rows",
        f"would clear {DEFAULT_COUNTS.raw_bodies_cleared} raw bodies",
        f"would delete {DEFAULT_COUNTS.attempts_deleted} delivery attempts",
        "dry run: nothing was changed",
    ]
    everything = tracker(history_url, "prune", "--older-than", CUTOFF_ARG, "--all", "--dry-run")
    lines = everything.stdout.splitlines()
    assert f"would delete {ALL_COUNTS.predictions_deleted} predictions" in lines
    assert "would keep 1 prediction (delivery pending)" in lines
    assert f"would delete {ALL_COUNTS.transitions_deleted} status transitions" in lines

"""The command line as a user meets it: bad input, files, stdin, unmigrated databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.conftest import Tracker


@pytest.fixture
def cli(db_url: str) -> Tracker:
    return Tracker(database_url=db_url, api_base="http://127.0.0.1:9/v1")


def count(cli: Tracker) -> int:
    return len(cli.ok("list", "--format", "csv").stdout.splitlines()) - 1


@pytest.mark.parametrize("bad", ["../x", "a b", "", "-lead", "x" * 129, "é"])
def test_bad_ids_are_refused_and_nothing_is_written(cli: Tracker, bad: str) -> None:
    result = cli.run("add", "good-1", bad)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert "Traceback" not in result.stderr
    assert count(cli) == 0


def test_add_from_file_and_stdin(cli: Tracker, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("# batch 1\nfile-1\n\n  file-2  \nfile-1\n", encoding="utf-8")
    assert "registered 2 predictions" in cli.ok("add", "--file", str(ids)).stdout
    out = cli.ok("add", "--file", "-", input="file-2\nstdin-1\n").stdout
    assert "registered 1 prediction (1 already known)" in out
    assert count(cli) == 3


def test_bad_line_in_file_names_the_line(cli: Tracker, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("ok-1\nnot valid\n", encoding="utf-8")
    result = cli.run("add", "--file", str(ids))
    assert result.returncode == 2
    assert "line 2" in result.stderr and result.stderr.startswith("Error:")
    assert count(cli) == 0


@pytest.mark.parametrize(
    "args",
    [
        ["add", "x-1", "--webhook", "ftp://example.com/hook"],
        ["add", "x-1", "--webhook", "not a url"],
        ["add", "x-1", "--email", "nobody"],
        ["add", "x-1", "--events", "start,finished"],
        ["add", "x-1", "--label", "novalue"],
        ["add", "x-1", "--label", "k=" + "v" * 1025],  # each label is an index key
        ["daemon", "--poll-min", "0"],
        ["daemon", "--poll-min", "5", "--poll-max", "1"],
        ["list", "--format", "xml"],
        ["show", "../etc"],
        ["nosuchcommand"],
    ],
)
def test_bad_input_is_one_error_line(cli: Tracker, args: list[str]) -> None:
    result = cli.run(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr


def test_callbacks_are_registered_once(cli: Tracker) -> None:
    cli.ok("add", "cb-1", "--webhook", "https://example.com/hook", "--events", "start")
    out = cli.ok(
        "add", "cb-1", "--webhook", "https://example.com/hook", "--email", "ops@example.com"
    ).stdout
    assert "1 already known" in out
    shown = cli.ok("show", "cb-1", "--format", "json").stdout
    assert shown.count("https://example.com/hook") == 1
    assert '"events": "start,completed"' in shown


def test_show_unknown_and_forget(cli: Tracker) -> None:
    result = cli.run("show", "nope-1")
    assert result.returncode == 1 and result.stderr.startswith("Error:")
    cli.ok("add", "f-1")
    assert "forgot 1 prediction" in cli.ok("forget", "f-1").stdout
    assert "forgotten" in cli.ok("list").stdout
    result = cli.run("forget", "never-1")
    assert result.returncode == 1 and "never-1" in result.stderr
    cli.ok("add", "f-1")  # adding it again tracks it again
    assert "active" in cli.ok("list", "--format", "csv").stdout.splitlines()[1]


def test_unmigrated_database_says_to_upgrade(tmp_path: Path) -> None:
    cli = Tracker(database_url=f"sqlite:///{tmp_path / 'new.db'}", api_base="http://x/v1")
    result = cli.run("list")
    assert result.returncode == 1
    assert "tracker db upgrade" in result.stderr and "Traceback" not in result.stderr
    assert "migrated from empty" in cli.ok("db", "upgrade").stdout
    assert "up to date" in cli.ok("db", "upgrade").stdout
    assert cli.ok("list").returncode == 0


def test_unreachable_database_is_one_error_line(tmp_path: Path) -> None:
    cli = Tracker(database_url="postgresql://nobody@127.0.0.1:1/none", api_base="http://x/v1")
    result = cli.run("list")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr

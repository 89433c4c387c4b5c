"""The archived files in `tracker show`: a section of the text (position, state, size,
sha256, where it is stored or why it is not; everything escaped, source URLs
masked) and an `artifacts` list in --format json with every column of the table."""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta

from tests.clirun import run_tracker
from tests.integration.test_artifacts_store import LEASE, T0, add, claim, observe, succeeded
from tests.terminal import run_in_terminal
from tracker.store.store import Store

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
HOSTILE = "HTTP 404 from f.example \x1b[31mred\x1b[0m [bold]loud[/bold]\nforged line"
OUTPUT = [
    "https://f.example/a/one.png",
    "https://f.example/b/two.png?sig=s3cret",
    "https://f.example/c/three.mp4",
]
#: the columns of SPEC's `artifacts` table, in its order
SPEC_COLUMNS = [
    "id",
    "prediction_id",
    "position",
    "source_url",
    "stored_url",
    "state",
    "bytes",
    "sha256",
    "content_type",
    "attempts",
    "last_error",
    "created_at",
    "stored_at",
]


def environment(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    return {**env, "TRACKER_DATABASE_URL": url}


def three_files(store: Store) -> None:
    """One stored, one failed with a hostile reason, one still pending."""
    add(store, "p1")
    observe(store, "p1", succeeded("p1", OUTPUT), T0)
    stored, failed, _pending = claim(store, limit=3)
    store.artifact_stored(
        stored,
        owner="me",
        now=T0 + timedelta(seconds=5),
        stored_url="file:///srv/archive/p1/0-one.png",
        size=1_500_000,
        sha256=SHA,
        content_type="image/png",
    )
    store.artifact_not_stored(failed, owner="me", error=HOSTILE, next_attempt_at=None)
    store.release_artifacts("me", now=T0 + LEASE)


def test_show_lists_the_archived_files(store: Store, db_url: str) -> None:
    three_files(store)
    result = run_tracker(["show", "p1"], environment(db_url))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = lines.index("archived files")
    assert lines[start + 1 : start + 5] == [
        "position\tstate\tbytes\tsha256\twhere\tsource",
        f"0\tstored\t1500000\t{SHA[:12]}\tfile:///srv/archive/p1/0-one.png\t{OUTPUT[0]}",
        "1\tfailed\t\t\tHTTP 404 from f.example \\x1b[31mred\\x1b[0m [bold]loud[/bold]"
        "\\x0aforged line\thttps://f.example/b/two.png?sig=***",
        f"2\tpending\t\t\t\t{OUTPUT[2]}",
    ]
    assert "\x1b" not in result.stdout


def test_a_terminal_shows_human_sizes_and_no_markup(sqlite_url: str) -> None:
    with Store.from_url(sqlite_url) as store:
        three_files(store)
    command = [sys.executable, "-m", "tracker", "show", "p1"]
    screen = run_in_terminal(command, env=environment(sqlite_url), columns=160)
    assert screen.returncode == 0, screen.text
    text = screen.text
    at = text.index("archived files")
    section = text[at:].splitlines()
    assert section[1].split() == ["#", "state", "size", "sha256", "stored", "at,", "or", "last",
                                  "error", "source"]  # fmt: skip
    assert section[2].split()[:5] == ["0", "stored", "1.5", "MB", SHA[:12]]
    assert r"\x1b[31mred\x1b[0m [bold]loud[/bold]\x0aforged line" in section[3]
    assert "two.png?sig=***" in section[3]  # (the output field shows it as upstream sent it)
    assert "\x1b[31m" not in screen.raw  # the upstream's colour never reaches the terminal


def test_json_has_every_column_of_the_artifacts_table(store: Store, db_url: str) -> None:
    three_files(store)
    result = run_tracker(["show", "p1", "--format", "json"], environment(db_url))
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)["artifacts"]
    assert [list(f) for f in files] == [SPEC_COLUMNS] * 3
    stored, failed, pending = files
    assert stored | {"id": 0} == {
        "id": 0,
        "prediction_id": "p1",
        "position": 0,
        "source_url": OUTPUT[0],
        "stored_url": "file:///srv/archive/p1/0-one.png",
        "state": "stored",
        "bytes": 1_500_000,
        "sha256": SHA,
        "content_type": "image/png",
        "attempts": 1,
        "last_error": None,
        "created_at": T0.isoformat(),
        "stored_at": (T0 + timedelta(seconds=5)).isoformat(),
    }
    assert (failed["state"], failed["last_error"], failed["source_url"]) == (
        "failed",
        HOSTILE,
        OUTPUT[1],
    )
    assert (pending["state"], pending["attempts"], pending["stored_url"]) == ("pending", 0, None)


def test_a_prediction_without_files_has_no_section_and_an_empty_list(
    store: Store, db_url: str
) -> None:
    add(store, "p2")
    text = run_tracker(["show", "p2"], environment(db_url)).stdout
    assert "archived files" not in text
    shown = run_tracker(["show", "p2", "--format", "json"], environment(db_url)).stdout
    assert json.loads(shown)["artifacts"] == []

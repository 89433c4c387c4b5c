"""`tracker prune --all --archived-files` deletes the archived files of the predictions
it deletes, and only those; without the flag the files stay in the archive and the
artifacts rows go with their predictions. A local archive directory, on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from tests.clirun import run_tracker
from tests.integration.test_prune import CUTOFF, NOW, rows, scalar, write_history
from tests.terminal import run_in_terminal
from tracker.archive.pruning import FilesDeleted, delete_stored
from tracker.archive.storage import StorageError, open_storage
from tracker.store.store import Store
from tracker.store.tables import artifacts

CUTOFF_ARG = CUTOFF.date().isoformat()
#: (prediction, position, state, on disk); old-pending keeps its files (a delivery is
#: pending, so --all keeps the prediction) and recent-done finished after the cutoff
FILES = (
    ("old-done", 0, "stored", True),
    ("old-done", 1, "stored", True),
    ("old-done", 2, "failed", False),
    ("late-added", 0, "stored", False),  # the file was removed by hand: already gone
    ("old-pending", 0, "stored", True),
    ("recent-done", 0, "stored", True),
)


def archive_files(store: Store, folder: Path) -> dict[tuple[str, int], Path]:
    """The artifacts of FILES, the stored ones written into the archive at ``folder``,
    and one stored elsewhere (another archive); where each file is."""
    storage = open_storage(str(folder))
    paths, values = {}, []
    for pid, position, state, on_disk in FILES:
        key = f"{pid}/{position}-out.png"
        path = folder / pid / f"{position}-out.png"
        paths[pid, position] = path
        if on_disk:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"png" * (position + 1))
        values.append(row(pid, position, state, storage.stored_url(key)))
    values.append(row("old-lost", 0, "stored", "file:///elsewhere/old-lost/0-out.png"))
    with store.engine.begin() as conn:
        conn.execute(insert(artifacts), values)
    return paths


def row(pid: str, position: int, state: str, url: str) -> dict[str, Any]:
    stored = state == "stored"
    return {
        "prediction_id": pid,
        "position": position,
        "source_url": f"https://cdn.example.com/{pid}/{position}.png",
        "stored_url": url if stored else None,
        "state": state,
        "bytes": 3 * (position + 1) if stored else None,
        "sha256": "0" * 64 if stored else None,
        "attempts": 1,
        "last_error": None if stored else "HTTP 404 from cdn.example.com",
        "created_at": NOW,
        "stored_at": NOW if stored else None,
    }


def prune(db_url: str, folder: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env["TRACKER_DATABASE_URL"] = db_url
    if folder is not None:
        env["TRACKER_ARCHIVE_URL"] = str(folder)
    return run_tracker(["prune", "--older-than", CUTOFF_ARG, *args], env)


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [" ".join(line.split()) for line in result.stdout.splitlines()]


def artifact_rows(store: Store) -> list[tuple[Any, ...]]:
    return rows(store, "SELECT prediction_id, position FROM artifacts ORDER BY 1, 2")


KEPT_ROWS = [("old-pending", 0), ("recent-done", 0)]


def test_archived_files_of_deleted_predictions_are_deleted(
    store: Store, db_url: str, tmp_path: Path
) -> None:
    write_history(store)
    folder = tmp_path / "archive"
    paths = archive_files(store, folder)

    dry = prune(db_url, folder, "--all", "--archived-files", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert lines(dry)[-2:] == ["would delete 4 archived files", "dry run: nothing was changed"]
    assert paths["old-done", 0].exists() and len(artifact_rows(store)) == 7

    done = prune(db_url, folder, "--all", "--yes", "--archived-files")
    assert done.returncode == 0, done.stderr
    assert "predictions deleted 5" in lines(done)
    assert lines(done)[-3:] == [
        "archived files deleted 2",
        "archived files already gone 1",
        "archived files elsewhere (kept) 1",
    ]
    assert not paths["old-done", 0].exists() and not paths["old-done", 1].exists()
    assert not (folder / "old-done").exists()  # its folder, once empty
    assert paths["old-pending", 0].read_bytes() == b"png"
    assert paths["recent-done", 0].read_bytes() == b"png"
    assert artifact_rows(store) == KEPT_ROWS


def test_without_the_flag_the_files_stay_and_the_rows_go(
    store: Store, db_url: str, tmp_path: Path
) -> None:
    write_history(store)
    folder = tmp_path / "archive"
    paths = archive_files(store, folder)
    dry = prune(db_url, None, "--all", "--dry-run")
    assert "would keep 4 archived files (--archived-files deletes them)" in lines(dry)
    done = prune(db_url, None, "--all", "--yes", "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["predictions_deleted"], report["archived_files"]) == (5, 4)
    assert "archived_files_deleted" not in report
    on_disk = [paths[pid, position] for pid, position, _, written in FILES if written]
    assert len(on_disk) == 4 and all(path.exists() for path in on_disk)
    assert artifact_rows(store) == KEPT_ROWS  # the others went with their predictions


def test_json_counts_the_files(store: Store, db_url: str, tmp_path: Path) -> None:
    write_history(store)
    folder = tmp_path / "archive"
    archive_files(store, folder)
    done = prune(db_url, folder, "--all", "--yes", "--archived-files", "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {k: v for k, v in report.items() if k.startswith("archived")} == {
        "archived_files": 4,
        "archived_files_deleted": 2,
        "archived_files_missing": 1,
        "archived_files_elsewhere": 1,
        "archived_files_not_deleted": 0,
    }


@pytest.mark.parametrize(
    ("args", "archive", "message"),
    [
        (("--archived-files",), True, "Error: --archived-files goes with --all"),
        (("--all", "--yes", "--archived-files"), False, "Error: set TRACKER_ARCHIVE_URL"),
    ],
    ids=["without-all", "without-archive"],
)
def test_bad_input_changes_nothing(
    store: Store, db_url: str, tmp_path: Path, args: tuple[str, ...], archive: bool, message: str
) -> None:
    write_history(store)
    folder = tmp_path / "archive"
    archive_files(store, folder)
    before = scalar(store, "SELECT count(*) FROM predictions")
    result = prune(db_url, folder if archive else None, *args)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1
    assert scalar(store, "SELECT count(*) FROM predictions") == before
    assert len(artifact_rows(store)) == 7


class Refusing:
    """A storage whose deletes fail, as a bucket without the permission would."""

    def stored_url(self, key: str) -> str:
        return f"s3://bucket/p/{key}"

    async def delete(self, key: str) -> bool:
        raise StorageError(f"cannot delete {key}: AccessDenied")


async def test_a_refused_delete_is_counted_with_its_reason() -> None:
    gone = FilesDeleted()
    urls = [f"s3://bucket/p/a/{n}-x.png" for n in range(7)] + ["s3://other/a/0-x.png"]
    await delete_stored(Refusing(), urls, gone)  # type: ignore[arg-type]
    assert (gone.deleted, gone.failed, gone.elsewhere) == (0, 7, 1)
    assert gone.errors == [f"cannot delete a/{n}-x.png: AccessDenied" for n in range(5)]


def test_a_terminal_is_told_how_many_files_would_go(sqlite_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    with Store.from_url(sqlite_url) as store:
        write_history(store)
        paths = archive_files(store, folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env |= {"TRACKER_DATABASE_URL": sqlite_url, "TRACKER_ARCHIVE_URL": str(folder)}
    command = ["prune", "--older-than", CUTOFF_ARG, "--all", "--archived-files"]
    screen = run_in_terminal(
        [sys.executable, "-m", "tracker", *command], env=env, answer="n\n", after="[y/N]"
    )
    assert screen.returncode == 1, screen.text
    assert (
        f"Delete 5 predictions that finished before {CUTOFF_ARG} 00:00:00Z, with their"
        " transitions, logs, callbacks, deliveries and 4 archived files? [y/N]"
    ) in " ".join(screen.text.split())
    assert paths["old-done", 0].exists()

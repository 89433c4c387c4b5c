"""tracker.api on both engines: what Tracker and AsyncTracker return and refuse.

Errors are compared with the command line's: the CLI runs in-process (its
``main``), and the message after ``Error:`` must be the exception's text.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from tracker import AsyncTracker, Tracker, TrackerError
from tracker.api import ForgetResult
from tracker.cli.main import main
from tracker.domain import Prediction, PredictionDetail
from tracker.exceptions import (
    ConfigError,
    InvalidInput,
    NotTracked,
    PredictionNotFound,
    SchemaMissing,
    WaitTimeout,
)
from tracker.store.store import Store
from tracker.store.tables import deliveries, predictions
from tracker.timeparse import utcnow

HOOK = "https://user:pw@example.com/hook?token=abc"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TRACKER_POLL_MIN", "TRACKER_POLL_MAX", "TRACKER_WEBHOOK_ALLOWED_HOSTS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tracker(db_url: str) -> Iterator[Tracker]:
    with Tracker(db_url) as t:
        yield t


def finish(db_url: str, prediction_id: str, status: str = "succeeded") -> None:
    """Write a terminal status as the daemon would have."""
    store = Store.from_url(db_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(
                update(predictions)
                .where(predictions.c.id == prediction_id)
                .values(status=status, tracking="done", next_poll_at=None, completed_at=utcnow())
            )
    finally:
        store.close()


def cli_error(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the CLI in-process: its exit code and its one stderr line."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return int(exited.value.code or 0), err


# -- predictions ---------------------------------------------------------------------


def test_add_get_list_forget(tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_POLL_MIN", "7")
    result = tracker.add("a-1", labels={"project": "posters"})
    assert (result.added, result.already_known, result.callbacks_added) == (1, 0, 0)
    result = tracker.add(["a-1", "a-2", "a-2"], webhooks=HOOK, emails=["ops@example.com"])
    assert (result.added, result.already_known, result.callbacks_added) == (1, 1, 4)

    p = tracker.get("a-1")
    assert isinstance(p, Prediction)
    assert (p.id, p.status, p.tracking, p.labels, p.poll_count) == (
        "a-1",
        None,
        "active",
        {"project": "posters"},
        0,
    )
    assert p.next_poll_at is not None and p.next_poll_at - p.registered_at == timedelta(seconds=7)

    detail = tracker.detail("a-2")
    assert isinstance(detail, PredictionDetail) and detail.prediction.id == "a-2"
    assert sorted((c.kind, c.target, c.events) for c in detail.callbacks) == [
        ("email", "ops@example.com", "completed"),
        ("webhook", HOOK, "completed"),  # the stored target: the API does not mask
    ]

    assert [p.id for p in tracker.list()] == ["a-1", "a-2"]
    assert [p.id for p in tracker.list(limit=1)] == ["a-1"]
    assert tracker.list(status="succeeded") == [] and tracker.list(model="acme/x") == []
    assert tracker.list_columns(["id", "tracking"], active=True) == [
        {"id": "a-1", "tracking": "active"},
        {"id": "a-2", "tracking": "active"},
    ]

    forgotten = tracker.forget(["a-2", "never-1"])
    assert forgotten == ForgetResult(known=["a-2"], unknown=["never-1"])
    assert [p.id for p in tracker.list(active=True)] == ["a-1"]
    assert tracker.get("a-2").tracking == "forgotten"
    tracker.add("a-2")  # tracks it again
    assert tracker.get("a-2").tracking == "active"


def test_events_merge_on_a_known_callback(tracker: Tracker) -> None:
    tracker.add("e-1", webhooks=HOOK, events="start")
    tracker.add("e-1", webhooks=HOOK, events=["logs", "completed"])
    (callback,) = tracker.detail("e-1").callbacks
    assert callback.events == "start,logs,completed"


def test_status_filter_takes_one_or_several(db_url: str, tracker: Tracker) -> None:
    tracker.add(["s-1", "s-2", "s-3"])
    finish(db_url, "s-1", "succeeded")
    finish(db_url, "s-2", "failed")
    assert [p.id for p in tracker.list(status="failed")] == ["s-2"]
    assert [p.id for p in tracker.list(status=("failed", "succeeded"))] == ["s-1", "s-2"]
    assert [p.id for p in tracker.list(active=True)] == ["s-3"]


def test_unknown_and_invalid_ids(tracker: Tracker) -> None:
    with pytest.raises(PredictionNotFound, match="no prediction 'nope-1' is registered"):
        tracker.get("nope-1")
    with pytest.raises(InvalidInput, match="invalid prediction ID"):
        tracker.detail("../etc")
    with pytest.raises(InvalidInput, match="at least one"):
        tracker.add([])
    with pytest.raises(InvalidInput, match="invalid deadline: 'soon' is not a duration"):
        tracker.add("d-1", deadline="soon")
    with pytest.raises(InvalidInput, match="invalid deadline"):
        tracker.add("d-1", deadline=0)
    with pytest.raises(InvalidInput, match="invalid prediction ID"):
        tracker.cancel("../etc")
    assert tracker.list() == []  # nothing written by refused calls


@pytest.mark.parametrize(
    ("call", "bad"),
    [
        (lambda t: t.list(limit=0), "limit must be a whole number"),
        (lambda t: t.list(status=[3]), "expected text"),
        (lambda t: t.list_columns(["id", "raw"]), "unknown column(s) 'raw'"),
        (lambda t: t.add("l-1", labels={"a=b": "c"}), "invalid label 'a=b=c'"),
        (lambda t: t.add("l-1", labels={"k": 3}), "the value must be text"),
        (lambda t: t.add("l-1", labels=["k=v"]), "labels must be a mapping"),
        (lambda t: t.wait("w-1", timeout=-1), "timeout must be a number"),
        (lambda t: t.wait("w-1", interval=0), "interval must be above 0"),
        (lambda t: t.list_deliveries(state="gone"), "unknown delivery state 'gone'"),
        (lambda t: t.retry_deliveries(["1"]), "invalid delivery ID '1'"),
    ],
)
def test_bad_arguments_are_invalid_input(
    sqlite_url: str, call: Callable[[Tracker], Any], bad: str
) -> None:
    with Tracker(sqlite_url) as t, pytest.raises(InvalidInput) as refused:
        call(t)
    assert bad in str(refused.value)


#: the same bad input given to the API and to the CLI
SAME_ERRORS: list[tuple[Callable[[Tracker], Any], list[str], int]] = [
    (lambda t: t.add(["ok-1", "a b"]), ["add", "ok-1", "a b"], 2),
    (
        lambda t: t.add("x-1", webhooks="ftp://example.com/h"),
        ["add", "x-1", "--webhook", "ftp://example.com/h"],
        2,
    ),
    (lambda t: t.add("x-1", webhooks=HOOK + " x"), ["add", "x-1", "--webhook", HOOK + " x"], 2),
    (
        lambda t: t.add("x-1", webhooks="http://127.0.0.1/h"),
        ["add", "x-1", "--webhook", "http://127.0.0.1/h"],
        2,
    ),
    (lambda t: t.add("x-1", emails="nobody"), ["add", "x-1", "--email", "nobody"], 2),
    (
        lambda t: t.add("x-1", events="start,finished"),
        ["add", "x-1", "--events", "start,finished"],
        2,
    ),
    (lambda t: t.add("x-1", events=""), ["add", "x-1", "--events", ""], 2),
    (lambda t: t.add("x-1", labels={"bad key": "v"}), ["add", "x-1", "--label", "bad key=v"], 2),
    (lambda t: t.detail("nope-1"), ["show", "nope-1"], 1),
    (lambda t: t.detail("../etc"), ["show", "../etc"], 2),
    (lambda t: t.forget(["ok-1", "a/b"]), ["forget", "ok-1", "a/b"], 2),
    (
        lambda t: t.list_deliveries(prediction_id="a/b"),
        ["deliveries", "list", "--prediction", "a/b"],
        2,
    ),
    (lambda t: t.retry_deliveries(), ["deliveries", "retry"], 2),
    (lambda t: t.retry_deliveries(since="soon"), ["deliveries", "retry", "--since", "soon"], 2),
]


@pytest.mark.parametrize(("call", "args", "code"), SAME_ERRORS)
def test_the_api_and_the_cli_say_the_same(
    sqlite_url: str,
    capsys: pytest.CaptureFixture[str],
    call: Callable[[Tracker], Any],
    args: list[str],
    code: int,
) -> None:
    with Tracker(sqlite_url) as t, pytest.raises(TrackerError) as refused:
        call(t)
    assert isinstance(refused.value, InvalidInput) == (code == 2)
    assert cli_error(capsys, *args, "--database-url", sqlite_url) == (
        code,
        f"Error: {refused.value}",
    )


def test_a_bad_poll_min_is_one_error_line(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKER_POLL_MIN", "soon")
    with Tracker(sqlite_url) as t, pytest.raises(ConfigError) as refused:
        t.add("p-1")
    assert "TRACKER_POLL_MIN" in str(refused.value)
    code, line = cli_error(capsys, "add", "p-1", "--database-url", sqlite_url)
    assert line == f"Error: {refused.value}" and code != 0
    with Tracker(sqlite_url) as t:
        assert t.list() == []  # reading needs no settings; nothing was written


def test_default_database_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TRACKER_DATABASE_URL", raising=False)
    assert Tracker().database_url == "sqlite:///tracker.db"
    monkeypatch.setenv("TRACKER_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    assert Tracker().database_url == f"sqlite:///{tmp_path}/x.db"
    assert Tracker("sqlite:///given.db").database_url == "sqlite:///given.db"


def test_unmigrated_database_and_closed_tracker(tmp_path: Path, sqlite_url: str) -> None:
    with (
        Tracker(f"sqlite:///{tmp_path / 'new.db'}") as t,
        pytest.raises(SchemaMissing, match="tracker db upgrade"),
    ):
        t.list()
    t = Tracker(sqlite_url)
    t.close()
    with pytest.raises(TrackerError, match="closed"):
        t.list()


# -- wait ------------------------------------------------------------------------------


def test_wait_returns_once_the_stored_status_is_terminal(db_url: str, tracker: Tracker) -> None:
    tracker.add("w-1")
    timer = threading.Timer(0.3, finish, (db_url, "w-1", "canceled"))
    timer.start()
    try:
        p = tracker.wait("w-1", timeout=30, interval=0.05)
    finally:
        timer.join()
    assert (p.id, p.status, p.tracking) == ("w-1", "canceled", "done")
    assert tracker.wait("w-1", timeout=0).status == "canceled"  # already over: no wait


def test_wait_times_out_and_refuses_what_cannot_end(tracker: Tracker) -> None:
    tracker.add(["w-2", "w-3"])
    with pytest.raises(WaitTimeout, match=r"'w-2' did not end within 0.2 s") as timed_out:
        tracker.wait("w-2", timeout=0.2, interval=0.05)
    assert isinstance(timed_out.value, TimeoutError)
    tracker.forget("w-3")
    with pytest.raises(NotTracked, match="'w-3' is forgotten"):
        tracker.wait("w-3")
    with pytest.raises(PredictionNotFound):
        tracker.wait("w-4", timeout=1)


# -- deliveries ------------------------------------------------------------------------


def test_list_and_retry_deliveries(db_url: str, tracker: Tracker) -> None:
    tracker.add("r-1")
    finish(db_url, "r-1")
    tracker.add("r-1", webhooks=HOOK)  # a callback on an ended prediction: queued now
    (queued,) = tracker.list_deliveries(prediction_id="r-1")
    assert (queued.state, queued.event, queued.target) == ("pending", "completed", HOOK)
    assert tracker.retry_deliveries(queued.id) == 0  # only dead ones are re-queued
    store = Store.from_url(db_url)
    with store.engine.begin() as conn:
        conn.execute(update(deliveries).values(state="dead", attempts=8))
    store.close()
    assert [d.id for d in tracker.list_deliveries(state=["dead"], limit=5)] == [queued.id]
    assert tracker.retry_deliveries(prediction_id="r-1", since="1d") == 1
    (again,) = tracker.list_deliveries(state="pending")
    assert (again.id, again.attempts) == (queued.id, 0)


# -- AsyncTracker ----------------------------------------------------------------------


async def test_async_tracker_does_the_same(db_url: str) -> None:
    async with AsyncTracker(db_url) as t:
        assert t.database_url == db_url
        added = await t.add(i for i in ("x-1", "x-2"))  # a generator is read once
        assert added.added == 2
        assert (await t.get("x-1")).tracking == "active"
        assert [p.id for p in await t.list(active=True)] == ["x-1", "x-2"]
        assert await t.list_columns(["id"], status=iter([])) == [{"id": "x-1"}, {"id": "x-2"}]
        assert (await t.detail("x-2")).callbacks == []
        assert await t.forget("x-2") == ForgetResult(known=["x-2"], unknown=[])
        assert await t.list_deliveries() == [] and await t.retry_deliveries([1]) == 0
        with pytest.raises(PredictionNotFound):
            await t.get("x-3")
        with pytest.raises(InvalidInput, match="unknown event"):
            await t.add("x-1", webhooks=[HOOK], events=["finished"])

        waiting = asyncio.create_task(t.wait("x-1", timeout=30, interval=0.05))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await asyncio.to_thread(finish, db_url, "x-1", "failed")
        assert (await waiting).status == "failed"
        await t.add("x-4")
        with pytest.raises(WaitTimeout):
            await t.wait("x-4", timeout=0.1, interval=0.02)

"""`tracker report deadlines` on both engines: per model, the predictions with a
deadline, those the daemon cancelled at it and how they ended, written through the
store's own operations (claim, outcome) as the daemon writes them."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from tests.clirun import run_tracker
from tracker.domain import CancelState
from tracker.store.store import Store
from tracker.store.tables import predictions

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
VIDEO, FLUX = "acme/video", "acme/flux"


def set_row(store: Store, pid: str, **values: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(predictions).where(predictions.c.id == pid).values(**values))


def history(store: Store) -> None:
    """v1 cancelled and stopped 10 s past its deadline; v2 cancelled, the request failed,
    still running; v3 cancelled but it succeeded first; v4 a deadline not passed yet;
    f1 cancelled, stopped 2 s late; f2 cancelled by a user, no deadline."""
    store.add_predictions(["v1", "v2", "v3", "f1"], now=T0, first_poll_at=T0, deadline=60.0)
    store.add_predictions(["v4"], now=T0, first_poll_at=T0, deadline=3600.0)
    store.add_predictions(["f2"], now=T0, first_poll_at=T0)
    for pid in ("v1", "v2", "v3", "v4", "f1", "f2"):
        set_row(store, pid, model=FLUX if pid.startswith("f") else VIDEO, status="processing")
    deadline = T0 + timedelta(seconds=60)
    claim = store.claim_deadlines(now=deadline + timedelta(seconds=1), limit=10)
    targets = {t.prediction_id: t for t in claim.targets}
    assert sorted(targets) == ["f1", "v1", "v2", "v3"]
    for pid, state in (("v1", "requested"), ("v2", "failed"), ("v3", "requested")):
        store.record_cancel_outcome(targets[pid], state=CancelState(state), detail="", poll_at=None)
    store.record_cancel_outcome(targets["f1"], state=CancelState.REQUESTED, detail="", poll_at=None)
    ended = {"v1": ("canceled", 10), "v3": ("succeeded", 3), "f1": ("canceled", 2)}
    for pid, (status, late) in ended.items():
        at = deadline + timedelta(seconds=late)
        set_row(store, pid, status=status, tracking="done", completed_at=at)
    store.request_cancel("f2", now=T0)


def report(db_url: str, *args: str) -> list[dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    result = run_tracker(
        ["report", "deadlines", *args, "--format", "json", "--database-url", db_url], env
    )
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def test_the_report_counts_deadline_cancels_per_model(store: Store, db_url: str) -> None:
    history(store)
    assert report(db_url) == [
        {
            "model": VIDEO,
            "predictions": 4,
            "cancelled": 3,
            "canceled": 1,
            "ended_first": 1,
            "not_ended": 1,
            "failed_requests": 1,
            "mean_overrun_seconds": 10.0,
            "max_overrun_seconds": 10.0,
        },
        {
            "model": FLUX,
            "predictions": 1,
            "cancelled": 1,
            "canceled": 1,
            "ended_first": 0,
            "not_ended": 0,
            "failed_requests": 0,
            "mean_overrun_seconds": 2.0,
            "max_overrun_seconds": 2.0,
        },
    ]
    assert [r["model"] for r in report(db_url, "--model", FLUX)] == [FLUX]
    assert report(db_url, "--since", "2026-11-21") == []


def test_an_empty_report_is_a_header_or_an_empty_list(store: Store, db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    table = run_tracker(["report", "deadlines", "--database-url", db_url], env)
    assert table.returncode == 0 and table.stdout.startswith("model\t")
    assert report(db_url) == []

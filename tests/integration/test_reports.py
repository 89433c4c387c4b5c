"""The reporting views and `tracker report` give hand-computed answers on both engines.

A known history (three models, sixteen predictions, transitions, callbacks and
deliveries; some times written with +05:30 and -08:00 offsets) is inserted
directly through the tables, then every column of every view and every report,
with and without filters, is compared with values worked out by hand. The
PostgreSQL sessions run in a time zone far from UTC (``PGTZ``) so that a query
forgetting about zones would show it. The `tracker report` command is run in a
subprocess in every format, and its CSV and JSON are parsed back and compared.

The tests at the end pin agreements that once failed: NULL counts on SQLite,
sub-millisecond durations, NULL ordering, JSON error text and rounding.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text

from tests.clirun import run_tracker
from tracker.store.reports import ReportFilter
from tracker.store.rollup import BUCKET_ERROR
from tracker.store.store import Store
from tracker.store.tables import (
    artifacts,
    callbacks,
    deliveries,
    predictions,
    status_transitions,
)
from tracker.timeparse import utcnow

IST = timezone(timedelta(hours=5, minutes=30))
PST = timezone(timedelta(hours=-8))
CET = timezone(timedelta(hours=1))
#: the session zone of every PostgreSQL connection in these tests (via libpq's PGTZ)
PG_ZONE = "America/Los_Angeles"

VIEWS = (
    "prediction_timings",
    "model_stats",
    "daily_stats",
    "delivery_stats",
    "prediction_answers",
)
TERMINAL = ("succeeded", "failed", "canceled", "aborted")
METRICS = tuple(
    f"{m}_{s}"
    for m in ("predict_time", "queue_seconds", "run_seconds")
    for s in ("mean", "p50", "p95")
)
#: the columns of each report, in the order the CLI prints them
REPORT_COLUMNS: dict[str, tuple[str, ...]] = {
    "status": ("status", "tracking", "predictions"),
    "models": (
        "model",
        "predictions",
        "succeeded",
        "failed",
        "canceled",
        "aborted",
        "success_rate",
        *METRICS,
    ),
    "daily": (
        "day",
        "registered",
        "succeeded",
        "failed",
        "canceled",
        "aborted",
        "mean_run_seconds",
    ),
    "failures": ("predictions", "error", "example_id", "last_seen"),
    "deliveries": (
        "kind",
        "target",
        "deliveries",
        "delivered",
        "dead",
        "pending",
        "mean_attempts",
        "p95_delivery_seconds",
    ),
    "slow": ("id", "status", "model", "since", "running_seconds", "poll_count", "last_polled_at"),
    "archive": (
        "day",
        "model",
        "predictions",
        "files",
        "stored",
        "failed",
        "pending",
        "stored_bytes",
    ),
}


@pytest.fixture(autouse=True)
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL sessions (libpq reads PGTZ) and the process run far from UTC."""
    monkeypatch.setenv("PGTZ", PG_ZONE)
    monkeypatch.setenv("TZ", "Asia/Kolkata")


# -- writing a known history ---------------------------------------------------


def at(day: int, clock: str, tz: timezone = UTC) -> datetime:
    """2026-11-<day> <clock> in ``tz`` (``clock`` is ``HH:MM:SS`` with an optional fraction)."""
    hours, minutes, seconds = clock.split(":")
    start = datetime(2026, 11, day, int(hours), int(minutes), tzinfo=tz)
    return start + timedelta(seconds=float(seconds))


@dataclass
class Delivery:
    state: str
    attempts: int
    created: datetime
    delivered: datetime | None = None
    next_attempt: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    event: str = "completed"


@dataclass
class Callback:
    prediction: str
    kind: str
    target: str
    deliveries: list[Delivery] = field(default_factory=list)
    events: str = "completed"


@dataclass
class File:
    """An output file in the archive (table ``artifacts``)."""

    prediction: str
    position: int
    state: str
    found: datetime  #: created_at
    bytes: int | None = None


@dataclass
class Prediction:
    id: str
    registered: datetime
    model: str | None = None
    status: str | None = None
    tracking: str = "done"
    labels: dict[str, str] = field(default_factory=dict)
    created: datetime | None = None
    started: datetime | None = None
    completed: datetime | None = None
    predict_time: float | None = None
    error: Any = None
    output: Any = None
    data_removed: bool | None = None
    poll_count: int = 0
    last_polled: datetime | None = None
    error_count: int = 0
    #: the status changes the tracker saw: (from_status, to_status, observed_at)
    seen: Sequence[tuple[str | None, str, datetime]] = ()


def _upstream_at(p: Prediction, status: str) -> datetime | None:
    """The upstream time of a status, as the tracker records it (docs/schema.md)."""
    if status == "starting":
        return p.created
    if status == "processing":
        return p.started
    return p.completed if status in TERMINAL else None


def write(
    store: Store,
    history: Iterable[Prediction],
    hooks: Iterable[Callback] = (),
    files: Iterable[File] = (),
) -> None:
    """Insert the rows in one transaction, as the tracker would have written them."""
    history, hooks = list(history), list(hooks)
    file_rows = [
        {
            "prediction_id": f.prediction,
            "position": f.position,
            "source_url": f"https://cdn.example.com/{f.prediction}/{f.position}.png",
            "state": f.state,
            "bytes": f.bytes,
            "sha256": "0" * 64 if f.state == "stored" else None,
            "stored_url": f"file:///archive/{f.prediction}/{f.position}.png"
            if f.state == "stored"
            else None,
            "attempts": 0 if f.state == "pending" else 1,
            "created_at": f.found,
            "stored_at": f.found if f.state == "stored" else None,
            "next_attempt_at": f.found if f.state == "pending" else None,
        }
        for f in files
    ]
    prediction_rows = [
        {
            "id": p.id,
            "status": p.status,
            "tracking": p.tracking,
            "model": p.model,
            "version": None if p.model is None else "v1",
            "labels": p.labels,
            "registered_at": p.registered,
            "created_at": p.created,
            "started_at": p.started,
            "completed_at": p.completed,
            "predict_time": p.predict_time,
            "metrics": None if p.predict_time is None else {"predict_time": p.predict_time},
            "error": p.error,
            "output": p.output,
            "data_removed": p.data_removed,
            "poll_count": p.poll_count,
            "error_count": p.error_count,
            "last_polled_at": p.last_polled,
            "next_poll_at": p.last_polled if p.tracking == "active" else None,
        }
        for p in history
    ]
    transition_rows = [
        {
            "prediction_id": p.id,
            "from_status": before,
            "to_status": after,
            "observed_at": observed,
            "upstream_at": _upstream_at(p, after),
        }
        for p in history
        for before, after, observed in p.seen
    ]
    with store.engine.begin() as conn:
        if prediction_rows:
            conn.execute(insert(predictions), prediction_rows)
        if transition_rows:
            conn.execute(insert(status_transitions), transition_rows)
        if file_rows:
            conn.execute(insert(artifacts), file_rows)
        message = 0
        for hook in hooks:
            first = min((d.created for d in hook.deliveries), default=utcnow())
            callback_id = conn.execute(
                insert(callbacks)
                .values(
                    prediction_id=hook.prediction,
                    kind=hook.kind,
                    target=hook.target,
                    events=hook.events,
                    created_at=first,
                )
                .returning(callbacks.c.id)
            ).scalar_one()
            for d in hook.deliveries:
                message += 1
                conn.execute(
                    insert(deliveries).values(
                        callback_id=callback_id,
                        prediction_id=hook.prediction,
                        event=d.event,
                        state=d.state,
                        attempts=d.attempts,
                        next_attempt_at=d.next_attempt,
                        last_status_code=d.last_status_code,
                        last_error=d.last_error,
                        created_at=d.created,
                        delivered_at=d.delivered,
                        payload=json.dumps({"id": hook.prediction}),
                        message_id=f"msg_{message:032x}",
                    )
                )


FLUX, SDXL, VIDEO = "acme/flux", "acme/sdxl", "acme/video"
HOOK_A, HOOK_B, OPS = (
    "https://hooks.example.com/a",
    "https://hooks.example.com/b",
    "ops@example.com",
)
OBJECT_ERROR = {"code": 7, "reason": "nsfw"}

#: The known history. Days are 2026-11-19 .. 22 (UTC); times in UTC unless an offset is given.
HISTORY = [
    # acme/flux: four successes; run 10/20/30/40 s, queue 2/4/6/8 s.
    Prediction(
        "f1",
        at(20, "10:00:00"),
        FLUX,
        "succeeded",
        labels={"project": "posters"},
        created=at(20, "10:00:00"),
        started=at(20, "10:00:02"),
        completed=at(20, "10:00:12"),
        predict_time=9.5,
        output=["https://cdn.example.com/f1.png"],
        data_removed=False,
        poll_count=3,
        last_polled=at(20, "10:00:13"),
        seen=[
            (None, "starting", at(20, "10:00:01")),
            ("starting", "processing", at(20, "10:00:03")),
            ("processing", "succeeded", at(20, "10:00:13")),
        ],
    ),
    Prediction(
        "f2",
        at(20, "10:05:00"),
        FLUX,
        "succeeded",
        labels={"project": "posters", "team": "a", "build.id": "7"},
        created=at(20, "10:05:00"),
        started=at(20, "10:05:04"),
        completed=at(20, "10:05:24"),
        predict_time=19.0,
        output=["https://cdn.example.com/f2.png"],
        data_removed=False,
        seen=[
            (None, "processing", at(20, "10:05:05")),
            ("processing", "succeeded", at(20, "10:05:24.5")),
        ],
    ),
    Prediction(  # every time given at +05:30: 15:40 there is 10:10 UTC
        "f3",
        at(20, "15:40:00", IST),
        FLUX,
        "succeeded",
        labels={"project": "banners"},
        created=at(20, "15:40:00", IST),
        started=at(20, "15:40:06", IST),
        completed=at(20, "15:40:36", IST),
        predict_time=29.5,
        output=["https://cdn.example.com/f3.png"],
        data_removed=False,
        seen=[
            (None, "starting", at(20, "15:40:01", IST)),
            ("starting", "succeeded", at(20, "15:40:38.25", IST)),
        ],
    ),
    Prediction(  # every time given at -08:00: 02:15 there is 10:15 UTC
        "f4",
        at(20, "02:15:00", PST),
        FLUX,
        "succeeded",
        created=at(20, "02:15:00", PST),
        started=at(20, "02:15:08", PST),
        completed=at(20, "02:15:48", PST),
        predict_time=39.0,
        output=["https://cdn.example.com/f4.png"],
        data_removed=False,
        seen=[
            (None, "processing", at(20, "02:15:09", PST)),
            ("processing", "succeeded", at(20, "02:15:48.75", PST)),
        ],
    ),
    # acme/sdxl: two failures with the same message, one success, one running.
    Prediction(
        "s1",
        at(20, "20:00:00"),
        SDXL,
        "failed",
        labels={"project": "banners"},
        created=at(20, "20:00:00"),
        started=at(20, "20:00:05"),
        completed=at(20, "20:00:07"),
        predict_time=1.5,
        error="CUDA out of memory",
        seen=[
            (None, "starting", at(20, "20:00:01")),
            ("starting", "processing", at(20, "20:00:06")),
            ("processing", "failed", at(20, "20:00:10")),
        ],
    ),
    Prediction(  # completed 21:00:04 UTC on the 20th, written as the 21st at +05:30
        "s2",
        at(20, "21:00:00"),
        SDXL,
        "failed",
        labels={"project": "posters"},
        created=at(20, "21:00:00"),
        started=at(20, "21:00:01"),
        completed=at(21, "02:30:04", IST),
        error="CUDA out of memory",
        error_count=2,
        seen=[(None, "failed", at(20, "21:00:04.5"))],
    ),
    Prediction(
        "s3",
        at(20, "22:00:00"),
        SDXL,
        "succeeded",
        labels={"project": "posters"},
        created=at(20, "21:59:58"),
        started=at(20, "22:00:00"),
        completed=at(20, "22:00:30"),
        predict_time=29.0,
        output="https://cdn.example.com/s3.png",
        data_removed=False,
        seen=[
            (None, "processing", at(20, "22:00:01")),
            ("processing", "succeeded", at(20, "22:00:31")),
        ],
    ),
    Prediction(
        "s4",
        at(21, "04:00:00"),
        SDXL,
        "processing",
        "active",
        created=at(21, "04:00:00"),
        started=at(21, "04:00:10"),
        poll_count=5,
        last_polled=at(21, "05:59:30"),
        seen=[(None, "processing", at(21, "04:00:11"))],
    ),
    # acme/video: one of each terminal status, none of them with a run time but v3.
    Prediction(  # canceled while starting: no started_at; completed after midnight
        "v1",
        at(20, "23:50:00"),
        VIDEO,
        "canceled",
        created=at(20, "23:50:00"),
        completed=at(21, "00:05:00"),
        seen=[
            (None, "starting", at(20, "23:50:01")),
            ("starting", "canceled", at(21, "00:05:02")),
        ],
    ),
    Prediction(  # registered long after it finished: upstream had removed its output
        "v2",
        at(21, "01:05:00"),
        VIDEO,
        "succeeded",
        labels={"project": "posters"},
        created=at(19, "23:57:00"),
        completed=at(19, "23:59:00"),
        predict_time=100.0,
        data_removed=True,
        seen=[(None, "succeeded", at(21, "01:05:01"))],
    ),
    Prediction(
        "v3",
        at(21, "02:00:00"),
        VIDEO,
        "failed",
        created=at(21, "02:00:00"),
        started=at(21, "02:00:10"),
        completed=at(21, "02:00:11"),
        predict_time=0.5,
        error=OBJECT_ERROR,
        seen=[
            (None, "starting", at(21, "02:00:01")),
            ("starting", "failed", at(21, "02:00:12")),
        ],
    ),
    Prediction(
        "v4",
        at(21, "02:30:00"),
        VIDEO,
        "aborted",
        created=at(21, "02:30:00"),
        completed=at(21, "02:30:20"),
        seen=[
            (None, "starting", at(21, "02:30:01")),
            ("starting", "aborted", at(21, "02:30:25")),
        ],
    ),
    Prediction(
        "v5",
        at(21, "03:00:00"),
        VIDEO,
        "starting",
        "active",
        created=at(21, "03:00:00"),
        poll_count=12,
        last_polled=at(21, "05:59:00"),
        seen=[(None, "starting", at(21, "03:00:01"))],
    ),
    # Never answered: no model, no status.
    Prediction("n1", at(21, "05:00:00"), tracking="active", labels={"project": "posters"}),
    Prediction("n2", at(21, "05:30:00"), tracking="lost", error_count=5),
    Prediction("n3", at(22, "06:00:00"), tracking="forgotten"),
]

HOOKS = [
    # hooks/a: delivered after 1, 3, 5 and 7 seconds (1, 2, 1, 3 attempts), one pending.
    Callback(
        "f1", "webhook", HOOK_A, [Delivery("delivered", 1, at(20, "10:00:13"), at(20, "10:00:14"))]
    ),
    Callback(
        "f2",
        "webhook",
        HOOK_A,
        [
            Delivery(
                "delivered", 2, at(20, "10:05:24.5"), at(20, "10:05:27.5"), last_status_code=200
            )
        ],
    ),
    Callback(
        "f3",
        "webhook",
        HOOK_A,
        [Delivery("delivered", 1, at(20, "15:40:38.25", IST), at(20, "15:40:43.25", IST))],
    ),
    Callback(
        "f4",
        "webhook",
        HOOK_A,
        [Delivery("delivered", 3, at(20, "10:15:48.75"), at(20, "10:15:55.75"))],
    ),
    Callback(
        "s1",
        "webhook",
        HOOK_A,
        [
            Delivery(
                "pending",
                1,
                at(20, "20:00:10"),
                next_attempt=at(20, "20:05:10"),
                last_status_code=503,
                last_error="HTTP 503",
            )
        ],
    ),
    # ops@: two dead, one never tried.
    Callback(
        "s1",
        "email",
        OPS,
        [Delivery("dead", 8, at(20, "20:00:10"), last_error="timed out")],
    ),
    Callback(
        "s2",
        "email",
        OPS,
        [
            Delivery(
                "dead",
                1,
                at(20, "21:00:04.5"),
                last_status_code=550,
                last_error="recipient refused: 550 no such user",
            )
        ],
    ),
    Callback(
        "v3",
        "email",
        OPS,
        [Delivery("pending", 0, at(21, "02:00:12"), next_attempt=at(21, "02:00:12"))],
    ),
    # hooks/b: one delivery, times written at +01:00, 0.25 s.
    Callback(
        "v2",
        "webhook",
        HOOK_B,
        [Delivery("delivered", 1, at(21, "02:05:01", CET), at(21, "02:05:01.25", CET))],
    ),
]


# The archive: days by the UTC day each file was found (created_at).
FILES = [
    File("f1", 0, "stored", at(20, "10:00:14"), 100),
    File("f1", 1, "stored", at(20, "10:00:14"), 200),
    File("f2", 0, "stored", at(20, "10:05:25"), 300),
    File("f3", 0, "stored", at(20, "15:40:39", IST), 400),  # 10:10:39 UTC
    File("f4", 0, "stored", at(20, "23:30:00", PST), 5000),  # 07:30 UTC on the 21st
    File("s3", 0, "failed", at(20, "22:00:32")),
    File("v2", 0, "pending", at(21, "01:05:02")),
]


# -- reading results -------------------------------------------------------------


def ts(day: int, clock: str) -> str:
    """A UTC time as SQLite stores it; PostgreSQL values are normalised to this."""
    return at(day, clock).strftime("%Y-%m-%d %H:%M:%S.%f")


def normal(column: str, value: Any) -> Any:
    """One representation for both engines: UTC text, plain numbers, parsed JSON."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bool):
        return int(value)
    if column == "labels" and isinstance(value, str):  # JSON text on SQLite
        return json.loads(value)
    return value


def select_all(store: Store, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with store.engine.connect() as conn:
        result = conn.execute(text(sql))
        columns = list(result.keys())
        rows = [tuple(normal(c, v) for c, v in zip(columns, row, strict=True)) for row in result]
    return columns, rows


def unordered(rows: Iterable[Any]) -> list[Any]:
    return sorted(rows, key=repr)


def view(store: Store, name: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    columns, rows = select_all(store, f"SELECT * FROM {name}")
    return columns, unordered(rows)


def bucketed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Expected report rows whose percentiles may come from the rollup's buckets:
    within BUCKET_ERROR of the exact ones (and of the 3-digit rounding)."""
    return [
        {
            k: pytest.approx(v, rel=BUCKET_ERROR, abs=1e-3)
            if v is not None and k.endswith(("_p50", "_p95"))
            else v
            for k, v in row.items()
        }
        for row in rows
    ]


def as_dicts(columns: Sequence[str], *rows: Sequence[Any]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in rows]


# -- the hand-computed answers -----------------------------------------------------

TIMINGS_COLUMNS = [
    "id",
    "status",
    "tracking",
    "model",
    "labels",
    "registered_at",
    "created_at",
    "started_at",
    "completed_at",
    "predict_time",
    "queue_seconds",
    "run_seconds",
    "total_seconds",
    "detect_seconds",
    "finished_seen_at",
]
POSTERS = {"project": "posters"}
# fmt: off
TIMINGS = [
    ("f1", "succeeded", "done", FLUX, POSTERS, ts(20, "10:00:00"), ts(20, "10:00:00"),
     ts(20, "10:00:02"), ts(20, "10:00:12"), 9.5, 2.0, 10.0, 12.0, 1.0, ts(20, "10:00:13")),
    ("f2", "succeeded", "done", FLUX, {**POSTERS, "team": "a", "build.id": "7"}, ts(20, "10:05:00"),
     ts(20, "10:05:00"), ts(20, "10:05:04"), ts(20, "10:05:24"), 19.0, 4.0, 20.0, 24.0, 0.5,
     ts(20, "10:05:24.5")),
    ("f3", "succeeded", "done", FLUX, {"project": "banners"}, ts(20, "10:10:00"),
     ts(20, "10:10:00"), ts(20, "10:10:06"), ts(20, "10:10:36"), 29.5, 6.0, 30.0, 36.0, 2.25,
     ts(20, "10:10:38.25")),
    ("f4", "succeeded", "done", FLUX, {}, ts(20, "10:15:00"), ts(20, "10:15:00"),
     ts(20, "10:15:08"), ts(20, "10:15:48"), 39.0, 8.0, 40.0, 48.0, 0.75, ts(20, "10:15:48.75")),
    ("s1", "failed", "done", SDXL, {"project": "banners"}, ts(20, "20:00:00"), ts(20, "20:00:00"),
     ts(20, "20:00:05"), ts(20, "20:00:07"), 1.5, 5.0, 2.0, 7.0, 3.0, ts(20, "20:00:10")),
    ("s2", "failed", "done", SDXL, POSTERS, ts(20, "21:00:00"), ts(20, "21:00:00"),
     ts(20, "21:00:01"), ts(20, "21:00:04"), None, 1.0, 3.0, 4.0, 0.5, ts(20, "21:00:04.5")),
    ("s3", "succeeded", "done", SDXL, POSTERS, ts(20, "22:00:00"), ts(20, "21:59:58"),
     ts(20, "22:00:00"), ts(20, "22:00:30"), 29.0, 2.0, 30.0, 32.0, 1.0, ts(20, "22:00:31")),
    ("s4", "processing", "active", SDXL, {}, ts(21, "04:00:00"), ts(21, "04:00:00"),
     ts(21, "04:00:10"), None, None, 10.0, None, None, None, None),
    ("v1", "canceled", "done", VIDEO, {}, ts(20, "23:50:00"), ts(20, "23:50:00"), None,
     ts(21, "00:05:00"), None, None, None, 900.0, 2.0, ts(21, "00:05:02")),
    ("v2", "succeeded", "done", VIDEO, POSTERS, ts(21, "01:05:00"), ts(19, "23:57:00"), None,
     ts(19, "23:59:00"), 100.0, None, None, 120.0, 90361.0, ts(21, "01:05:01")),
    ("v3", "failed", "done", VIDEO, {}, ts(21, "02:00:00"), ts(21, "02:00:00"),
     ts(21, "02:00:10"), ts(21, "02:00:11"), 0.5, 10.0, 1.0, 11.0, 1.0, ts(21, "02:00:12")),
    ("v4", "aborted", "done", VIDEO, {}, ts(21, "02:30:00"), ts(21, "02:30:00"), None,
     ts(21, "02:30:20"), None, None, None, 20.0, 5.0, ts(21, "02:30:25")),
    ("v5", "starting", "active", VIDEO, {}, ts(21, "03:00:00"), ts(21, "03:00:00"), None, None,
     None, None, None, None, None, None),
    ("n1", None, "active", None, POSTERS, ts(21, "05:00:00"), *(None,) * 9),
    ("n2", None, "lost", None, {}, ts(21, "05:30:00"), *(None,) * 9),
    ("n3", None, "forgotten", None, {}, ts(22, "06:00:00"), *(None,) * 9),
]

MODEL_COLUMNS = list(REPORT_COLUMNS["models"])
#: model, predictions, succeeded, failed, canceled, aborted, success_rate, then
#: mean/p50/p95 of predict_time, queue_seconds and run_seconds
MODEL_FLUX = (FLUX, 4, 4, 0, 0, 0, 1.0, 24.25, 24.25, 37.575, 5.0, 5.0, 7.7, 25.0, 25.0, 38.5)
MODEL_SDXL = (SDXL, 4, 1, 2, 0, 0, 0.3333, 15.25, 15.25, 27.625, 4.5, 3.5, 9.25, 11.667, 3.0, 27.3)
MODEL_VIDEO = (VIDEO, 5, 1, 1, 1, 1, 0.25, 50.25, 50.25, 95.025, 10.0, 10.0, 10.0, 1.0, 1.0, 1.0)
MODEL_NONE = (None, 3, 0, 0, 0, 0, None, *(None,) * 9)

DAILY_COLUMNS = list(REPORT_COLUMNS["daily"])
DAILY = [
    ("2026-11-19", 0, 1, 0, 0, 0, None),  # v2 finished two days before it was registered
    ("2026-11-20", 8, 5, 2, 0, 0, 19.286),  # (10+20+30+40+2+3+30) / 7
    ("2026-11-21", 7, 0, 1, 1, 1, 1.0),
    ("2026-11-22", 1, 0, 0, 0, 0, None),
]

DELIVERY_COLUMNS = list(REPORT_COLUMNS["deliveries"])
DELIVERIES_A = ("webhook", HOOK_A, 5, 4, 0, 1, 1.6, 6.7)  # p95 of 1, 3, 5, 7 s
DELIVERIES_OPS = ("email", OPS, 3, 0, 2, 1, 3.0, None)
DELIVERIES_B = ("webhook", HOOK_B, 1, 1, 0, 0, 1.0, 0.25)
# fmt: on


@pytest.fixture
def history(store: Store) -> Store:
    write(store, HISTORY, HOOKS, FILES)
    return store


# -- the views ---------------------------------------------------------------------


def test_prediction_timings(history: Store) -> None:
    columns, rows = view(history, "prediction_timings")
    assert columns == TIMINGS_COLUMNS
    assert rows == unordered(TIMINGS)


def test_model_stats_with_interpolated_percentiles(history: Store) -> None:
    columns, rows = select_all(history, "SELECT * FROM model_stats WHERE model IS NOT NULL")
    assert columns == MODEL_COLUMNS
    assert unordered(rows) == [MODEL_FLUX, MODEL_SDXL, MODEL_VIDEO]
    _, unknown = select_all(
        history, "SELECT model, predictions FROM model_stats WHERE model IS NULL"
    )
    assert unknown == [(None, 3)]


def test_model_stats_counts_zero_for_predictions_without_an_answer(history: Store) -> None:
    _, rows = select_all(history, "SELECT * FROM model_stats WHERE model IS NULL")
    assert rows == [MODEL_NONE]


def test_daily_stats_counts_utc_days(history: Store) -> None:
    columns, rows = view(history, "daily_stats")
    assert columns == DAILY_COLUMNS
    assert rows == DAILY


def test_delivery_stats(history: Store) -> None:
    columns, rows = view(history, "delivery_stats")
    assert columns == DELIVERY_COLUMNS
    assert rows == unordered([DELIVERIES_A, DELIVERIES_OPS, DELIVERIES_B])


@pytest.mark.parametrize("name", VIEWS)
def test_views_of_an_empty_database_have_no_rows(store: Store, name: str) -> None:
    columns, rows = view(store, name)
    assert columns and rows == []


def test_views_of_predictions_without_deliveries(store: Store) -> None:
    write(store, [p for p in HISTORY if p.id.startswith("n")])
    assert view(store, "delivery_stats")[1] == []
    assert view(store, "daily_stats")[1] == [
        ("2026-11-21", 2, 0, 0, 0, 0, None),
        ("2026-11-22", 1, 0, 0, 0, 0, None),
    ]


# -- the reports -------------------------------------------------------------------

STATUS_COLUMNS = REPORT_COLUMNS["status"]
EVERYTHING = ReportFilter()


def test_report_status(history: Store) -> None:
    rows = history.report_status(EVERYTHING)
    assert rows[:2] == as_dicts(STATUS_COLUMNS, ("succeeded", "done", 6), ("failed", "done", 3))
    # The rest all count 1 (their order is pinned by a test below).
    assert unordered(rows[2:]) == unordered(
        as_dicts(
            STATUS_COLUMNS,
            ("aborted", "done", 1),
            ("canceled", "done", 1),
            ("processing", "active", 1),
            ("starting", "active", 1),
            (None, "active", 1),
            (None, "forgotten", 1),
            (None, "lost", 1),
        )
    )


def test_report_status_filters(history: Store) -> None:
    by_model = history.report_status(ReportFilter(model=SDXL))
    assert by_model == as_dicts(
        STATUS_COLUMNS,
        ("failed", "done", 2),
        ("processing", "active", 1),
        ("succeeded", "done", 1),
    )
    by_label = history.report_status(ReportFilter(labels={"project": "posters"}))
    assert by_label[0] == {"status": "succeeded", "tracking": "done", "predictions": 4}
    assert unordered(by_label[1:]) == unordered(
        as_dicts(STATUS_COLUMNS, ("failed", "done", 1), (None, "active", 1))
    )
    two_labels = ReportFilter(labels={"project": "posters", "team": "a"})
    assert history.report_status(two_labels) == as_dicts(STATUS_COLUMNS, ("succeeded", "done", 1))
    dotted_key = ReportFilter(labels={"build.id": "7"})  # a key that is not a plain JSON path
    assert history.report_status(dotted_key) == as_dicts(STATUS_COLUMNS, ("succeeded", "done", 1))
    assert history.report_status(ReportFilter(labels={"project": "nope"})) == []
    assert history.report_status(ReportFilter(model="nope/nope")) == []


def test_report_window_is_registration_time_since_inclusive_until_exclusive(
    history: Store,
) -> None:
    # 10:45 at +05:30 is 05:15 UTC on the 21st
    window = ReportFilter(since=at(21, "00:00:00"), until=at(21, "10:45:00", IST))
    assert unordered(history.report_status(window)) == unordered(
        as_dicts(
            STATUS_COLUMNS,
            ("processing", "active", 1),  # s4
            ("succeeded", "done", 1),  # v2, finished on the 19th: registration counts
            ("failed", "done", 1),  # v3
            ("aborted", "done", 1),  # v4
            ("starting", "active", 1),  # v5
            (None, "active", 1),  # n1
        )
    )
    edges = ReportFilter(since=at(21, "05:00:00"), until=at(21, "05:30:00"))
    assert history.report_status(edges) == as_dicts(STATUS_COLUMNS, (None, "active", 1))
    same_moment = ReportFilter(since=at(21, "05:30:00", IST), until=at(20, "21:00:00", PST))
    assert history.report_status(same_moment) == history.report_status(
        ReportFilter(since=at(21, "00:00:00"), until=at(21, "05:00:00"))
    )
    assert history.report_status(ReportFilter(since=at(23, "00:00:00"))) == []
    assert (
        history.report_status(ReportFilter(since=at(21, "00:00:00"), until=at(20, "0:0:0"))) == []
    )


def test_report_models(history: Store) -> None:
    expected = as_dicts(MODEL_COLUMNS, MODEL_VIDEO, MODEL_FLUX, MODEL_SDXL, MODEL_NONE)
    rows = history.report_models(EVERYTHING)
    assert rows == bucketed(expected)
    assert [list(row) for row in rows] == [MODEL_COLUMNS] * 4
    # the same report read from the rows has the exact percentiles
    assert history.report_models_from_rows(EVERYTHING) == expected


def test_report_percentiles_from_the_rollup_are_not_exact(history: Store) -> None:
    """The buckets round each value to two significant digits: p50 of acme/flux's
    predict times (0.5, 20, 28.5, 48) is 24.25 exactly, 24.5 from 20 and 29."""
    flux = next(r for r in history.report_models(EVERYTHING) if r["model"] == FLUX)
    exact = next(r for r in history.report_models_from_rows(EVERYTHING) if r["model"] == FLUX)
    assert (exact["predict_time_p50"], exact["predict_time_mean"]) == (24.25, 24.25)
    assert (flux["predict_time_p50"], flux["predict_time_mean"]) == (24.5, 24.25)


def test_report_models_filters_change_the_percentiles(history: Store) -> None:
    posters = history.report_models(ReportFilter(labels={"project": "posters"}))
    # fmt: off
    assert posters[:2] == as_dicts(
        MODEL_COLUMNS,
        (FLUX, 2, 2, 0, 0, 0, 1.0, 14.25, 14.25, 18.525, 3.0, 3.0, 3.9, 15.0, 15.0, 19.5),
        (SDXL, 2, 1, 1, 0, 0, 0.5, 29.0, 29.0, 29.0, 1.5, 1.5, 1.95, 16.5, 16.5, 28.65),
    )
    assert unordered(posters[2:]) == unordered(as_dicts(
        MODEL_COLUMNS,
        (VIDEO, 1, 1, 0, 0, 0, 1.0, 100.0, 100.0, 100.0, *(None,) * 6),
        (None, 1, 0, 0, 0, 0, None, *(None,) * 9),
    ))
    by_model = history.report_models(ReportFilter(model=SDXL))
    assert by_model == bucketed(as_dicts(MODEL_COLUMNS, MODEL_SDXL))
    window = ReportFilter(since=at(21, "00:00:00"), until=at(21, "05:15:00"), model=VIDEO)
    assert history.report_models(window) == bucketed(as_dicts(
        MODEL_COLUMNS,
        (VIDEO, 4, 1, 1, 0, 1, 0.3333, 50.25, 50.25, 95.025, 10.0, 10.0, 10.0, 1.0, 1.0, 1.0),
    ))
    running_only = ReportFilter(since=at(21, "03:30:00"), model=SDXL)
    assert history.report_models(running_only) == as_dicts(
        MODEL_COLUMNS, (SDXL, 1, 0, 0, 0, 0, None, None, None, None, 10.0, 10.0, 10.0, None,
                        None, None),
    )
    # fmt: on


def test_report_models_agrees_with_the_view(history: Store) -> None:
    _, view_rows = select_all(history, "SELECT * FROM model_stats WHERE model IS NOT NULL")
    exact = history.report_models_from_rows(EVERYTHING)
    assert unordered(tuple(r.values()) for r in exact if r["model"]) == unordered(view_rows)
    by_model = {row[0]: dict(zip(MODEL_COLUMNS, row, strict=True)) for row in view_rows}
    for row in history.report_models(EVERYTHING):
        if row["model"]:
            assert row == bucketed([by_model[row["model"]]])[0]


def test_report_daily(history: Store) -> None:
    assert history.report_daily(EVERYTHING) == as_dicts(DAILY_COLUMNS, *DAILY)
    assert history.report_daily(ReportFilter(since=at(21, "00:00:00"))) == as_dicts(
        DAILY_COLUMNS,
        ("2026-11-19", 0, 1, 0, 0, 0, None),
        ("2026-11-21", 7, 0, 1, 0, 1, 1.0),  # v1 (canceled on the 21st) registered the 20th
        ("2026-11-22", 1, 0, 0, 0, 0, None),
    )
    assert history.report_daily(ReportFilter(model=SDXL)) == as_dicts(
        DAILY_COLUMNS,
        ("2026-11-20", 3, 1, 2, 0, 0, 11.667),
        ("2026-11-21", 1, 0, 0, 0, 0, None),
    )
    assert history.report_daily(ReportFilter(labels={"project": "banners"})) == as_dicts(
        DAILY_COLUMNS, ("2026-11-20", 2, 1, 1, 0, 0, 16.0)
    )


FAILURE_COLUMNS = REPORT_COLUMNS["failures"]


def test_report_failures(history: Store) -> None:
    cuda, odd = history.report_failures(EVERYTHING)
    assert cuda == {
        "error": "CUDA out of memory",
        "predictions": 2,
        "example_id": "s1",
        "last_seen": at(20, "21:00:04"),
    }
    assert (odd["predictions"], odd["example_id"], odd["last_seen"]) == (
        1,
        "v3",
        at(21, "02:00:11"),
    )
    assert json.loads(odd["error"]) == OBJECT_ERROR  # an error that is not a string: as JSON
    assert history.report_failures(EVERYTHING, limit=1) == [cuda]
    assert history.report_failures(ReportFilter(model=SDXL)) == [cuda]
    assert history.report_failures(ReportFilter(labels={"project": "posters"})) == [
        {**cuda, "predictions": 1, "example_id": "s2"}
    ]
    assert history.report_failures(ReportFilter(model=FLUX)) == []


def test_report_deliveries(history: Store) -> None:
    assert history.report_deliveries(EVERYTHING) == as_dicts(
        DELIVERY_COLUMNS, DELIVERIES_A, DELIVERIES_OPS, DELIVERIES_B
    )
    # The filter picks the predictions the deliveries are about.
    assert history.report_deliveries(ReportFilter(model=SDXL)) == as_dicts(
        DELIVERY_COLUMNS,
        ("email", OPS, 2, 0, 2, 0, 4.5, None),
        ("webhook", HOOK_A, 1, 0, 0, 1, 1.0, None),
    )
    assert history.report_deliveries(ReportFilter(labels={"project": "posters"})) == as_dicts(
        DELIVERY_COLUMNS,
        ("webhook", HOOK_A, 2, 2, 0, 0, 1.5, 2.9),  # p95 of 1 and 3 s
        ("webhook", HOOK_B, 1, 1, 0, 0, 1.0, 0.25),
        ("email", OPS, 1, 0, 1, 0, 1.0, None),
    )
    assert history.report_deliveries(ReportFilter(since=at(22, "00:00:00"))) == []


SLOW_COLUMNS = REPORT_COLUMNS["slow"]
SLOW_NOW = at(21, "06:00:00")
SLOW = [
    ("v5", "starting", VIDEO, at(21, "03:00:00"), 10800.0, 12, at(21, "05:59:00")),  # created_at
    ("s4", "processing", SDXL, at(21, "04:00:10"), 7190.0, 5, at(21, "05:59:30")),  # started_at
    ("n1", None, None, at(21, "05:00:00"), 3600.0, 0, None),  # registered_at
]


def test_report_slow(history: Store) -> None:
    assert history.report_slow(EVERYTHING, now=SLOW_NOW) == as_dicts(SLOW_COLUMNS, *SLOW)
    assert history.report_slow(EVERYTHING, now=SLOW_NOW, limit=2) == as_dicts(
        SLOW_COLUMNS, *SLOW[:2]
    )
    # The same moment written at +05:30.
    assert history.report_slow(ReportFilter(model=SDXL), now=at(21, "11:30:00", IST)) == (
        as_dicts(SLOW_COLUMNS, SLOW[1])
    )
    assert history.report_slow(ReportFilter(labels={"project": "posters"}), now=SLOW_NOW) == (
        as_dicts(SLOW_COLUMNS, SLOW[2])
    )


ARCHIVE_COLUMNS = REPORT_COLUMNS["archive"]
ARCHIVE = [
    ("2026-11-20", FLUX, 3, 4, 4, 0, 0, 1000),
    ("2026-11-20", SDXL, 1, 1, 0, 1, 0, 0),
    ("2026-11-21", FLUX, 1, 1, 1, 0, 0, 5000),
    ("2026-11-21", VIDEO, 1, 1, 0, 0, 1, 0),
]


def test_report_archive(history: Store) -> None:
    assert history.report_archive(EVERYTHING) == as_dicts(ARCHIVE_COLUMNS, *ARCHIVE)
    posters = ReportFilter(labels={"project": "posters"})
    assert history.report_archive(posters) == as_dicts(
        ARCHIVE_COLUMNS,
        ("2026-11-20", FLUX, 2, 3, 3, 0, 0, 600),
        ("2026-11-20", SDXL, 1, 1, 0, 1, 0, 0),
        ("2026-11-21", VIDEO, 1, 1, 0, 0, 1, 0),
    )
    assert history.report_archive(ReportFilter(model=FLUX)) == as_dicts(
        ARCHIVE_COLUMNS, ARCHIVE[0], ARCHIVE[2]
    )
    # registered on the 21st: only v2 of those with files
    window = ReportFilter(since=at(21, "00:00:00"), until=at(22, "00:00:00"))
    assert history.report_archive(window) == as_dicts(ARCHIVE_COLUMNS, ARCHIVE[3])


def test_every_report_of_an_empty_database_is_empty(store: Store) -> None:
    assert store.report_status(EVERYTHING) == []
    assert store.report_models(EVERYTHING) == []
    assert store.report_daily(EVERYTHING) == []
    assert store.report_failures(EVERYTHING) == []
    assert store.report_deliveries(EVERYTHING) == []
    assert store.report_slow(EVERYTHING, now=SLOW_NOW) == []
    assert store.report_archive(EVERYTHING) == []


# -- the same on both engines --------------------------------------------------------


@pytest.fixture
def both(sqlite_url: str, pg_url: str) -> Iterator[tuple[Store, Store]]:
    stores = Store.from_url(sqlite_url), Store.from_url(pg_url)
    try:
        for store in stores:
            write(store, HISTORY, HOOKS, FILES)
        yield stores
    finally:
        for store in stores:
            store.close()


@pytest.mark.parametrize(
    "name",
    [
        "prediction_timings",
        "model_stats",
        "daily_stats",
        "delivery_stats",
    ],
)
def test_views_are_identical_on_both_engines(both: tuple[Store, Store], name: str) -> None:
    lite, pg = both
    assert view(lite, name) == view(pg, name)


def _reports(store: Store) -> dict[str, Any]:
    return {
        "models": store.report_models(EVERYTHING),
        "daily": store.report_daily(EVERYTHING),
        "deliveries": store.report_deliveries(EVERYTHING),
        "slow": store.report_slow(EVERYTHING, now=SLOW_NOW),
        "archive": store.report_archive(EVERYTHING),
        "failures, strings": store.report_failures(ReportFilter(model=SDXL)),
        "status, by model": store.report_status(ReportFilter(model=VIDEO)),
    }


def test_reports_are_identical_on_both_engines(both: tuple[Store, Store]) -> None:
    lite, pg = both
    assert _reports(lite) == _reports(pg)


def test_report_order_with_unknown_status_is_identical_on_both_engines(
    both: tuple[Store, Store],
) -> None:
    lite, pg = both
    assert lite.report_status(EVERYTHING) == pg.report_status(EVERYTHING)


def test_object_errors_read_the_same_on_both_engines(both: tuple[Store, Store]) -> None:
    lite, pg = both
    assert lite.report_failures(EVERYTHING) == pg.report_failures(EVERYTHING)


SUB_MS = [  # upstream sends microseconds; these are apart by 0.8 ms and by 1.0002 s
    Prediction(
        "ms",
        at(20, "10:00:00"),
        FLUX,
        "succeeded",
        created=at(20, "10:00:00.000600"),
        started=at(20, "10:00:00.001400"),
        completed=at(20, "10:00:01.001600"),
    ),
]


def test_sub_millisecond_times_give_the_same_seconds_on_both_engines(
    sqlite_url: str, pg_url: str
) -> None:
    stores = Store.from_url(sqlite_url), Store.from_url(pg_url)
    try:
        for store in stores:
            write(store, SUB_MS)
        lite, pg = (
            select_all(s, "SELECT queue_seconds, run_seconds FROM prediction_timings")[1]
            for s in stores
        )
        assert pg == [(0.001, 1.0)]  # the durations rounded to the millisecond
        assert lite == pg
    finally:
        for store in stores:
            store.close()


#: a mean, a median and a success rate that fall exactly halfway between two roundings
HALFWAY = [
    Prediction(
        f"h{i}",
        at(20, "10:00:00"),
        "acme/half",
        "succeeded" if i == 0 else "failed",
        predict_time=1.0 if i == 0 else 1.001 if i == 1 else None,
    )
    for i in range(32)
]


def test_report_models_rounds_like_the_view(store: Store) -> None:
    write(store, HALFWAY)
    _, (row,) = select_all(
        store, "SELECT success_rate, predict_time_mean, predict_time_p50 FROM model_stats"
    )
    assert row == (0.0313, 1.001, 1.001)
    (report,) = store.report_models_from_rows(EVERYTHING)
    assert (report["success_rate"], report["predict_time_mean"], report["predict_time_p50"]) == row
    (report,) = store.report_models(EVERYTHING)  # the rollup: exact sums, bucketed values
    assert (report["success_rate"], report["predict_time_mean"]) == row[:2]
    assert report["predict_time_p50"] == 1.0  # 1.0 and 1.001 share a bucket


# -- the command -----------------------------------------------------------------


def tracker_report(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    return run_tracker(["report", *args, "--database-url", db_url], env)


def ok(db_url: str, *args: str) -> str:
    result = tracker_report(db_url, *args)
    assert result.returncode == 0, f"{args}: rc={result.returncode}\n{result.stderr}"
    assert result.stderr == ""
    return result.stdout


def jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as `--format json` gives them: timestamps in ISO 8601."""
    return [
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()} for row in rows
    ]


def same_cell(csv_value: str, json_value: Any, tolerance: float = 0.0) -> bool:
    if json_value is None:
        return csv_value == ""
    if isinstance(json_value, int | float) and not isinstance(json_value, bool):
        return abs(float(csv_value) - float(json_value)) <= tolerance
    return csv_value == json_value


CLI_FILTERS: dict[str, tuple[str, ...]] = {
    "status": ("--model", SDXL),
    "models": ("--label", "project=posters", "--label", "team=a"),
    "daily": ("--since", "2026-11-21T05:30:00+05:30", "--until", "2026-11-22"),
    "failures": ("--limit", "1"),
    "deliveries": ("--model", SDXL),
    "slow": ("--limit", "2"),
    "archive": ("--label", "project=posters"),
}


def _in_process(store: Store, name: str, args: tuple[str, ...]) -> list[dict[str, Any]]:
    """What the command must print for ``name`` with CLI_FILTERS[name]."""
    flt = {
        "status": ReportFilter(model=SDXL),
        "models": ReportFilter(labels={"project": "posters", "team": "a"}),
        "daily": ReportFilter(since=at(21, "00:00:00"), until=at(22, "00:00:00")),
        "deliveries": ReportFilter(model=SDXL),
        "archive": ReportFilter(labels={"project": "posters"}),
    }.get(name, EVERYTHING)
    if name == "failures":
        return store.report_failures(flt, limit=1)
    if name == "slow":
        return store.report_slow(flt, now=utcnow(), limit=2)
    return getattr(store, f"report_{name}")(flt)


@pytest.mark.parametrize("name", list(REPORT_COLUMNS))
def test_cli_csv_and_json_parse_back_to_the_same_rows(
    history: Store, db_url: str, name: str
) -> None:
    args = CLI_FILTERS[name]
    columns = list(REPORT_COLUMNS[name])
    from_json = json.loads(ok(db_url, name, *args, "--format", "json"))
    from_csv = list(csv.DictReader(io.StringIO(ok(db_url, name, *args, "--format", "csv"))))
    expected = jsonable(_in_process(history, name, args))
    assert expected, "the fixture must give this report some rows"
    assert [list(row) for row in from_json] == [columns] * len(expected)
    assert from_csv and list(from_csv[0]) == columns
    # `slow` measures against the clock, which moves between the runs.
    tolerance = 60.0 if name == "slow" else 0.0
    if tolerance:
        ignore = {"running_seconds"}
        for got, want in zip(from_json, expected, strict=True):
            assert abs(got["running_seconds"] - want["running_seconds"]) <= tolerance
        assert [{k: v for k, v in row.items() if k not in ignore} for row in from_json] == [
            {k: v for k, v in row.items() if k not in ignore} for row in expected
        ]
    else:
        assert from_json == expected
    assert len(from_csv) == len(from_json)
    for csv_row, json_row in zip(from_csv, from_json, strict=True):
        mismatched = {
            c: (csv_row[c], json_row.get(c))
            for c in columns
            if not same_cell(csv_row[c], json_row.get(c), tolerance)
        }
        assert not mismatched, f"{name}: CSV and JSON differ: {mismatched}"
    table = ok(db_url, name, *args, "--format", "table")
    assert columns[0] in table.split()  # wide headers may fold onto a second line
    assert len(table.splitlines()) > len(expected)


def test_cli_csv_keeps_exact_values(history: Store, db_url: str) -> None:
    rows = list(csv.DictReader(io.StringIO(ok(db_url, "models", "--format", "csv"))))
    sdxl = next(row for row in rows if row["model"] == SDXL)
    assert (sdxl["success_rate"], sdxl["run_seconds_mean"], sdxl["predict_time_p95"]) == (
        "0.3333",
        "11.667",
        "27.625",
    )
    unknown = next(row for row in rows if row["model"] == "")
    assert unknown["success_rate"] == "" and unknown["succeeded"] == "0"
    failures = list(csv.DictReader(io.StringIO(ok(db_url, "failures", "--format", "csv"))))
    assert failures[0]["last_seen"] == "2026-11-20T21:00:04+00:00"


def test_cli_table_is_for_people(history: Store, db_url: str) -> None:
    lines = ok(db_url, "status").splitlines()
    assert lines[0].split() == ["status", "tracking", "predictions"]
    assert lines[1].split() == ["succeeded", "done", "6"]
    assert len(lines) == 1 + 9


@pytest.mark.parametrize("name", list(REPORT_COLUMNS))
def test_cli_reports_of_an_empty_database(db_url: str, name: str) -> None:
    assert json.loads(ok(db_url, name, "--format", "json")) == []
    assert ok(db_url, name, "--format", "csv") == ",".join(REPORT_COLUMNS[name]) + "\n"


def test_cli_since_and_until_take_durations_dates_and_rfc3339(store: Store, db_url: str) -> None:
    now = utcnow()
    write(
        store,
        [
            Prediction("recent", now - timedelta(hours=2), FLUX, "succeeded"),
            Prediction("days", now - timedelta(days=3), FLUX, "failed"),
            Prediction("weeks", now - timedelta(days=10), FLUX, "canceled"),
        ],
    )

    def statuses(*args: str) -> list[str]:
        rows = json.loads(ok(db_url, "status", *args, "--format", "json"))
        return sorted(row["status"] for row in rows)

    assert statuses("--since", "1d") == ["succeeded"]
    assert statuses("--since", "7d", "--until", "24h") == ["failed"]
    assert statuses("--until", "1w") == ["canceled"]
    assert statuses("--since", "90m") == []
    five_days_ago = (now - timedelta(days=5)).date().isoformat()
    assert statuses("--since", five_days_ago) == ["failed", "succeeded"]
    one_day_ago_far_east = (now - timedelta(days=1)).astimezone(IST).isoformat()
    assert statuses("--since", one_day_ago_far_east) == ["succeeded"]
    assert statuses("--until", (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")) == [
        "canceled",
        "failed",
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("nope",),
        ("STATUS",),
        ("status", "--since", "tomorrow"),
        ("models", "--since", "2026-13-01"),
        ("daily", "--until", "7x"),
        ("failures", "--since", "2026-11-20T25:00:00Z"),
        ("slow", "--label", "project"),
    ],
    ids=lambda args: "-".join(args),
)
def test_cli_bad_input_is_one_error_line_and_exit_2(sqlite_url: str, args: tuple[str, ...]) -> None:
    result = tracker_report(sqlite_url, *args)
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr


def test_cli_database_problems_exit_1(tmp_path: Path) -> None:
    result = tracker_report(f"sqlite:///{tmp_path / 'never-migrated.db'}", "status")
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr

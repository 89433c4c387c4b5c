"""Bulk-written history for the ``scale`` section: finished predictions shaped like what
the daemon writes for a 20 s image prediction with a webhook."""

from __future__ import annotations

import json
import math
import random
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    cast,
    insert,
    literal,
    null,
    select,
    true,
    type_coerce,
)
from sqlalchemy.engine import Connection

from tracker.simulator import PredictionPlan, SimConfig, SimulatedPrediction
from tracker.simulator.scenarios import DEFAULT_MODEL
from tracker.store.answers import stored_answer
from tracker.store.store import Store
from tracker.store.tables import (
    callbacks,
    deliveries,
    delivery_attempts,
    prediction_logs,
    predictions,
    status_transitions,
)
from tracker.store.types import CompressedText, UTCDateTime
from tracker.timeparse import utcnow

from .profile import Profile


def finished_template(chunks: int) -> dict[str, Any]:
    """What the daemon stores for one 20 s image prediction polled every second: the
    final answer (raw), its logs and the pieces of log text it saw appear."""
    plan = PredictionPlan(outcome="succeeded", queue_seconds=1.0, run_seconds=20.0)
    sim = SimulatedPrediction("done-000000", plan, SimConfig(), created_at=0.0)
    body = sim.snapshot(1000.0, "https://api.replicate.com/v1")
    lines = body["logs"].splitlines(keepends=True)
    per = max(1, math.ceil(len(lines) / chunks))
    pieces = ["".join(lines[i : i + per]) for i in range(0, len(lines), per)]
    return {"body": body, "chunks": pieces}


#: staging tables, one row per finished prediction and one per log piece
_META = MetaData()
FILL = Table(
    "bench_fill",
    _META,
    Column("k", Integer, primary_key=True),
    Column("id", String(128)),
    Column("created", UTCDateTime),
    Column("started", UTCDateTime),
    Column("completed", UTCDateTime),
    Column("first_seen", UTCDateTime),
    Column("started_seen", UTCDateTime),
    Column("done_seen", UTCDateTime),
    Column("predict_time", Float),
    prefixes=["TEMPORARY"],
)
PIECES = Table(
    "bench_pieces",
    _META,
    Column("seq", Integer, primary_key=True),
    Column("text", Text),
    prefixes=["TEMPORARY"],
)


def fill_finished(url: str, count: int, profile: Profile, seed: int) -> dict[str, Any]:
    """Bulk-write ``count`` finished predictions with their transitions, log pieces and a
    delivered webhook each, server-side (INSERT ... SELECT) from per-row times."""
    tpl = finished_template(profile.scale_chunks)
    body = tpl["body"]
    rows = _fill_rows(count, profile, seed)
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    store = Store.from_url(url, pool_size=1)
    started_at = time.monotonic()
    try:
        with store.engine.begin() as conn:
            _META.create_all(conn)
            for start in range(0, len(rows), 5000):
                conn.execute(insert(FILL), rows[start : start + 5000])
            conn.execute(
                insert(PIECES),
                [{"seq": i + 1, "text": t} for i, t in enumerate(tpl["chunks"])],
            )
            _insert_predictions(conn, body, len(tpl["chunks"]))
            _insert_transitions_and_logs(conn)
            _insert_callbacks(conn, payload)
            _META.drop_all(conn)
    finally:
        store.close()
    return {
        "finished_written": count,
        "seconds": round(time.monotonic() - started_at, 1),
        "log_pieces_per_prediction": len(tpl["chunks"]),
        "logs_bytes_per_prediction": len(body["logs"].encode()),
        "raw_bytes_per_prediction": len(payload.encode()),
    }


def _fill_rows(count: int, profile: Profile, seed: int) -> list[dict[str, Any]]:
    """The times of each finished prediction: spread over the last day, seeded."""
    rng = random.Random(seed)
    now = utcnow()
    rows = []
    for k in range(count):
        created = now - timedelta(days=1) + timedelta(seconds=k * 80_000 / max(1, count))
        queue = rng.expovariate(1.0)
        run = rng.lognormvariate(math.log(profile.scale_history_median), 0.5)
        started = created + timedelta(seconds=queue)
        completed = started + timedelta(seconds=run)
        rows.append(
            {
                "k": k,
                "id": f"done-{k:06d}",
                "created": created,
                "started": started,
                "completed": completed,
                "first_seen": created + timedelta(seconds=1),
                "started_seen": started + timedelta(seconds=0.5),
                "done_seen": completed + timedelta(seconds=0.5),
                "predict_time": round(run, 6),
            }
        )
    return rows


def _const(value: Any, column: Any) -> Any:
    """A constant for INSERT ... SELECT, typed as the column. JSON is bound as JSON
    text without a CAST: SQLite gives a type named JSON numeric affinity, so
    ``CAST('{...}' AS JSON)`` stored 0 there (the fill's raw, input and output were 0
    on SQLite until 2026-12-07); a compressed payload is bytes, which a CAST to the
    column's declared TEXT would read as text on SQLite."""
    bound = literal(value, type_=column.type)
    if isinstance(column.type, JSON | CompressedText):  # bound as the column stores it
        return type_coerce(bound, column.type)
    return cast(bound, column.type)


def _insert_predictions(conn: Connection, body: dict[str, Any], chunks: int) -> None:
    p = predictions.c
    f = FILL.c
    columns = {
        "id": f.id,
        "status": _const("succeeded", p.status),
        "tracking": _const("done", p.tracking),
        "model": _const(DEFAULT_MODEL, p.model),
        "version": _const(body["version"], p.version),
        "input": _const(body["input"], p.input),
        "output": _const(body["output"], p.output),
        "logs": _const(body["logs"], p.logs),
        "metrics": _const(body["metrics"], p.metrics),
        "predict_time": f.predict_time,
        "created_at": f.created,
        "started_at": f.started,
        "completed_at": f.completed,
        "data_removed": _const(False, p.data_removed),
        "urls": _const(body["urls"], p.urls),
        "labels": _const({}, p.labels),
        "registered_at": f.created,
        "last_polled_at": f.done_seen,
        "poll_count": _const(chunks + 3, p.poll_count),
        "raw": _const(stored_answer(body, True), p.raw),
        "raw_logs_moved": _const(True, p.raw_logs_moved),
        "log_seq": _const(chunks, p.log_seq),
    }
    conn.execute(insert(predictions).from_select(list(columns), select(*columns.values())))


def _insert_transitions_and_logs(conn: Connection) -> None:
    f = FILL.c
    t = status_transitions.c
    for from_status, to_status, seen, upstream in (
        (None, "starting", f.first_seen, f.created),
        ("starting", "processing", f.started_seen, f.started),
        ("processing", "succeeded", f.done_seen, f.completed),
    ):
        conn.execute(
            insert(status_transitions).from_select(
                ["prediction_id", "from_status", "to_status", "observed_at", "upstream_at"],
                select(
                    f.id,
                    null() if from_status is None else _const(from_status, t.from_status),
                    _const(to_status, t.to_status),
                    seen,
                    upstream,
                ),
            )
        )
    conn.execute(
        insert(prediction_logs).from_select(
            ["prediction_id", "seq", "observed_at", "text", "restarted"],
            select(
                f.id,
                PIECES.c.seq,
                f.started_seen,
                PIECES.c.text,
                _const(False, prediction_logs.c.restarted),
            )
            .select_from(FILL.join(PIECES, true()))
            .order_by(f.k, PIECES.c.seq),
        )
    )


def _insert_callbacks(conn: Connection, payload: str) -> None:
    """A webhook per prediction, delivered once at the first try."""
    f = FILL.c
    conn.execute(
        insert(callbacks).from_select(
            ["prediction_id", "kind", "target", "events", "created_at"],
            select(
                f.id,
                _const("webhook", callbacks.c.kind),
                _const("https://hooks.example.com/replicate", callbacks.c.target),
                _const("completed", callbacks.c.events),
                f.created,
            ).order_by(f.k),
        )
    )
    d = deliveries.c
    conn.execute(
        insert(deliveries).from_select(
            [
                "callback_id",
                "prediction_id",
                "event",
                "state",
                "attempts",
                "last_status_code",
                "created_at",
                "delivered_at",
                "payload",
                "message_id",
            ],
            select(
                callbacks.c.id,
                callbacks.c.prediction_id,
                _const("completed", d.event),
                _const("delivered", d.state),
                _const(1, d.attempts),
                _const(200, d.last_status_code),
                f.done_seen,
                f.done_seen,
                _const(payload, d.payload),
                _const("msg_", d.message_id) + f.id,
            )
            .select_from(callbacks.join(FILL, FILL.c.id == callbacks.c.prediction_id))
            .order_by(callbacks.c.id),
        )
    )
    conn.execute(
        insert(delivery_attempts).from_select(
            ["delivery_id", "attempted_at", "status_code", "duration_ms"],
            select(
                d.id,
                d.delivered_at,
                _const(200, delivery_attempts.c.status_code),
                _const(12, delivery_attempts.c.duration_ms),
            ).order_by(d.id),
        )
    )

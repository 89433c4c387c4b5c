"""EXPLAIN of the daemon's hot path: run each store operation once on a database, capture
the SQL it sends, and explain (and time, for reads) each distinct statement."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.engine import Connection

from tracker.domain import DeliveryJob, DeliveryState, NextPoll, SendResult
from tracker.poll.observe import parse_prediction, plan_observation
from tracker.simulator import PredictionPlan, SimConfig, SimulatedPrediction
from tracker.store.store import Store
from tracker.store.tables import deliveries, predictions
from tracker.timeparse import utcnow


def explain_hot_path(url: str) -> dict[str, Any]:
    """Run the daemon's hot-path store operations once on this database, capture the
    SQL they send, and EXPLAIN each statement with the same parameters."""
    store = Store.from_url(url, pool_size=1)
    capture = _Capture()
    listener = capture.listen  # one bound method, to remove what was added
    event.listen(store.engine, "before_cursor_execute", listener)
    now = utcnow()
    lease = now + timedelta(seconds=60)
    try:
        states = _poll_operations(store, capture.op, now, lease)
        _other_operations(store, capture.op, now, lease, states)
    finally:
        event.remove(store.engine, "before_cursor_execute", listener)
    sqlite = url.startswith("sqlite")
    with store.engine.connect() as conn:
        plans = _explain(conn, capture.captured, sqlite)
        conn.rollback()
    store.close()
    return {"engine": "sqlite" if sqlite else "postgresql", "statements": plans}


Operation = Callable[[str, Callable[[], Any]], Any]


class _Capture:
    """The statements each named operation sends."""

    def __init__(self) -> None:
        self.captured: list[tuple[str, str, Any]] = []
        self.current = ""

    def listen(self, conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        head = statement.lstrip().split(None, 1)[0].upper()
        if self.current and head in ("SELECT", "UPDATE", "INSERT", "DELETE", "WITH"):
            self.captured.append((self.current, statement, parameters))

    def op(self, name: str, fn: Callable[[], Any]) -> Any:
        self.current = name
        try:
            return fn()
        finally:
            self.current = ""


def _poll_operations(store: Store, op: Operation, now: datetime, lease: datetime) -> Any:
    """Claim due predictions and write an answer that ends one; the claimed states."""
    states = op(
        "claim due predictions (Store.claim_due)",
        lambda: store.claim_due(now=now, limit=256, owner="explain", lease_until=lease),
    )
    if states:
        state = states[0]
        plan = PredictionPlan(outcome="succeeded", queue_seconds=0.1, run_seconds=1.0)
        sim = SimulatedPrediction(state.id, plan, SimConfig(), created_at=time.time() - 5)
        body = sim.snapshot(time.time(), "http://127.0.0.1/v1")
        # The answer that ends it: the stored logs, extended (a terminal transition,
        # a log piece and the deliveries lookup, as in the daemon's common write).
        body["logs"] = state.logs + "prediction took 20.00 seconds\n"
        update_ = plan_observation(state, parse_prediction(body, state.id), utcnow())
        op(
            "write an observation by primary key (Store.apply_observations)",
            lambda: store.apply_observations(
                [(update_, NextPoll(at=None, interval=None), "explain")]
            ),
        )
    return states


def _other_operations(
    store: Store, op: Operation, now: datetime, lease: datetime, states: Any
) -> None:
    """The heartbeat, the deliveries, the health query and the daemon's other reads."""
    op(
        "heartbeat and lease extension (Store.heartbeat)",
        lambda: store.heartbeat(
            "explain",
            now=now,
            polls=0,
            lease_until=lease,
            in_flight=[s.id for s in states[1:33]],
        ),
    )
    op(
        "claim due deliveries (Store.claim_deliveries)",
        lambda: store.claim_deliveries(
            now=now,
            limit=64,
            owner="explain",
            lease_until=lease,
            kinds=("webhook",),
            skip_targets=["https://busy.example.com/hook"],
            per_target=8,
        ),
    )
    with store.engine.connect() as conn:
        row = conn.execute(
            select(
                deliveries.c.id,
                deliveries.c.message_id,
                deliveries.c.prediction_id,
                deliveries.c.event,
                deliveries.c.created_at,
            ).limit(1)
        ).first()
    if row is not None:
        job = DeliveryJob(
            row.id,
            row.message_id,
            row.prediction_id,
            "webhook",
            "x",
            row.event,
            "{}",
            0,
            row.created_at,
        )
        op(
            "record a delivery attempt (Store.record_attempt)",
            lambda: store.record_attempt(
                job,
                SendResult(ok=True, status_code=200, duration_ms=5),
                attempted_at=now,
                state=DeliveryState.DELIVERED,
                next_attempt_at=None,
                owner="explain",
            ),
        )
    op(
        "health: tracker status (Store.health)",
        lambda: store.health(now=now, live_within=timedelta(seconds=30)),
    )
    op("exit-when-done: active count (Store.count_active)", store.count_active)
    op(
        "exit-when-done: next delivery (Store.next_delivery_due)",
        lambda: store.next_delivery_due(("webhook",)),
    )
    op("next due poll (the due index)", lambda: _next_due_at(store))
    op("daemon start: run-time history (Store.recent_run_times)", store.recent_run_times)


def _explain(conn: Connection, captured: list[tuple[str, str, Any]], sqlite: bool) -> list[Any]:
    """EXPLAIN (and for reads, time) each distinct statement once."""
    plans = []
    seen: set[str] = set()
    for name, statement, parameters in captured:
        if statement in seen:
            continue
        seen.add(statement)
        params = parameters[0] if isinstance(parameters, list) and parameters else parameters
        prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
        rows = conn.exec_driver_sql(prefix + statement, params).all()
        lines = _sqlite_tree(rows) if sqlite else [r[0] for r in rows]
        best_ms = None
        if statement.lstrip().upper().startswith("SELECT"):  # reads: how long they take
            for _ in range(3):
                began = time.perf_counter()
                conn.exec_driver_sql(statement, params).all()
                took = (time.perf_counter() - began) * 1000
                best_ms = took if best_ms is None else min(best_ms, took)
        plans.append(
            {
                "operation": name,
                "sql": " ".join(statement.split()),
                "plan": lines,
                "full_scans": _full_scans(lines, sqlite),
                "select_ms_best_of_3": None if best_ms is None else round(best_ms, 2),
            }
        )
    return plans


def _sqlite_tree(rows: Sequence[Any]) -> list[str]:
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return lines


def _full_scans(lines: list[str], sqlite: bool) -> list[str]:
    """Plan lines that read a whole big table (predictions, its children, deliveries)."""
    big = ("predictions", "status_transitions", "prediction_logs", "deliveries", "callbacks")
    found = []
    for line in lines:
        text = line.strip()
        if sqlite:
            hit = text.startswith("SCAN ") and text.split()[1] in big and "USING" not in text
        else:
            hit = "Seq Scan on" in text and text.split("Seq Scan on ")[1].split()[0] in big
        if hit:
            found.append(text)
    return found


def _next_due_at(store: Store) -> datetime | None:
    """The earliest next_poll_at of an active prediction: the due index's own query."""
    with store.engine.connect() as conn:
        return conn.execute(
            select(predictions.c.next_poll_at)
            .where(predictions.c.tracking == "active", predictions.c.next_poll_at.is_not(None))
            .order_by(predictions.c.next_poll_at)
            .limit(1)
        ).scalar()

"""docs/schema.md stays true: its SQL runs and gives the documented answers, and it
describes every column of the migrated schema.

Every fenced block of the page must be tagged ``sql`` (runs on both engines),
``sql sqlite`` or ``sql postgresql``; each is executed verbatim through the
driver (as an analyst's ``sqlite3`` or ``psql`` would) against a migrated
database holding a small known history written through the Store API.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from tests import docblocks
from tests.apply import apply_one
from tests.docblocks import ENGINES_FOR_TAG, Block
from tracker.archive.outputs import output_urls
from tracker.domain import CallbackSpec, DeliveryState, NextPoll, PredictionState, SendResult
from tracker.poll.observe import parse_prediction, plan_observation
from tracker.store.store import Store
from tracker.timeparse import utcnow

DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.md"


# -- the page ----------------------------------------------------------------


def documented_columns(markdown: str, table: str) -> dict[str, str]:
    """``{column: contract}`` from the column table (the Markdown table whose header
    starts with ``| column | type | contract |``) in the section ``### `table` ``."""
    columns: dict[str, str] = {}
    in_section = in_column_table = False
    for line in markdown.splitlines():
        if title := docblocks.HEADING.match(line):
            in_section, in_column_table = title[2] == f"`{table}`", False
            continue
        if not in_section or not line.startswith("|"):
            in_column_table = False
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[:3] == ["column", "type", "contract"]:
            in_column_table = True
        elif in_column_table and (name := re.fullmatch(r"`(\w+)`", cells[0])):
            columns[name[1]] = cells[2]
    return columns


DOC_TEXT = DOC.read_text(encoding="utf-8")
BLOCKS, _ = docblocks.parse(DOC_TEXT, DOC.name)
CASES = docblocks.cases(BLOCKS)  #: one case per block and engine, named after the block's heading


# -- the known history -------------------------------------------------------

T0 = datetime(2026, 11, 20, 20, 0, 0, tzinfo=UTC)  # 01:30 the next day in Asia/Kolkata
DOC_ID = "w44zs9cet5rmc0cqzp49gpkhf8"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def ts(seconds: float) -> str:
    """T0 + seconds as SQLite stores it (PostgreSQL values are normalised to this)."""
    return at(seconds).strftime("%Y-%m-%d %H:%M:%S.%f")


class Driver:
    """Writes through the Store the way the daemon does: claim, then one outcome."""

    owner = "docs-fixture"

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(
        self,
        pid: str,
        when: datetime,
        labels: dict[str, str] | None = None,
        callbacks: tuple[CallbackSpec, ...] = (),
    ) -> None:
        self.store.add_predictions(
            [pid], now=when, first_poll_at=when, labels=labels, callbacks_to_add=callbacks
        )

    def _poll(self, pid: str, when: datetime, outcome: Callable[[PredictionState], None]) -> None:
        claimed = self.store.claim_due(
            now=when, limit=1000, owner=self.owner, lease_until=when + timedelta(seconds=60)
        )
        try:
            outcome({state.id: state for state in claimed}[pid])
        finally:
            self.store.release_claims(self.owner, now=when)  # the others stay due

    def answer(self, pid: str, when: datetime, **body: Any) -> None:
        def apply(state: PredictionState) -> None:
            update = plan_observation(state, parse_prediction({"id": pid, **body}, pid), when)
            next_poll = NextPoll(when + timedelta(seconds=1), 1.0)
            apply_one(self.store, update, next_poll, owner=self.owner)

        self._poll(pid, when, apply)

    def poll_error(self, pid: str, when: datetime, detail: str) -> None:
        def record(_state: PredictionState) -> None:
            self.store.record_poll_error(
                pid,
                now=when,
                detail=detail,
                next_poll=NextPoll(when + timedelta(seconds=1), None),
                owner=self.owner,
            )

        self._poll(pid, when, record)

    def not_found(self, pid: str, when: datetime) -> None:
        def record(_state: PredictionState) -> None:
            self.store.record_not_found(
                pid,
                now=when,
                detail='HTTP 404: {"detail": "Not found."}',
                next_poll=NextPoll(when + timedelta(seconds=1), None),
                lost_after=2,
                lost_window=timedelta(seconds=60),
                owner=self.owner,
            )

        self._poll(pid, when, record)

    def deliver(
        self,
        pid: str,
        when: datetime,
        result: SendResult,
        state: DeliveryState,
        next_attempt_at: datetime | None = None,
    ) -> None:
        """One attempt at the prediction's due delivery, as the outbox makes it."""
        jobs = self.store.claim_deliveries(
            now=when, limit=1000, owner=self.owner, lease_until=when + timedelta(seconds=60)
        )
        try:
            (job,) = [job for job in jobs if job.prediction_id == pid]
            kept = self.store.record_attempt(
                job,
                result,
                attempted_at=when,
                state=state,
                next_attempt_at=next_attempt_at,
                owner=self.owner,
            )
            assert kept
        finally:
            self.store.release_deliveries(self.owner, now=when)


@dataclass(frozen=True)
class History:
    new_starting_registered_at: datetime  #: the one prediction registered relative to now


def write_history(store: Store) -> History:
    """Thirteen predictions: every tracking state, every common status."""
    up = Driver(store)
    flux = {"model": "acme/flux", "version": "f1"}
    sdxl = {"model": "acme/sdxl", "version": "s1"}

    # The documented example: starting -> processing -> succeeded, two log pieces.
    up.add(
        DOC_ID,
        at(0),
        labels={"project": "posters"},
        callbacks=(CallbackSpec("webhook", "https://example.com/hook", ("completed",)),),
    )
    first = {**flux, "input": {"prompt": "a poster"}, "created_at": iso(at(-0.5))}
    up.answer(DOC_ID, at(1), status="starting", logs="", output=None, error=None, **first)
    up.answer(
        DOC_ID,
        at(5),
        status="processing",
        logs="loading model\n",
        started_at=iso(at(3.25)),
        **first,
    )
    up.answer(
        DOC_ID,
        at(15),
        status="succeeded",
        logs="loading model\nstep 1/1\n",
        output=["https://replicate.delivery/xyz/out.png"],
        metrics={"predict_time": 10.2},
        started_at=iso(at(3.25)),
        completed_at=iso(at(13.75)),
        data_removed=False,
        urls={"get": f"https://api.example.com/v1/predictions/{DOC_ID}"},
        **first,
    )
    up.deliver(DOC_ID, at(16), SendResult(ok=True, status_code=200), DeliveryState.DELIVERED)

    # First seen processing, then succeeded.
    hook = CallbackSpec("webhook", "https://hooks.example.com/p2", ("completed",))
    up.add("p2-sdxl-ok", at(10), labels={"project": "posters"}, callbacks=(hook,))
    times = {"created_at": iso(at(9)), "started_at": iso(at(11))}
    up.answer("p2-sdxl-ok", at(12), status="processing", **sdxl, **times)
    up.answer(
        "p2-sdxl-ok",
        at(40),
        status="succeeded",
        output=["https://replicate.delivery/a.png", "https://replicate.delivery/b.png"],
        metrics={"predict_time": 27.1},
        completed_at=iso(at(38.5)),
        data_removed=False,
        **sdxl,
        **times,
    )
    unavailable = SendResult(ok=False, status_code=503, error="HTTP 503")
    up.deliver("p2-sdxl-ok", at(41), unavailable, DeliveryState.PENDING, at(46))

    # Three failures, two with the same message; one first seen already failed.
    mail = CallbackSpec("email", "ops@example.com", ("completed",))
    up.add("p3-sdxl-oom", at(20), labels={"project": "banners"}, callbacks=(mail,))
    up.answer("p3-sdxl-oom", at(21), status="starting", created_at=iso(at(20)), **sdxl)
    up.answer(
        "p3-sdxl-oom",
        at(30),
        status="failed",
        error="CUDA out of memory",
        logs="loading model\nOOM\n",
        metrics={"predict_time": 1.5},
        created_at=iso(at(20)),
        started_at=iso(at(25)),
        completed_at=iso(at(27)),
        **sdxl,
    )
    refused = SendResult(
        ok=False, status_code=550, error="recipient refused: 550 no such user", permanent=True
    )
    up.deliver("p3-sdxl-oom", at(31), refused, DeliveryState.DEAD)
    up.add("p4-sdxl-oom", at(60))
    up.answer(
        "p4-sdxl-oom",
        at(61),
        status="failed",
        error="CUDA out of memory",
        created_at=iso(at(50)),
        started_at=iso(at(55)),
        completed_at=iso(at(58)),
        **sdxl,
    )
    up.add("p5-sdxl-nsfw", at(70))
    times = {"created_at": iso(at(69)), "started_at": iso(at(70))}
    up.answer("p5-sdxl-nsfw", at(71), status="processing", **sdxl, **times)
    up.answer(
        "p5-sdxl-nsfw",
        at(75),
        status="failed",
        error="NSFW content detected",
        completed_at=iso(at(74)),
        **sdxl,
        **times,
    )

    # Starting for a long time, and starting for one minute only.
    up.add("p6-flux-queued", at(100))
    up.answer("p6-flux-queued", at(101), status="starting", created_at=iso(at(100)), **flux)
    now = utcnow()
    up.add("p7-flux-new", now - timedelta(seconds=60))
    up.answer(
        "p7-flux-new",
        now - timedelta(seconds=59),
        status="starting",
        created_at=iso(now - timedelta(seconds=60)),
        **flux,
    )

    # Registered two hours after it finished: upstream had removed the output.
    up.add("p8-flux-removed", at(200))
    up.answer(
        "p8-flux-removed",
        at(201),
        status="succeeded",
        output=None,
        data_removed=True,
        metrics={"predict_time": 6.8},
        created_at=iso(at(-7200)),
        started_at=iso(at(-7198)),
        completed_at=iso(at(-7191)),
        **flux,
    )

    # Canceled while starting: no started_at.
    up.add("p9-flux-canceled", at(300))
    up.answer("p9-flux-canceled", at(301), status="starting", created_at=iso(at(299)), **flux)
    up.answer(
        "p9-flux-canceled",
        at(310),
        status="canceled",
        error=None,
        created_at=iso(at(299)),
        completed_at=iso(at(308)),
        **flux,
    )

    # Two 404s more than a minute apart: lost.
    up.add("p10-lost", at(400))
    up.not_found("p10-lost", at(401))
    up.not_found("p10-lost", at(470))

    # A 502, then answers; the upstream log restarts.
    up.add("p11-flaky", at(500))
    up.poll_error("p11-flaky", at(501), "HTTP 502: Bad Gateway")
    times = {"created_at": iso(at(499)), "started_at": iso(at(500))}
    up.answer("p11-flaky", at(503), status="processing", logs="step 1\n", **flux, **times)
    up.answer("p11-flaky", at(510), status="processing", logs="retry\nstep 1\n", **flux, **times)

    # Never polled, and forgotten before any poll.
    up.add("p12-unpolled", at(600))
    up.add("p13-forgotten", at(700))
    assert store.forget(["p13-forgotten"]) == ["p13-forgotten"]

    archive(store)
    return History(new_starting_registered_at=now - timedelta(seconds=60))


GONE = "HTTP 404 from replicate.delivery; the upstream removed the output"


def archive(store: Store) -> None:
    """The documented example's image stored; of p2's two, one stored and one gone."""
    store.add_artifacts(
        [
            (DOC_ID, output_urls(["https://replicate.delivery/xyz/out.png"]), at(15)),
            (
                "p2-sdxl-ok",
                output_urls(
                    ["https://replicate.delivery/a.png", "https://replicate.delivery/b.png"]
                ),
                at(40),
            ),
        ]
    )
    owner = Driver.owner
    jobs = store.claim_artifacts(now=at(41), limit=10, owner=owner, lease_until=at(101))
    for job in jobs:
        if (job.prediction_id, job.position) == ("p2-sdxl-ok", 1):
            store.artifact_not_stored(job, owner=owner, error=GONE, next_attempt_at=None)
            continue
        store.artifact_stored(
            job,
            owner=owner,
            now=at(42),
            stored_url=f"file:///srv/archive/{job.prediction_id}/{job.position}.png",
            size=2048 if job.prediction_id == DOC_ID else 4096,
            sha256="0" * 64,
            content_type="image/png",
        )


# -- what the documented queries must answer ----------------------------------


@dataclass(frozen=True)
class Expected:
    columns: tuple[str, ...]  #: the result columns compared (others are not)
    rows: Callable[[History], list[tuple[Any, ...]]]
    ordered: bool = True


def _registered_per_day(history: History) -> list[tuple[Any, ...]]:
    days = Counter({"2026-11-20": 12})
    days[history.new_starting_registered_at.date().isoformat()] += 1
    return sorted(days.items())


EXPECTED: dict[str, Expected] = {
    "Predictions per status": Expected(
        ("status", "tracking", "predictions"),
        lambda _: [
            ("(no answer yet)", "active", 1),
            ("(no answer yet)", "forgotten", 1),
            ("(no answer yet)", "lost", 1),
            ("canceled", "done", 1),
            ("failed", "done", 3),
            ("processing", "active", 1),
            ("starting", "active", 2),
            ("succeeded", "done", 3),
        ],
        ordered=False,  # ties are ordered by status, in the server's collation
    ),
    "Queue time and run time per prediction": Expected(
        ("id", "status", "queue_seconds", "run_seconds", "predict_time"),
        lambda _: [
            ("p8-flux-removed", "succeeded", 2.0, 7.0, 6.8),
            (DOC_ID, "succeeded", 3.75, 10.5, 10.2),
            ("p3-sdxl-oom", "failed", 5.0, 2.0, 1.5),
            ("p2-sdxl-ok", "succeeded", 2.0, 27.5, 27.1),
            ("p4-sdxl-oom", "failed", 5.0, 3.0, None),
            ("p5-sdxl-nsfw", "failed", 1.0, 4.0, None),
            ("p9-flux-canceled", "canceled", None, None, None),
        ],
    ),
    "Average predict_time per model": Expected(
        ("model", "succeeded", "with_predict_time", "avg_predict_seconds", "max_predict_seconds"),
        lambda _: [("acme/sdxl", 1, 1, 27.1, 27.1), ("acme/flux", 2, 2, 8.5, 10.2)],
    ),
    "Full timeline of one prediction": Expected(
        ("happened_at", "event", "detail", "upstream_at"),
        lambda _: [
            (ts(0), "registered", None, None),
            (ts(1), "status", "(none) -> starting", ts(-0.5)),
            (ts(5), "status", "starting -> processing", ts(3.25)),
            (ts(5), "logs #1", "loading model\n", None),
            (ts(15), "status", "processing -> succeeded", ts(13.75)),
            (ts(15), "logs #2", "step 1/1\n", None),
        ],
    ),
    "The latest answer of one prediction, as the upstream sent it": Expected(
        ("id", "status", "logs", "first_output"),
        lambda _: [
            (
                DOC_ID,
                "succeeded",
                "loading model\nstep 1/1\n",
                "https://replicate.delivery/xyz/out.png",
            )
        ],
    ),
    "Predictions still starting after 10 minutes": Expected(
        ("id",), lambda _: [("p6-flux-queued",)]
    ),
    "Failure messages, grouped": Expected(
        ("message", "failures", "first_completed", "last_completed"),
        lambda _: [
            ("CUDA out of memory", 2, ts(27), ts(58)),
            ("NSFW content detected", 1, ts(74), ts(74)),
        ],
    ),
    "Outputs stored, and outputs removed upstream before the tracker saw them": Expected(
        ("succeeded", "output_stored", "removed_upstream", "removed_percent"),
        lambda _: [(3, 2, 1, 33.3)],
    ),
    "Predictions with poll errors, and their last error": Expected(
        ("id", "tracking", "status", "error_count", "poll_count", "last_polled_at", "last_error"),
        lambda _: [
            ("p10-lost", "lost", None, 2, 0, ts(470), 'HTTP 404: {"detail": "Not found."}'),
            ("p11-flaky", "active", "processing", 1, 2, ts(510), None),  # recovered: cleared
        ],
    ),
    "How late the tracker noticed completion": Expected(
        ("prediction_id", "to_status", "lag_seconds"),
        lambda _: [
            ("p3-sdxl-oom", "failed", 3.0),
            ("p9-flux-canceled", "canceled", 2.0),
            ("p2-sdxl-ok", "succeeded", 1.5),
            (DOC_ID, "succeeded", 1.25),
            ("p5-sdxl-nsfw", "failed", 1.0),
        ],
    ),
    "Predictions per label": Expected(
        ("project", "status", "predictions"),
        lambda _: [("banners", "failed", 1), ("posters", "succeeded", 2)],
    ),
    "Predictions registered per day (UTC)": Expected(("day", "registered"), _registered_per_day),
    "Output files not archived, and why": Expected(
        ("prediction_id", "position", "state", "attempts", "last_error"),
        lambda _: [("p2-sdxl-ok", 1, "failed", 1, GONE)],
    ),
    "Archived bytes per model": Expected(
        ("model", "files", "stored_bytes"),
        lambda _: [("acme/flux", 1, 2048), ("acme/sdxl", 1, 4096)],
    ),
    "Callback deliveries that have not gone through": Expected(
        (
            "prediction_id",
            "event",
            "kind",
            "target",
            "state",
            "attempts",
            "last_status_code",
            "last_error",
            "next_attempt_at",
        ),
        lambda _: [
            (
                "p3-sdxl-oom",
                "completed",
                "email",
                "ops@example.com",
                "dead",
                1,
                550,
                "recipient refused: 550 no such user",
                None,
            ),
            (
                "p2-sdxl-ok",
                "completed",
                "webhook",
                "https://hooks.example.com/p2",
                "pending",
                1,
                503,
                "HTTP 503",
                ts(46),
            ),
        ],
    ),
}


# -- running SQL as an analyst would -----------------------------------------


def normal(_column: str, value: Any) -> Any:
    """One representation for both engines: UTC timestamps as SQLite's text, plain numbers."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bool):
        return int(value)
    return value


# -- tests ---------------------------------------------------------------------


def test_every_code_block_is_tagged_sql_for_its_engines() -> None:
    untagged = docblocks.untagged(BLOCKS)
    assert not untagged, (
        "every fenced block in docs/schema.md must be tagged `sql` (both engines),"
        f" `sql sqlite` or `sql postgresql`, so that it is tested: {untagged}"
    )
    for i, block in enumerate(BLOCKS):
        docblocks.check_twins(BLOCKS, i)
        statement = docblocks.statement(block)
        assert statement and ";" not in statement, f"line {block.line}: one statement per block"


def test_expected_results_belong_to_queries_on_both_engines() -> None:
    for heading in EXPECTED:
        engines = {e for b in BLOCKS if b.heading == heading for e in ENGINES_FOR_TAG[b.tag]}
        assert engines == {"sqlite", "postgresql"}, f"no query for both engines under {heading!r}"
    assert len(EXPECTED) >= 4


@pytest.mark.parametrize(("block", "db_url"), CASES, indirect=["db_url"])
def test_documented_query(block: Block, store: Store) -> None:
    history = write_history(store)
    columns, rows = docblocks.run_verbatim(store, block.body, normal)
    assert rows, f"line {block.line}: the query shows nothing for the known history"
    expected = EXPECTED.get(block.heading)
    if expected is None:
        return
    missing = [c for c in expected.columns if c not in columns]
    assert not missing, f"line {block.line}: result has no column(s) {missing}: {columns}"
    picked = [tuple(row[columns.index(c)] for c in expected.columns) for row in rows]
    want = expected.rows(history)
    if not expected.ordered:
        picked, want = sorted(picked, key=repr), sorted(want, key=repr)
    assert picked == want


def test_the_doc_describes_every_column(store: Store) -> None:
    schema = inspect(store.engine)
    tables = set(schema.get_table_names()) - {"alembic_version"}
    assert "predictions" in tables
    for table in sorted(tables):
        actual = {column["name"] for column in schema.get_columns(table)}
        documented = documented_columns(DOC_TEXT, table)
        assert set(documented) == actual, f"{table}: columns in the doc differ from the schema"
        odd = {name: c for name, c in documented.items() if c not in ("stable", "internal")}
        assert not odd, f"{table}: contract must be 'stable' or 'internal': {odd}"


def test_log_pieces_add_up_to_the_stored_logs(store: Store) -> None:
    """The documented rule: pieces in seq order, from the last restarted one, are the logs."""
    write_history(store)
    with store.engine.connect() as conn:
        logs = {
            pid: stored for pid, stored in conn.execute(text("select id, logs from predictions"))
        }
        pieces = conn.execute(
            text("select prediction_id, seq, text, restarted from prediction_logs order by seq")
        ).all()
    by_prediction: dict[str, list[tuple[str, bool]]] = {}
    for pid, _seq, piece, restarted in pieces:
        by_prediction.setdefault(pid, []).append((piece, bool(restarted)))
    assert any(r for rows in by_prediction.values() for _, r in rows), "no restart to check"
    for pid, stored in logs.items():
        rows = by_prediction.get(pid, [])
        start = max((i for i, (_, restarted) in enumerate(rows) if restarted), default=0)
        assert "".join(piece for piece, _ in rows[start:]) == stored, pid
        if not any(restarted for _, restarted in rows):
            assert "".join(piece for piece, _ in rows) == stored, pid

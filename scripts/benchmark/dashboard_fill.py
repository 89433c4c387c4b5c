"""The dashboard benchmark's database: many predictions written in bulk, shaped like a
busy tracker's history.

- ``detailed`` predictions as ``fill.fill_finished`` writes them (IDs ``done-…``):
  succeeded, with their transitions, 20 log pieces and a webhook delivered once; one
  in DEAD_EVERY of those deliveries is made dead (5 attempts, a 500).
- the rest (``fill_bulk``): 26-character random IDs registered at distinct times
  over the last ``days`` days (newest ``active_share`` of them still active:
  starting, processing or not polled yet), MODELS by weight, terminal statuses by
  STATUSES, labels (``team`` and ``env`` on most, ``campaign=spring-sale`` on one in
  RARE_LABEL_EVERY), run times log-normal around each model's median; each row
  carries the stored answer, logs and input of ``fill.finished_template`` (no
  children).
- ``add_artifacts``: a stored PNG for each prediction that succeeded in the last day.
- ``fill_batch``: ``count`` predictions registered at one same time, as one ``tracker
  add`` call writes them (active, not polled yet).

Rows go through a temporary staging table (``INSERT ... SELECT`` with the large
columns as constants), as ``fill`` does.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    case,
    func,
    insert,
    literal,
    select,
    update,
)

from tracker.store.answers import stored_answer
from tracker.store.store import Store
from tracker.store.tables import artifacts, deliveries, predictions
from tracker.store.types import JSONValue, UTCDateTime
from tracker.timeparse import utcnow

from .fill import _const, fill_finished, finished_template
from .profile import FULL

#: (model, weight, median run seconds)
MODELS = (
    ("black-forest-labs/flux-schnell", 30.0, 2.0),
    ("black-forest-labs/flux-dev", 15.0, 12.0),
    ("stability-ai/sdxl", 12.0, 8.0),
    ("bytedance/sdxl-lightning-4step", 10.0, 3.0),
    ("meta/meta-llama-3-8b-instruct", 8.0, 4.0),
    ("openai/whisper", 6.0, 30.0),
    ("lucataco/remove-bg", 5.0, 1.5),
    ("nightmareai/real-esrgan", 4.0, 6.0),
    ("minimax/video-01", 3.0, 180.0),
    ("tencent/hunyuan-video", 2.0, 300.0),
    ("cjwbw/rembg", 1.5, 2.0),
    ("bench/rare-model", 0.05, 5.0),
)
#: terminal statuses by weight (active and lost rows are drawn apart)
STATUSES = (("succeeded", 88.0), ("failed", 8.0), ("canceled", 3.0), ("aborted", 1.0))
TEAMS = ("search", "ads", "studio", "mobile", "research")
RARE_LABEL_EVERY = 5000
DEAD_EVERY = 40
#: share of older rows that are lost / forgotten
LOST_SHARE, FORGOTTEN_SHARE = 0.002, 0.001
_ALPHABET = string.ascii_lowercase + string.digits
_BATCH = 5000
#: staged rows moved into predictions per transaction by ``fill_bulk``
_INSERT_CHUNK = 250_000

_META = MetaData()
STAGE = Table(
    "bench_dashboard_fill",
    _META,
    Column("k", Integer, primary_key=True),
    Column("id", String(128)),
    Column("status", String(64)),
    Column("tracking", String(16)),
    Column("model", Text),
    Column("labels", JSONValue),
    Column("registered", UTCDateTime),
    Column("created", UTCDateTime),
    Column("started", UTCDateTime),
    Column("completed", UTCDateTime),
    Column("predict_time", Float),
    Column("next_poll", UTCDateTime),
    Column("last_error", Text),
    prefixes=["TEMPORARY"],
)


def random_id(rng: random.Random) -> str:
    return "".join(rng.choices(_ALPHABET, k=26))


def bulk_rows(
    count: int, *, days: float, active_share: float, seed: int, now: datetime
) -> Iterator[dict[str, Any]]:
    """``count`` staging rows, oldest first, at distinct registration times."""
    rng = random.Random(seed)
    span = days * 86_400 / max(1, count)
    start = now - timedelta(days=days)
    names = [m[0] for m in MODELS]
    weights = [m[1] for m in MODELS]
    medians = {m[0]: m[2] for m in MODELS}
    statuses = [s for s, _ in STATUSES]
    status_weights = [w for _, w in STATUSES]
    first_active = count - int(count * active_share)
    for k in range(count):
        registered = start + timedelta(seconds=(k + rng.random() * 0.5) * span)
        model = rng.choices(names, weights)[0]
        labels: dict[str, str] = {}
        if rng.random() < 0.7:
            labels = {"team": rng.choice(TEAMS), "env": "prod" if rng.random() < 0.8 else "staging"}
        if rng.randrange(RARE_LABEL_EVERY) == 0:
            labels["campaign"] = "spring-sale"
        created = registered - timedelta(seconds=rng.uniform(0.05, 0.5))
        started = created + timedelta(seconds=rng.expovariate(1 / 1.5))
        run = rng.lognormvariate(math.log(medians[model]), 0.5)
        completed = min(started + timedelta(seconds=run), now - timedelta(seconds=1))
        row = {
            "k": k,
            "id": random_id(rng),
            "model": model,
            "labels": labels,
            "registered": registered,
            "created": created,
            "started": started,
            "completed": completed,
            "predict_time": round(run, 3),
            "next_poll": None,
            "last_error": None,
        }
        draw = rng.random()
        if k >= first_active:  # the newest: still polled
            status = rng.choices([None, "starting", "processing"], [15, 35, 50])[0]
            row.update(status=status, tracking="active", completed=None, predict_time=None)
            row["next_poll"] = now + timedelta(seconds=rng.uniform(0, 30))
            if status != "processing":
                row["started"] = None
            if status is None:
                row["created"] = None
        elif draw < LOST_SHARE:
            row.update(status="processing", tracking="lost", completed=None, predict_time=None)
            row["last_error"] = "404 Not Found from upstream 5 times in 60 s"
        else:
            status = rng.choices(statuses, status_weights)[0]
            tracking = "forgotten" if draw < LOST_SHARE + FORGOTTEN_SHARE else "done"
            row.update(status=status, tracking=tracking)
            if status == "aborted":
                row.update(started=None, predict_time=None)
        yield row


def _stage(conn: Any, rows: Iterator[dict[str, Any]]) -> None:
    """The rows into the staging table: COPY on PostgreSQL, batched INSERTs on SQLite."""
    _META.create_all(conn)
    if conn.dialect.name == "postgresql":
        names = [c.name for c in STAGE.columns]
        sql = f"COPY {STAGE.name} ({', '.join(names)}) FROM STDIN"
        with conn.connection.dbapi_connection.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row([Jsonb(row[n]) if n == "labels" else row[n] for n in names])
        return
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= _BATCH:
            conn.execute(insert(STAGE), chunk)
            chunk = []
    if chunk:
        conn.execute(insert(STAGE), chunk)


def _insert_staged(
    conn: Any, body: dict[str, Any] | None, ks: tuple[int, int] | None = None
) -> None:
    """The staged rows (those whose ``k`` is in ``ks``, start inclusive, when given)
    into predictions; ``body``: the stored answer of each (None: a row just
    registered, nothing stored yet). The staging table stays (``_META.drop_all``)."""
    p, f = predictions.c, STAGE.c
    columns: dict[str, Any] = {
        "id": f.id,
        "status": f.status,
        "tracking": f.tracking,
        "model": f.model,
        "labels": f.labels,
        "registered_at": f.registered,
        "created_at": f.created,
        "started_at": f.started,
        "completed_at": f.completed,
        "predict_time": f.predict_time,
        "next_poll_at": f.next_poll,
        "last_error": f.last_error,
    }
    if body is not None:
        succeeded = f.status == "succeeded"
        columns.update(
            version=_const(body["version"], p.version),
            input=_const(body["input"], p.input),
            output=case((succeeded, _const(body["output"], p.output)), else_=None),
            logs=_const(body["logs"], p.logs),
            metrics=case((succeeded, _const(body["metrics"], p.metrics)), else_=None),
            urls=_const(body["urls"], p.urls),
            raw=_const(stored_answer(body, True), p.raw),
            raw_logs_moved=_const(True, p.raw_logs_moved),
            data_removed=_const(False, p.data_removed),
            last_polled_at=f.completed,
            poll_count=_const(8, p.poll_count),
            log_seq=_const(20, p.log_seq),
        )
    stmt = select(*columns.values()).order_by(f.k)
    if ks is not None:
        stmt = stmt.where(f.k >= ks[0], f.k < ks[1])
    conn.execute(insert(predictions).from_select(list(columns), stmt))


def fill_bulk(url: str, count: int, *, days: float, active_share: float, seed: int) -> None:
    body = finished_template(FULL.scale_chunks)["body"]
    rows = bulk_rows(count, days=days, active_share=active_share, seed=seed, now=utcnow())
    store = Store.from_url(url, pool_size=1)
    try:
        with store.engine.begin() as conn:
            _stage(conn, rows)
        # A transaction per chunk: SQLite's WAL is checkpointed between them, so it
        # does not grow to the size of the whole fill (about 40 GB at 5M rows, which a
        # checkpoint then needs as much again to copy).
        for start in range(0, count, _INSERT_CHUNK):
            with store.engine.begin() as conn:
                _insert_staged(conn, body, (start, start + _INSERT_CHUNK))
        with store.engine.begin() as conn:
            _META.drop_all(conn)
    finally:
        store.close()


def fill_batch(url: str, count: int, *, seed: int) -> datetime:
    """``count`` rows registered at one same time (now), as one `tracker add` writes
    them; that time."""
    rng = random.Random(seed)
    now = utcnow()
    rows = (
        {
            "k": k,
            "id": f"batch-{random_id(rng)}",
            "status": None,
            "tracking": "active",
            "model": None,
            "labels": {},
            "registered": now,
            "created": None,
            "started": None,
            "completed": None,
            "predict_time": None,
            "next_poll": now + timedelta(hours=1),
            "last_error": None,
        }
        for k in range(count)
    )
    store = Store.from_url(url, pool_size=1)
    try:
        with store.engine.begin() as conn:
            _stage(conn, rows)
            _insert_staged(conn, None)
            _META.drop_all(conn)
    finally:
        store.close()
    return now


def fill_detailed(url: str, count: int, seed: int) -> dict[str, Any]:
    """``count`` succeeded predictions with their children (``fill.fill_finished``), one
    delivery in DEAD_EVERY made dead."""
    written = fill_finished(url, count, FULL, seed)
    d = deliveries.c
    store = Store.from_url(url, pool_size=1)
    try:
        with store.engine.begin() as conn:
            ids = list(conn.execute(select(d.id).order_by(d.id)).scalars())[::DEAD_EVERY]
            for start in range(0, len(ids), 1000):
                conn.execute(
                    update(deliveries)
                    .where(d.id.in_(ids[start : start + 1000]))
                    .values(
                        state="dead",
                        attempts=5,
                        last_status_code=500,
                        last_error="500 Internal Server Error",
                        delivered_at=None,
                    )
                )
    finally:
        store.close()
    return {**written, "dead_deliveries": len(ids)}


def add_artifacts(url: str, *, since: datetime) -> int:
    """A stored PNG for each prediction that succeeded since ``since``; how many."""
    p = predictions.c
    source = literal("https://replicate.delivery/xezq/") + p.id + literal("/out-0.png")
    columns = {
        "prediction_id": p.id,
        "position": _const(0, artifacts.c.position),
        "source_url": source,
        "stored_url": literal("file:///var/lib/tracker/archive/") + p.id + literal("/0.png"),
        "state": _const("stored", artifacts.c.state),
        "bytes": _const(1_234_567, artifacts.c.bytes),
        "sha256": _const("0" * 64, artifacts.c.sha256),
        "content_type": _const("image/png", artifacts.c.content_type),
        "attempts": _const(1, artifacts.c.attempts),
        "created_at": p.completed_at,
        "stored_at": p.completed_at,
    }
    where = (p.status == "succeeded", p.completed_at >= since, p.tracking != "active")
    store = Store.from_url(url, pool_size=1)
    try:
        with store.engine.begin() as conn:
            stmt = select(*columns.values()).where(*where).order_by(p.completed_at)
            conn.execute(insert(artifacts).from_select(list(columns), stmt))
            return int(conn.execute(select(func.count()).select_from(artifacts)).scalar_one())
    finally:
        store.close()

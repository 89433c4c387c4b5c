"""A database for the dashboard's tests (and the browser tests): predictions in every
state, written the way the daemon writes them, whose upstream text is hostile
(markup, attribute breakers, ``javascript:`` URLs, control characters), with
callbacks, a dead delivery and archived files in a real archive directory.

``seed(store, archive)`` returns the IDs; the test below checks the seed itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, update

from tests.apply import apply_one
from tests.showcase import OWNER, iso
from tracker.archive.storage import artifact_key
from tracker.domain import CallbackSpec, NextPoll
from tracker.poll.observe import parse_prediction, plan_observation
from tracker.store.store import Store
from tracker.store.tables import deliveries, delivery_attempts

SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE = '"><img src=x onerror=alert(1)>'
JAVASCRIPT_URL = "javascript:alert(document.cookie)"
CONTROL = "\x1b[31mred\x1b[0m\x07\u202eevil"
#: every hostile string, as stored (none may reach a page unescaped)
HOSTILE = (SCRIPT, ATTRIBUTE, JAVASCRIPT_URL, CONTROL)
MODEL = f"acme/{SCRIPT}"
HOOK = "https://user:hook-password@hooks.example/in?token=hook-secret"
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99"
    b"=\x1d\x00\x00\x00\x00IEND\xaeB`\x82"
)
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


@dataclass(frozen=True)
class Seeded:
    running: str  #: processing, polled, with a progress bar in its logs
    succeeded: str  #: with three output files: a PNG and an SVG stored, one failed
    failed: str  #: with a dead webhook delivery
    unseen: str  #: registered, never polled
    dead_delivery: int


def seed(store: Store, archive: Path, now: datetime | None = None) -> Seeded:
    now = now or datetime.now(UTC).replace(microsecond=0)
    t0 = now - timedelta(minutes=30)
    hook = CallbackSpec("webhook", HOOK, ("completed",))
    ids = Seeded("run-1", "ok-1", "bad-1", "new-1", 0)
    store.add_predictions(
        [ids.running, ids.succeeded, ids.failed],
        now=t0,
        first_poll_at=t0,
        labels={"team": SCRIPT},
        callbacks_to_add=[hook],
    )
    store.add_predictions([ids.unseen], now=t0 + timedelta(seconds=1), first_poll_at=now)
    _running(store, ids.running, t0)
    _succeeded(store, ids.succeeded, t0, archive)
    dead = _failed(store, ids.failed, t0)
    return Seeded(ids.running, ids.succeeded, ids.failed, ids.unseen, dead)


def answer(store: Store, pid: str, when: datetime, **body: object) -> None:
    """One upstream answer for ``pid`` observed at ``when``, as the daemon writes it
    (output files queued for the archive)."""
    claimed = store.claim_due(
        now=when + timedelta(days=3650), limit=10, owner=OWNER, lease_until=when
    )
    try:
        (state,) = [s for s in claimed if s.id == pid]
        update = plan_observation(state, parse_prediction({"id": pid, **body}, pid), when)
        next_poll = NextPoll(when + timedelta(seconds=1), 1.0)
        apply_one(store, update, next_poll, owner=OWNER, archive=True)
    finally:
        store.release_claims(OWNER, now=when)


def _common(t0: datetime) -> dict[str, object]:
    return {
        "model": MODEL,
        "version": ATTRIBUTE,
        "created_at": iso(t0),
        "input": {"prompt": SCRIPT, "image": JAVASCRIPT_URL},
        "urls": {"web": JAVASCRIPT_URL, "get": "https://api.example/p"},
    }


def _running(store: Store, pid: str, t0: datetime) -> None:
    logs = (
        f"loading {SCRIPT}\n{ATTRIBUTE}\n{CONTROL}\n"
        " 10%|█         | 2/20 [00:01<00:09,  1.90it/s]\r"
        " 45%|████▌     | 9/20 [00:04<00:05,  2.10it/s]"
    )
    started = iso(t0 + timedelta(seconds=3))
    answer(store, pid, t0 + timedelta(seconds=1), status="starting", **_common(t0))
    answer(
        store,
        pid,
        t0 + timedelta(seconds=8),
        status="processing",
        started_at=started,
        logs=logs,
        **_common(t0),
    )


def _succeeded(store: Store, pid: str, t0: datetime, archive: Path) -> None:
    output = [
        "https://files.example/out/0.png?sig=file-secret",
        "https://files.example/out/1.svg",
        "https://files.example/out/2.png?x=" + ATTRIBUTE.replace(" ", "/"),
    ]
    answer(
        store,
        pid,
        t0 + timedelta(seconds=20),
        status="succeeded",
        started_at=iso(t0 + timedelta(seconds=2)),
        completed_at=iso(t0 + timedelta(seconds=19)),
        output=output,
        metrics={"predict_time": 17.0, SCRIPT: ATTRIBUTE},
        **_common(t0),
    )
    jobs = store.claim_artifacts(
        now=t0 + timedelta(seconds=21),
        limit=10,
        owner="seed",
        lease_until=t0 + timedelta(minutes=5),
    )
    for job in sorted(jobs, key=lambda j: j.position):
        if job.position == 2:
            store.artifact_not_stored(
                job, owner="seed", error=f"HTTP 404 {SCRIPT}", next_attempt_at=None
            )
            continue
        body, kind = (PNG, "image/png") if job.position == 0 else (SVG, "image/svg+xml")
        key = artifact_key(pid, job.position, job.source_url)
        path = archive.joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        store.artifact_stored(
            job,
            owner="seed",
            now=t0 + timedelta(seconds=22),
            stored_url=path.as_uri(),
            size=len(body),
            sha256="0" * 64,
            content_type=kind,
        )


def _failed(store: Store, pid: str, t0: datetime) -> int:
    answer(
        store,
        pid,
        t0 + timedelta(seconds=40),
        status="failed",
        started_at=iso(t0 + timedelta(seconds=5)),
        completed_at=iso(t0 + timedelta(seconds=39)),
        error=f"{SCRIPT} {ATTRIBUTE} {CONTROL}",
        **_common(t0),
    )
    with store.engine.begin() as conn:
        delivery_id = conn.execute(
            update(deliveries)
            .where(deliveries.c.prediction_id == pid)
            .values(
                state="dead",
                attempts=8,
                last_status_code=500,
                last_error=SCRIPT,
                next_attempt_at=None,
            )
            .returning(deliveries.c.id)
        ).scalar_one()
        conn.execute(
            insert(delivery_attempts).values(
                delivery_id=delivery_id,
                attempted_at=t0 + timedelta(seconds=41),
                status_code=500,
                error=f"HTTP 500: {ATTRIBUTE}",
                duration_ms=12,
            )
        )
    return int(delivery_id)


def test_the_seed_has_every_state(store: Store, tmp_path: Path) -> None:
    ids = seed(store, tmp_path)
    statuses = {p.id: (p.status, p.tracking) for p in store.list_predictions()}
    assert statuses == {
        ids.running: ("processing", "active"),
        ids.succeeded: ("succeeded", "done"),
        ids.failed: ("failed", "done"),
        ids.unseen: (None, "active"),
    }
    files = store.list_artifacts([ids.succeeded])
    assert [(a.position, a.state) for a in files] == [(0, "stored"), (1, "stored"), (2, "failed")]
    assert [d.state for d in store.list_deliveries(prediction_id=ids.failed)] == ["dead"]

"""Predictions written the way the daemon writes them, for tests of what `show` prints."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.apply import apply_one
from tracker.domain import CallbackSpec, NextPoll
from tracker.poll.observe import parse_prediction, plan_observation
from tracker.store.store import Store

OWNER = "showcase"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def answer(store: Store, pid: str, when: datetime, **body: Any) -> None:
    """One upstream answer for ``pid``, observed at ``when``."""
    claimed = store.claim_due(
        now=when + timedelta(days=3650), limit=10, owner=OWNER, lease_until=when
    )
    try:
        (state,) = [s for s in claimed if s.id == pid]
        update = plan_observation(state, parse_prediction({"id": pid, **body}, pid), when)
        apply_one(store, update, NextPoll(when + timedelta(seconds=1), 1.0), owner=OWNER)
    finally:
        store.release_claims(OWNER, now=when)


def log_lines(count: int, start: int = 1) -> str:
    return "".join(
        f"step {n:>6}/31244 loss=0.{n % 997:03d} lr=3e-4 it/s=12.5\n"
        for n in range(start, start + count)
    )


def long_run(
    store: Store, pid: str, created: datetime, *, lines: int = 31_244, queued: float = 4.2,
    ran: float = 68.0, final: str | None = "succeeded", hook: bool = False,
) -> None:  # fmt: skip
    """A prediction queued ``queued`` s, running ``ran`` s (observed 0.5 s after each
    upstream time), writing ``lines`` lines of logs in four chunks, then ``final``
    (None: still processing)."""
    callbacks = [CallbackSpec("webhook", "https://user:pw@hooks.example/x?token=t", ("completed",))]
    store.add_predictions(
        [pid], now=created, first_poll_at=created, callbacks_to_add=callbacks if hook else ()
    )
    started = created + timedelta(seconds=queued)
    completed = started + timedelta(seconds=ran)
    common = {"model": "acme/big-model", "version": "v1", "created_at": iso(created)}
    answer(store, pid, created + timedelta(seconds=0.5), status="starting", **common)
    quarter = lines // 4
    text = ""
    for part in range(1, 4):
        text += log_lines(quarter, 1 + (part - 1) * quarter)
        seen = started + timedelta(seconds=ran * part / 4)
        answer(store, pid, seen, status="processing", started_at=iso(started), logs=text, **common)
    if final is None:
        return
    text += log_lines(lines - 3 * quarter, 1 + 3 * quarter)
    answer(
        store,
        pid,
        completed + timedelta(seconds=0.5),
        status=final,
        started_at=iso(started),
        completed_at=iso(completed),
        logs=text,
        output=["https://replicate.delivery/out/0.png"] if final == "succeeded" else None,
        error="CUDA out of memory" if final == "failed" else None,
        metrics={"predict_time": ran},
        **common,
    )

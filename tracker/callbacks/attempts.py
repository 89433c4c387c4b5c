"""The outbox's bookkeeping: each delivery attempt recorded (its next state from the
retry policy), counted, logged and told to the observer.

Each attempt is logged at DEBUG; a receiver's failures as a group (its first at once,
then a count per interval, then its recovery) at WARNING and ERROR
(``tracker.net.failurelog``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from urllib.parse import urlsplit

from tracker.callbacks.retry import RetryPolicy
from tracker.domain import DeliveryJob, DeliveryState, SendResult
from tracker.exceptions import StoreError
from tracker.net.failurelog import FailureLog
from tracker.observer import PollObserver
from tracker.store.interfaces import DeliveryQueue
from tracker.store.runner import Runner
from tracker.timeparse import utcnow

#: the outbox's logger: what it records is logged under its name
log = logging.getLogger("tracker.callbacks.outbox")


class Attempts:
    """Records the attempts of one outbox (``owner``) and counts them."""

    def __init__(
        self,
        store: DeliveryQueue,
        *,
        owner: str,
        db: Runner,
        policy: RetryPolicy,
        failure_log: FailureLog,
        observer: PollObserver,
    ) -> None:
        self.store = store
        self.owner = owner
        self._db = db
        self.policy = policy
        #: failures of each receiver, logged as a group (tracker.net.failurelog)
        self.failure_log = failure_log
        #: told of each delivery accepted, with its latency from the event
        self.observer = observer
        self.sent = 0  #: deliveries delivered
        self.failed = 0  #: deliveries given up (dead)
        self.failed_attempts = 0  #: attempts that failed, given up or not

    async def record(self, job: DeliveryJob, result: SendResult) -> None:
        """Write the attempt and the delivery's next state, then count and log it."""
        now = utcnow()
        state, next_at = self.policy.after(result, attempts_before=job.attempts, now=now)
        try:
            kept = await self._db.write(
                self.store.record_attempt,
                job,
                result,
                attempted_at=now,
                state=state,
                next_attempt_at=next_at,
                owner=self.owner,
            )
        except StoreError as exc:
            log.error("could not record delivery %d (it will be sent again): %s", job.id, exc)
            return
        self._log(job, result, state, next_at, kept)

    def _log(
        self,
        job: DeliveryJob,
        result: SendResult,
        state: DeliveryState,
        next_at: datetime | None,
        kept: bool,
    ) -> None:
        where = display_target(job)
        fields = {
            "prediction_id": job.prediction_id,
            "event": job.event,
            "kind": job.kind,
            "endpoint": where,
            "delivery_id": job.id,
            "attempt": job.attempts + 1,
            "status_code": result.status_code,
            "duration_ms": result.duration_ms,
        }
        about = f"{job.event} of {job.prediction_id} to {where}"
        if not kept:
            log.warning("delivery %d (%s): claim lost while sending", job.id, about, extra=fields)
            return
        if state is DeliveryState.DELIVERED:
            self.sent += 1
            self.observer.callback_sent(job.kind, (utcnow() - job.created_at).total_seconds())
            log.debug(
                "delivered %s (%s, %s ms)",
                about,
                result.status_code,
                result.duration_ms,
                extra=fields,
            )
            self.failure_log.succeeded(job.kind, job.target)
            return
        self.failed_attempts += 1
        error = result.error or "failed"
        if state is DeliveryState.DEAD:
            self.failed += 1
            what = f"gave up after {job.attempts + 1} attempts"
            retry_in = None
        else:
            retry_in = round((next_at - utcnow()).total_seconds(), 1) if next_at else 0.0
            what = f"retrying in {retry_in:.0f} s"
        extra = {**fields, "error": error, "retry_in_s": retry_in}
        log.debug("could not deliver %s: %s; %s", about, error, what, extra=extra)
        self.failure_log.failed(
            job.kind,
            job.target,
            error,
            display=where,
            about=f"{job.event} of {job.prediction_id}: {what}",
            given_up=state is DeliveryState.DEAD,
            prediction_id=job.prediction_id,
            event=job.event,
            delivery_id=job.id,
            status_code=result.status_code,
            duration_ms=result.duration_ms,
            retry_in_s=retry_in,
        )


def display_target(job: DeliveryJob) -> str:
    """Where a delivery goes, without URL paths or queries (they often hold tokens)."""
    if job.kind != "webhook":
        return job.target
    parts = urlsplit(job.target)
    host = parts.netloc.rpartition("@")[2]  # without user:password, IPv6 brackets kept
    rest = "/…" if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{host}{rest}"

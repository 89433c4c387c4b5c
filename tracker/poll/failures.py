"""Writing what a poll without a usable answer means for its prediction."""

from __future__ import annotations

import logging
from datetime import timedelta

from tracker.config import Settings
from tracker.domain import PredictionState
from tracker.net.failurelog import FailureLog
from tracker.poll.outcomes import FailureWrite, RecordError, RecordNotFound, Reschedule
from tracker.poll.stats import PollStats
from tracker.store.interfaces import PollQueue
from tracker.store.runner import Runner
from tracker.text.display import mask_url

log = logging.getLogger(__name__)


class FailureWriter:
    """Carries out ``tracker.poll.outcomes.plan_failure``'s decisions, and logs them:
    each failed poll at DEBUG, the upstream's failures as a group (``failure_log``)."""

    def __init__(
        self,
        queue: PollQueue,
        db: Runner,
        settings: Settings,
        *,
        owner: str,
        stats: PollStats,
        failure_log: FailureLog,
    ) -> None:
        self.queue = queue
        self.db = db
        self.settings = settings
        self.owner = owner
        self.stats = stats
        self.failure_log = failure_log
        #: the upstream as log lines name it (masked)
        self.endpoint = mask_url(settings.api_base)

    async def write(self, state: PredictionState, write: FailureWrite) -> None:
        if isinstance(write, Reschedule):
            self.stats.last_error = write.detail
            await self.db.write(
                self.queue.reschedule,
                state.id,
                next_poll=write.next_poll,
                owner=self.owner,
                detail=write.detail,
                attempted_at=write.attempted_at,
            )
        elif isinstance(write, RecordNotFound):
            await self._not_found(state, write)
        else:
            await self._poll_error(state, write)

    async def _not_found(self, state: PredictionState, write: RecordNotFound) -> None:
        self.stats.errors += 1
        self.stats.last_error = write.detail
        log.debug("%s: %s", state.id, write.detail, extra={"prediction_id": state.id})
        lost = await self.db.write(
            self.queue.record_not_found,
            state.id,
            now=write.now,
            detail=write.detail,
            next_poll=write.next_poll,
            lost_after=self.settings.lost_after,
            lost_window=timedelta(seconds=self.settings.lost_window),
            owner=self.owner,
        )
        if lost:
            log.warning(
                "%s: upstream answered 404 %d times over %g s or more; marked lost",
                state.id,
                state.not_found_count + 1,
                self.settings.lost_window,
                extra={"prediction_id": state.id, "to_tracking": "lost"},
            )

    async def _poll_error(self, state: PredictionState, write: RecordError) -> None:
        self.stats.errors += 1
        self.stats.last_error = write.detail
        wait = (write.next_poll.at - write.now).total_seconds() if write.next_poll.at else 0
        log.debug(
            "%s: poll failed (%s); retrying in %.1f s",
            state.id,
            write.detail,
            wait,
            extra={"prediction_id": state.id, "error": write.detail, "retry_in_s": round(wait, 1)},
        )
        # The upstream failing (no connection, 5xx) ends when it answers again; answers
        # that are unusable are one prediction's trouble: grouped, with no recovery line.
        self.failure_log.failed(
            "upstream",
            self.settings.api_base if write.endpoint else f"{self.settings.api_base} answers",
            write.detail,
            display=self.endpoint if write.endpoint else f"{self.endpoint} (bad answers)",
            about=f"polling {state.id}",
            recovers=write.endpoint,
            prediction_id=state.id,
        )
        await self.db.write(
            self.queue.record_poll_error,
            state.id,
            now=write.now,
            detail=write.detail,
            next_poll=write.next_poll,
            owner=self.owner,
            raw=write.raw,
        )

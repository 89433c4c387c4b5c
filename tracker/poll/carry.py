"""What a poll's answer asks, carried out: ``tracker.poll.outcomes`` plans it (a new
state to write, an answer older than a push stored meanwhile, a failure), and this
writes it (through the observation writer, or the failure writer), tells the gate,
counts it and learns the model's run times."""

from __future__ import annotations

import logging
from collections.abc import Callable

from tracker.domain import PredictionState, Tracking
from tracker.exceptions import UnstorableObservation, UpstreamBadAnswer, UpstreamError
from tracker.net.failurelog import FailureLog
from tracker.poll.failures import FailureWriter
from tracker.poll.gate import UpstreamGate
from tracker.poll.outcomes import AnswerWrite, StaleAnswer, plan_answer, plan_failure
from tracker.poll.runtimes import RunTimes
from tracker.poll.schedule import PollPolicy
from tracker.poll.stats import PollStats
from tracker.poll.upstream import Answer
from tracker.poll.writer import ObservationWriter
from tracker.store.interfaces import PollQueue
from tracker.store.runner import DatabaseRunner
from tracker.timeparse import utcnow

#: the poller's logger: what its polls end with is logged under its name
log = logging.getLogger("tracker.poll.poller")


class CarryOut:
    """Carries out the outcomes of one poller's polls (``owner``)."""

    def __init__(
        self,
        queue: PollQueue,
        db: DatabaseRunner,
        writer: ObservationWriter,
        failures: FailureWriter,
        *,
        owner: str,
        api_base: str,
        policy: PollPolicy,
        gate: UpstreamGate,
        stats: PollStats,
        run_times: RunTimes,
        adaptive: bool,
        failure_log: FailureLog,
        on_deliveries: Callable[[], None],
    ) -> None:
        self.queue = queue
        self.db = db
        self.writer = writer
        self.failures = failures
        self.owner = owner
        self._api_base = api_base
        self.policy = policy
        self.gate = gate
        self.stats = stats
        #: the run times learnt from answers; the schedule follows them when ``adaptive``
        self.run_times = run_times
        self._adaptive = adaptive
        self.failure_log = failure_log
        self._on_deliveries = on_deliveries

    async def __call__(self, state: PredictionState, outcome: Answer | UpstreamError) -> None:
        now = utcnow()
        code = outcome.status_code
        if code is not None and code < 500:  # the upstream answers: it is not failing
            self.failure_log.succeeded("upstream", self._api_base)
        if isinstance(outcome, Answer):
            run_times = self.run_times if self._adaptive else None
            planned = plan_answer(state, outcome.body, now, self.policy, run_times)
            if isinstance(planned, AnswerWrite):
                await self._write_answer(state, planned)
            elif isinstance(planned, StaleAnswer):  # older than a push stored meanwhile
                log.debug("%s: answer dropped: %s", state.id, planned.reason)
                self.gate.answered()
                await self.db.write(
                    self.queue.reschedule,
                    state.id,
                    next_poll=planned.next_poll,
                    owner=self.owner,
                    attempted_at=now,
                )
            else:
                await self.failures.write(state, planned)
            return
        if self.gate.failed(outcome):
            self.stats.rate_limited += 1
        await self.failures.write(state, plan_failure(state, outcome, now, self.policy))

    async def _write_answer(self, state: PredictionState, planned: AnswerWrite) -> None:
        update = planned.update
        self.gate.answered()
        try:
            queued = await self.writer.apply(update, planned.next_poll)
        except UnstorableObservation as exc:
            failure = plan_failure(state, UpstreamBadAnswer(str(exc)), utcnow(), self.policy)
            await self.failures.write(state, failure)
            return
        model = update.fields.get("model")
        if planned.run_time is not None and model:
            self.run_times.add(model, planned.run_time, processing=planned.processing_time)
        if queued:
            self._on_deliveries()
        self.stats.answers += 1
        if update.changed:
            self.stats.changes += 1
        if update.transition is not None and log.isEnabledFor(logging.DEBUG):
            t = update.transition
            log.debug(
                "%s: %s -> %s",
                state.id,
                t.from_status or "(new)",
                t.to_status,
                extra={
                    "prediction_id": state.id,
                    "from_status": t.from_status,
                    "to_status": t.to_status,
                },
            )
        if update.terminal and state.tracking == Tracking.ACTIVE:
            self.stats.finished += 1

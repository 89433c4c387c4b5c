"""The daemon's periodic jobs stop without logging a crash."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from tracker.poll.jobs import Jobs


async def test_a_job_due_as_the_daemon_stops_is_not_logged_as_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """APScheduler shuts down on a later turn of the loop and cancels a job it
    handed to the loop in between; its executor would log that CancelledError
    with a traceback (seen when a fatal database error stopped the daemon)."""
    finished: list[str] = []

    async def job() -> None:
        await asyncio.sleep(0.01)
        finished.append("job")

    stopping = asyncio.Event()
    jobs = Jobs(stopping)
    jobs.every(3600, job, first=datetime.now(UTC) + timedelta(hours=1))
    running = asyncio.create_task(jobs.run_until_stopped())
    await asyncio.sleep(0.05)
    scheduler = jobs._scheduler
    (scheduled,) = scheduler.get_jobs()
    with caplog.at_level(logging.INFO):
        stopping.set()
        await asyncio.sleep(0)  # the stop has begun
        # the job's time comes now (the timer firing on this very turn)
        scheduled.next_run_time = datetime.now(UTC) - timedelta(seconds=1)
        scheduler._jobstores["default"].update_job(scheduled)
        scheduler._process_jobs()
        await asyncio.wait_for(running, 5)
        await asyncio.sleep(0.05)  # whatever the scheduler left on the loop
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert finished in ([], ["job"])  # a job that started was finished, not cut

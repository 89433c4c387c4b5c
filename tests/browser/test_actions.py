"""Using the dashboard in Chromium, on SQLite and PostgreSQL: clicking from the overview
to a prediction, retrying a dead delivery, cancelling a prediction upstream (the
simulator, with the daemon of `tracker serve` polling it), and the live refresh of a
prediction and of the overview while a prediction changes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.browser.conftest import OpenPage
from tests.browserkit import HOSTILE_LOGS, LOADED_WIDTH, Hostile, log_in
from tests.integration.test_dashboard_seed import answer
from tests.serving import Running, rows, running_service, settings_for
from tests.showcase import iso
from tracker.simulator import SimConfig, SimulatorThread
from tracker.store.store import Store

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

KEY = "sk-browser-cancel-DO-NOT-LEAK"


async def test_click_from_the_overview_to_a_prediction(
    service: Running, hostile: Hostile, open_page: OpenPage
) -> None:
    page, watch = await open_page(service.url)
    await log_in(page)
    await expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    await expect(page.locator(".cards")).to_contain_text("Deliveries dead1")
    # the overview -> the list -> a prediction with its archived image
    await (
        page.get_by_role("navigation", name="Sections")
        .get_by_role("link", name="Predictions")
        .click()
    )
    await expect(page).to_have_url(re.compile(r"/predictions$"))
    await expect(page.locator("table.list tbody tr")).to_have_count(4)
    await page.get_by_role("link", name=hostile.succeeded, exact=True).click()
    await expect(page).to_have_url(re.compile(f"/predictions/{hostile.succeeded}$"))
    await expect(page.locator("main h1")).to_have_text(hostile.succeeded)
    await expect(page.locator(".status-line")).to_contain_text("succeeded")
    image = page.get_by_role("img", name=re.compile(r"^Output file 0 \(image.png, "))
    await expect(image).to_be_visible()
    assert await image.evaluate(LOADED_WIDTH) == 64
    # back to the overview, then its dead delivery -> the failed prediction's deliveries
    await page.get_by_role("link", name="Overview").click()
    await page.locator("#dead-heading + .scroll").get_by_role("link", name=hostile.failed).click()
    await expect(page).to_have_url(re.compile(f"/predictions/{hostile.failed}#deliveries$"))
    await expect(page.locator(f"#delivery-{hostile.dead_delivery}")).to_contain_text("dead")
    # a status in the overview's table -> the list filtered by it
    await page.get_by_role("link", name="Overview").click()
    await page.locator("table.counts").get_by_role("link", name="failed").first.click()
    await expect(page).to_have_url(re.compile(r"/predictions\?status=failed$"))
    await expect(page.locator("table.list tbody tr")).to_have_count(1)
    watch.assert_clean()


async def test_retry_a_dead_delivery(
    service: Running, hostile: Hostile, open_page: OpenPage, db_url: str
) -> None:
    page, watch = await open_page(service.url)
    await log_in(page, f"/predictions/{hostile.failed}")
    delivery = page.locator(f"article.delivery:has(#delivery-{hostile.dead_delivery})")
    await expect(delivery.locator(".badge")).to_have_text("dead")
    await delivery.locator("summary", has_text="3 attempts").click()  # the attempts open
    await expect(delivery.locator("details table tbody tr")).to_have_count(3)
    await delivery.get_by_role("button", name=f"Retry delivery {hostile.dead_delivery}").click()
    flash = page.get_by_role("status").filter(has_text="queued again")
    await expect(flash).to_have_text(
        f"Delivery {hostile.dead_delivery} is queued again, with the whole retry schedule."
    )
    await expect(page).to_have_url(re.compile(f"/predictions/{hostile.failed}$"))
    await expect(delivery.locator(".badge")).to_have_text("pending")
    await expect(delivery.get_by_role("button")).to_have_count(0)
    state = rows(db_url, f"select state from deliveries where id = {hostile.dead_delivery}")
    assert state == [("pending",)]
    await page.reload()
    await expect(flash).to_have_count(0)  # shown once
    watch.assert_clean()


async def test_a_live_page_follows_a_prediction_to_its_end_without_reloading(
    db_url: str, archive: Path, hostile: Hostile, quick_live: None, open_page: OpenPage
) -> None:
    settings = settings_for(db_url, TRACKER_ARCHIVE_URL=str(archive))
    async with running_service(settings) as service:
        page, watch = await open_page(service.url)
        loads: list[str] = []
        page.on("load", lambda p: loads.append(p.url))
        await log_in(page, f"/predictions/{hostile.running}")
        await expect(page.locator(".progress-line")).to_contain_text("45 % · 9/20")
        await page.evaluate("window.__sameDocument = true")
        before = len(loads)

        now = datetime.now(UTC)
        bar = " 90%|█████████ | 18/20 [00:08<00:01,  2.10it/s]"
        await _answer(db_url, hostile.running, now, "processing", HOSTILE_LOGS + bar)
        await expect(page.locator(".progress-line")).to_contain_text("90 % · 18/20")
        await expect(page.locator("progress")).to_have_attribute("value", "18")
        await _answer(db_url, hostile.running, now + timedelta(seconds=1), "succeeded", "done")
        await expect(page.locator(".status-line .badge").first).to_have_text("succeeded")
        await expect(page.locator("[data-live-note]")).to_have_text("Finished: no more updates.")
        await expect(page.get_by_role("button", name="Cancel upstream")).to_have_count(0)
        assert await page.evaluate("window.__sameDocument") is True
        assert len(loads) == before

        # the overview's numbers follow too
        await page.get_by_role("link", name="Overview").click()
        succeeded = page.locator("table.counts tbody tr", has_text="succeeded").locator("td").last
        await expect(succeeded).to_have_text("2")
        await page.evaluate("window.__sameDocument = true")
        await _answer(db_url, hostile.unseen, now + timedelta(seconds=2), "succeeded", "")
        await expect(succeeded).to_have_text("3")
        assert await page.evaluate("window.__sameDocument") is True
        watch.assert_clean()


async def _answer(db_url: str, pid: str, when: datetime, status: str, logs: str) -> None:
    """An upstream answer for ``pid``, written as the daemon writes it (in a thread: the
    service runs on this event loop)."""

    def write() -> None:
        store = Store.from_url(db_url)
        try:
            ended = status in ("succeeded", "failed", "canceled")
            answer(
                store,
                pid,
                when,
                status=status,
                model="acme/model",
                created_at=iso(when - timedelta(minutes=31)),
                started_at=iso(when - timedelta(minutes=30)),
                completed_at=iso(when) if ended else None,
                logs=logs,
            )
        finally:
            store.close()

    await asyncio.to_thread(write)


@pytest.fixture
def simulator() -> Iterator[SimulatorThread]:
    config = SimConfig(api_key=KEY, queue_seconds=0.1, log_interval_seconds=0.5)
    with SimulatorThread(config) as sim:
        yield sim


async def test_cancel_an_active_prediction_upstream(
    db_url: str, simulator: SimulatorThread, open_page: OpenPage
) -> None:
    store = Store.from_url(db_url)
    try:
        now = datetime.now(UTC)
        store.add_predictions(["long-b1"], now=now, first_poll_at=now)
    finally:
        store.close()
    settings = settings_for(db_url, TRACKER_API_BASE=simulator.base_url, TRACKER_API_KEY=KEY)
    async with running_service(settings, with_daemon=True) as service:
        page, watch = await open_page(service.url)
        await log_in(page, "/predictions/long-b1")
        status = page.locator(".status-line .badge").first
        await expect(status).to_have_text(re.compile("starting|processing"))
        await page.get_by_role("button", name="Cancel upstream").click()
        await expect(page.get_by_role("status")).to_have_text(
            "long-b1: cancel requested (the upstream says 'canceled')"
        )
        assert [r.status_code for r in simulator.cancels("long-b1")] == [200]
        # the Summary's fields: a canceled run may also have a Metrics list of fields
        summary = page.get_by_role("region", name="Summary").locator(".fields")
        await expect(summary).to_contain_text("requested (by user)")
        # the daemon polls it at once; the page follows without a reload, and stops
        # following once it has ended (on a busy machine the poll can come before the
        # page shown after the cancel, which then is rendered finished, not live)
        await expect(status).to_have_text("canceled")
        if await page.locator("[data-live-src]").count():
            await expect(page.locator("[data-live-note]")).to_have_text(
                "Finished: no more updates."
            )
        await expect(page.get_by_role("button", name="Cancel upstream")).to_have_count(0)
        watch.assert_clean()
    assert KEY not in "".join(watch.urls)

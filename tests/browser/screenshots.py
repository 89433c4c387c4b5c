"""The README's screenshots of the dashboard, taken by Debian's Chromium.

    .venv/bin/python -m tests.browser.screenshots [OUT_DIR]   # default: docs/

writes ``dashboard-overview.png`` and ``dashboard-prediction.png`` (light mode, 1280x800)
from a demo-like database: a day of predictions on five models (``seed_demo``), a few
running ones that `tracker serve`'s own daemon polls from the simulator, and one
prediction with four archived images. Everything runs on loopback in a temporary folder.
tests/browser/test_screenshots.py runs it too (into a temporary folder).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from playwright.async_api import Browser, async_playwright, expect

from tests.browserkit import EXPECT_MS, launch, log_in, missing_browser, new_page, seed_demo
from tests.serving import running_service, settings_for
from tracker.simulator import SimConfig, SimulatorThread
from tracker.store import migrate
from tracker.store.store import Store

NAMES = ("dashboard-overview.png", "dashboard-prediction.png")
VIEWPORT = {"width": 1280, "height": 800}
#: predictions the daemon polls while the screenshots are taken (the simulator's
#: ``long`` scenario: processing for an hour)
RUNNING = ("long-6mx2qv8d", "long-k3p9rt1c", "long-w5b7hn4e")
KEY = "sk-screenshots"


async def take(browser: Browser, out: Path, work: Path) -> list[Path]:
    """Seed a database in ``work``, serve it, and save the two screenshots into ``out``."""
    url = f"sqlite:///{work / 'demo.db'}"
    archive = work / "archive"
    archive.mkdir()
    store = Store.from_url(url)
    try:
        migrate.upgrade(store)
        demo = seed_demo(store, archive)
        now = datetime.now(UTC)
        store.add_predictions(list(RUNNING), now=now, first_poll_at=now, labels={"team": "studio"})
    finally:
        store.close()
    config = SimConfig(api_key=KEY, queue_seconds=0.3, log_interval_seconds=1.0)
    with SimulatorThread(config) as simulator:
        settings = settings_for(
            url,
            TRACKER_ARCHIVE_URL=str(archive),
            TRACKER_API_BASE=simulator.base_url,
            TRACKER_API_KEY=KEY,
        )
        async with running_service(settings, with_daemon=True) as service:
            context, page, watch = await new_page(
                browser, service.url, viewport=VIEWPORT, color_scheme="light"
            )
            try:
                await log_in(page)
                # the daemon's first heartbeat and polls: the live overview shows them
                await expect(page.locator(".verdict")).to_contain_text("healthy")
                await expect(page.locator(".cards")).to_contain_text("Daemons alive1")
                await expect(page.locator("table.counts")).to_contain_text("processing")
                overview = out / NAMES[0]
                await page.screenshot(path=overview, animations="disabled", caret="hide")

                await page.goto(f"/predictions/{demo.shown}")
                images = page.locator(".thumbs img")
                await expect(images).to_have_count(4)
                for n in range(4):
                    await expect(images.nth(n)).to_have_js_property("complete", True)
                # from its timeline on: the timeline, the logs with the progress bar, the
                # archived images (the summary above it is the text of the page's top)
                await page.locator("#timeline-heading").evaluate(
                    "h => window.scrollTo(0, h.getBoundingClientRect().top + window.scrollY - 12)"
                )
                await expect(page.locator("#timeline-heading")).to_be_in_viewport()
                prediction = out / NAMES[1]
                await page.screenshot(path=prediction, animations="disabled", caret="hide")
                watch.assert_clean()
            finally:
                await context.close()
    return [overview, prediction]


async def main(out: Path) -> list[Path]:
    reason = missing_browser()
    if reason is not None:
        raise SystemExit(reason)
    expect.set_options(timeout=EXPECT_MS)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # a busy machine's skipped ticks
    out.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            with tempfile.TemporaryDirectory(prefix="tracker-screenshots-") as work:
                return await take(browser, out, Path(work))
        finally:
            await browser.close()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[2] / "docs"
    for path in asyncio.run(main(target)):
        print(f"{path} ({path.stat().st_size // 1024} KiB)")

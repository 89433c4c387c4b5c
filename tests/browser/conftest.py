"""Fixtures of the real-browser tests: one Chromium per test process (pytest-xdist
worker), a new context per test, and `tracker serve` on a seeded database.

The browser and the tests share one event loop for the whole session (Playwright's async
API: its connection belongs to the loop that opened it), so every test here runs with
``pytest.mark.asyncio(loop_scope="session")`` and every async fixture has
``loop_scope="session"``; the services they start run on that loop too. Without
Chromium (or Playwright) the tests skip, and fail under ``CI=true``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.browserkit import (
    EXPECT_MS,
    Hostile,
    Watch,
    launch,
    missing_browser,
    new_page,
    seed_hostile,
    under_ci,
)
from tests.serving import Running, running_service, settings_for
from tracker.service.dashboard import pages, routes
from tracker.service.dashboard.overview import Cached
from tracker.store.store import Store

#: a new page: ``await open_page(base_url, **context_options)`` -> (page, watch)
OpenPage = Callable[..., Awaitable[tuple[Page, Watch]]]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, launched once per test process."""
    reason = missing_browser()
    if reason is not None:
        if under_ci():
            pytest.fail(f"the browser tests cannot run under CI=true: {reason}")
        pytest.skip(reason)
    expect.set_options(timeout=EXPECT_MS)
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        yield browser
        await browser.close()


@pytest.fixture(autouse=True)
def _browser_first(request: pytest.FixtureRequest, chromium: Browser) -> None:
    """Every test here is marked ``browser``, and skips (or fails) before anything is
    seeded or started when there is no browser."""
    if request.node.get_closest_marker("browser") is None:
        pytest.fail(f"{request.node.nodeid} is in tests/browser but not marked browser")


@pytest.fixture
def quick_live(monkeypatch: pytest.MonkeyPatch) -> None:
    """Live pages refresh every second and the overview's numbers are fresh for half a
    second (read when a page is drawn; a service started afterwards caches for that
    long), so that a test sees a change within seconds."""
    monkeypatch.setitem(pages.LIVE_SECONDS, "prediction", 1)
    monkeypatch.setitem(pages.LIVE_SECONDS, "overview", 1)
    monkeypatch.setattr(routes, "Cached", functools.partial(Cached, fresh=0.5))


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    folder = tmp_path / "archive"
    folder.mkdir()
    return folder


@pytest.fixture
def hostile(db_url: str, archive: Path) -> Hostile:
    """The hostile seed in the test's database (SQLite, then PostgreSQL)."""
    store = Store.from_url(db_url)
    try:
        return seed_hostile(store, archive)
    finally:
        store.close()


@pytest_asyncio.fixture(loop_scope="session")
async def service(db_url: str, archive: Path, hostile: Hostile) -> AsyncIterator[Running]:
    """`tracker serve` (with TRACKER_SERVE_TOKEN, no daemon) on the hostile seed."""
    settings = settings_for(db_url, TRACKER_ARCHIVE_URL=str(archive))
    async with running_service(settings) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def open_page(chromium: Browser) -> AsyncIterator[OpenPage]:
    """Pages on a service (its URL), each in a new context with its own ``Watch``;
    the contexts are closed after the test."""
    contexts: list[BrowserContext] = []

    async def opened(base_url: str, **options: Any) -> tuple[Page, Watch]:
        context, page, watch = await new_page(chromium, base_url, **options)
        contexts.append(context)
        return page, watch

    yield opened
    for context in contexts:
        await context.close()

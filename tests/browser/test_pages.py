"""The dashboard's pages in Chromium, on a seeded database (SQLite, then PostgreSQL)
whose upstream text is hostile: the login form and its cookie, every page loaded with
nothing hostile running, the Content-Security-Policy kept, the keyboard, a phone's
width and dark mode."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import OpenPage
from tests.browserkit import (
    ATTRIBUTE,
    CONTROL,
    DOM_PROBLEMS,
    HOSTILE_MODEL,
    LOADED_WIDTH,
    MARKUP,
    SCRIPT,
    Hostile,
    log_in,
)
from tests.serving import TOKEN, Running
from tracker.service.dashboard import actions
from tracker.service.dashboard.web import SECURITY_HEADERS

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

CSP = SECURITY_HEADERS["Content-Security-Policy"]


def every_page(ids: Hostile) -> list[str]:
    """Every page of the dashboard on the hostile seed (the login form aside)."""
    return [
        "/",
        "/predictions",
        "/predictions?status=failed",
        "/predictions?tracking=active",
        f"/predictions?model={quote(HOSTILE_MODEL)}",
        f"/predictions?label={quote('team=' + SCRIPT)}",
        f"/predictions?q={quote(ATTRIBUTE)}",  # refused: a 400 page
        *(f"/predictions/{pid}" for pid in ids.ids),
        "/predictions/nope-1",  # a 404 page
    ]


async def dom_problems(page: Page) -> list[str]:
    problems: list[str] = await page.evaluate(DOM_PROBLEMS)
    return problems


async def test_the_login_form_sets_an_httponly_samesite_cookie_and_no_url_has_the_token(
    service: Running, hostile: Hostile, open_page: OpenPage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(actions, "FAILED_LOGIN_DELAY", 0.01)
    page, watch = await open_page(service.url)
    await page.goto("/predictions?status=failed")
    await expect(page).to_have_url(re.compile(r"/login\?next=%2Fpredictions%3Fstatus%3Dfailed$"))
    token = page.get_by_label("Token")
    await expect(token).to_have_attribute("type", "password")
    await expect(token).to_be_focused()  # autofocus: type at once

    await token.fill(TOKEN + "x")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_contain_text("not the token")
    await expect(page.get_by_role("button", name="Log out")).to_have_count(0)

    await page.get_by_label("Token").fill(TOKEN)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/predictions\?status=failed$"))
    await expect(page.get_by_role("link", name=hostile.failed, exact=True)).to_be_visible()

    (session,) = [c for c in await page.context.cookies() if c["name"] == "tracker_session"]
    assert session["httpOnly"] is True and session["sameSite"] == "Strict"
    assert session["path"] == "/" and session["secure"] is False  # plain http on loopback
    assert TOKEN not in session["value"]
    assert await page.evaluate("document.cookie") == ""  # no script can read it
    assert TOKEN not in await page.content()

    await page.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(re.compile(r"/login$"))
    await page.goto("/")
    await expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    watch.assert_clean()  # among others: no URL ever carried the token
    assert any("/login" in url for url in watch.urls)


async def test_every_page_loads_and_no_hostile_string_runs_even_without_the_csp(
    service: Running, hostile: Hostile, open_page: OpenPage
) -> None:
    """With the CSP bypassed, only escaping stands between upstream text and the page."""
    page, watch = await open_page(service.url, bypass_csp=True)
    await log_in(page)
    for path in every_page(hostile):
        response = await page.goto(path)
        assert response is not None
        expected = 404 if path.endswith("nope-1") else 400 if "q=" in path else 200
        assert response.status == expected, path
        await expect(page.locator("main h1")).to_be_visible()
        assert await dom_problems(page) == [], path
        assert await page.evaluate("window.__pwned") is None, path
    # the hostile text is there, as text
    await page.goto(f"/predictions/{hostile.running}")
    main = page.locator("main")
    await expect(page.locator("dd.model")).to_have_text(HOSTILE_MODEL)
    await expect(main).to_contain_text(ATTRIBUTE)
    await expect(main).to_contain_text(MARKUP)
    await expect(main).to_contain_text("\\x1b[31mred\\x1b[0m\\x07\\x08\\u202eevil")
    assert CONTROL not in await main.inner_text()
    await page.goto(f"/predictions/{hostile.failed}")
    await expect(page.locator("pre.error")).to_contain_text(SCRIPT)
    await expect(page.locator("#deliveries")).to_contain_text(f"HTTP 500: {ATTRIBUTE}")
    await page.goto(f"/predictions/{hostile.succeeded}")
    await expect(page.locator("main")).to_contain_text("javascript:window.__pwned=1")
    thumbnail = page.locator(f'img[src="/files/{hostile.succeeded}/0"]')
    await expect(thumbnail).to_be_visible()
    assert await thumbnail.evaluate(LOADED_WIDTH) == 64
    # the whole logs, as text
    response = await page.goto(f"/predictions/{hostile.running}/logs")
    assert response is not None and response.headers["content-type"].startswith("text/plain")
    await expect(page.locator("body")).to_contain_text(SCRIPT)
    assert await page.evaluate("window.__pwned") is None
    watch.assert_clean()


async def test_every_page_has_the_csp_and_nothing_of_ours_breaks_it(
    service: Running, hostile: Hostile, open_page: OpenPage, quick_live: None
) -> None:
    page, watch = await open_page(service.url)
    login = await page.goto("/login")
    assert login is not None and login.headers["content-security-policy"] == CSP
    await log_in(page)
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
    for path in every_page(hostile):
        response = await page.goto(path)
        assert response is not None
        assert response.headers.get("content-security-policy") == CSP, path
        assert response.headers.get("x-content-type-options") == "nosniff", path
        await expect(page.locator("main h1")).to_be_visible()
    await page.goto(f"/predictions/{hostile.running}")  # our script runs: wait for a refresh
    async with page.expect_response(re.compile(r"/fragments/predictions/")) as refreshed:
        pass
    assert (await refreshed.value).ok
    watch.assert_clean()

    # the watch would see a violation: an inline script added now is refused, and reported
    refused = await page.evaluate(
        """() => new Promise((resolve) => {
          document.addEventListener("securitypolicyviolation",
            (e) => resolve([e.violatedDirective, window.__probe]), { once: true });
          const s = document.createElement("script");
          s.textContent = "window.__probe = 1";
          document.head.append(s);
        })"""
    )
    assert refused == ["script-src-elem", None]
    assert [v.split()[0] for v in watch.violations] == ["script-src-elem"]


async def test_the_keyboard_reaches_the_main_links(
    service: Running, hostile: Hostile, open_page: OpenPage
) -> None:
    page, watch = await open_page(service.url)
    await log_in(page)

    async def tab_to(name: str, presses: int = 40) -> None:
        """Press Tab until the focused element's text is ``name``."""
        for _ in range(presses):
            await page.keyboard.press("Tab")
            focused = await page.evaluate("document.activeElement.textContent.trim()")
            if focused == name:
                outline = await page.evaluate(
                    "getComputedStyle(document.activeElement).outlineStyle"
                )
                assert outline != "none", f"{name} has no visible focus"
                return
        raise AssertionError(f"{name!r} was not reached in {presses} presses of Tab")

    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to the content")
    await expect(skip).to_be_focused()
    await expect(skip).to_be_in_viewport()  # shown while it has the focus
    await page.keyboard.press("Enter")
    await expect(page.locator("main")).to_be_focused()
    await page.goto("/")
    await tab_to("Predictions")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/predictions$"))
    await tab_to(hostile.failed)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(f"/predictions/{hostile.failed}$"))
    await tab_to(f"Retry delivery {hostile.dead_delivery}")
    watch.assert_clean()


async def test_a_phone_width_needs_no_sideways_scrolling(
    service: Running, hostile: Hostile, open_page: OpenPage
) -> None:
    page, watch = await open_page(service.url, viewport={"width": 360, "height": 740})
    await page.goto("/login")
    await _fits(page, "/login")
    await log_in(page)
    for path in every_page(hostile):
        await page.goto(path)
        await expect(page.locator("main h1")).to_be_visible()
        await _fits(page, path)
    watch.assert_clean()


async def _fits(page: Page, path: str) -> None:
    width, inner = await page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{path}: the page is {width} px wide in a {inner} px window"


async def test_dark_mode_follows_the_system(
    service: Running, hostile: Hostile, open_page: OpenPage
) -> None:
    colours = {}
    for scheme in ("light", "dark"):
        page, watch = await open_page(service.url, color_scheme=scheme)
        await log_in(page, f"/predictions/{hostile.running}")
        await expect(page.locator("main h1")).to_have_text(hostile.running)
        colours[scheme] = await page.evaluate(
            """() => { const of = (el) => getComputedStyle(el);
            return [of(document.body).backgroundColor, of(document.body).color,
                    of(document.querySelector("a")).color]; }"""
        )
        watch.assert_clean()
    light_bg, light_fg, _ = (_luminance(c) for c in colours["light"])
    dark_bg, dark_fg, dark_link = (_luminance(c) for c in colours["dark"])
    assert light_bg > 0.9 and light_fg < 0.1
    assert dark_bg < 0.05 and dark_fg > 0.7 and dark_link > 0.3, colours["dark"]


def _luminance(css: str) -> float:
    """Relative luminance (WCAG) of ``rgb(r, g, b)``."""
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+", css)[:3])

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)

"""The dashboard of `tracker serve` over real HTTP, on SQLite and PostgreSQL: the login
and its session cookie, CSRF on every form, the security headers on every answer,
hostile upstream text shown as text, errors as HTML pages (the JSON API unchanged),
archived files served from the archive, retry and cancel, the live fragments."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_dashboard_seed import (
    ATTRIBUTE,
    CONTROL,
    JAVASCRIPT_URL,
    PNG,
    SCRIPT,
    Seeded,
    seed,
)
from tests.serving import TOKEN, Running, rows, running_service, settings_for
from tracker.service.dashboard import actions
from tracker.service.dashboard.web import SECURITY_HEADERS
from tracker.simulator import SimConfig, SimulatorThread
from tracker.store.store import Store
from tracker.store.tables import deliveries

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    folder = tmp_path / "archive"
    folder.mkdir()
    return folder


@pytest.fixture
def seeded(store: Store, archive: Path) -> Seeded:
    return seed(store, archive)


@pytest.fixture
async def service(db_url: str, archive: Path, seeded: Seeded) -> AsyncIterator[Running]:
    settings = settings_for(db_url, TRACKER_ARCHIVE_URL=str(archive))
    async with running_service(settings) as running:
        yield running


def browser(service: Running) -> httpx.AsyncClient:
    """A client without the bearer header, keeping cookies as a browser does."""
    return service.client(token=None, follow_redirects=False)


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, "no form with a CSRF token"
    return found.group(1)


@contextlib.asynccontextmanager
async def logged_in(service: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(service) as http:
        form = await http.get("/login")
        answer = await http.post("/login", data={"csrf": csrf_of(form.text), "token": TOKEN})
        assert answer.status_code == 303
        yield http


def assert_no_hostile(html: str) -> None:
    """Nothing hostile reaches the page as markup, a link or a control character."""
    assert SCRIPT not in html
    assert "<img src=x" not in html and "<img src=x onerror" not in html
    assert 'href="javascript:' not in html and 'src="javascript:' not in html
    assert "\x1b" not in html and "\x07" not in html and "\u202e" not in html
    assert "hook-password" not in html and "hook-secret" not in html
    assert TOKEN not in html


# -- the login ---------------------------------------------------------------------------


async def test_a_page_without_a_login_is_sent_to_the_login_form(service: Running) -> None:
    async with browser(service) as http:
        answer = await http.get("/predictions?status=failed")
        assert answer.status_code == 303
        assert answer.headers["Location"] == "/login?next=%2Fpredictions%3Fstatus%3Dfailed"
        form = await http.get(answer.headers["Location"])
    assert form.status_code == 200
    assert 'type="password"' in form.text and 'value="/predictions?status=failed"' in form.text


async def test_the_login_sets_a_signed_session_cookie_never_the_token(service: Running) -> None:
    async with browser(service) as http:
        form = await http.get("/login?next=/predictions")
        answer = await http.post(
            "/login", data={"csrf": csrf_of(form.text), "token": TOKEN, "next": "/predictions"}
        )
        assert answer.status_code == 303 and answer.headers["Location"] == "/predictions"
        cookie = answer.headers["Set-Cookie"]
        assert cookie.startswith("tracker_session=")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain http on loopback
        assert TOKEN not in cookie
        page = await http.get("/predictions")
    assert page.status_code == 200 and "run-1" in page.text
    assert "Log out" in page.text


async def test_a_wrong_token_is_refused_and_logs_nobody_in(
    service: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(actions, "FAILED_LOGIN_DELAY", 0.01)
    async with browser(service) as http:
        form = await http.get("/login")
        for wrong in ("", TOKEN + "x", TOKEN[:-1], TOKEN.upper()):
            answer = await http.post("/login", data={"csrf": csrf_of(form.text), "token": wrong})
            assert answer.status_code == 401
            assert "not the token" in answer.text and TOKEN not in answer.text
        assert (await http.get("/")).status_code == 303


async def test_the_token_is_never_taken_from_a_url_nor_logged(
    service: Running, caplog: pytest.LogCaptureFixture
) -> None:
    async with browser(service) as http:
        by_query = await http.get(f"/login?token={TOKEN}")
        assert (await http.get(f"/?token={TOKEN}")).status_code == 303
        form = await http.post(f"/login?token={TOKEN}", data={"csrf": csrf_of(by_query.text)})
        assert form.status_code == 401
        await http.post("/login", data={"csrf": csrf_of(by_query.text), "token": TOKEN})
        assert (await http.get("/")).status_code == 200
    assert TOKEN not in caplog.text


async def test_a_login_without_the_csrf_token_is_403(service: Running) -> None:
    async with browser(service) as http:
        await http.get("/login")
        missing = await http.post("/login", data={"token": TOKEN})
        forged = await http.post("/login", data={"token": TOKEN, "csrf": "0" * 64})
    assert missing.status_code == forged.status_code == 403
    assert "text/html" in missing.headers["Content-Type"]


async def test_next_never_leaves_the_site(service: Running) -> None:
    async with browser(service) as http:
        for target in (
            "//evil.example/x",
            "https://evil.example/",
            "/\\evil.example",
            "javascript:x",
        ):
            form = await http.get("/login")
            data = {"csrf": csrf_of(form.text), "token": TOKEN, "next": target}
            answer = await http.post("/login", data=data)
            assert answer.headers["Location"] == "/", target


async def test_the_cookie_is_secure_behind_an_https_proxy(service: Running) -> None:
    async with browser(service) as http:
        headers = {"X-Forwarded-Proto": "https"}
        form = await http.get("/login", headers=headers)
        assert "Secure" in form.headers["Set-Cookie"]


async def test_a_bearer_header_opens_the_pages_too(service: Running) -> None:
    async with service.client() as http:
        assert (await http.get("/")).status_code == 200
        assert (await http.get("/fragments/overview")).status_code == 200
    async with service.client(token="wrong") as http:
        assert (await http.get("/fragments/overview")).status_code == 401


async def test_logout_ends_the_session(service: Running) -> None:
    async with logged_in(service) as http:
        page = await http.get("/")
        answer = await http.post("/logout", data={"csrf": csrf_of(page.text)})
        assert answer.status_code == 303 and answer.headers["Location"] == "/login"
        assert (await http.get("/")).status_code == 303


async def test_pieces_of_pages_without_a_login_are_401_not_a_redirect(
    service: Running, seeded: Seeded
) -> None:
    async with browser(service) as http:
        for path in (
            "/fragments/overview",
            f"/fragments/predictions/{seeded.running}",
            f"/files/{seeded.succeeded}/0",
            f"/predictions/{seeded.running}/logs",
        ):
            answer = await http.get(path)
            assert answer.status_code == 401, path
            assert PNG not in answer.content


# -- headers, errors ---------------------------------------------------------------------


async def test_every_dashboard_answer_has_the_security_headers(
    service: Running, seeded: Seeded
) -> None:
    async with logged_in(service) as http:
        answers = [
            await http.get("/"),
            await http.get("/predictions"),
            await http.get(f"/predictions/{seeded.running}"),
            await http.get(f"/fragments/predictions/{seeded.running}"),
            await http.get(f"/files/{seeded.succeeded}/0"),
            await http.get("/static/dashboard.css"),
            await http.get("/predictions/nope-1"),
            await http.get("/predictions/x/y/z"),
            await http.post("/predictions/run-1/cancel", data={}),
        ]
    async with browser(service) as anonymous:
        answers += [await anonymous.get("/"), await anonymous.get("/login")]
    for answer in answers:
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get(name) == value, (answer.url, name)


async def test_errors_are_html_pages_and_the_api_stays_json(service: Running) -> None:
    async with logged_in(service) as http:
        unknown = await http.get("/predictions/nope-1")
        invalid = await http.get("/predictions/%3Cscript%3E")
        method = await http.put("/predictions")
        too_large = await http.post("/login", content=b"x" * (2**20 + 1))
    async with service.client() as api:
        api_unknown = await api.get("/api/predictions/nope-1")
        nowhere = await api.get("/nowhere")
    assert unknown.status_code == 404 and "text/html" in unknown.headers["Content-Type"]
    assert "nope-1" in unknown.text and "<h1>Not found</h1>" in unknown.text
    assert invalid.status_code == 404 and "<script>" not in invalid.text
    assert method.status_code == 405 and "GET" in method.headers["Allow"]
    assert too_large.status_code == 413 and "text/html" in too_large.headers["Content-Type"]
    assert api_unknown.status_code == 404 and "error" in api_unknown.json()
    assert nowhere.json() == {"error": "not found"}


# -- hostile text ------------------------------------------------------------------------


async def test_hostile_upstream_text_is_shown_as_text(service: Running, seeded: Seeded) -> None:
    async with logged_in(service) as http:
        pages = {
            path: (await http.get(path)).text
            for path in (
                "/",
                "/fragments/overview",
                "/predictions",
                f"/predictions?label=team={SCRIPT}",
                f"/predictions/{seeded.running}",
                f"/fragments/predictions/{seeded.running}",
                f"/predictions/{seeded.succeeded}",
                f"/predictions/{seeded.failed}",
                f"/predictions?model={ATTRIBUTE}",
            )
        }
    for html in pages.values():
        assert_no_hostile(html)
    running = pages[f"/predictions/{seeded.running}"]
    assert "acme/&lt;script&gt;alert(1)&lt;/script&gt;" in running
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in running
    assert "\\x1b[31mred\\x1b[0m\\x07\\u202eevil" in running
    assert JAVASCRIPT_URL not in running.split("<pre")[0]  # no link, not even as text above
    assert "https://user:***@hooks.example/in?token=***" in pages[f"/predictions/{seeded.failed}"]
    assert CONTROL not in pages["/predictions"]


async def test_the_progress_bar_is_the_last_line_of_the_logs(
    service: Running, seeded: Seeded
) -> None:
    async with logged_in(service) as http:
        page = (await http.get(f"/predictions/{seeded.running}")).text
        logs = await http.get(f"/predictions/{seeded.running}/logs")
    assert '<progress max="20" value="9">45 %</progress>' in page
    assert "45 % · 9/20 · 2.10 it/s" in page
    assert "2/20 [00:01" not in page  # the bar's earlier drawing, redrawn over
    assert logs.headers["Content-Type"].startswith("text/plain")
    assert "\\x1b[31m" in logs.text and "\x1b" not in logs.text and "\\x0d" in logs.text


# -- forms -------------------------------------------------------------------------------


async def test_retry_a_dead_delivery(service: Running, seeded: Seeded, db_url: str) -> None:
    path = f"/predictions/{seeded.failed}/deliveries/{seeded.dead_delivery}/retry"
    async with logged_in(service) as http:
        page = await http.get(f"/predictions/{seeded.failed}")
        assert f'action="{path}"' in page.text
        answer = await http.post(path, data={"csrf": csrf_of(page.text)})
        assert answer.status_code == 303
        assert answer.headers["Location"] == f"/predictions/{seeded.failed}"
        shown = await http.get(answer.headers["Location"])
        again = await http.get(answer.headers["Location"])
    assert f"Delivery {seeded.dead_delivery} is queued again" in shown.text
    assert "queued again" not in again.text  # a flash is shown once
    state = rows(
        db_url, f"select state, attempts from deliveries where id = {seeded.dead_delivery}"
    )
    assert state == [("pending", 0)]


async def test_a_form_without_the_sessions_csrf_token_is_403_and_does_nothing(
    service: Running, seeded: Seeded, db_url: str
) -> None:
    path = f"/predictions/{seeded.failed}/deliveries/{seeded.dead_delivery}/retry"
    async with logged_in(service) as other:
        foreign = csrf_of((await other.get("/")).text)
    async with logged_in(service) as http:
        for data in ({}, {"csrf": ""}, {"csrf": foreign}, {"csrf": foreign[:-1] + "0"}):
            answer = await http.post(path, data=data)
            assert answer.status_code == 403, data
        as_json = await http.post(path, json={"csrf": foreign})
        assert as_json.status_code == 403
        cancel = await http.post(f"/predictions/{seeded.running}/cancel", data={"csrf": foreign})
        assert cancel.status_code == 403
    state = rows(db_url, f"select state from deliveries where id = {seeded.dead_delivery}")
    assert state == [("dead",)]


async def test_cancel_without_an_api_key_says_why_nothing_was_sent(
    service: Running, seeded: Seeded
) -> None:
    async with logged_in(service) as http:
        page = await http.get(f"/predictions/{seeded.running}")
        path = f"/predictions/{seeded.running}/cancel"
        assert f'action="{path}"' in page.text
        answer = await http.post(path, data={"csrf": csrf_of(page.text)})
        assert answer.status_code == 303
        shown = await http.get(answer.headers["Location"])
    flash = '<p class="flash flash-error" role="status">Cancel failed: set TRACKER_API_KEY'
    assert flash in shown.text


async def test_cancel_asks_the_upstream_and_the_page_says_so(db_url: str) -> None:
    key = "sk-dashboard-cancel-DO-NOT-LEAK"
    config = SimConfig(api_key=key, queue_seconds=0.1, run_median_seconds=0.3)
    with SimulatorThread(config) as sim:
        settings = settings_for(db_url, TRACKER_API_BASE=sim.base_url, TRACKER_API_KEY=key)
        async with running_service(settings) as running:
            async with running.client() as api:
                await api.post("/api/predictions", json={"id": "forever-d1"})
            async with logged_in(running) as http:
                page = await http.get("/predictions/forever-d1")
                path = "/predictions/forever-d1/cancel"
                answer = await http.post(path, data={"csrf": csrf_of(page.text)})
                shown = await http.get(answer.headers["Location"])
                missing = await http.post(
                    "/predictions/nope-d2/cancel", data={"csrf": csrf_of(page.text)}
                )
        assert [r.status_code for r in sim.cancels("forever-d1")] == [200]
    words = "forever-d1: cancel requested (the upstream says &#39;canceled&#39;)"
    assert f'<p class="flash flash-ok" role="status">{words}</p>' in shown.text
    assert "<dt>cancel</dt><dd>requested (by user)" in shown.text
    assert missing.status_code == 404 and "nope-d2" in missing.text
    assert key not in shown.text


async def test_retry_of_another_predictions_delivery_does_nothing(
    service: Running, seeded: Seeded, db_url: str
) -> None:
    async with logged_in(service) as http:
        page = await http.get(f"/predictions/{seeded.running}")
        path = f"/predictions/{seeded.running}/deliveries/{seeded.dead_delivery}/retry"
        answer = await http.post(path, data={"csrf": csrf_of(page.text)})
        shown = await http.get(answer.headers["Location"])
    assert "not dead: nothing to retry" in shown.text
    state = rows(db_url, f"select state from deliveries where id = {seeded.dead_delivery}")
    assert state == [("dead",)]


# -- files, live -------------------------------------------------------------------------


async def test_archived_images_are_served_from_the_archive(
    service: Running, seeded: Seeded
) -> None:
    async with logged_in(service) as http:
        page = await http.get(f"/predictions/{seeded.succeeded}")
        png = await http.get(f"/files/{seeded.succeeded}/0")
        svg = await http.get(f"/files/{seeded.succeeded}/1")
        failed = await http.get(f"/files/{seeded.succeeded}/2")
        missing = await http.get(f"/files/{seeded.succeeded}/9")
    assert f'<img src="/files/{seeded.succeeded}/0"' in page.text
    assert f'<img src="/files/{seeded.succeeded}/1"' not in page.text  # SVG: a download
    assert "files.example" not in re.sub(
        r"<pre.*?</pre>|<td class=\"wrap source\">.*?</td>", "", page.text, flags=re.S
    )
    assert png.status_code == 200 and png.content == PNG
    assert png.headers["Content-Type"] == "image/png"
    assert png.headers["Content-Disposition"].startswith("inline")
    assert svg.headers["Content-Type"] == "application/octet-stream"
    assert svg.headers["Content-Disposition"] == 'attachment; filename="1-1.svg"'
    for answer in (png, svg):
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert failed.status_code == missing.status_code == 404
    assert "0.png?sig=***" in page.text  # the source column masks query values


async def test_files_are_404_without_an_archive(db_url: str, seeded: Seeded) -> None:
    async with running_service(settings_for(db_url)) as running, running.client() as http:
        answer = await http.get(f"/files/{seeded.succeeded}/0")
    assert answer.status_code == 404 and "TRACKER_ARCHIVE_URL" in answer.text


async def test_live_fragments_stop_once_a_prediction_is_done(
    service: Running, seeded: Seeded
) -> None:
    async with logged_in(service) as http:
        overview = await http.get("/fragments/overview")
        running = await http.get(f"/fragments/predictions/{seeded.running}")
        done = await http.get(f"/fragments/predictions/{seeded.succeeded}")
        running_page = await http.get(f"/predictions/{seeded.running}")
        done_page = await http.get(f"/predictions/{seeded.succeeded}")
    assert overview.headers["X-Live"] == "continue" and "<html" not in overview.text
    assert running.headers["X-Live"] == "continue" and "Cancel upstream" in running.text
    assert done.headers["X-Live"] == "stop"
    assert f'data-live-src="/fragments/predictions/{seeded.running}"' in running_page.text
    assert "data-live-src" not in done_page.text
    assert '<script src="/static/live.js?v=' in running_page.text
    assert "<script>" not in running_page.text and " on" not in _tags(running_page.text)


def _tags(html: str) -> str:
    """The tags of a page without their text, for looking for event handlers."""
    return " ".join(re.findall(r"<[a-zA-Z][^>]*>", html)).replace(" one", "")


async def test_static_files_are_cached_by_their_hash(service: Running) -> None:
    async with browser(service) as http:
        css = await http.get("/static/dashboard.css?v=x")
        again = await http.get(
            "/static/dashboard.css", headers={"If-None-Match": css.headers["ETag"]}
        )
        unknown = await http.get("/static/other.js")
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    assert "max-age" in css.headers["Cache-Control"]
    assert again.status_code == 304
    assert unknown.status_code == 404


# -- without a token ---------------------------------------------------------------------


async def test_without_a_token_the_pages_are_open_and_forms_still_need_csrf(
    db_url: str, seeded: Seeded
) -> None:
    settings = settings_for(db_url, TRACKER_SERVE_TOKEN="")
    path = f"/predictions/{seeded.failed}/deliveries/{seeded.dead_delivery}/retry"
    async with running_service(settings) as running, running.client(token=None) as http:
        page = await http.get(f"/predictions/{seeded.failed}")
        login = await http.get("/login")
        refused = await http.post(path, data={})
        done = await http.post(path, data={"csrf": csrf_of(page.text)})
    assert page.status_code == 200 and "Log out" not in page.text
    assert login.status_code == 303 and login.headers["Location"] == "/"
    assert refused.status_code == 403
    assert done.status_code == 303


async def test_a_delivery_error_is_shown_once_in_its_own_words(
    service: Running, seeded: Seeded, db_url: str
) -> None:
    """The webhook sender stores `HTTP 502` as the error: the pages show it as is,
    not with the status code a second time."""
    store = Store.from_url(db_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id == seeded.dead_delivery)
                .values(last_status_code=502, last_error="HTTP 502")
            )
    finally:
        store.close()
    async with logged_in(service) as http:
        page = (await http.get(f"/predictions/{seeded.failed}")).text
        overview = (await http.get("/")).text
    assert "last: HTTP 502<" in page and "502 HTTP 502" not in page
    assert ">HTTP 502<" in overview and "HTTP 502 HTTP 502" not in overview

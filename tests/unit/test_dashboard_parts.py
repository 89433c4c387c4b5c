"""The dashboard's pure parts: sessions and CSRF tokens, which URLs may be links, the
filters and templates' escaping, the charts' geometry, the logs as a page shows
them, the list's cursors and filters, the overview's cache, archived files' headers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from multidict import MultiDict

from tracker.domain import Artifact, LogChunk, Prediction, PredictionDetail
from tracker.exceptions import InvalidInput
from tracker.service.dashboard import charts, render, views
from tracker.service.dashboard.actions import local_path
from tracker.service.dashboard.auth import FLASH_CHARS, SESSION_SECONDS, Sessions, with_flash
from tracker.service.dashboard.files import file_headers
from tracker.service.dashboard.overview import Cached
from tracker.service.dashboard.pages import _cursor, cursor_text, list_filter
from tracker.store.dashboard import NO_STATUS, Cursor

TOKEN = "a-serve-token-0123456789"
NOW = datetime(2026, 6, 1, 12, 30, tzinfo=UTC)


class Clock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


# -- sessions ----------------------------------------------------------------------------


def test_a_session_reads_back_from_its_cookie() -> None:
    sessions = Sessions(TOKEN)
    session = with_flash(sessions.new(authenticated=True), "ok", "done")
    read = sessions.read(sessions.cookie_value(session))
    assert read is not None
    assert (read.sid, read.authenticated, read.flash) == (session.sid, True, ("ok", "done"))
    assert TOKEN not in sessions.cookie_value(session)


@pytest.mark.parametrize(
    "damage",
    [
        lambda v: v[:-2] + ("A" if v[-2] != "A" else "B") + v[-1],  # the signature
        lambda v: "eyJzaWQiOiJ4IiwiYXV0aCI6dHJ1ZSwiZXhwIjo5OTk5OTk5OTk5fQ." + v.split(".")[1],
        lambda v: v.split(".")[0],
        lambda v: "",
        lambda v: "not base64!.???",
        lambda v: v + "." + v,
    ],
    ids=["signature", "payload", "unsigned", "empty", "garbage", "doubled"],
)
def test_a_changed_cookie_is_no_session(damage: Any) -> None:
    sessions = Sessions(TOKEN)
    value = sessions.cookie_value(sessions.new(authenticated=True))
    assert sessions.read(damage(value)) is None


def test_a_session_ends_with_its_time_and_with_the_token() -> None:
    clock = Clock()
    sessions = Sessions(TOKEN, clock=clock)
    value = sessions.cookie_value(sessions.new(authenticated=True))
    assert Sessions("another-token", clock=clock).read(value) is None
    assert Sessions(TOKEN, clock=clock).read(value) is not None  # same key after a restart
    clock.now += SESSION_SECONDS + 1
    assert sessions.read(value) is None


def test_the_csrf_token_belongs_to_one_session() -> None:
    sessions = Sessions(TOKEN)
    one, other = sessions.new(), sessions.new()
    token = sessions.csrf_token(one)
    assert sessions.csrf_matches(one, token)
    assert not sessions.csrf_matches(other, token)
    assert not sessions.csrf_matches(None, token)
    assert not sessions.csrf_matches(one, "")
    assert not sessions.csrf_matches(one, token.upper() + "x")


def test_the_token_and_the_bearer_header() -> None:
    sessions = Sessions(TOKEN)
    assert sessions.token_matches(TOKEN)
    for wrong in ("", TOKEN[:-1], TOKEN + " ", TOKEN.upper(), "\udcff"):
        assert not sessions.token_matches(wrong)
    assert sessions.bearer_matches(f"Bearer {TOKEN}")
    assert not sessions.bearer_matches(f"bearer {TOKEN}")
    assert not sessions.bearer_matches(TOKEN)


def test_without_a_token_every_session_is_in_and_no_token_matches() -> None:
    sessions = Sessions(None)
    assert sessions.open and sessions.new().authenticated
    assert not sessions.token_matches("")
    value = sessions.cookie_value(sessions.new())
    assert Sessions(None).read(value) is None  # a random key per process


def test_a_flash_message_is_cut() -> None:
    sessions = Sessions(TOKEN)
    session = with_flash(sessions.new(), "error", "x" * 5000)
    assert session.flash is not None and len(session.flash[1]) == FLASH_CHARS


# -- what may be a link, what a page shows -----------------------------------------------


@pytest.mark.parametrize(
    ("url", "link"),
    [
        ("https://example.com/a?b=1&c=2", True),
        ("http://127.0.0.1:8000/p/x", True),
        ("javascript:alert(1)", False),
        ("JaVaScRiPt:alert(1)", False),
        (" javascript:alert(1)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("vbscript:msgbox", False),
        ("//evil.example/x", False),
        ("/local/path", False),
        ('https://example.com/"onmouseover="alert(1)', False),
        ("https://example.com/<script>", False),
        ("https://exa mple.com/", False),
        ("https://example.com/\x00", False),
        ("https:///nohost", False),
        ("https://[::1/", False),
        (None, False),
        (42, False),
    ],
)
def test_only_http_urls_are_links(url: Any, link: bool) -> None:
    assert render.href(url) == (url if link else None)


def test_templates_escape_everything() -> None:
    env = render.environment()
    html = env.from_string("<a title='{{ x }}'>{{ x }}</a>{{ y|text }}{{ y|line }}").render(
        x='"><script>alert(1)</script>', y="a\x1b[2Jb\nc"
    )
    assert "<script>" not in html and "&#34;&gt;&lt;script&gt;" in html
    assert "a\\x1b[2Jb\nc" in html and "a\\x1b[2Jb\\x0ac" in html
    assert "\x1b" not in html


def test_values_as_shown() -> None:
    assert render.when(datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)) == (
        "2026-01-02 03:04:05.120 UTC"
    )
    assert render.iso(NOW) == "2026-06-01T12:30:00Z"
    assert render.status_class("succeeded") == "s-succeeded"
    assert render.status_class('x" onclick="y') == "s-other"
    assert render.status_class(None) == "s-none"
    assert render.status_word(None) == "not seen yet"
    assert render.query(a="1", b="", c=None, d="x y&z") == "?a=1&d=x+y%26z"
    assert render.query() == ""
    assert render.shown_json({"k": "\u202e"}) == '{\n  "k": "\\u202e"\n}'
    assert render.masked("https://u:p@h/x?token=t") == "https://u:***@h/x?token=***"


# -- charts ------------------------------------------------------------------------------


def test_nice_ceilings() -> None:
    assert [charts.nice_ceiling(v) for v in (0, 1, 3, 7, 11, 26, 240, 0.3)] == [
        1,
        1,
        5,
        10,
        20,
        50,
        250,
        0.5,
    ]


def test_the_hourly_chart_stacks_each_hour_by_status() -> None:
    first = charts.hour_start(NOW)
    found = [
        (first, "succeeded", 6),
        (first, "failed", 2),
        (first + timedelta(hours=23), "canceled", 1),
        (first - timedelta(hours=1), "succeeded", 99),  # before the window
        (first + timedelta(hours=24), "succeeded", 99),  # after it
    ]
    chart = charts.hourly(found, NOW)
    assert chart.empty is None
    assert [r.title for r in chart.rects] == [
        "13:00 to 14:00 UTC: 6 succeeded",
        "13:00 to 14:00 UTC: 2 failed",
        "12:00 to 13:00 UTC: 1 canceled",
    ]
    succeeded, failed, _ = chart.rects
    assert failed.y + failed.height == pytest.approx(succeeded.y)  # stacked on top
    assert succeeded.height == pytest.approx(3 * failed.height)
    assert {lab.text for lab in chart.labels} >= {"8", "1", "0", "10", "13:00"}
    assert len(chart.rows) == 24 and chart.rows[0][-1] == "8"


def test_charts_with_nothing_to_draw_say_so() -> None:
    assert charts.hourly([], NOW).empty == "No prediction finished in the last 24 hours."
    assert charts.run_times([]).empty is not None
    assert charts.run_times([{"model": "m", "predictions": 3, "p50": None, "p95": None}]).empty


def test_run_times_draw_p95_with_p50_inside() -> None:
    name = "acme/" + "<b>" * 30
    chart = charts.run_times(
        [
            {"model": name, "predictions": 10, "p50": 4.0, "p95": 10.0},
            {"model": None, "predictions": 2, "p50": 1.0, "p95": 2.0},
        ]
    )
    p95, p50, other95, _ = chart.rects
    assert p50.width == pytest.approx(p95.width * 0.4)
    assert other95.width == pytest.approx(p95.width * 0.2)
    shown = [lab.text for lab in chart.labels]
    assert len(shown[0]) == charts.MODEL_CHARS and shown[0].endswith("…")
    assert "(no model)" in shown and "p50 4.0 s · p95 10 s" in shown
    assert p95.title == f"{name}: p50 4.0 s · p95 10 s over 10 predictions"


def test_a_predictions_states_share_the_bar() -> None:
    from tracker.text.timeline import Phase

    segments = charts.phase_segments(
        [
            Phase("starting", NOW, 1.0),
            Phase("processing", NOW, 3.0),
            Phase("<weird>", NOW, 0.0),
            Phase("succeeded", NOW, None),
        ]
    )
    assert [(s.css, s.x, s.width) for s in segments] == [
        ("c-starting", 0.0, 25.0),
        ("c-processing", 25.0, 75.0),
    ]


# -- logs --------------------------------------------------------------------------------


def detail(logs: str, chunks: int = 1) -> PredictionDetail:
    prediction = Prediction(
        id="p1",
        status="processing",
        tracking="active",
        model=None,
        version=None,
        input=None,
        output=None,
        error=None,
        logs=logs,
        metrics=None,
        predict_time=None,
        created_at=None,
        started_at=None,
        completed_at=None,
        data_removed=None,
        urls=None,
        labels={},
        registered_at=NOW,
        last_polled_at=None,
        next_poll_at=None,
        poll_count=0,
        error_count=0,
        last_error=None,
    )
    return PredictionDetail(prediction, logs=[LogChunk(1, NOW, logs, False)] * chunks)


def test_a_redrawn_progress_bar_is_the_last_line() -> None:
    logs = (
        "loading\n 10%|█ | 2/20 [00:01<00:09,  1.90it/s]"
        "\r 45%|████▌ | 9/20 [00:04<00:05,  2.10it/s]"
    )
    view = views.logs_of(detail(logs))
    assert view.lines == ["loading"]
    assert view.progress == views.ProgressLine(9, 20, "2.10 it/s")
    assert view.progress.percent == 45
    assert view.total == 2


def test_a_progress_bar_above_other_lines_stays_a_line() -> None:
    view = views.logs_of(detail("step 3/4 | 75% | 0.50 it/s\ndone\n"))
    assert view.lines == ["step 3/4 | 75% | 0.50 it/s", "done"]
    assert view.progress == views.ProgressLine(3, 4, "2.00 s/it")


def test_log_lines_are_escaped_and_cut_to_the_last() -> None:
    logs = "".join(f"line {n} \x1b[1m\n" for n in range(300))
    view = views.logs_of(detail(logs, chunks=3), shown=200)
    assert view.hidden == 100 and view.total == 300 and view.chunks == 3
    assert view.lines[0] == "line 100 \\x1b[1m"
    assert views.logs_of(detail("")).lines == []
    assert views.full_logs(detail("a\x1bb\r\n")) == "a\\x1bb\\x0d\n"


def test_which_files_are_images() -> None:
    def artifact(state: str, kind: str | None) -> Artifact:
        return Artifact(
            1, "p1", 0, "https://h/x.png", None, state, 5, None, kind, 1, None, NOW, None
        )

    assert views.images([artifact("stored", "image/png"), artifact("failed", "image/png")]) == [
        artifact("stored", "image/png")
    ]
    assert views.is_image("image/JPEG; q=1")
    assert not views.is_image("image/svg+xml") and not views.is_image(None)


# -- files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "shown", "disposition"),
    [
        ("image/png", "image/png", 'inline; filename="3-a_b.png"'),
        ("IMAGE/WEBP; x=y", "image/webp", 'inline; filename="3-a_b.png"'),
        ("image/svg+xml", "application/octet-stream", 'attachment; filename="3-a_b.png"'),
        ("text/html", "application/octet-stream", 'attachment; filename="3-a_b.png"'),
        (None, "application/octet-stream", 'attachment; filename="3-a_b.png"'),
    ],
)
def test_only_images_are_served_inline(kind: str | None, shown: str, disposition: str) -> None:
    artifact = Artifact(
        1, "p1", 3, 'https://h/a"b.png?x=1', "file:///a", "stored", 1, None, kind, 1, None, NOW, NOW
    )
    headers = file_headers(artifact)
    assert headers["Content-Type"] == shown
    assert headers["Content-Disposition"] == disposition


# -- the list's query string -------------------------------------------------------------


def test_a_cursor_round_trips_through_its_text() -> None:
    cursor = Cursor(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), "a_b-1")
    text = cursor_text(cursor)
    assert text == "1767323045678901-a_b-1"
    assert _cursor(text) == cursor
    assert cursor_text(None) is None and _cursor("") is None


@pytest.mark.parametrize("text", ["x-1", "1-", "1-<script>", "-1-a", "1" * 21 + "-a", "1"])
def test_a_damaged_cursor_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="damaged"):
        _cursor(text)


def test_list_filters() -> None:
    flt = list_filter(MultiDict(status=" failed ", label="team=red", q="ab_", model="m"))
    assert (flt.status, flt.labels, flt.id_prefix, flt.model) == (
        "failed",
        {"team": "red"},
        "ab_",
        "m",
    )
    assert list_filter(MultiDict(status="none")).status == NO_STATUS
    assert list_filter(MultiDict()).only_counted
    for bad, words in (
        ({"tracking": "x"}, "unknown tracking"),
        ({"label": "novalue"}, "invalid label"),
        ({"q": "a%"}, "ID prefix"),
        ({"q": "a b"}, "ID prefix"),
    ):
        with pytest.raises(InvalidInput, match=words):
            list_filter(MultiDict(bad))


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/predictions?status=failed", "/predictions?status=failed"),
        ("/", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/a b", "/"),
        (None, "/"),
    ],
)
def test_after_the_login_only_a_local_path(given: Any, kept: str) -> None:
    assert local_path(given) == kept


# -- the overview's cache ----------------------------------------------------------------


async def test_the_cache_answers_fresh_then_stale_while_it_reads_again() -> None:
    clock = Clock(0.0)
    reads: list[int] = []

    def read() -> int:
        reads.append(len(reads) + 1)
        return len(reads)

    cached = Cached(read, fresh=5, stale=60, clock=clock)
    assert await cached.get() == 1
    clock.now = 4
    assert await cached.get() == 1 and reads == [1]
    clock.now = 10
    assert await cached.get() == 1  # stale: answered at once, read again behind
    await asyncio.sleep(0.05)
    await cached.close()
    assert reads == [1, 2] and await cached.get() == 2
    clock.now = 200
    assert await cached.get() == 3  # too old: waited for


async def test_a_failed_background_read_keeps_the_last_value() -> None:
    clock = Clock(0.0)
    calls = 0

    def read() -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError("down")
        return 7

    cached = Cached(read, fresh=1, stale=60, clock=clock)
    assert await cached.get() == 7
    clock.now = 5
    assert await cached.get() == 7
    await cached.close()
    clock.now = 100
    with pytest.raises(RuntimeError):
        await cached.get()

"""parse_retry_after: one reader of Retry-After, each caller with its own cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from tracker.callbacks.retry import MAX_DELIVERY_RETRY_AFTER, RetryPolicy
from tracker.callbacks.webhook import _result
from tracker.domain import DeliveryState
from tracker.exceptions import UpstreamRateLimited
from tracker.poll.upstream import MAX_UPSTREAM_RETRY_AFTER, _interpret
from tracker.timeparse import parse_retry_after

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CAP = 3600.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("0.25", 0.25),
        ("-3", 0.0),
    ],
)
def test_parse_retry_after_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value, CAP, now=NOW) == expected


def test_parse_retry_after_http_date_in_future() -> None:
    value = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(value, CAP, now=NOW) == 90.0


def test_parse_retry_after_http_date_with_offset() -> None:
    # 04:05:05 at +01:00 is 03:05:05 UTC, one minute after NOW
    assert parse_retry_after("Fri, 02 Jan 2026 04:05:05 +0100", CAP, now=NOW) == 60.0


def test_parse_retry_after_http_date_without_zone_is_utc() -> None:
    assert parse_retry_after("Fri, 02 Jan 2026 03:05:05", CAP, now=NOW) == 60.0


def test_parse_retry_after_http_date_in_past_is_zero() -> None:
    value = format_datetime(NOW - timedelta(hours=2), usegmt=True)
    assert parse_retry_after(value, CAP, now=NOW) == 0.0


def test_parse_retry_after_uses_current_time_by_default() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", CAP) == 0.0
    far = format_datetime(datetime.now(UTC) + timedelta(days=3), usegmt=True)
    assert parse_retry_after(far, CAP) == CAP


@pytest.mark.parametrize("value", [None, "", "   ", "garbage", "soon", "nan", "0x10", "1 2 3"])
def test_parse_retry_after_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value, CAP, now=NOW) is None


@pytest.mark.parametrize("value", ["999999", "3601", "inf", "1e400"])
def test_parse_retry_after_huge_is_capped(value: str) -> None:
    assert parse_retry_after(value, CAP, now=NOW) == CAP


def test_parse_retry_after_far_future_date_is_capped() -> None:
    value = format_datetime(NOW + timedelta(days=30), usegmt=True)
    assert parse_retry_after(value, CAP, now=NOW) == CAP


def test_parse_retry_after_exactly_the_cap_is_kept() -> None:
    assert parse_retry_after(str(int(CAP)), CAP, now=NOW) == CAP
    assert parse_retry_after(str(CAP - 1), CAP, now=NOW) == CAP - 1


# --- each caller's cap ----------------------------------------------------------------------


def test_the_caps_are_distinct_and_named_for_their_caller() -> None:
    assert MAX_UPSTREAM_RETRY_AFTER == 3600.0  # a pause of all polling
    assert MAX_DELIVERY_RETRY_AFTER == 36000.0  # the delay of one delivery's retry
    assert parse_retry_after("20000", MAX_UPSTREAM_RETRY_AFTER) == 3600.0
    assert parse_retry_after("20000", MAX_DELIVERY_RETRY_AFTER) == 20000.0


def _answer(status: int, retry_after: str) -> httpx.Response:
    return httpx.Response(status, headers={"Retry-After": retry_after})


@pytest.mark.parametrize("status", [429, 503])
def test_upstream_pauses_at_most_an_hour(status: int) -> None:
    with pytest.raises(UpstreamRateLimited) as info:
        _interpret(_answer(status, "20000"), b"", ())
    assert info.value.retry_after == MAX_UPSTREAM_RETRY_AFTER


@pytest.mark.parametrize("status", [429, 503])
def test_a_webhook_receiver_may_delay_a_retry_up_to_the_delivery_cap(status: int) -> None:
    assert _result(_answer(status, "20000"), 5).retry_after == 20000.0
    assert _result(_answer(status, "999999"), 5).retry_after == MAX_DELIVERY_RETRY_AFTER


def test_the_ten_hour_cap_is_reached_end_to_end() -> None:
    """Receiver says 20,000 s; the retry waits that long (it used to stop at 3,600 s)."""
    result = _result(_answer(429, "20000"), 5)
    state, next_at = RetryPolicy(schedule=(5.0, 5.0)).after(result, attempts_before=0, now=NOW)
    assert state is DeliveryState.PENDING
    assert next_at == NOW + timedelta(seconds=20000)

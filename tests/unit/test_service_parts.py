"""The pure parts of `tracker serve`: where it may listen, what a poll counts as, how
the listing's query and a registration's shape are read."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from tracker.config import Settings
from tracker.exceptions import (
    UpstreamAuthError,
    UpstreamBadAnswer,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamTransient,
)
from tracker.observer import POLL_OUTCOMES, poll_outcome
from tracker.service.api import DEFAULT_LIMIT, list_filters
from tracker.service.errors import ApiError
from tracker.service.run import ServeRefused, check_host, is_loopback_host


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("localhost.example.test", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_beyond_loopback_only_with_a_token() -> None:
    with pytest.raises(ServeRefused, match="TRACKER_SERVE_TOKEN"):
        check_host("0.0.0.0", Settings.build(env={}))
    check_host("0.0.0.0", Settings.build(env={"TRACKER_SERVE_TOKEN": "t"}))
    check_host("127.0.0.1", Settings.build(env={}))


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        (object(), "answered"),
        (UpstreamNotFound("404"), "not_found"),
        (UpstreamRateLimited("429", status_code=429, retry_after=1), "rate_limited"),
        (UpstreamAuthError("401"), "auth_error"),
        (UpstreamBadAnswer("not JSON"), "bad_answer"),
        (UpstreamTransient("timeout"), "error"),
    ],
)
def test_what_a_poll_counts_as(result: object, outcome: str) -> None:
    assert poll_outcome(result) == outcome
    assert outcome in POLL_OUTCOMES


def test_the_listing_query_as_the_api_reads_it() -> None:
    query = MultiDict(
        [
            ("status", "succeeded,failed"),
            ("status", "canceled"),
            ("label", "a=1"),
            ("label", "b=2"),
            ("active", "false"),
            ("limit", "0"),
            ("since", "1h"),
        ]
    )
    filters, limit = list_filters(query)
    assert filters == {
        "status": ["succeeded", "failed", "canceled"],
        "active": False,
        "model": None,
        "since": "1h",
        "until": None,
        "labels": {"a": "1", "b": "2"},
    }
    assert limit == 0
    assert list_filters(MultiDict())[1] == DEFAULT_LIMIT


@pytest.mark.parametrize("query", [{"limit": "1e3"}, {"limit": "9" * 12}, {"active": "2"}])
def test_bad_listing_queries_are_api_errors(query: dict[str, str]) -> None:
    with pytest.raises(ApiError) as info:
        list_filters(MultiDict(query))
    assert info.value.status == 400

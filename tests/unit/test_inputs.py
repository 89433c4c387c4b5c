"""Checking what users type: IDs, ID files, labels, webhook URLs, emails, events."""

from __future__ import annotations

import io

import pytest

from tracker.domain import validate_id
from tracker.events import DEFAULT_EVENTS, EVENT_ORDER, Event, canonical_events, parse_events
from tracker.exceptions import InvalidInput
from tracker.inputs import (
    MAX_LABEL_VALUE_BYTES,
    MAX_URL_LENGTH,
    parse_labels,
    read_ids,
    validate_email,
    validate_ids,
    validate_webhook_url,
)

# --- validate_id ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prediction_id",
    [
        "w44zs9cet5rmc0cqzp49gpkhf8",
        "a",
        "7",
        "A_b-C",
        "a" * 128,
        "0" + "-" * 127,
    ],
)
def test_validate_id_accepts(prediction_id: str) -> None:
    assert validate_id(prediction_id) == prediction_id


@pytest.mark.parametrize(
    "prediction_id",
    [
        "../x",
        "..",
        ".",
        "a/b",
        "a b",
        " a",
        "a ",
        "",
        "-x",
        "_x",
        "a" * 129,
        "abc\n",
        "abc\x00",
        "prédiction",
        "\uff41\uff42\uff43",  # fullwidth "abc"
        "٣",  # Arabic-Indic digit
        "a.b",
        "a%2Fb",
        "a?b",
    ],
)
def test_validate_id_refuses(prediction_id: str) -> None:
    with pytest.raises(InvalidInput, match="invalid prediction ID"):
        validate_id(prediction_id)


def test_validate_id_names_empty_input() -> None:
    with pytest.raises(InvalidInput, match=r"\(empty\)"):
        validate_id("")


def test_validate_ids_checks_all() -> None:
    assert validate_ids(["a", "b"]) == ["a", "b"]
    assert validate_ids([]) == []
    with pytest.raises(InvalidInput, match="'a b'"):
        validate_ids(["ok", "a b"])


# --- read_ids -------------------------------------------------------------------------------


def test_read_ids_skips_blanks_and_comments_and_strips() -> None:
    text = "# exported 2026-01-02\n\nabc123\n   \n  def456  \n\t# indented comment\nghi789\r\n"
    assert list(read_ids(io.StringIO(text), "ids.txt")) == ["abc123", "def456", "ghi789"]


def test_read_ids_of_empty_file() -> None:
    assert list(read_ids(io.StringIO(""), "empty.txt")) == []
    assert list(read_ids(io.StringIO("# nothing\n\n"), "empty.txt")) == []


def test_read_ids_last_line_without_newline() -> None:
    assert list(read_ids(io.StringIO("a\nb"), "f")) == ["a", "b"]


def test_read_ids_error_names_file_and_line() -> None:
    text = "# header\n\nabc123\nnot valid\nxyz\n"
    with pytest.raises(InvalidInput) as info:
        list(read_ids(io.StringIO(text), "batch.txt"))
    message = str(info.value)
    assert message.startswith("batch.txt, line 4: ")
    assert "'not valid'" in message


def test_read_ids_yields_good_ids_before_the_bad_line() -> None:
    ids = read_ids(io.StringIO("good1\n../etc/passwd\n"), "stdin")
    assert next(ids) == "good1"
    with pytest.raises(InvalidInput, match=r"^stdin, line 2: invalid prediction ID '\.\./etc"):
        next(ids)


def test_read_ids_does_not_chain_the_inner_error() -> None:
    with pytest.raises(InvalidInput) as info:
        list(read_ids(io.StringIO("-bad\n"), "f.txt"))
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ is True


# --- parse_labels ---------------------------------------------------------------------------


def test_parse_labels() -> None:
    assert parse_labels(["team=ml", "run:id=42", "a.b/c-d_e=x y"]) == {
        "team": "ml",
        "run:id": "42",
        "a.b/c-d_e": "x y",
    }


def test_parse_labels_value_may_be_empty_or_contain_equals() -> None:
    assert parse_labels(["k=", "q=a=b"]) == {"k": "", "q": "a=b"}


def test_parse_labels_last_value_wins() -> None:
    assert parse_labels(["k=1", "k=2"]) == {"k": "2"}


def test_parse_labels_empty() -> None:
    assert parse_labels([]) == {}


@pytest.mark.parametrize(
    "item",
    ["novalue", "=value", "bad key=v", "ké=v", "k" * 65 + "=v", "a\tb=v", ""],
)
def test_parse_labels_refuses(item: str) -> None:
    with pytest.raises(InvalidInput, match="invalid label"):
        parse_labels([item])


def test_parse_labels_key_length_limit() -> None:
    assert parse_labels(["k" * 64 + "=v"]) == {"k" * 64: "v"}


# --- validate_webhook_url -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "https://example.com",
        "https://hooks.example.com:8443/a/b?x=1&y=2#frag",
        "http://127.0.0.1:8080/cb",
        "http://[::1]:9000/cb",
        "HTTPS://EXAMPLE.COM/hook",
        "https://user:pw@example.com/hook",
    ],
)
def test_webhook_url_accepted(url: str) -> None:
    assert validate_webhook_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://",
        "https://:443/",
        "example.com/hook",
        "//example.com/hook",
        "",
        "https://example.com/" + "a" * MAX_URL_LENGTH,
    ],
)
def test_webhook_url_refused_as_not_http(url: str) -> None:
    with pytest.raises(InvalidInput, match="expected an http:// or https:// URL"):
        validate_webhook_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a b",
        "https://exa mple.com/",
        "https://example.com/\thook",
        "https://example.com/hook\n",
        " https://example.com/hook",
    ],
)
def test_webhook_url_refused_for_white_space(url: str) -> None:
    with pytest.raises(InvalidInput, match="white space"):
        validate_webhook_url(url)


@pytest.mark.parametrize(
    "url", ["http://example.com:99999/", "http://example.com:abc/", "http://example.com:-1/"]
)
def test_webhook_url_refused_for_bad_port(url: str) -> None:
    with pytest.raises(InvalidInput, match="invalid webhook URL"):
        validate_webhook_url(url)


def test_webhook_url_at_max_length_accepted() -> None:
    base = "https://example.com/"
    url = base + "a" * (MAX_URL_LENGTH - len(base))
    assert len(url) == MAX_URL_LENGTH
    assert validate_webhook_url(url) == url


# --- validate_email -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address", ["ops@example.com", "first.last+tag@mail.example.co.uk", "a@b.c"]
)
def test_email_accepted(address: str) -> None:
    assert validate_email(address) == address


@pytest.mark.parametrize(
    "address",
    [
        "",
        "ops",
        "ops@",
        "@example.com",
        "ops@example",
        "ops@@example.com",
        "a@b@example.com",
        "o ps@example.com",
        "ops@example.com ",
        "<ops@example.com>",
        "ops@example.com,other@example.com",
        "ops@example.com;other@example.com",
        "ops@example.com\nBcc: x@evil.test",
    ],
)
def test_email_refused(address: str) -> None:
    with pytest.raises(InvalidInput, match="invalid email address"):
        validate_email(address)


# --- events ---------------------------------------------------------------------------------


def test_parse_events_canonical_order() -> None:
    assert parse_events("completed,logs,start,output") == ("start", "output", "logs", "completed")
    assert parse_events("completed,start") == ("start", "completed")


def test_parse_events_strips_and_dedups() -> None:
    assert parse_events(" logs , output ,logs,,") == ("output", "logs")


def test_parse_events_single() -> None:
    assert parse_events("completed") == ("completed",)


@pytest.mark.parametrize("text", ["start,bogus", "Completed", "finish", "start;logs"])
def test_parse_events_unknown_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="unknown event") as info:
        parse_events(text)
    assert "choose from start, output, logs, completed" in str(info.value)


def test_parse_events_unknown_names_the_offender() -> None:
    with pytest.raises(InvalidInput, match="unknown event\\(s\\) bogus, zzz:"):
        parse_events("zzz,start,bogus")


@pytest.mark.parametrize("text", ["", " ", ",", " , ,"])
def test_parse_events_empty_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="at least one"):
        parse_events(text)


def test_canonical_events() -> None:
    assert canonical_events(["output", "start", "start"]) == ("start", "output")
    assert canonical_events([]) == ()
    assert canonical_events([Event.COMPLETED, Event.LOGS]) == ("logs", "completed")
    with pytest.raises(InvalidInput):
        canonical_events(["start", "nope"])


def test_event_order_covers_every_event() -> None:
    assert set(EVENT_ORDER) == set(Event)
    assert len(EVENT_ORDER) == len(Event)
    assert DEFAULT_EVENTS == (Event.COMPLETED,)


def test_parse_labels_value_limit_in_utf8_bytes() -> None:
    """Each label is a key of an index; PostgreSQL's btree holds about 2,700 bytes."""
    assert parse_labels(["k=" + "x" * MAX_LABEL_VALUE_BYTES]) == {"k": "x" * MAX_LABEL_VALUE_BYTES}
    for value in ("x" * (MAX_LABEL_VALUE_BYTES + 1), "é" * (MAX_LABEL_VALUE_BYTES // 2 + 1)):
        with pytest.raises(InvalidInput, match="longer than 1024 bytes") as caught:
            parse_labels(["k=" + value])
        assert len(str(caught.value)) < 100  # the value is not echoed


@pytest.mark.parametrize("value", ["a\x00b", "\ud800"])
def test_parse_labels_refuses_what_an_engine_cannot_store(value: str) -> None:
    with pytest.raises(InvalidInput, match="UTF-8 text without NUL"):
        parse_labels(["k=" + value])

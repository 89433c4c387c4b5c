"""Settings for callbacks from TRACKER_* variables, the secrets they hold, and parse_moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tracker.callbacks.retry import DEFAULT_RETRY_SCHEDULE
from tracker.config import (
    DEFAULT_MAIL_FROM,
    Settings,
    default_callbacks_from_env,
    url_password,
)
from tracker.domain import CallbackSpec
from tracker.exceptions import ConfigError, InvalidInput, TrackerError
from tracker.timeparse import parse_moment

API_KEY = "r8_ApiKeyValue0123456789"
WEBHOOK_SECRET = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LTAxMjM0NTY3"
SMTP_PASSWORD = "p@ss/w0rd:x"
SMTP_URL = "smtp://mailer:p%40ss%2Fw0rd%3Ax@smtp.example.test:587"
NOW = datetime(2026, 6, 15, 12, 0, 0, tzinfo=UTC)


# -- Settings.build: callback settings ----------------------------------------------------


def test_build_with_an_empty_env_has_callback_defaults() -> None:
    s = Settings.build(env={})
    assert s.webhook_secret is None
    assert s.smtp_url is None
    assert s.mail_from == DEFAULT_MAIL_FROM == "tracker@localhost"
    assert s.retry_schedule == DEFAULT_RETRY_SCHEDULE
    assert s.default_callbacks == ()
    assert s.api_key is None
    assert s.secrets() == []


def test_build_reads_the_callback_variables() -> None:
    s = Settings.build(
        env={
            "TRACKER_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "TRACKER_SMTP_URL": SMTP_URL,
            "TRACKER_MAIL_FROM": "alerts@example.test",
            "TRACKER_RETRY_SCHEDULE": "1, 2,3",
        }
    )
    assert s.webhook_secret == WEBHOOK_SECRET
    assert s.smtp_url == SMTP_URL
    assert s.mail_from == "alerts@example.test"
    assert s.retry_schedule == (1.0, 2.0, 3.0)


@pytest.mark.parametrize("name", ["TRACKER_WEBHOOK_SECRET", "TRACKER_SMTP_URL"])
def test_empty_variables_mean_unset(name: str) -> None:
    s = Settings.build(env={name: ""})
    assert s.webhook_secret is None
    assert s.smtp_url is None


def test_empty_mail_from_falls_back_to_the_default() -> None:
    assert Settings.build(env={"TRACKER_MAIL_FROM": ""}).mail_from == "tracker@localhost"


def test_empty_retry_schedule_variable_keeps_the_default() -> None:
    assert Settings.build(env={"TRACKER_RETRY_SCHEDULE": ""}).retry_schedule == (
        DEFAULT_RETRY_SCHEDULE
    )


def test_bad_retry_schedule_variable_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Settings.build(env={"TRACKER_RETRY_SCHEDULE": "5,soon"})


def test_explicit_values_win_over_the_environment() -> None:
    s = Settings.build(
        env={
            "TRACKER_MAIL_FROM": "env@example.test",
            "TRACKER_RETRY_SCHEDULE": "1,2",
            "TRACKER_WEBHOOK_SECRET": WEBHOOK_SECRET,
        },
        mail_from="flag@example.test",
        retry_schedule=(9.0,),
        webhook_secret=None,  # None means "not given": the environment fills it
    )
    assert s.mail_from == "flag@example.test"
    assert s.retry_schedule == (9.0,)
    assert s.webhook_secret == WEBHOOK_SECRET


def test_explicit_retry_schedule_is_used_even_with_a_bad_variable() -> None:
    s = Settings.build(env={"TRACKER_RETRY_SCHEDULE": "garbage"}, retry_schedule=(1.0,))
    assert s.retry_schedule == (1.0,)


# -- default callbacks ----------------------------------------------------------------------


def test_default_webhooks_and_emails_with_default_events() -> None:
    s = Settings.build(
        env={
            "TRACKER_DEFAULT_WEBHOOK": "https://a.example.test/hook, http://b.example.test:8080/x",
            "TRACKER_DEFAULT_EMAIL": "ops@example.test,dev@example.test",
        }
    )
    assert s.default_callbacks == (
        CallbackSpec("webhook", "https://a.example.test/hook", ("completed",)),
        CallbackSpec("webhook", "http://b.example.test:8080/x", ("completed",)),
        CallbackSpec("email", "ops@example.test", ("completed",)),
        CallbackSpec("email", "dev@example.test", ("completed",)),
    )


def test_default_events_apply_to_every_default_callback_in_canonical_order() -> None:
    specs = default_callbacks_from_env(
        {
            "TRACKER_DEFAULT_WEBHOOK": "https://a.example.test/hook",
            "TRACKER_DEFAULT_EMAIL": "ops@example.test",
            "TRACKER_DEFAULT_EVENTS": "completed, start,logs",
        }
    )
    assert [s.events for s in specs] == [("start", "logs", "completed")] * 2


def test_blank_list_items_are_skipped() -> None:
    specs = default_callbacks_from_env(
        {
            "TRACKER_DEFAULT_WEBHOOK": " , https://a.example.test/hook,, ",
            "TRACKER_DEFAULT_EMAIL": ",",
        }
    )
    assert specs == (CallbackSpec("webhook", "https://a.example.test/hook", ("completed",)),)


def test_events_without_targets_give_no_callbacks() -> None:
    assert default_callbacks_from_env({"TRACKER_DEFAULT_EVENTS": "start,completed"}) == ()


@pytest.mark.parametrize(
    "url",
    ["ftp://a.example.test/hook", "not a url", "https://", "https://a.example.test:99999/x"],
)
def test_bad_default_webhook_url_is_rejected(url: str) -> None:
    with pytest.raises((InvalidInput, ConfigError)):
        Settings.build(env={"TRACKER_DEFAULT_WEBHOOK": url})


@pytest.mark.parametrize("address", ["not-an-address", "a@b", "two@@example.test"])
def test_bad_default_email_is_rejected(address: str) -> None:
    with pytest.raises((InvalidInput, ConfigError)):
        Settings.build(env={"TRACKER_DEFAULT_EMAIL": address})


@pytest.mark.parametrize("events", ["finished", "completed,bogus", ","])
def test_bad_default_events_are_rejected(events: str) -> None:
    with pytest.raises(TrackerError) as info:
        Settings.build(
            env={
                "TRACKER_DEFAULT_WEBHOOK": "https://a.example.test/",
                "TRACKER_DEFAULT_EVENTS": events,
            }
        )
    assert isinstance(info.value, InvalidInput | ConfigError)


def test_unknown_event_is_named_in_the_error() -> None:
    with pytest.raises(InvalidInput, match="bogus"):
        default_callbacks_from_env({"TRACKER_DEFAULT_EVENTS": "bogus"})


# -- secrets and repr -------------------------------------------------------------------------


def full_settings() -> Settings:
    return Settings.build(
        env={
            "TRACKER_API_KEY": API_KEY,
            "TRACKER_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "TRACKER_SMTP_URL": SMTP_URL,
        }
    )


def test_secrets_include_the_api_key_webhook_secret_and_decoded_url_password() -> None:
    secrets = full_settings().secrets()
    assert API_KEY in secrets
    assert WEBHOOK_SECRET in secrets
    assert SMTP_PASSWORD in secrets
    assert len(secrets) == 3


def test_api_key_comes_from_the_first_variable_set() -> None:
    s = Settings.build(env={"ANYAPI_API_KEY": "second", "REPLICATE_API_TOKEN": "third"})
    assert s.api_key == "second"
    assert s.secrets() == ["second"]


def test_repr_contains_no_secret() -> None:
    s = full_settings()
    text = repr(s)
    for secret in (API_KEY, WEBHOOK_SECRET, SMTP_PASSWORD, "p%40ss%2Fw0rd%3Ax", SMTP_URL):
        assert secret not in text
    assert str(s) == text


def test_smtp_without_password_adds_no_secret() -> None:
    s = Settings.build(env={"TRACKER_SMTP_URL": "smtp://smtp.example.test:25"})
    assert s.secrets() == []


@pytest.mark.parametrize(
    ("url", "password"),
    [
        (None, None),
        ("", None),
        ("smtp://smtp.example.test", None),
        ("smtp://user@smtp.example.test", None),
        ("smtps://user:plain@smtp.example.test:465", "plain"),
        (SMTP_URL, SMTP_PASSWORD),
        ("smtp://user:%E2%9C%93@h.example.test", "✓"),
        ("smtp://user:pw@[::1", None),  # unparseable: no crash
    ],
)
def test_url_password(url: str | None, password: str | None) -> None:
    assert url_password(url) == password


# -- parse_moment -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ago"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("1.5h", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        (" 3 h ", timedelta(hours=3)),
        ("0m", timedelta(0)),
    ],
)
def test_parse_moment_durations_are_relative_to_now(text: str, ago: timedelta) -> None:
    assert parse_moment(text, now=NOW) == NOW - ago


def test_parse_moment_defaults_now_to_the_current_time() -> None:
    before = datetime.now(UTC)
    moment = parse_moment("1h")
    after = datetime.now(UTC)
    assert moment is not None
    assert before - timedelta(hours=1) <= moment <= after - timedelta(hours=1)


def test_parse_moment_date_is_utc_midnight() -> None:
    moment = parse_moment("2026-11-01", now=NOW)
    assert moment == datetime(2026, 11, 1, tzinfo=UTC)
    assert moment is not None
    assert moment.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01T10:30:00+02:00", datetime(2026, 11, 1, 8, 30, tzinfo=UTC)),
        ("2026-11-01T10:30:00-05:30", datetime(2026, 11, 1, 16, 0, tzinfo=UTC)),
        ("2026-11-01T10:30:00Z", datetime(2026, 11, 1, 10, 30, tzinfo=UTC)),
        ("2026-11-01T10:30:00.250Z", datetime(2026, 11, 1, 10, 30, 0, 250000, tzinfo=UTC)),
    ],
)
def test_parse_moment_rfc3339(text: str, expected: datetime) -> None:
    moment = parse_moment(text, now=NOW)
    assert moment == expected
    assert moment is not None
    assert moment.utcoffset() == timedelta(0)


def test_parse_moment_keeps_an_aware_result_for_other_zones() -> None:
    moment = parse_moment("2026-11-01T00:00:00+09:00", now=NOW)
    assert moment == datetime(2026, 11, 1, tzinfo=timezone(timedelta(hours=9)))


@pytest.mark.parametrize(
    "text",
    ["", "tomorrow", "7", "7x", "-7d", "d", "2026-13-01", "2026-02-30", "1.5.2h", "now"],
)
def test_parse_moment_garbage_is_none(text: str) -> None:
    assert parse_moment(text, now=NOW) is None

"""Settings for answer size, poll time and webhook targets, from the environment."""

from __future__ import annotations

import pytest

from tracker.config import Settings
from tracker.exceptions import ConfigError, InvalidInput


def test_defaults() -> None:
    s = Settings.build(env={})
    assert s.max_answer_bytes == 16 * 1024 * 1024
    assert s.poll_timeout == 30.0
    assert s.webhook_allowed_hosts.text == "external"
    assert not s.webhook_allowed_hosts.allows(None, "127.0.0.1")


def test_values_from_the_environment() -> None:
    s = Settings.build(
        env={
            "TRACKER_MAX_ANSWER_BYTES": "1048576",
            "TRACKER_POLL_TIMEOUT": "2.5",
            "TRACKER_WEBHOOK_ALLOWED_HOSTS": "loopback,10.0.0.0/8",
        }
    )
    assert (s.max_answer_bytes, s.poll_timeout) == (1048576, 2.5)
    assert s.webhook_allowed_hosts.allows(None, "127.0.0.1")
    assert s.webhook_allowed_hosts.allows(None, "10.9.9.9")


def test_flags_win_over_the_environment() -> None:
    s = Settings.build(env={"TRACKER_POLL_TIMEOUT": "garbage"}, poll_timeout=3.0)
    assert s.poll_timeout == 3.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRACKER_MAX_ANSWER_BYTES", "16MB"),
        ("TRACKER_MAX_ANSWER_BYTES", "0"),
        ("TRACKER_MAX_ANSWER_BYTES", "1.5"),
        ("TRACKER_POLL_TIMEOUT", "-1"),
        ("TRACKER_POLL_TIMEOUT", "nan"),
        ("TRACKER_POLL_TIMEOUT", "inf"),
        ("TRACKER_WEBHOOK_ALLOWED_HOSTS", "the office"),
    ],
)
def test_bad_values_are_config_errors_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.build(env={name: value})


def test_default_webhooks_at_refused_literal_addresses_are_refused() -> None:
    env = {"TRACKER_DEFAULT_WEBHOOK": "http://169.254.169.254/latest"}
    with pytest.raises(InvalidInput, match=r"169.254.169.254 \(link-local\) is not allowed"):
        Settings.build(env=env)
    loopback = {"TRACKER_DEFAULT_WEBHOOK": "http://127.0.0.1:9/hook"}
    with pytest.raises(InvalidInput, match="loopback"):
        Settings.build(env=loopback)
    allowed = Settings.build(env={**loopback, "TRACKER_WEBHOOK_ALLOWED_HOSTS": "loopback"})
    assert [c.target for c in allowed.default_callbacks] == ["http://127.0.0.1:9/hook"]

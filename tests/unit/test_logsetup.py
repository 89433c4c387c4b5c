"""Logging with secrets masked, JSON lines, and where the API key comes from."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from tracker.config import (
    API_KEY_VARIABLES,
    DEFAULT_API_BASE,
    DEFAULT_POLL_MIN,
    Settings,
    api_key_from_env,
)
from tracker.logsetup import (
    MASK,
    JsonFormatter,
    RedactSecrets,
    TextFormatter,
    configure_logging,
)

SECRET = "r8_TopSecretKey1234567890"
OTHER = "pg-password-42"


def record(msg: str, *args: object, name: str = "tracker.test", exc_info=None) -> logging.LogRecord:
    return logging.LogRecord(
        name=name,
        level=logging.INFO,
        pathname=__file__,
        lineno=1,
        msg=msg,
        args=args or None,
        exc_info=exc_info,
    )


def error_info(message: str):
    try:
        raise RuntimeError(message)
    except RuntimeError:
        return sys.exc_info()


# --- RedactSecrets --------------------------------------------------------------------------


def test_secret_in_message_is_masked() -> None:
    rec = record(f"calling upstream with key {SECRET} now")
    assert RedactSecrets([SECRET]).filter(rec) is True
    assert rec.getMessage() == f"calling upstream with key {MASK} now"


def test_secret_coming_through_percent_args_is_masked() -> None:
    rec = record("header Authorization: Bearer %s (attempt %d)", SECRET, 3)
    RedactSecrets([SECRET]).filter(rec)
    assert rec.getMessage() == f"header Authorization: Bearer {MASK} (attempt 3)"
    assert SECRET not in rec.getMessage()


def test_secret_inside_a_formatted_object_is_masked() -> None:
    rec = record("settings: %r", {"api_key": SECRET})
    RedactSecrets([SECRET]).filter(rec)
    assert rec.getMessage() == f"settings: {{'api_key': '{MASK}'}}"


def test_every_secret_and_every_occurrence_is_masked() -> None:
    rec = record("%s and %s and %s again", SECRET, OTHER, SECRET)
    RedactSecrets([SECRET, OTHER]).filter(rec)
    assert rec.getMessage() == f"{MASK} and {MASK} and {MASK} again"


def test_masked_message_with_percent_is_not_formatted_again() -> None:
    rec = record("progress %s: %s", "100%d", SECRET)
    RedactSecrets([SECRET]).filter(rec)
    assert rec.getMessage() == f"progress 100%d: {MASK}"


def test_empty_secrets_are_ignored() -> None:
    rec = record("value %s", "abc")
    RedactSecrets(["", None]).filter(rec)  # type: ignore[list-item]
    # nothing to mask: the record is left alone (an empty secret must not mask everything)
    assert rec.msg == "value %s"
    assert rec.args == ("abc",)
    assert rec.getMessage() == "value abc"


def test_filter_on_a_real_handler_masks_the_written_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    handler.addFilter(RedactSecrets([SECRET]))
    logger = logging.getLogger("tracker.test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.warning("auth failed for key %s", SECRET)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    line = stream.getvalue()
    assert SECRET not in line
    assert f"auth failed for key {MASK}" in line
    assert " WARNING tracker.test.redact: " in line


def test_secret_in_exception_text_is_masked() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets([SECRET]))
    rec = record("poll failed", exc_info=error_info(f"bad header Bearer {SECRET}"))
    handler.handle(rec)
    assert SECRET not in stream.getvalue()


# --- formatters -----------------------------------------------------------------------------


def test_json_formatter_output_is_json_with_the_fields() -> None:
    rec = record("polled %s in %.1f s", "abc123", 0.25, name="tracker.poll.daemon")
    rec.levelno, rec.levelname = logging.WARNING, "WARNING"
    entry = json.loads(JsonFormatter().format(rec))
    assert set(entry) == {"ts", "level", "logger", "msg"}
    assert entry["level"] == "warning"
    assert entry["logger"] == "tracker.poll.daemon"
    assert entry["msg"] == "polled abc123 in 0.2 s"
    ts = datetime.fromisoformat(entry["ts"])
    assert ts.utcoffset() is not None
    assert ts.utcoffset().total_seconds() == 0
    assert abs(ts.timestamp() - rec.created) < 0.001


def test_json_formatter_is_one_line_and_keeps_non_ascii() -> None:
    rec = record("line one\nline two: %s", "café ✓")
    out = JsonFormatter().format(rec)
    assert "\n" not in out
    assert "café ✓" in out
    assert json.loads(out)["msg"] == "line one\nline two: café ✓"


def test_json_formatter_includes_exception() -> None:
    rec = record("it broke", exc_info=error_info("boom"))
    entry = json.loads(JsonFormatter().format(rec))
    assert entry["msg"] == "it broke"
    assert "RuntimeError: boom" in entry["exc"]
    assert "Traceback" in entry["exc"]


def test_text_formatter_line() -> None:
    rec = record("hello %s", "world", name="tracker.cli")
    rec.created = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC).timestamp()
    assert (
        TextFormatter().format(rec) == "2026-01-02T03:04:05.678Z INFO    tracker.cli: hello world"
    )


# --- configure_logging ----------------------------------------------------------------------


@contextmanager
def restored_logging() -> Iterator[None]:
    """Put the root logger back as it was, within the same test phase.

    (A fixture would restore the handlers pytest installed for the setup phase,
    which pytest has already taken away by then.)
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ("httpx", "httpcore", "aiohttp.access", "alembic", "apscheduler")
    levels = {n: logging.getLogger(n).level for n in names}
    try:
        yield
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
        for n, lvl in levels.items():
            logging.getLogger(n).setLevel(lvl)


def test_configure_logging_json_masks_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    with restored_logging():
        configure_logging(fmt="json", level=logging.DEBUG, secrets=[SECRET, ""])
        logging.getLogger("tracker.x").info("key is %s", SECRET)
        logging.getLogger("httpx").info("request chatter")  # quietened to WARNING
        root_level = logging.getLogger().level
        apscheduler_level = logging.getLogger("apscheduler").level
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines()]
    assert [e["msg"] for e in lines] == [f"key is {MASK}"]
    assert SECRET not in err
    assert root_level == logging.DEBUG
    assert apscheduler_level == logging.ERROR


def test_configure_logging_replaces_handlers(capsys: pytest.CaptureFixture[str]) -> None:
    with restored_logging():
        configure_logging(fmt="text")
        configure_logging(fmt="text")
        logging.getLogger("tracker.y").warning("once")
    err = capsys.readouterr().err
    assert err.count("once") == 1
    assert " WARNING tracker.y: once" in err


# --- Settings and the API key ---------------------------------------------------------------


@pytest.fixture
def no_key_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in API_KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_key_variables_in_documented_order() -> None:
    assert API_KEY_VARIABLES == ("TRACKER_API_KEY", "ANYAPI_API_KEY", "REPLICATE_API_TOKEN")


def test_no_key_anywhere(no_key_env: pytest.MonkeyPatch) -> None:
    settings = Settings.build()
    assert settings.api_key is None
    assert settings.secrets() == []


def test_replicate_token_is_the_last_fallback(no_key_env: pytest.MonkeyPatch) -> None:
    no_key_env.setenv("REPLICATE_API_TOKEN", "rep")
    assert Settings.build().api_key == "rep"


def test_anyapi_key_beats_replicate_token(no_key_env: pytest.MonkeyPatch) -> None:
    no_key_env.setenv("REPLICATE_API_TOKEN", "rep")
    no_key_env.setenv("ANYAPI_API_KEY", "any")
    assert Settings.build().api_key == "any"


def test_tracker_key_beats_all(no_key_env: pytest.MonkeyPatch) -> None:
    no_key_env.setenv("REPLICATE_API_TOKEN", "rep")
    no_key_env.setenv("ANYAPI_API_KEY", "any")
    no_key_env.setenv("TRACKER_API_KEY", "trk")
    assert Settings.build().api_key == "trk"


def test_blank_variable_falls_through(no_key_env: pytest.MonkeyPatch) -> None:
    no_key_env.setenv("TRACKER_API_KEY", "   ")
    no_key_env.setenv("ANYAPI_API_KEY", "")
    no_key_env.setenv("REPLICATE_API_TOKEN", "  rep  ")
    assert Settings.build().api_key == "rep"


def test_explicit_key_beats_environment(no_key_env: pytest.MonkeyPatch) -> None:
    no_key_env.setenv("TRACKER_API_KEY", "trk")
    assert Settings.build(api_key="flag").api_key == "flag"
    assert Settings.build(api_key=None).api_key == "trk"


def test_build_drops_none_values(no_key_env: pytest.MonkeyPatch) -> None:
    settings = Settings.build(poll_min=None, api_base=None, poll_max=12.0)
    assert settings.poll_min == DEFAULT_POLL_MIN
    assert settings.api_base == DEFAULT_API_BASE
    assert settings.poll_max == 12.0


def test_api_key_from_explicit_mapping() -> None:
    assert api_key_from_env({"ANYAPI_API_KEY": " k "}) == "k"
    assert api_key_from_env({}) is None


def test_repr_never_contains_the_key(no_key_env: pytest.MonkeyPatch) -> None:
    no_key_env.setenv("TRACKER_API_KEY", SECRET)
    settings = Settings.build(name="worker-1")
    assert settings.api_key == SECRET
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert "api_key" not in repr(settings)
    assert "worker-1" in repr(settings)
    assert settings.secrets() == [SECRET]

"""What is shown of outside text: escaped, masked, one line where it must be."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from tracker.logsetup import JsonFormatter, TextFormatter
from tracker.text.display import escape_line, escape_text, json_text, mask_url

#: clears the screen, rings, overwrites the line, hides a link, reverses text
EVIL = "a\x1b[2Jb\x07c\rd\x1b]8;;https://evil\x07e\x9bf\u202eg"
#: what a terminal would act on
CONTROLS = ("\x1b", "\x07", "\r", "\x9b", "\u202e")


def test_escape_text_shows_controls_keeps_newline_and_tab() -> None:
    shown = escape_text(EVIL + "\nnext\tcell")
    assert shown == ("a\\x1b[2Jb\\x07c\\x0dd\\x1b]8;;https://evil\\x07e\\x9bf\\u202eg\nnext\tcell")


def test_escape_line_keeps_everything_on_one_line() -> None:
    assert escape_line("one\ntwo\r\n\tthree") == "one\\x0atwo\\x0d\\x0a\\x09three"


def test_plain_and_non_ascii_text_is_left_alone() -> None:
    assert escape_text("Загрузка 45%|████▌ | [bold] 🎉") == "Загрузка 45%|████▌ | [bold] 🎉"


def test_json_text_is_the_same_data_without_raw_controls() -> None:
    value = {"logs": EVIL, "é": ["ü"]}
    text = json_text(value, indent=2)
    assert json.loads(text) == value
    assert not any(c in text for c in CONTROLS)
    assert "é" in text  # non-ASCII stays readable


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example.com/a/b", "https://hooks.example.com/a/b"),
        (
            "https://user:hunter2@hooks.example.com/h?token=s3cr3t&x=1",
            "https://user:***@hooks.example.com/h?token=***&x=***",
        ),
        ("https://sk_live_123@api.example.com/hook", "https://***@api.example.com/hook"),
        ("http://[::1]:8080/x?k=v#frag", "http://[::1]:8080/x?k=***#***"),
        ("https://h.example/x?flag", "https://h.example/x?flag=***"),
        ("https://h.example:bad/x?t=1", "https://***"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def record(msg: str, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("tracker.poll", logging.WARNING, __file__, 1, msg, None, exc_info)  # type: ignore[arg-type]


def test_text_log_line_cannot_forge_lines_or_drive_the_terminal() -> None:
    line = TextFormatter().format(record("poll of x failed: HTTP 500 " + EVIL + "\nFAKE INFO ok"))
    assert "\n" not in line and not any(c in line for c in CONTROLS)
    assert line.endswith(
        "HTTP 500 a\\x1b[2Jb\\x07c\\x0dd\\x1b]8;;https://evil\\x07e\\x9bf\\u202eg\\x0aFAKE INFO ok"
    )


def test_text_log_traceback_keeps_its_lines_but_not_controls() -> None:
    try:
        raise RuntimeError("bad answer " + EVIL)
    except RuntimeError:
        info = sys.exc_info()
    text = TextFormatter().format(record("poll failed", info))
    assert text.count("\n") >= 3 and "Traceback" in text
    assert not any(c in text for c in CONTROLS)


def test_json_log_line_is_exact_data_and_safe_to_print() -> None:
    line = JsonFormatter().format(record("HTTP 500 " + EVIL + "\nnext"))
    assert "\n" not in line and not any(c in line for c in CONTROLS)
    assert json.loads(line)["msg"] == "HTTP 500 " + EVIL + "\nnext"

"""artifact_key: where an output file is stored, whatever its URL looks like. An
upstream chooses the URLs; none of them may reach outside the archive or make a
name that is hidden, unportable or endless."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker.archive.storage import (
    DEFAULT_NAME,
    MAX_NAME_CHARS,
    artifact_key,
    check_key,
    file_name,
    safe_name,
)
from tracker.exceptions import InvalidInput

PORTABLE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://replicate.delivery/pbxt/abc/out-0.png", "out-0.png"),
        ("https://host/a/out%20put.png?sig=abc&x=1#frag", "out_put.png"),
        ("https://host/a/b/", "b"),
        ("https://host/", DEFAULT_NAME),
        ("https://host", DEFAULT_NAME),
        ("https://host/../../etc/passwd", "passwd"),
        ("https://host/..%2f..%2fetc%2fpasswd", "passwd"),
        ("https://host/%2e%2e%2f%2e%2e%2f", DEFAULT_NAME),
        ("https://host/%2e%2e", DEFAULT_NAME),
        ("https://host/a%5c..%5cwin.ini", "win.ini"),
        ("https://host/.bashrc", "bashrc"),
        ("https://host/...hidden.txt", "hidden.txt"),
        ("https://host/trailing.dots...", "trailing.dots"),
        ("https://host/caf%C3%A9.png", "cafe.png"),
        ("https://host/画像.png", "_.png"),
        ("https://host/%E7%94%BB%E5%83%8F", DEFAULT_NAME),
        ("https://host/a%00b%0a%1b[2J.png", "a_b_2J.png"),
        ("https://host/%ff%fe.bin", "_.bin"),
        ("https://host/name with spaces & $(rm -rf).mp4", "name_with_spaces_rm_-rf_.mp4"),
        ("https://host/-rf", "rf"),
        ("not a url at all", "not_a_url_at_all"),
        ("https://[::1/x.png", DEFAULT_NAME),
        ("", DEFAULT_NAME),
    ],
)
def test_the_file_name_comes_from_the_last_segment_made_portable(url: str, name: str) -> None:
    assert file_name(url) == name


def test_the_key_is_prediction_position_and_name() -> None:
    assert artifact_key("p1", 0, "https://host/x/out.png?sig=1") == "p1/0-out.png"
    assert artifact_key("abc_DEF-9", 12, "https://host/") == "abc_DEF-9/12-output"


def test_a_huge_name_is_cut_keeping_its_extension() -> None:
    name = file_name("https://host/" + "a" * 10_000 + ".webp")
    assert len(name) == MAX_NAME_CHARS
    assert name.endswith("a.webp")
    no_extension = file_name("https://host/" + "b" * 10_000)
    assert no_extension == "b" * MAX_NAME_CHARS
    long_extension = file_name("https://host/x." + "c" * 500)
    assert len(long_extension) == MAX_NAME_CHARS and long_extension.startswith("x.ccc")


def test_odd_prediction_ids_get_a_safe_folder_of_their_own() -> None:
    odd = ["../etc", "a/b", "a_b/", ".", "..", "", "x" * 500, "é", "a\x00b", "a.b"]
    folders = [artifact_key(pid, 0, "https://h/f").split("/")[0] for pid in odd]
    assert all(PORTABLE.fullmatch(f) and len(f) <= 128 for f in folders), folders
    assert len(set(folders)) == len(folders)
    assert all(".." not in f for f in folders)


@pytest.mark.parametrize("position", [-1, True, 1.5, "0"])
def test_a_position_is_an_int_from_zero(position: object) -> None:
    with pytest.raises(ValueError):
        artifact_key("p1", position, "https://h/f")  # type: ignore[arg-type]


@given(st.text(max_size=300), st.integers(min_value=0, max_value=10_000), st.text(max_size=300))
def test_every_key_is_two_portable_segments(pid: str, position: int, tail: str) -> None:
    key = artifact_key(pid, position, "https://host/" + tail)
    folder, _, name = key.partition("/")
    assert "/" not in name and "\\" not in key
    assert PORTABLE.fullmatch(folder) and PORTABLE.fullmatch(name), key
    assert name.startswith(f"{position}-")
    assert len(name) <= MAX_NAME_CHARS + len(f"{position}-")
    assert check_key(key) == [folder, name]


@given(st.text(max_size=200))
def test_safe_names_are_portable_and_never_hidden(text: str) -> None:
    name = safe_name(text)
    assert PORTABLE.fullmatch(name) and not name.startswith(".")
    assert 0 < len(name) <= MAX_NAME_CHARS


@pytest.mark.parametrize(
    "key", ["", "/abs", "a//b", "../x", "a/../b", "a/.hidden", ".", "a/b\\c", "a/b c", "a/\x00"]
)
def test_storage_refuses_keys_artifact_key_never_makes(key: str) -> None:
    with pytest.raises(InvalidInput):
        check_key(key)

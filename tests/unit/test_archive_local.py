"""The archive in a local directory: what TRACKER_ARCHIVE_URL accepts, and uploads
that are invisible under their final name until committed (a killed daemon leaves
at most a hidden .part- file, which the sweep removes)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tracker.archive.local import BLOCK, LocalStorage
from tracker.archive.storage import (
    ArchiveStorage,
    StorageError,
    StoredObjectMissing,
    open_storage,
)
from tracker.exceptions import ConfigError, InvalidInput


def local(path: Path) -> LocalStorage:
    storage = open_storage(str(path))
    assert isinstance(storage, LocalStorage)
    return storage


def parts(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(".*") if ".part-" in p.name)


async def read_all(storage: ArchiveStorage, key: str) -> bytes:
    return b"".join([chunk async for chunk in await storage.read(key)])


# -- what the setting accepts ------------------------------------------------------


def test_a_path_a_file_url_and_home_all_name_a_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert local(Path("rel/archive")).root == tmp_path / "rel" / "archive"
    assert local(tmp_path / "abs").root == tmp_path / "abs"
    assert open_storage("~/arch").describe() == (tmp_path / "home" / "arch").as_uri()
    spaced = open_storage((tmp_path / "with space").as_uri())
    assert spaced.describe() == (tmp_path / "with space").as_uri()
    assert (tmp_path / "with space").is_dir()  # created, %20 decoded
    assert open_storage(f"file://localhost{tmp_path}/x").describe() == (tmp_path / "x").as_uri()


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "TRACKER_ARCHIVE_URL is empty"),
        ("   ", "TRACKER_ARCHIVE_URL is empty"),
        ("ftp://host/dir", "ftp:// is not supported"),
        ("https://host/dir", "https:// is not supported"),
        ("gs://bucket/dir", "gs:// is not supported"),
        ("file://otherhost/dir", "names another host"),
        ("file:///dir?x=1", "no ?query"),
        ("file://", "give file:///absolute/dir"),
        ("s3://", "names no bucket"),
        ("s3:///prefix", "names no bucket"),
        ("s3://bucket/pre?x=1", "no ?query"),
        ("s3://AKIA:secretvalue@bucket/x", "not in the URL"),
        ("s3://bad bucket/x", "is not a bucket name"),
        ("s3://bucket/a/../b", "is not a plain path"),
    ],
)
def test_anything_else_is_a_one_line_config_error(value: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_storage(value, env={"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
    message = str(caught.value)
    assert words in message and "TRACKER_ARCHIVE_URL" in message and "\n" not in message
    assert "secretvalue" not in message


def test_a_file_where_the_directory_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        open_storage(str(tmp_path / "file"))
    with pytest.raises(ConfigError, match="cannot create the directory"):
        open_storage(str(tmp_path / "file" / "below"))


def test_a_read_only_directory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The directory's mode is what a user meets; as root (CI) every directory is
    writable, so os.access is told the truth an unprivileged user would get."""
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    if os.geteuid() == 0:
        real = os.access

        def unprivileged(path: object, mode: int, **kwargs: object) -> bool:
            if Path(str(path)) == folder and mode & os.W_OK:
                return False
            return real(path, mode, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "access", unprivileged)
    with pytest.raises(ConfigError, match="not writable"):
        open_storage(str(folder))


def test_s3_needs_its_keys_in_the_environment() -> None:
    with pytest.raises(ConfigError, match="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        open_storage("s3://bucket/prefix", env={"AWS_ACCESS_KEY_ID": "only-the-id"})
    with pytest.raises(ConfigError, match=r"AWS_ENDPOINT_URL: .* is not an http"):
        open_storage(
            "s3://bucket",
            env={
                "AWS_ACCESS_KEY_ID": "k",
                "AWS_SECRET_ACCESS_KEY": "s",
                "AWS_ENDPOINT_URL": "ftp://x",
            },
        )


def test_s3_describes_itself_without_keys() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "AKIAVISIBLEKEYID",
        "AWS_SECRET_ACCESS_KEY": "very-secret-value",
        "AWS_SESSION_TOKEN": "session-token-value",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9/",
    }
    storage = open_storage("s3://bucket/some/prefix/", env=env)
    assert storage.describe() == "s3://bucket/some/prefix at http://127.0.0.1:9"
    assert storage.stored_url("p1/0-a.png") == "s3://bucket/some/prefix/p1/0-a.png"
    assert open_storage("s3://bucket", env=env).stored_url("p/0-a") == "s3://bucket/p/0-a"
    for shown in (storage.describe(), repr(storage), str(vars(storage))):
        assert "very-secret-value" not in shown and "session-token-value" not in shown


# -- uploads ----------------------------------------------------------------------


async def test_a_committed_upload_is_in_place_whole_and_nothing_else_is_left(
    tmp_path: Path,
) -> None:
    storage = local(tmp_path / "archive")
    upload = await storage.open_upload("p1/0-out.png")
    body = os.urandom(BLOCK + 12345)
    for start in range(0, len(body), 65536):
        await upload.write(body[start : start + 65536])
    final = tmp_path / "archive" / "p1" / "0-out.png"
    assert not final.exists()  # still under its temporary name
    [part] = parts(tmp_path)
    assert part.parent == final.parent and part.name.startswith(".0-out.png.part-")
    url = await upload.commit()
    assert url == final.as_uri() == storage.stored_url("p1/0-out.png")
    assert final.read_bytes() == body
    assert parts(tmp_path) == []
    await upload.abort()  # after commit: nothing happens
    assert final.read_bytes() == body
    assert await read_all(storage, "p1/0-out.png") == body


async def test_an_aborted_upload_leaves_nothing(tmp_path: Path) -> None:
    storage = local(tmp_path)
    upload = await storage.open_upload("p1/0-a.bin")
    await upload.write(b"x" * (3 * BLOCK))
    await upload.abort()
    await upload.abort()  # twice: still no error
    assert parts(tmp_path) == [] and not (tmp_path / "p1" / "0-a.bin").exists()
    with pytest.raises(StorageError, match="aborted"):
        await upload.write(b"more")
    with pytest.raises(StorageError, match="aborted"):
        await upload.commit()


async def test_a_new_upload_replaces_what_was_stored_only_when_committed(tmp_path: Path) -> None:
    storage = local(tmp_path)
    first = await storage.open_upload("p1/0-a")
    await first.write(b"first")
    await first.commit()
    second = await storage.open_upload("p1/0-a")
    await second.write(b"second, longer")
    assert (tmp_path / "p1" / "0-a").read_bytes() == b"first"
    await second.abort()
    assert (tmp_path / "p1" / "0-a").read_bytes() == b"first"
    third = await storage.open_upload("p1/0-a")
    await third.write(b"third")
    await third.commit()
    assert (tmp_path / "p1" / "0-a").read_bytes() == b"third"


async def test_a_new_upload_of_a_key_supersedes_an_earlier_one(tmp_path: Path) -> None:
    """Only the artifact's claim holder uploads it: an earlier upload of the same key
    (a killed daemon's, one whose claim expired) loses its part file and cannot
    commit; the newer one is stored whole, never mixed."""
    storage = local(tmp_path)
    a = await storage.open_upload("p1/0-a")
    await a.write(b"A" * BLOCK)  # past the first block: a's part file exists
    b = await storage.open_upload("p1/0-a")
    await b.write(b"B" * BLOCK)
    with pytest.raises(StorageError):
        await a.commit()
    await a.abort()
    await b.commit()
    assert (tmp_path / "p1" / "0-a").read_bytes() == b"B" * BLOCK
    assert sorted(p.name for p in (tmp_path / "p1").iterdir()) == ["0-a"]


async def test_an_abort_while_a_write_is_in_its_thread_waits_for_it(tmp_path: Path) -> None:
    storage = local(tmp_path)
    upload = await storage.open_upload("p1/0-a")
    writing = asyncio.ensure_future(upload.write(b"z" * (8 * BLOCK)))
    await asyncio.sleep(0)
    writing.cancel()
    await upload.abort()
    await asyncio.gather(writing, return_exceptions=True)
    await asyncio.sleep(0.05)  # the cancelled thread write has ended by now
    assert list(tmp_path.rglob("*")) == [tmp_path / "p1"]


async def test_keys_outside_the_archive_are_refused(tmp_path: Path) -> None:
    storage = local(tmp_path / "archive")
    for key in ("../escape", "/etc/passwd", "p1/../../x", "p1/.hidden"):
        with pytest.raises(InvalidInput):
            await storage.open_upload(key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive"]


async def test_delete_says_whether_there_was_a_file(tmp_path: Path) -> None:
    storage = local(tmp_path)
    upload = await storage.open_upload("p1/0-a")
    await upload.write(b"x")
    await upload.commit()
    assert await storage.delete("p1/0-a") is True
    assert await storage.delete("p1/0-a") is False
    assert await storage.delete("nobody/0-x") is False


async def test_reading_a_missing_file_fails_before_any_chunk(tmp_path: Path) -> None:
    storage = local(tmp_path)
    with pytest.raises(StoredObjectMissing):
        await storage.read("p1/0-missing")
    (tmp_path / "p1" / "0-dir").mkdir(parents=True)
    with pytest.raises(StoredObjectMissing):
        await storage.read("p1/0-dir")


async def test_reading_comes_in_blocks(tmp_path: Path) -> None:
    storage = local(tmp_path)
    upload = await storage.open_upload("p1/0-big")
    await upload.write(b"y" * (2 * BLOCK + 1))
    await upload.commit()
    sizes = [len(chunk) async for chunk in await storage.read("p1/0-big")]
    assert sizes == [BLOCK, BLOCK, 1]


async def test_sweep_removes_only_old_parts(tmp_path: Path) -> None:
    storage = local(tmp_path)
    folder = tmp_path / "p1"
    folder.mkdir()
    old = folder / ".0-a.part-0123456789ab"
    fresh = folder / ".0-b.part-ba9876543210"
    kept = [folder / "0-c.part-not-hidden", folder / ".0-d", folder / "0-e"]
    for path in (old, fresh, *kept):
        path.write_bytes(b"x")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert await storage.sweep_partials(older_than=600) == 1
    assert not old.exists() and fresh.exists() and all(p.exists() for p in kept)
    assert await storage.sweep_partials(older_than=0) == 1
    assert not fresh.exists()
    await storage.close()


async def test_a_full_disk_is_a_storage_error(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    storage = local(tmp_path)
    upload = await storage.open_upload("p1/0-a")
    await upload.write(b"x" * BLOCK)  # the part file is made with the first block
    assert upload._fd is not None
    os.close(upload._fd)
    upload._fd = os.open("/dev/full", os.O_WRONLY)  # every write fails with ENOSPC
    with pytest.raises(StorageError, match="No space left on device"):
        await upload.write(b"x" * BLOCK)
    await upload.abort()
    assert parts(tmp_path) == []


async def test_a_small_upload_can_be_committed_later_by_a_blocking_call(tmp_path: Path) -> None:
    storage = local(tmp_path)
    upload = await storage.open_upload("p1/0-small.png")
    await upload.write(b"a" * 100)
    await upload.write(b"b" * 50)
    commit = upload.commit_later()
    assert commit is not None
    final = tmp_path / "p1" / "0-small.png"
    assert not final.exists() and parts(tmp_path) == []  # held in memory until then
    assert await asyncio.to_thread(commit) == final.as_uri() == storage.stored_url("p1/0-small.png")
    assert final.read_bytes() == b"a" * 100 + b"b" * 50
    assert parts(tmp_path) == []


async def test_an_upload_with_a_block_on_disk_is_not_committed_later(tmp_path: Path) -> None:
    storage = local(tmp_path)
    upload = await storage.open_upload("p1/0-big")
    await upload.write(b"x" * (BLOCK + 1))  # a block went to its part file
    assert upload.commit_later() is None
    assert await upload.commit() == (tmp_path / "p1" / "0-big").as_uri()
    assert (tmp_path / "p1" / "0-big").stat().st_size == BLOCK + 1


async def test_a_later_commit_that_fails_is_a_storage_error_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    storage = local(tmp_path)
    (tmp_path / "p1" / "0-a").mkdir(parents=True)  # a folder where the file must go
    upload = await storage.open_upload("p1/0-a")
    await upload.write(b"x")
    commit = upload.commit_later()
    assert commit is not None
    with pytest.raises(StorageError, match="cannot store"):
        commit()
    assert parts(tmp_path) == [] and (tmp_path / "p1" / "0-a").is_dir()
    aborted = await storage.open_upload("p1/0-b")
    await aborted.write(b"y")
    later = aborted.commit_later()
    await aborted.abort()
    assert later is not None
    with pytest.raises(StorageError, match="cannot store"):
        later()
    assert not (tmp_path / "p1" / "0-b").exists()

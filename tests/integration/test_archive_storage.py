"""Both kinds of archive storage behave alike: a local directory, and an S3 bucket on a
real S3-compatible server (moto in server mode on 127.0.0.1, tests/s3server.py).
Nothing is visible under a key before commit, an abort leaves nothing (not even an
unfinished multipart upload), and no S3 key ever appears in an error."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.rawservers import closed_port
from tests.s3server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, MotoS3, moto_s3
from tracker.archive.s3 import PART_BYTES, s3_error_text
from tracker.archive.storage import ArchiveStorage, StorageError, StoredObjectMissing, open_storage

KEY = "p1/0-out.png"


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    with moto_s3() as server:
        yield server


class Archive:
    """One storage under test and a look into it that does not go through it."""

    def __init__(
        self, storage: ArchiveStorage, s3: MotoS3 | None, root: Path | None, prefix: str
    ) -> None:
        self.storage = storage
        self.s3 = s3
        self.root = root
        self.prefix = prefix

    def stored(self) -> dict[str, bytes]:
        """What is visible in the archive, by key (hidden part files not counted)."""
        if self.s3 is not None:
            keys = self.s3.keys(self.prefix + "/")
            return {k.removeprefix(self.prefix + "/"): self.s3.read(k) for k in keys}
        assert self.root is not None
        return {
            str(p.relative_to(self.root)): p.read_bytes()
            for p in self.root.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        }

    def leftovers(self) -> list[str]:
        """Unfinished uploads: multipart uploads on S3, .part- files on disk."""
        if self.s3 is not None:
            return [k for k in self.s3.multipart_uploads() if k.startswith(self.prefix + "/")]
        assert self.root is not None
        return [p.name for p in self.root.rglob(".*.part-*")]


@pytest.fixture(params=["local", "s3"])
async def archive(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Archive]:
    prefix = f"run-{os.urandom(4).hex()}"  # the S3 server is shared by the module
    if request.param == "local":
        root = tmp_path / "archive"
        made = Archive(open_storage(str(root)), None, root, prefix)
    else:
        s3: MotoS3 = request.getfixturevalue("s3")
        made = Archive(open_storage(s3.archive_url(prefix), s3.env), s3, None, prefix)
    yield made
    await made.storage.close()


async def write(storage: ArchiveStorage, key: str, body: bytes, chunk: int = 256 * 1024) -> str:
    upload = await storage.open_upload(key)
    for start in range(0, len(body), chunk):
        await upload.write(body[start : start + chunk])
    return await upload.commit()


async def read_all(storage: ArchiveStorage, key: str) -> bytes:
    return b"".join([chunk async for chunk in await storage.read(key)])


@pytest.mark.parametrize("size", [0, 1000, PART_BYTES + 4321])
async def test_an_upload_is_visible_only_once_committed(archive: Archive, size: int) -> None:
    body = os.urandom(size)
    upload = await archive.storage.open_upload(KEY)
    for start in range(0, size, 1024 * 1024):
        await upload.write(body[start : start + 1024 * 1024])
    assert archive.stored() == {}
    url = await upload.commit()
    assert url == archive.storage.stored_url(KEY)
    assert archive.stored() == {KEY: body}
    assert archive.leftovers() == []
    assert await read_all(archive.storage, KEY) == body


@pytest.mark.parametrize("size", [10, 2 * PART_BYTES + 1])
async def test_an_aborted_upload_leaves_nothing_behind(archive: Archive, size: int) -> None:
    upload = await archive.storage.open_upload(KEY)
    for start in range(0, size, 1024 * 1024):
        await upload.write(os.urandom(min(1024 * 1024, size - start)))
    if archive.s3 is not None and size > PART_BYTES:
        assert len(archive.leftovers()) == 1  # a multipart upload is under way, invisible
    assert archive.stored() == {}
    await upload.abort()
    await upload.abort()
    assert archive.stored() == {}
    assert archive.leftovers() == []


async def test_an_aborted_upload_keeps_what_was_stored_before(archive: Archive) -> None:
    await write(archive.storage, KEY, b"the first, whole")
    upload = await archive.storage.open_upload(KEY)
    await upload.write(os.urandom(PART_BYTES + 1))
    await upload.abort()
    assert archive.stored() == {KEY: b"the first, whole"}


async def test_delete_and_read_of_missing_keys(archive: Archive) -> None:
    await write(archive.storage, KEY, b"x")
    assert await archive.storage.delete(KEY) is True
    assert await archive.storage.delete(KEY) is False
    assert archive.stored() == {}
    with pytest.raises(StoredObjectMissing):
        await archive.storage.read(KEY)


async def test_reading_streams_in_chunks(archive: Archive) -> None:
    body = os.urandom(3 * 1024 * 1024 + 5)
    await write(archive.storage, KEY, body)
    chunks = [chunk async for chunk in await archive.storage.read(KEY)]
    assert b"".join(chunks) == body
    assert len(chunks) > 1 and max(len(c) for c in chunks) <= 2 * 1024 * 1024


async def test_stored_urls_name_the_bucket_and_prefix(s3: MotoS3) -> None:
    storage = open_storage(s3.archive_url("deep/er"), s3.env)
    url = await write(storage, "p9/3-a.txt", b"hello")
    assert url == f"s3://{s3.bucket}/deep/er/p9/3-a.txt"
    assert s3.read("deep/er/p9/3-a.txt") == b"hello"
    assert storage.describe() == f"s3://{s3.bucket}/deep/er at {s3.endpoint}"


# -- no key in any error --------------------------------------------------------------


def no_secret(text: str) -> None:
    assert SECRET_ACCESS_KEY not in text and ACCESS_KEY_ID not in text
    assert "\n" not in text and len(text) <= 301


async def test_a_missing_bucket_is_a_short_error_without_keys(s3: MotoS3) -> None:
    storage = open_storage("s3://no-such-bucket-here/x", s3.env)
    upload = await storage.open_upload(KEY)
    await upload.write(b"data")
    with pytest.raises(StorageError) as caught:
        await upload.commit()
    text = str(caught.value)
    no_secret(text)
    assert text.startswith("S3 PUT no-such-bucket-here/x/p1/0-out.png: 404")
    assert "NoSuchBucket" in text
    await upload.abort()


async def test_an_unreachable_endpoint_is_a_short_error_without_keys(s3: MotoS3) -> None:
    env = {**s3.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port()}"}
    storage = open_storage(s3.archive_url("x"), env)
    with pytest.raises(StorageError) as caught:
        await storage.read(KEY)
    text = str(caught.value)
    no_secret(text)
    assert text.startswith("S3 GET ") and "ConnectionRefused" in text


def test_keys_quoted_by_the_library_are_masked() -> None:
    secrets = ("wrong-secret-abcdef", "SESSIONTOKEN123", "AKIAWRONG")
    text = (
        "Generic S3 error: Error performing PUT http://127.0.0.1:9/b/k in 1ms - Server"
        " returned non-2xx status code: 403 Forbidden: <Error><Code>SignatureDoesNotMatch"
        "</Code><Message>AWSAccessKeyId AKIAWRONG secret wrong-secret-abcdef</Message>"
        '</Error>\n\nDebug source:\nconfig { secret_access_key: "wrong-secret-abcdef",'
        ' token: "SESSIONTOKEN123" }'
    )
    shown = s3_error_text(RuntimeError(text), secrets)
    assert shown.startswith("S3 PUT b/k: 403 Forbidden SignatureDoesNotMatch")
    assert not any(s in shown for s in secrets)
    odd = s3_error_text(ValueError("config secret_access_key=wrong-secret-abcdef\x1b[2J"), secrets)
    assert "wrong-secret-abcdef" not in odd and "\x1b" not in odd

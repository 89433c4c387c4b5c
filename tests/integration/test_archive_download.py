"""download() against real file hosts on loopback: files stored whole with their hash
and type, into a directory and into S3 (moto); refused while they stream when too
large; redirects within the host policy and at most 5; connections cut, statuses,
trickling hosts; the API key only to the API's own origin. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import aiohttp
import pytest

from tests.rawservers import closed_port
from tests.s3server import moto_s3
from tracker.archive.download import (
    MIN_RATE,
    Downloaded,
    DownloadFailed,
    download,
    make_download_client,
)
from tracker.archive.local import BLOCK as UPLOAD_BLOCK
from tracker.archive.storage import ArchiveStorage, open_storage
from tracker.net.policy import parse_policy

VARIABLE = "TRACKER_ARCHIVE_ALLOWED_HOSTS"
API_KEY = "r8_test_api_key_0123456789"
KEY = "p1/0-out.png"
BLOCK = bytes(range(256)) * 4096  # 1 MiB, the same every time: the host allocates nothing

#: past the local storage's first block: the part file exists while the rest trickles
TRICKLE_START = 2 * 1024 * 1024


def body_of(size: int) -> bytes:
    return (BLOCK * (size // len(BLOCK) + 1))[:size]


def sha256_of_blocks(size: int) -> str:
    digest = hashlib.sha256()
    whole, rest = divmod(size, len(BLOCK))
    for _ in range(whole):
        digest.update(BLOCK)
    digest.update(BLOCK[:rest])
    return digest.hexdigest()


def head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join([*lines, "Connection: close", "", ""])).encode("utf-8")


class FileHost:
    """An HTTP/1.1 file host on 127.0.0.1; the first path segment picks the behaviour:

    - ``file/NAME?size=N&type=T&chunked=1&gzip=1``: N bytes (Content-Length unless chunked);
      ``&encoding=E`` says Content-Encoding E of a body that is not encoded;
    - ``big/N``: N bytes sent in 1 MiB blocks;
    - ``redirect/N``: 302 to the relative ``N-1`` until 0, which serves a 1000-byte file;
    - ``go?to=URL&code=302``: a redirect to URL;
    - ``status/CODE?retry_after=S``: that status;
    - ``cut/N?declared=M&chunked=1``: N bytes of a body said to be M, then the connection closes;
    - ``trickle``: 200 chunked, ``?start=N`` bytes at once (default none), then one
      byte every 0.1 s, forever;
    - ``silent``: 200 with Content-Length 100, then nothing.

    Each request is recorded with its Authorization header.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()
        self._seen: list[tuple[str, str | None]] = []
        self.port = 0

    def __enter__(self) -> FileHost:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{path.lstrip('/')}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def seen(self) -> list[tuple[str, str | None]]:
        """(path, Authorization or None) of every request, in order."""
        with self._lock:
            return list(self._seen)

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            target = request[0].split(" ")[1]
            auth = next(
                (
                    line.partition(":")[2].strip()
                    for line in request[1:]
                    if line.lower().startswith("authorization:")
                ),
                None,
            )
            with self._lock:
                self._seen.append((unquote(target), auth))
            await self._answer(target, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # cancelled: stopped while answering (silent, trickle)
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, target: str, writer: asyncio.StreamWriter) -> None:
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        segments = parts.path.strip("/").split("/")
        mode, arg = segments[0], segments[-1]
        if mode == "file":
            await self._file(writer, query)
        elif mode == "big":
            await self._big(writer, int(arg))
        elif mode == "redirect":
            if int(arg) > 0:
                writer.write(head(302, {"Location": str(int(arg) - 1), "Content-Length": "0"}))
            else:
                await self._file(writer, {"size": "1000"})
        elif mode == "go":
            writer.write(head(int(query.get("code", "302")), {"Location": query["to"]}))
        elif mode == "status":
            extra = {"Retry-After": query["retry_after"]} if "retry_after" in query else {}
            body = b"" if arg in ("204", "304") else b"no"
            writer.write(head(int(arg), {"Content-Length": str(len(body)), **extra}) + body)
        elif mode == "cut":
            await self._cut(writer, int(arg), query)
        elif mode == "trickle":
            writer.write(head(200, {"Transfer-Encoding": "chunked"}))
            start = int(query.get("start", "0"))
            if start:
                writer.write(b"%x\r\n%s\r\n" % (start, b"t" * start))
            while True:
                writer.write(b"1\r\nx\r\n")
                await writer.drain()
                await asyncio.sleep(0.1)
        elif mode == "silent":
            writer.write(head(200, {"Content-Length": "100"}))
            await writer.drain()
            await asyncio.sleep(60)
        await writer.drain()

    async def _file(self, writer: asyncio.StreamWriter, query: dict[str, str]) -> None:
        body = body_of(int(query.get("size", "1000")))
        headers = {"Content-Type": query.get("type", "image/png")}
        if query.get("gzip"):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        elif query.get("encoding"):  # said, not applied: a body that cannot be decoded
            headers["Content-Encoding"] = query["encoding"]
        if query.get("chunked"):
            writer.write(head(200, {**headers, "Transfer-Encoding": "chunked"}))
            for start in range(0, len(body), 65536):
                piece = body[start : start + 65536]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(head(200, {**headers, "Content-Length": str(len(body))}) + body)

    async def _big(self, writer: asyncio.StreamWriter, size: int) -> None:
        writer.write(head(200, {"Content-Type": "video/mp4", "Content-Length": str(size)}))
        whole, rest = divmod(size, len(BLOCK))
        for _ in range(whole):
            writer.write(BLOCK)
            await writer.drain()
        writer.write(BLOCK[:rest])

    async def _cut(self, writer: asyncio.StreamWriter, sent: int, query: dict[str, str]) -> None:
        if query.get("chunked"):
            writer.write(head(200, {"Transfer-Encoding": "chunked"}))
            writer.write(b"%x\r\n%s\r\n" % (sent, body_of(sent)))
        else:
            writer.write(head(200, {"Content-Length": query["declared"]}) + body_of(sent))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()


@pytest.fixture
def files() -> Iterator[FileHost]:
    with FileHost() as host:
        yield host


@pytest.fixture
def api() -> Iterator[FileHost]:
    with FileHost() as host:
        yield host


@pytest.fixture
def storage(tmp_path: Path) -> ArchiveStorage:
    return open_storage(str(tmp_path / "archive"))


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    policy = parse_policy("loopback", VARIABLE)
    async with make_download_client(timeout=5, max_connections=4, allowed=policy) as http:
        yield http


async def fetch(
    client: aiohttp.ClientSession,
    url: str,
    storage: ArchiveStorage,
    *,
    max_bytes: int = 10 * 1024 * 1024,
    api_base: str = "http://127.0.0.1:1/v1",
    timeout: float = 5.0,
    key: str = KEY,
) -> Downloaded:
    return await download(
        client,
        url,
        storage,
        key,
        max_bytes=max_bytes,
        api_base=api_base,
        api_key=API_KEY,
        timeout=timeout,
    )


async def failure(
    client: aiohttp.ClientSession, url: str, storage: ArchiveStorage, **kw: object
) -> DownloadFailed:
    with pytest.raises(DownloadFailed) as caught:
        await fetch(client, url, storage, **kw)  # type: ignore[arg-type]
    failed = caught.value
    assert "\n" not in failed.reason and API_KEY not in failed.reason
    return failed


def files_in(root: Path) -> list[str]:
    """Every file under root, part files included, relative."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- stored whole ----------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_file_is_stored_whole_with_hash_size_and_type(
    client: aiohttp.ClientSession,
    files: FileHost,
    storage: ArchiveStorage,
    tmp_path: Path,
    chunked: bool,
) -> None:
    size = 3 * 1024 * 1024 + 17
    url = files.url(f"file/out.png?size={size}&type=image/png&chunked={int(chunked) or ''}")
    got = await fetch(client, url, storage)
    root = tmp_path / "archive"
    assert got == Downloaded(
        stored_url=(root / KEY).as_uri(),
        bytes=size,
        sha256=sha256_of_blocks(size),
        content_type="image/png",
    )
    assert (root / KEY).read_bytes() == body_of(size)
    assert files_in(root) == [KEY]  # no .part- left


async def test_with_defer_a_small_file_waits_in_memory_for_its_commit(
    client: aiohttp.ClientSession, files: FileHost, storage: ArchiveStorage, tmp_path: Path
) -> None:
    root = tmp_path / "archive"

    async def deferred(url: str, key: str) -> Downloaded:
        return await download(
            client,
            url,
            storage,
            key,
            max_bytes=10 * 1024 * 1024,
            api_base="http://127.0.0.1:1/v1",
            api_key=API_KEY,
            timeout=5.0,
            defer=True,
        )

    small = await deferred(files.url("file/out.png?size=5000&type=image/png"), KEY)
    assert small.commit is not None and files_in(root) == []  # nothing on disk yet
    assert await asyncio.to_thread(small.commit) == small.stored_url == (root / KEY).as_uri()
    assert (root / KEY).read_bytes() == body_of(5000)
    assert small.sha256 == sha256_of_blocks(5000) and small.bytes == 5000
    size = UPLOAD_BLOCK + 1  # a block went to disk as it came: committed by the download
    big = await deferred(files.url(f"file/big.bin?size={size}"), "p1/1-big.bin")
    assert big.commit is None and (root / "p1" / "1-big.bin").read_bytes() == body_of(size)
    assert files_in(root) == [KEY, "p1/1-big.bin"]


async def test_the_content_type_is_cleaned_and_cut(
    client: aiohttp.ClientSession, files: FileHost, storage: ArchiveStorage
) -> None:
    odd = quote("image/png;\u009b name=\u202e" + "x" * 300)
    got = await fetch(client, files.url(f"file/a?type={odd}"), storage)
    assert got.content_type is not None and len(got.content_type) == 100
    assert got.content_type.startswith("image/png; name=xxx")
    none = await fetch(client, files.url("file/a?type="), storage, key="p1/1-a")
    assert none.content_type is None


async def test_a_file_goes_into_s3(client: aiohttp.ClientSession, files: FileHost) -> None:
    size = 9 * 1024 * 1024 + 5  # more than one part of a multipart upload
    with moto_s3() as s3:
        storage = open_storage(s3.archive_url("archive"), s3.env)
        got = await fetch(client, files.url(f"big/{size}"), storage)
        assert got.stored_url == f"s3://{s3.bucket}/archive/{KEY}"
        assert got.sha256 == sha256_of_blocks(size) and got.bytes == size
        assert hashlib.sha256(s3.read(f"archive/{KEY}")).hexdigest() == got.sha256
        failed = await failure(
            client, files.url("cut/3000000?declared=4000000"), storage, key="p1/1-cut"
        )
        assert failed.retry
        assert s3.keys() == [f"archive/{KEY}"] and s3.multipart_uploads() == []


# -- too large -------------------------------------------------------------------------


async def test_a_file_declared_too_large_is_refused_before_anything_is_stored(
    client: aiohttp.ClientSession, files: FileHost, storage: ArchiveStorage, tmp_path: Path
) -> None:
    failed = await failure(client, files.url("file/a?size=2000"), storage, max_bytes=1999)
    assert failed.reason == "larger than 1999 bytes (TRACKER_ARCHIVE_MAX_BYTES)"
    assert not failed.retry
    assert files_in(tmp_path / "archive") == []
    assert not (tmp_path / "archive" / "p1").exists()  # no upload was even opened


async def test_a_chunked_file_is_refused_when_it_passes_the_limit(
    client: aiohttp.ClientSession, files: FileHost, storage: ArchiveStorage, tmp_path: Path
) -> None:
    url = files.url("file/a?size=6291456&chunked=1")
    failed = await failure(client, url, storage, max_bytes=2 * 1024 * 1024)
    assert failed.reason == "larger than 2 MiB (TRACKER_ARCHIVE_MAX_BYTES)" and not failed.retry
    assert files_in(tmp_path / "archive") == []
    exact = await fetch(
        client, files.url("file/a?size=2097152&chunked=1"), storage, max_bytes=2 * 1024 * 1024
    )
    assert exact.bytes == 2 * 1024 * 1024  # the limit itself is allowed


async def test_a_compressed_body_counts_as_what_it_unpacks_to(
    client: aiohttp.ClientSession, files: FileHost, storage: ArchiveStorage, tmp_path: Path
) -> None:
    failed = await failure(
        client, files.url("file/a?size=5000000&gzip=1"), storage, max_bytes=1_000_000
    )
    assert failed.reason.startswith("larger than 1000000 bytes") and not failed.retry
    assert files_in(tmp_path / "archive") == []


# -- redirects ---------------------------------------------------------------------------


async def test_five_redirects_are_followed_and_a_sixth_is_refused(
    client: aiohttp.ClientSession, files: FileHost, storage: ArchiveStorage, tmp_path: Path
) -> None:
    got = await fetch(client, files.url("redirect/5"), storage)
    assert got.bytes == 1000
    assert [path for path, _ in files.seen()] == [f"/redirect/{n}" for n in range(5, -1, -1)]
    failed = await failure(client, files.url("redirect/6"), storage, key="p1/1-b")
    assert failed.reason == "more than 5 redirects" and not failed.retry
    assert files_in(tmp_path / "archive") == [KEY]


async def test_a_redirect_to_an_address_the_policy_refuses_is_refused(
    files: FileHost, storage: ArchiveStorage
) -> None:
    only_one = parse_policy("127.0.0.1/32", VARIABLE)
    elsewhere = files.url("file/x", host="127.0.0.2")
    async with make_download_client(timeout=5, max_connections=2, allowed=only_one) as http:
        assert (await fetch(http, files.url("file/x"), storage)).bytes == 1000
        failed = await failure(http, files.url(f"go?to={quote(elsewhere)}"), storage)
    assert failed.reason == (
        f"refused: 127.0.0.2 (loopback) is not allowed by {VARIABLE}=127.0.0.1/32"
        " (after 1 redirect)"
    )
    assert not failed.retry
    assert [p for p, _ in files.seen()] == ["/file/x", f"/go?to={elsewhere}"]


@pytest.mark.parametrize("allowed", ["*", "loopback,external,private"])
async def test_a_redirect_to_the_metadata_address_is_refused(
    files: FileHost, storage: ArchiveStorage, allowed: str
) -> None:
    policy = parse_policy(allowed, VARIABLE)
    metadata = "http://169.254.169.254/latest/meta-data/"
    async with make_download_client(timeout=2, max_connections=2, allowed=policy) as http:
        failed = await failure(http, files.url(f"go?to={quote(metadata)}"), storage)
    assert failed.reason.startswith("refused: 169.254.169.254 (link-local) is not allowed")
    assert not failed.retry


async def test_a_policy_without_loopback_refuses_the_host_at_once(
    files: FileHost, storage: ArchiveStorage
) -> None:
    policy = parse_policy("external", VARIABLE)
    async with make_download_client(timeout=5, max_connections=2, allowed=policy) as http:
        failed = await failure(http, files.url("file/x"), storage)
    assert failed.reason == f"refused: 127.0.0.1 (loopback) is not allowed by {VARIABLE}=external"
    assert not failed.retry and files.seen() == []


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:70/"]
)
async def test_a_redirect_to_another_scheme_is_refused(
    client: aiohttp.ClientSession, files: FileHost, storage: ArchiveStorage, location: str
) -> None:
    failed = await failure(client, files.url(f"go?to={quote(location)}"), storage)
    scheme = location.partition(":")[0]
    assert failed.reason == f"redirect from 127.0.0.1:{files.port} to a {scheme}: URL refused"
    assert not failed.retry


async def test_relative_and_absolute_locations_are_resolved(
    client: aiohttp.ClientSession, files: FileHost, storage: ArchiveStorage
) -> None:
    for n, location in enumerate(["/file/a?size=10", "../../file/b?size=11", files.url("file/c")]):
        got = await fetch(
            client, files.url(f"go/x/y?to={quote(location)}"), storage, key=f"p1/{n}-x"
        )
        assert got.bytes in (10, 11, 1000)
    served = [p for p, _ in files.seen()][1::2]
    assert served == ["/file/a?size=10", "/file/b?size=11", "/file/c"]


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "not a url", ""])
async def test_urls_that_are_not_http_are_refused(
    client: aiohttp.ClientSession, storage: ArchiveStorage, url: str
) -> None:
    failed = await failure(client, url, storage)
    assert not failed.retry and ("not an http(s) URL" in failed.reason or "valid" in failed.reason)


# -- broken answers -----------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_connection_cut_mid_body_may_be_retried_and_stores_nothing(
    client: aiohttp.ClientSession,
    files: FileHost,
    storage: ArchiveStorage,
    tmp_path: Path,
    chunked: bool,
) -> None:
    before = await storage.open_upload(KEY)  # a whole file from an earlier download
    await before.write(b"earlier")
    await before.commit()
    url = files.url(f"cut/200000?declared=500000&chunked={int(chunked) or ''}")
    failed = await failure(client, url, storage)
    assert failed.retry
    assert failed.reason.startswith(f"answer from 127.0.0.1:{files.port} broken off")
    assert files_in(tmp_path / "archive") == [KEY]
    assert (tmp_path / "archive" / KEY).read_bytes() == b"earlier"


@pytest.mark.parametrize(
    ("code", "retry"),
    [
        (404, True),
        (410, True),
        (403, True),
        (500, True),
        (502, True),
        (429, True),
        (400, False),
        (304, False),
        (206, False),
    ],
)
async def test_statuses_say_whether_to_try_again(
    client: aiohttp.ClientSession,
    files: FileHost,
    storage: ArchiveStorage,
    tmp_path: Path,
    code: int,
    retry: bool,
) -> None:
    failed = await failure(client, files.url(f"status/{code}"), storage)
    assert failed.reason == f"HTTP {code} from 127.0.0.1:{files.port}"
    assert failed.retry is retry and failed.retry_after is None
    assert files_in(tmp_path / "archive") == []


async def test_retry_after_is_passed_on(
    client: aiohttp.ClientSession, files: FileHost, storage: ArchiveStorage
) -> None:
    failed = await failure(client, files.url("status/429?retry_after=7"), storage)
    assert failed.retry and failed.retry_after == 7.0


async def test_a_refused_connection_may_be_retried(
    client: aiohttp.ClientSession, storage: ArchiveStorage
) -> None:
    port = closed_port()
    failed = await failure(client, f"http://127.0.0.1:{port}/x.png", storage)
    assert failed.reason == f"connection refused to 127.0.0.1:{port}" and failed.retry


async def test_a_host_that_goes_silent_times_out_after_the_timeout(
    client: aiohttp.ClientSession, files: FileHost, storage: ArchiveStorage, tmp_path: Path
) -> None:
    started = time.monotonic()
    failed = await failure(client, files.url("silent"), storage, timeout=0.5)
    # the idle timeout and the deadline of a 100-byte body end together: either says so
    assert failed.reason.startswith("timeout after 0.5 s") and failed.retry
    assert time.monotonic() - started < 3
    assert files_in(tmp_path / "archive") == []


async def test_a_host_that_trickles_forever_ends_at_the_overall_deadline(
    client: aiohttp.ClientSession, files: FileHost, storage: ArchiveStorage, tmp_path: Path
) -> None:
    # one byte every 0.1 s never lets the 0.5 s idle timeout fire; the deadline for a
    # body of at most max_bytes at MIN_RATE does
    max_bytes = MIN_RATE // 2
    started = time.monotonic()
    failed = await failure(client, files.url("trickle"), storage, timeout=0.5, max_bytes=max_bytes)
    elapsed = time.monotonic() - started
    assert failed.reason == "timeout after 1 s (answer incomplete)" and failed.retry
    assert 0.9 < elapsed < 3
    assert files_in(tmp_path / "archive") == []


async def test_a_cancelled_download_leaves_no_part(
    client: aiohttp.ClientSession, files: FileHost, storage: ArchiveStorage, tmp_path: Path
) -> None:
    url = files.url(f"trickle?start={TRICKLE_START}")
    task = asyncio.ensure_future(fetch(client, url, storage, timeout=5))
    for _ in range(100):
        await asyncio.sleep(0.05)
        if files_in(tmp_path / "archive"):
            break
    assert len(files_in(tmp_path / "archive")) == 1  # the part file, while it streams
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert files_in(tmp_path / "archive") == []


# -- the API key ---------------------------------------------------------------------------


async def test_the_api_key_goes_only_to_the_api_origin(
    client: aiohttp.ClientSession, api: FileHost, files: FileHost, storage: ArchiveStorage
) -> None:
    base = f"{api.origin}/v1"
    to_files = quote(files.url("file/b"))
    to_api = quote(api.url("file/d"))
    for n, url in enumerate(
        [
            api.url("file/a"),  # the API's own file host
            files.url("file/b"),  # another port of the same address
            api.url(f"go?to={to_files}"),  # from the API to elsewhere
            files.url(f"go?to={to_api}"),  # from elsewhere to the API
            api.url("file/e", host="localhost"),  # another name for the same address
        ]
    ):
        await fetch(client, url, storage, api_base=base, key=f"p1/{n}-f")
    bearer = f"Bearer {API_KEY}"
    assert api.seen() == [
        ("/file/a", bearer),
        (f"/go?to={unquote(to_files)}", bearer),
        ("/file/d", bearer),
        ("/file/e", None),
    ]
    assert files.seen() == [
        ("/file/b", None),
        ("/file/b", None),
        (f"/go?to={unquote(to_api)}", None),
    ]


async def test_credentials_in_the_url_go_instead_of_the_api_key(
    client: aiohttp.ClientSession, api: FileHost, storage: ArchiveStorage
) -> None:
    with_user = api.url("file/a").replace("http://", "http://user:pw@")
    await fetch(client, with_user, storage, api_base=f"{api.origin}/v1")
    basic = "Basic " + base64.b64encode(b"user:pw").decode()
    assert api.seen() == [("/file/a", basic)]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_that_is_not_what_its_encoding_says_may_be_tried_again(
    client: aiohttp.ClientSession,
    files: FileHost,
    storage: ArchiveStorage,
    tmp_path: Path,
    encoding: str,
) -> None:
    """A host that ignores ``Accept-Encoding: identity`` and sends a body its encoding
    cannot undo (corrupt, perhaps cut): said so, tried again later, nothing stored."""
    failed = await failure(client, files.url(f"file/a?size=5000&encoding={encoding}"), storage)
    where = f"127.0.0.1:{files.port}"
    assert failed.reason == f"answer from {where} could not be decoded ({encoding})"
    assert failed.retry
    assert files_in(tmp_path / "archive") == []


@pytest.mark.parametrize("encoding", ["br", "zstd"])
async def test_an_encoding_without_a_decoder_here_is_stored_as_received(
    client: aiohttp.ClientSession,
    files: FileHost,
    storage: ArchiveStorage,
    tmp_path: Path,
    encoding: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """brotli and zstd need packages the tracker does not install: rather than lose the
    file, it is fetched again without decoding and kept as the host sent it."""
    got = await fetch(client, files.url(f"file/a?size=5000&encoding={encoding}"), storage)
    assert (got.bytes, got.sha256) == (5000, sha256_of_blocks(5000))
    assert (tmp_path / "archive" / KEY).read_bytes() == body_of(5000)
    assert [p for p, _ in files.seen()] == [f"/file/a?size=5000&encoding={encoding}"] * 2
    assert "stored as received" in caplog.text


@pytest.mark.parametrize("redirected", [False, True])
async def test_a_url_aiohttp_cannot_send_fails_for_good(
    client: aiohttp.ClientSession, files: FileHost, storage: ArchiveStorage, redirected: bool
) -> None:
    bad = "http://127.0.0.1:99999/x"  # httpx parses it; the port is out of range
    url = files.url(f"go?to={quote(bad)}") if redirected else bad
    failed = await failure(client, url, storage)
    assert failed.reason.startswith("not a valid URL (127.0.0.1:99999)") and not failed.retry


async def test_no_key_goes_anywhere_when_the_api_base_is_not_a_url(
    client: aiohttp.ClientSession, files: FileHost, storage: ArchiveStorage
) -> None:
    for n, base in enumerate(["", "not a url", "ftp://127.0.0.1"]):
        await fetch(client, files.url("file/a"), storage, api_base=base, key=f"p1/{n}-a")
    assert [auth for _, auth in files.seen()] == [None, None, None]


# -- memory -------------------------------------------------------------------------------


async def test_a_large_file_streams_through_in_bounded_memory(
    client: aiohttp.ClientSession, files: FileHost, storage: ArchiveStorage, tmp_path: Path
) -> None:
    size = 200 * 1024 * 1024
    tracemalloc.start()
    try:
        got = await fetch(client, files.url(f"big/{size}"), storage, max_bytes=size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.bytes == size and got.sha256 == sha256_of_blocks(size)
    assert (tmp_path / "archive" / KEY).stat().st_size == size
    assert peak < 8 * 1024 * 1024, f"peak traced memory {peak / 1024 / 1024:.1f} MiB"

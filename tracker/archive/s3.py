"""The archive in an S3-compatible bucket (``s3://bucket/prefix``), through obstore.

Why obstore (the Rust ``object_store`` crate, as used by Apache Arrow) and not
boto3/botocore or s3fs: one small self-contained wheel instead of botocore's
tens of megabytes; a native asyncio API, so uploads never hold the event loop
that polls; streaming multipart uploads (``open_writer_async``) whose object
becomes visible only when the upload is completed, which is exactly the
"nothing under the final name until it is whole" rule; and it reads the
standard ``AWS_*`` settings.

Settings, only from the ``AWS_*`` variables (``env``; ``os.environ`` by default):
``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` (both required: no instance
metadata, profile or web-identity look-up ever runs), ``AWS_SESSION_TOKEN``,
``AWS_REGION`` (or ``AWS_DEFAULT_REGION``; default ``us-east-1``) and
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` for a store other than AWS
(MinIO, R2, moto...). An ``http://`` endpoint is allowed because it was asked for.

The keys never leave this module in text: ``describe`` names the bucket and the
endpoint only, and every obstore error is cut to one line (status, S3 error
code, cause) with the keys masked, since its messages quote requests and config.

Memory stays bounded: an upload buffers at most ``PART_BYTES`` and has at most
``MAX_CONCURRENCY`` parts in flight. An aborted upload is aborted on the server
too; one a crash (kill -9) left open stays invisible and costs storage until the
bucket's lifecycle rule for incomplete multipart uploads removes it (set one).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import obstore
from obstore.store import S3Store

from tracker.archive.storage import VARIABLE, StorageError, StoredObjectMissing, check_key
from tracker.exceptions import ConfigError
from tracker.net.read import MiB
from tracker.text.display import MASK, escape_line, mask_url

if TYPE_CHECKING:
    from obstore import AsyncWritableFile
    from obstore.store import S3Credential

#: size of each part of a multipart upload (S3 allows 10,000 parts: 78 GiB at most)
PART_BYTES = 8 * MiB
#: parts of one upload sent at once
MAX_CONCURRENCY = 2
#: chunks handed out by ``read``
READ_CHUNK = 1 * MiB
#: characters of an error text kept
ERROR_CHARS = 300
DEFAULT_REGION = "us-east-1"

_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")
_PREFIX_SEGMENT = re.compile(r"^[^\x00-\x1f\x7f]{1,255}$")


@dataclass(frozen=True)
class _Credentials:
    """Static keys handed to obstore on request (so it never looks for others)."""

    access_key_id: str
    secret_access_key: str
    token: str | None

    def __repr__(self) -> str:  # never the keys, should this end up in a log
        return "_Credentials(***)"

    def __call__(self) -> S3Credential:
        return {
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "token": self.token,
            "expires_at": None,
        }

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.secret_access_key, self.token, self.access_key_id) if s)


def open_s3(url: str, env: Mapping[str, str]) -> S3Storage:
    """The storage for ``s3://bucket/prefix``; raises ``ConfigError``."""
    bucket, prefix = _parse(url)
    key_id = env.get("AWS_ACCESS_KEY_ID", "").strip()
    secret = env.get("AWS_SECRET_ACCESS_KEY", "").strip()
    if not key_id or not secret:
        raise ConfigError(f"{VARIABLE} is s3://…: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    token = env.get("AWS_SESSION_TOKEN", "").strip() or None
    endpoint = (env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or "").strip()
    region = (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "").strip()
    return S3Storage(
        bucket,
        prefix,
        endpoint=_check_endpoint(endpoint) if endpoint else None,
        region=region or DEFAULT_REGION,
        credentials=_Credentials(key_id, secret, token),
    )


def _parse(url: str) -> tuple[str, str]:
    """Bucket and prefix (without slashes at either end) of ``s3://bucket/prefix``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigError(f"{VARIABLE}: not a valid s3://bucket/prefix URL") from None
    if "@" in parts.netloc:
        raise ConfigError(
            f"{VARIABLE}: give S3 keys in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,"
            " not in the URL"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"{VARIABLE}: an s3:// URL takes no ?query or #fragment")
    if not parts.netloc:
        raise ConfigError(f"{VARIABLE}: {mask_url(url)} names no bucket: give s3://bucket/prefix")
    if not _BUCKET.fullmatch(parts.netloc):
        raise ConfigError(f"{VARIABLE}: {escape_line(parts.netloc)!r} is not a bucket name")
    segments = [s for s in unquote(parts.path).split("/") if s]
    if any(s in (".", "..") or not _PREFIX_SEGMENT.fullmatch(s) for s in segments):
        raise ConfigError(f"{VARIABLE}: the prefix of {mask_url(url)} is not a plain path")
    return parts.netloc, "/".join(segments)


def _check_endpoint(endpoint: str) -> str:
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"AWS_ENDPOINT_URL: {mask_url(endpoint)} is not an http(s) URL")
    return endpoint.rstrip("/")


class S3Storage:
    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        endpoint: str | None,
        region: str,
        credentials: _Credentials,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self._credentials = credentials  # its repr masks the keys
        options: dict[str, Any] = {"region": region}
        if endpoint:
            options["endpoint"] = endpoint
        self._store = S3Store(
            bucket,
            prefix=prefix or None,
            credential_provider=credentials,
            client_options={
                "allow_http": bool(endpoint and endpoint.startswith("http://")),
                "connect_timeout": timedelta(seconds=10),
                "timeout": timedelta(seconds=300),  # one request: a part, a GET's headers
            },
            retry_config={"max_retries": 3, "retry_timeout": timedelta(seconds=60)},
            **options,
        )

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"{where} at {mask_url(self.endpoint)}" if self.endpoint else where

    def stored_url(self, key: str) -> str:
        check_key(key)
        return "/".join(s for s in (f"s3://{self.bucket}", self.prefix, key) if s)

    async def open_upload(self, key: str) -> S3Upload:
        url = self.stored_url(key)
        writer = obstore.open_writer_async(
            self._store, key, buffer_size=PART_BYTES, max_concurrency=MAX_CONCURRENCY
        )
        return S3Upload(writer, url, self.error)

    async def delete(self, key: str) -> bool:
        check_key(key)
        try:
            await obstore.head_async(self._store, key)
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise self.error(exc) from None
        try:
            await obstore.delete_async(self._store, key)
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise self.error(exc) from None
        return True

    async def read(self, key: str) -> AsyncIterator[bytes]:
        check_key(key)
        try:
            result = await obstore.get_async(self._store, key)
        except FileNotFoundError:
            raise StoredObjectMissing(f"nothing stored at {self.stored_url(key)}") from None
        except Exception as exc:
            raise self.error(exc) from None
        return self._chunks(result.stream(min_chunk_size=READ_CHUNK))

    async def _chunks(self, stream: AsyncIterator[Any]) -> AsyncIterator[bytes]:
        try:
            async for chunk in stream:
                yield bytes(chunk)
        except Exception as exc:
            raise self.error(exc) from None

    async def sweep_partials(self, older_than: float) -> int:
        return 0  # unfinished multipart uploads are invisible; see the module docstring

    async def close(self) -> None:
        return None

    def error(self, exc: BaseException) -> StorageError:
        """A StorageError saying in one line what went wrong, without any key."""
        return StorageError(s3_error_text(exc, self._credentials.secrets))


class S3Upload:
    def __init__(
        self,
        writer: AsyncWritableFile,
        url: str,
        error: Any,
    ) -> None:
        self._writer = writer
        self._url = url
        self._error = error
        self._state = "open"

    async def write(self, chunk: bytes) -> None:
        if self._state != "open":
            raise StorageError(f"the upload of {self._url} is {self._state}")
        try:
            await self._writer.write(chunk)
        except Exception as exc:
            raise self._error(exc) from None

    async def commit(self) -> str:
        if self._state != "open":
            raise StorageError(f"the upload of {self._url} is {self._state}")
        try:
            await self._writer.close()
        except Exception as exc:
            raise self._error(exc) from None
        self._state = "committed"
        return self._url

    def commit_later(self) -> None:
        return None  # the commit is network I/O, made by the event loop

    async def abort(self) -> None:
        if self._state != "open":
            return
        self._state = "aborted"
        try:
            # Leaving the writer with an exception aborts the multipart upload (a plain
            # close would complete it).
            await self._writer.__aexit__(_Aborted, _Aborted(), None)
        except Exception:  # never raises: the caller is already handling a failure
            return


class _Aborted(Exception):
    """Handed to the writer to make it abort rather than complete."""


# -- error text ---------------------------------------------------------------------

_PERFORMING = re.compile(r"Error performing (\w+) (\S+)")
_STATUS = re.compile(r"status code: (\d{3}[ A-Za-z]*)")
_S3_CODE = re.compile(r"<Code>([^<]{1,80})</Code>")
_S3_MESSAGE = re.compile(r"<Message>([^<]{1,200})</Message>")
_OS_KIND = re.compile(r"kind: (ConnectionRefused|ConnectionReset|TimedOut|[A-Za-z]+),\s*message")
_HTTP_CAUSE = re.compile(r"HTTP error: ([^\n]{1,120})")


def s3_error_text(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """``S3 PUT bucket/key: 404 Not Found NoSuchBucket (The specified bucket does not
    exist)``, ``S3 GET …: error sending request (ConnectionRefused)``: obstore's
    message cut to what says what happened, on one line, every secret masked."""
    text = str(exc)
    head = text.split("\n\nDebug source", 1)[0]
    performing = _PERFORMING.search(head)
    if performing is None:
        summary = " ".join(head.split()) or type(exc).__name__
    else:
        summary = f"S3 {performing[1]} {_path_of(performing[2])}: " + _cause(head, text)
    for secret in secrets:
        summary = summary.replace(secret, MASK)
    summary = escape_line(summary)
    return summary[:ERROR_CHARS] + ("…" if len(summary) > ERROR_CHARS else "")


def _cause(head: str, text: str) -> str:
    status = _STATUS.search(head)
    if status is not None:
        words = [status[1].strip()]
        if code := _S3_CODE.search(head):
            words.append(code[1])
        if message := _S3_MESSAGE.search(head):
            words.append(f"({message[1]})")
        return " ".join(words)
    cause = _HTTP_CAUSE.search(head)
    words = [cause[1].strip() if cause else "failed"]
    if kind := _OS_KIND.search(text):
        words.append(f"({kind[1]})")
    elif "timed out" in text.lower() or "timeout" in text.lower():
        words.append("(timeout)")
    return " ".join(words)


def _path_of(uri: str) -> str:
    """``bucket/key`` of a request URI: its host and query are not needed to act."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "?"
    return parts.path.lstrip("/") or "/"

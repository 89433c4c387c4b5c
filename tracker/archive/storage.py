"""Where archived output files go: a local directory or an S3-compatible bucket.

Both kinds behave alike for the archiver: an upload is invisible under its final
key until ``commit``, so a crash (kill -9 included) never leaves half a file
where a whole one is expected, and ``abort`` drops whatever was written.

- A directory (``TRACKER_ARCHIVE_URL=/srv/archive``, ``~/archive``, ``file:///srv/archive``):
  ``tracker.archive.local``. Files are written beside their final name under a
  hidden temporary name and renamed into place once complete and synced.
- ``s3://bucket/prefix``: ``tracker.archive.s3``, through obstore, with the
  endpoint and keys from the usual ``AWS_*`` variables.

Keys are ``{prediction_id}/{position}-{file name}`` (``artifact_key``), made of
portable characters only, whatever the output URL looked like: an upstream
chooses those URLs, and none of them may reach outside the archive.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from tracker.exceptions import ConfigError, InvalidInput, TrackerError
from tracker.text.display import escape_line, mask_url

#: the setting that names the archive, as error messages call it
VARIABLE = "TRACKER_ARCHIVE_URL"
#: longest file name part of a key (characters), extension included
MAX_NAME_CHARS = 100
#: longest extension kept whole when a name is shortened
MAX_SUFFIX_CHARS = 16
#: the name used when a URL gives none (``https://host/``, ``https://host/..``)
DEFAULT_NAME = "output"

_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_ALNUM = re.compile(r"[A-Za-z0-9]")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
#: one segment of a key: portable, never hidden, never ``.`` or ``..``
_KEY_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$")


class StorageError(TrackerError):
    """Writing to, reading from or deleting in the archive failed; the message is one
    line, holds no secret, and the operation may work when tried again."""


class StoredObjectMissing(StorageError):
    """``read`` of a key under which nothing is stored."""


class Upload(Protocol):
    """One object being written; invisible under its key until ``commit``."""

    async def write(self, chunk: bytes) -> None:
        """Append ``chunk``; raises ``StorageError``."""
        ...

    async def commit(self) -> str:
        """Put the whole object in place atomically and return its stored URL;
        raises ``StorageError`` (then nothing is under the key that was not before)."""
        ...

    async def abort(self) -> None:
        """Drop what was written; never raises, and does nothing after ``commit``."""
        ...

    def commit_later(self) -> Callable[[], str] | None:
        """Instead of ``commit``: a blocking function that commits (returns the stored
        URL or raises ``StorageError``), for the caller to run in a worker thread with
        the commits of other uploads; or None when this upload must be committed with
        ``commit`` (the object is not held whole in memory, or the storage has no
        blocking commit). Nothing may be written after it."""
        ...


class ArchiveStorage(Protocol):
    def describe(self) -> str:
        """Where the archive is, for logs: its URL, never a secret."""
        ...

    def stored_url(self, key: str) -> str:
        """``file:///abs/dir/KEY`` or ``s3://bucket/prefix/KEY``."""
        ...

    async def open_upload(self, key: str) -> Upload:
        """Start writing the object ``key`` (see ``Upload``)."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove the object; True when there was one (a missing one is no error)."""
        ...

    async def read(self, key: str) -> AsyncIterator[bytes]:
        """The stored object in chunks; raises ``StoredObjectMissing`` at once (before
        any chunk) when there is none, so a server can still answer 404."""
        ...

    async def sweep_partials(self, older_than: float) -> int:
        """Remove what crashed uploads left behind, untouched for ``older_than``
        seconds; returns how many were removed."""
        ...

    async def close(self) -> None: ...


def open_storage(url: str, env: Mapping[str, str] | None = None) -> ArchiveStorage:
    """The storage a TRACKER_ARCHIVE_URL value names: a directory path (relative,
    absolute or ``~``), ``file:///abs/dir`` or ``s3://bucket/prefix``.

    ``env`` gives the ``AWS_*`` variables for S3 (default ``os.environ``). Raises
    ``ConfigError`` with a one-line message naming TRACKER_ARCHIVE_URL; a local
    directory is created when missing.
    """
    text = url.strip()
    if not text:
        raise ConfigError(f"{VARIABLE} is empty: give a directory, file:///… or s3://bucket/…")
    if not _URL_SCHEME.match(text):
        return _local(Path(text).expanduser())
    scheme = text.partition(":")[0].lower()
    if scheme == "file":
        return _local(_file_url_path(text))
    if scheme == "s3":
        from tracker.archive.s3 import open_s3

        return open_s3(text, os.environ if env is None else env)
    raise ConfigError(
        f"{VARIABLE}: {scheme}:// is not supported: give a directory, file:///… or s3://bucket/…"
    )


def _file_url_path(text: str) -> Path:
    parts = urlsplit(text)
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(
            f"{VARIABLE}: {mask_url(text)} names another host: give file:///absolute/dir"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"{VARIABLE}: a file:// URL takes no ?query or #fragment")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ConfigError(f"{VARIABLE}: give file:///absolute/dir")
    return Path(path)


def _local(path: Path) -> ArchiveStorage:
    from tracker.archive.local import LocalStorage

    if "\x00" in str(path):
        raise ConfigError(f"{VARIABLE}: the path contains a NUL character")
    shown = escape_line(str(path))
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{VARIABLE}: {shown} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{VARIABLE}: cannot create the directory {shown}: {exc.strerror or exc}"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{VARIABLE}: the directory {shown} is not writable")
    return LocalStorage(path.resolve())


# -- keys ---------------------------------------------------------------------------


def artifact_key(prediction_id: str, position: int, source_url: str) -> str:
    """``{prediction_id}/{position}-{file name}``: the name from the last segment of
    the URL's path, percent-decoded and reduced to portable characters.

    ``https://host/a/out%20put.png?sig=1`` at position 0 of ``p1`` is ``p1/0-out_put.png``;
    ``https://host/..%2f..%2fetc%2fpasswd`` is ``p1/0-passwd``; a URL without a name
    is ``p1/0-output``.
    """
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise ValueError(f"position must be an int >= 0, not {position!r}")
    return f"{_safe_id(prediction_id)}/{position}-{file_name(source_url)}"


def file_name(source_url: str) -> str:
    """The portable file name for an output URL (see ``artifact_key``)."""
    try:
        path = urlsplit(source_url).path
    except ValueError:
        path = ""
    segments = [s for s in path.split("/") if s]
    decoded = unquote(segments[-1], errors="replace") if segments else ""
    # An encoded slash or backslash (%2F, %5C) cannot make a path: keep what follows it.
    parts = [p for p in re.split(r"[/\\]", decoded) if p]
    return safe_name(parts[-1] if parts else "")


def safe_name(name: str) -> str:
    """``name`` with letters, digits, ``.``, ``-`` and ``_`` only (accents dropped, each
    run of anything else one ``_``), never hidden, at most MAX_NAME_CHARS characters;
    ``output`` when no letter or digit is left."""
    decomposed = unicodedata.normalize("NFKD", name)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    clean = _UNSAFE_NAME.sub("_", bare).lstrip(".-").rstrip(". ")
    if not _ALNUM.search(clean):
        return DEFAULT_NAME
    return _shorten(clean)


def _shorten(name: str) -> str:
    if len(name) <= MAX_NAME_CHARS:
        return name
    stem, dot, suffix = name.rpartition(".")
    if dot and stem and len(suffix) <= MAX_SUFFIX_CHARS:
        return f"{stem[: MAX_NAME_CHARS - len(suffix) - 1].rstrip('.')}.{suffix}"
    return name[:MAX_NAME_CHARS].rstrip(".")


def _safe_id(prediction_id: str) -> str:
    """The ID itself when it has the usual shape; otherwise a portable form of it
    with a hash, so that two odd IDs never share a folder."""
    if _SAFE_ID.fullmatch(prediction_id):
        return prediction_id
    digest = hashlib.sha256(prediction_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    base = _UNSAFE_NAME.sub("_", prediction_id).replace(".", "_").strip("_-")[:64]
    return f"{base}-{digest}" if base else f"id-{digest}"


def check_key(key: str) -> list[str]:
    """The segments of a key as ``artifact_key`` makes them; raises ``InvalidInput``
    for anything else (absolute, ``..``, hidden, characters outside the portable set)."""
    segments = key.split("/")
    if len(key) > 1024 or not all(_KEY_SEGMENT.fullmatch(s) for s in segments):
        raise InvalidInput(f"not an archive key: {escape_line(key[:200])!r}")
    return segments

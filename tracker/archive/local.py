"""The archive in a local directory.

An upload writes ``.{name}.part-{random}`` beside its final name (hidden, and on
the same filesystem, so the rename is atomic), syncs it on ``commit`` and then
``os.replace``s it onto the final name, then syncs the directory so the rename
survives a power cut. Killed in between (kill -9), a ``.part-`` file may stay
behind, never a half file under the final name: ``sweep_partials`` removes those
that nobody has written to for a while (the archiver calls it when it starts, and
a later upload of the same key replaces what an earlier one left).

File I/O runs in worker threads (``asyncio.to_thread``) in blocks of ``BLOCK``
bytes, so a slow disk never holds the event loop that polls. One lock per upload
orders a write still running in its thread before an ``abort`` that closes the file.
A file smaller than a block is still whole in memory when it ends: ``commit_later``
lets the archiver write it with others in one trip to a worker thread (a trip costs
the daemon about as much CPU as the file's own create, fsync and rename).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import glob
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from tracker.archive.storage import StorageError, StoredObjectMissing, check_key
from tracker.net.read import MiB

#: bytes gathered before one write in a worker thread (and read at once by ``read``)
BLOCK = 1 * MiB
PART_MARK = ".part-"


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        return self.root.as_uri()

    def path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key))

    def stored_url(self, key: str) -> str:
        return self.path(key).as_uri()

    async def open_upload(self, key: str) -> LocalUpload:
        return LocalUpload(self.path(key))

    async def delete(self, key: str) -> bool:
        path = self.path(key)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(_os_text("cannot delete", path, exc)) from None
        return True

    async def read(self, key: str) -> AsyncIterator[bytes]:
        path = self.path(key)
        try:
            if not await asyncio.to_thread(path.is_file):
                raise StoredObjectMissing(f"nothing stored at {path}")
        except OSError as exc:
            raise StorageError(_os_text("cannot read", path, exc)) from None
        return _chunks(path)  # opened when iterated: nothing to leak if it never is

    async def sweep_partials(self, older_than: float) -> int:
        return await asyncio.to_thread(sweep_partials, self.root, older_than)

    async def close(self) -> None:
        return None


class LocalUpload:
    """An upload into a part file beside the target, made at the first block written:
    a file smaller than a block costs one trip to a worker thread in all (create,
    write, fsync, rename), or a share of one with ``commit_later``, which matters when
    thousands of images are archived."""

    def __init__(self, target: Path) -> None:
        self._fd: int | None = None
        self._part: Path | None = None
        self._target = target
        self._buffer = bytearray()
        self._lock = threading.Lock()  # held by whichever thread touches the file
        self._state = "open"  # then "committed" or "aborted"

    async def write(self, chunk: bytes) -> None:
        self._check_open()
        self._buffer += chunk
        if len(self._buffer) >= BLOCK:
            await self._flush()

    async def commit(self) -> str:
        self._check_open()
        tail, self._buffer = bytes(self._buffer), bytearray()
        try:
            await asyncio.to_thread(self._finish, tail)
        except OSError as exc:
            raise StorageError(_os_text("cannot store", self._target, exc)) from None
        return self._target.as_uri()

    async def abort(self) -> None:
        self._buffer = bytearray()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._drop)

    def commit_later(self) -> Callable[[], str] | None:
        self._check_open()
        if self._fd is not None:  # a block went to disk: ``commit`` finishes it
            return None
        tail, self._buffer = bytes(self._buffer), bytearray()
        return functools.partial(self._commit_blocking, tail)

    def _commit_blocking(self, tail: bytes) -> str:
        try:
            self._finish(tail)
        except OSError as exc:
            with contextlib.suppress(OSError):
                self._drop()  # no caller is left to abort it
            raise StorageError(_os_text("cannot store", self._target, exc)) from None
        return self._target.as_uri()

    def _check_open(self) -> None:
        if self._state != "open":
            raise StorageError(f"the upload of {self._target} is {self._state}")

    async def _flush(self) -> None:
        block, self._buffer = bytes(self._buffer), bytearray()
        if not block:
            return
        try:
            await asyncio.to_thread(self._write_all, block)
        except OSError as exc:
            raise StorageError(_os_text("cannot write", self._target, exc)) from None

    # -- in worker threads ---------------------------------------------------

    def _write_all(self, block: bytes) -> None:
        with self._lock:
            if self._state != "open":
                return
            self._write_locked(block)

    def _write_locked(self, block: bytes) -> None:
        if self._fd is None:
            self._fd, self._part = _create_part(self._target)
        view = memoryview(block)
        while view:
            view = view[os.write(self._fd, view) :]

    def _finish(self, tail: bytes) -> None:
        with self._lock:
            if self._state != "open":
                raise OSError(f"the upload is {self._state}")
            self._write_locked(tail)  # creates the part file of an empty upload too
            assert self._fd is not None and self._part is not None
            fd, self._fd = self._fd, None  # closed below whatever happens: never twice
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._state = "closed"
            os.replace(self._part, self._target)
            self._state = "committed"
        _sync_dir(self._target.parent)

    def _drop(self) -> None:
        with self._lock:
            if self._state == "open" and self._fd is not None:
                os.close(self._fd)
            if self._state != "committed":
                self._state = "aborted"
                if self._part is not None:
                    with contextlib.suppress(FileNotFoundError):
                        self._part.unlink()


def _create_part(target: Path) -> tuple[int, Path]:
    """A new hidden part file beside ``target`` (its folder made when missing).

    Part files of the same target left by an earlier attempt go first: the archiver
    opens an upload only while it holds the artifact's claim, so any other writer of
    this target was killed or lost its claim, and its part would never be used. A
    folder made just now has none (most files are the first of their prediction).
    """
    try:
        target.parent.mkdir(parents=True)
    except FileExistsError:
        for stale in target.parent.glob(f".{glob.escape(target.name)}{PART_MARK}*"):
            with contextlib.suppress(OSError):
                stale.unlink()
    for _ in range(5):
        part = target.with_name(f".{target.name}{PART_MARK}{secrets.token_hex(6)}")
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            return os.open(part, flags, 0o666), part
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {target}")


def sweep_partials(root: Path, older_than: float) -> int:
    """Remove the part files under ``root`` not modified for ``older_than`` seconds."""
    cutoff = time.time() - older_than
    removed = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if not (name.startswith(".") and PART_MARK in name):
                continue
            path = Path(folder, name)
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
    return removed


def _sync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the OS allows opening a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    try:
        file = await asyncio.to_thread(path.open, "rb")
    except FileNotFoundError:
        raise StoredObjectMissing(f"nothing stored at {path}") from None
    except OSError as exc:
        raise StorageError(_os_text("cannot read", path, exc)) from None
    try:
        while block := await asyncio.to_thread(file.read, BLOCK):
            yield block
    except OSError as exc:
        raise StorageError(_os_text("cannot read", path, exc)) from None
    finally:
        file.close()


def _os_text(what: str, path: Path, exc: OSError) -> str:
    return f"{what} {path}: {exc.strerror or type(exc).__name__}"

"""Output files: what the URLs in a simulated prediction's generated ``output`` serve.

A succeeded prediction whose plan has no explicit ``output`` gets one URL per output
file, on the simulator's own origin (the one ``urls.get`` uses) and outside the API::

    http://127.0.0.1:PORT/files/{prediction_id}/{index}/output.png

``output`` is that URL as a string when there is one file (``output_files`` = 1, the
default) and a list of them when there are several. Each file is either

- a small PNG image (the default): 96x64 pixels, RGB, a two-colour gradient with a
  disc, a few hundred bytes, its colours drawn from (seed, prediction ID, index), so
  that thumbnails of different predictions differ; ``Content-Type: image/png``
  (:func:`png_image` returns the exact bytes); or
- with ``output_bytes`` = N, a binary file ``output.bin`` of exactly N bytes,
  ``Content-Type: application/octet-stream``, generated and sent in chunks of
  :data:`CHUNK_BYTES`, never held whole in memory. Chunk ``k`` is a 64 KiB block drawn
  from (seed, prediction ID, index) whose first 8 bytes are replaced by ``k``
  (big-endian), the last chunk cut to size; :func:`file_bytes` yields the same chunks
  and :func:`expected_sha256` hashes them, for tests.

A file is served (200, with ``Content-Length``; ``HEAD`` gives the headers alone) only
while its prediction shows it: from ``succeeded`` until its data removal
(``data_removed_after_seconds / speed`` after the end, the moment ``data_removed``
turns true). Before, after, for a prediction that did not succeed, an explicit
``output`` or any other path the answer is 404 (plain text), as Replicate's file
delivery does once outputs are deleted. A download already under way when the data
is removed is finished. Files need no API key and are never throttled nor faulted by
``fault_rate``; they are not API requests (``request_count`` does not see them) but
file requests, recorded apart (``Simulator.file_requests``, ``GET /_sim/files``).

``file_faults`` in a plan apply to the 1st, 2nd, ... request of each of its files
once the file is served (earlier 404s do not count): an HTTP status (answered with a
plain-text body) or ``"cut"`` (200 with the full ``Content-Length``, then the
connection is closed after half the body) or ``"pass"`` (a normal answer).
"""

from __future__ import annotations

import colorsys
import hashlib
import random
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeGuard

from aiohttp import web

if TYPE_CHECKING:
    from tracker.simulator.lifecycle import SimulatedPrediction

#: the route of output files, outside the API prefix ``/v1``
FILES_ROUTE = "/files/{prediction_id}/{index}/{name}"
#: large files are generated and sent in chunks of this many bytes
CHUNK_BYTES = 64 * 1024
PNG_NAME = "output.png"
BINARY_NAME = "output.bin"
PNG_TYPE = "image/png"
BINARY_TYPE = "application/octet-stream"
#: the file faults that are words; the others are HTTP statuses
FILE_FAULT_WORDS = frozenset({"cut", "pass"})
#: at most this many files in one generated output
MAX_OUTPUT_FILES = 100

_PNG_SIZE = (96, 64)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_NOT_FOUND = "Not found\n"


def _rng(seed: int, prediction_id: str, index: int, purpose: str) -> random.Random:
    """A random generator that depends only on its arguments."""
    key = f"{seed}\0{prediction_id}\0{index}\0{purpose}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


# -- the content of files ----------------------------------------------------------------


def _rgb(hue: float, saturation: float, value: float) -> bytes:
    """An HSV colour as 3 RGB bytes."""
    channels = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return bytes(round(255 * channel) for channel in channels)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk: length, type, data, CRC-32 of type and data."""
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


@lru_cache(maxsize=1024)
def png_image(prediction_id: str, *, index: int = 0, seed: int = 0) -> bytes:
    """The PNG file ``index`` of a prediction's generated output (deterministic)."""
    rng = _rng(seed, prediction_id, index, "png")
    hue = rng.random()
    top, bottom = _rgb(hue, 0.55, 0.95), _rgb(hue + 0.12, 0.85, 0.45)
    disc = _rgb(hue + 0.5, 0.75, 1.0)
    width, height = _PNG_SIZE
    cx, cy = rng.uniform(0.25, 0.75) * width, rng.uniform(0.3, 0.7) * height
    radius2 = (rng.uniform(0.15, 0.35) * height) ** 2
    raw = bytearray()
    for y in range(height):
        share = y / (height - 1)
        row = bytes(round(a + (b - a) * share) for a, b in zip(top, bottom, strict=True))
        raw.append(0)  # filter type: none
        dy2 = (y - cy) ** 2
        for x in range(width):
            raw += disc if (x - cx) ** 2 + dy2 <= radius2 else row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"".join(
        (
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(bytes(raw), 9)),
            _png_chunk(b"IEND", b""),
        )
    )


def file_bytes(prediction_id: str, size: int, *, index: int = 0, seed: int = 0) -> Iterator[bytes]:
    """The chunks of the binary output file of ``size`` bytes (see the module docs)."""
    tail = _rng(seed, prediction_id, index, "bytes").randbytes(CHUNK_BYTES)[8:]
    full, rest = divmod(size, CHUNK_BYTES)
    for k in range(full):
        yield k.to_bytes(8, "big") + tail
    if rest:
        yield (full.to_bytes(8, "big") + tail)[:rest]


def expected_sha256(prediction_id: str, size: int, *, index: int = 0, seed: int = 0) -> str:
    """The hex SHA-256 of the binary output file :func:`file_bytes` makes."""
    digest = hashlib.sha256()
    for chunk in file_bytes(prediction_id, size, index=index, seed=seed):
        digest.update(chunk)
    return digest.hexdigest()


# -- the files of an output ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutputFile:
    """One file of a generated output."""

    prediction_id: str
    index: int
    seed: int
    #: ``None``: a PNG image; else a binary file of this many bytes
    size: int | None = None

    @property
    def name(self) -> str:
        """The last segment of the path: ``output.png`` or ``output.bin``."""
        return PNG_NAME if self.size is None else BINARY_NAME

    @property
    def content_type(self) -> str:
        """``image/png`` or ``application/octet-stream``."""
        return PNG_TYPE if self.size is None else BINARY_TYPE

    @property
    def path(self) -> str:
        """The path on the simulator, e.g. ``/files/ok-1/0/output.png``."""
        return f"/files/{self.prediction_id}/{self.index}/{self.name}"

    @property
    def length(self) -> int:
        """The size of the file in bytes."""
        if self.size is None:
            return len(png_image(self.prediction_id, index=self.index, seed=self.seed))
        return self.size

    def chunks(self) -> Iterator[bytes]:
        """The content, a chunk at a time."""
        if self.size is None:
            yield png_image(self.prediction_id, index=self.index, seed=self.seed)
        else:
            yield from file_bytes(self.prediction_id, self.size, index=self.index, seed=self.seed)


def output_files(
    prediction_id: str, *, seed: int, count: int, size: int | None
) -> tuple[OutputFile, ...]:
    """The ``count`` files of a generated output (PNG images, or ``size`` bytes each)."""
    return tuple(OutputFile(prediction_id, index, seed, size) for index in range(count))


def output_value(files: Sequence[OutputFile], root: str) -> str | list[str] | None:
    """The ``output`` field: one URL, a list of URLs, or ``None`` without files."""
    urls = [f"{root}{file.path}" for file in files]
    if not urls:
        return None
    return urls[0] if len(urls) == 1 else urls


def _integer(value: object) -> TypeGuard[int]:
    """True for an ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_file_plan(count: object, size: object, faults: object) -> None:
    """Raise ``ValueError`` unless the file fields of a plan can be served."""
    if not (_integer(count) and 1 <= count <= MAX_OUTPUT_FILES):
        raise ValueError(f"output_files must be an integer from 1 to {MAX_OUTPUT_FILES}")
    if size is not None and not (_integer(size) and size >= 0):
        raise ValueError("output_bytes must be null or an integer >= 0")
    valid = isinstance(faults, list) and all(
        (_integer(item) and 400 <= item <= 599)
        or (isinstance(item, str) and item in FILE_FAULT_WORDS)
        for item in faults
    )
    if not valid:
        raise ValueError('file_faults must be a list of HTTP statuses 400..599, "cut" or "pass"')


# -- serving them --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileRequest:
    """One request for an output file."""

    #: arrival time, epoch seconds
    at: float
    prediction_id: str
    #: the file's position in the output; ``None`` when the path has no valid index
    index: int | None
    status_code: int
    #: the connection was closed halfway through the body (a ``cut`` fault)
    cut: bool = False

    def to_json(self) -> dict[str, Any]:
        """The JSON form served by ``GET /_sim/files``."""
        return {
            "at": self.at,
            "prediction_id": self.prediction_id,
            "index": self.index,
            "status_code": self.status_code,
            "cut": self.cut,
        }


class FileServer:
    """Serves output files (``GET /files/...``) and their records (``GET /_sim/files``)."""

    def __init__(
        self,
        lookup: Callable[[str], SimulatedPrediction | None],
        clock: Callable[[], float],
    ) -> None:
        self._lookup = lookup
        self._clock = clock
        self._records: list[FileRequest] = []
        self._counts: Counter[str] = Counter()

    def routes(self) -> list[web.RouteDef]:
        """The file route (GET and HEAD) and its control route."""
        return [web.get(FILES_ROUTE, self.handle), web.get("/_sim/files", self._handle_records)]

    def requests(self, prediction_id: str | None = None) -> list[FileRequest]:
        """The file requests answered so far, oldest first; only ``prediction_id``'s if given."""
        wanted = prediction_id
        return [r for r in self._records if wanted is None or r.prediction_id == wanted]

    def request_count(self, prediction_id: str | None = None) -> int:
        """How many file requests were answered (for ``prediction_id`` if given)."""
        return len(self._records) if prediction_id is None else self._counts[prediction_id]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /files/{prediction_id}/{index}/{name}``."""
        now = self._clock()
        info = request.match_info
        prediction_id, index_text = info["prediction_id"], info["index"]
        index = int(index_text) if index_text.isascii() and index_text.isdigit() else None
        prediction = self._lookup(prediction_id)
        file = _servable(prediction, index_text, info["name"], now)
        if prediction is None or file is None:
            self._record(FileRequest(now, prediction_id, index, 404))
            return web.Response(status=404, text=_NOT_FOUND)
        hit = prediction.file_hits[file.index]
        prediction.file_hits[file.index] = hit + 1
        faults = prediction.plan.file_faults
        fault = faults[hit] if hit < len(faults) else "pass"
        if isinstance(fault, int):
            self._record(FileRequest(now, prediction_id, file.index, fault))
            return web.Response(status=fault, text=f"{_phrase(fault)}\n")
        self._record(FileRequest(now, prediction_id, file.index, 200, cut=fault == "cut"))
        return await _stream(request, file, cut=fault == "cut")

    def _record(self, record: FileRequest) -> None:
        """Remember one answered file request."""
        self._records.append(record)
        self._counts[record.prediction_id] += 1

    async def _handle_records(self, request: web.Request) -> web.Response:
        """``GET /_sim/files[?id=ID]``: ``{"count": N, "requests": [...]}``."""
        records = self.requests(request.query.get("id"))
        body = {"count": len(records), "requests": [record.to_json() for record in records]}
        return web.json_response(body)


def _servable(
    prediction: SimulatedPrediction | None, index_text: str, name: str, now: float
) -> OutputFile | None:
    """The file at this path when it is being served at ``now``, else ``None``."""
    if prediction is None or prediction.plan.not_found:
        return None
    file = next((f for f in prediction.files if str(f.index) == index_text), None)
    if file is None or file.name != name or prediction.status_at(now) != "succeeded":
        return None
    if prediction.removed_at is not None and now >= prediction.removed_at:
        return None
    return file


async def _stream(request: web.Request, file: OutputFile, *, cut: bool) -> web.StreamResponse:
    """Send ``file`` chunk by chunk; ``cut``: close the connection after half the body."""
    response = web.StreamResponse()
    response.content_type = file.content_type
    response.content_length = file.length
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    limit = file.length // 2 if cut else file.length
    sent = 0
    try:
        for chunk in file.chunks():
            part = chunk[: limit - sent]
            if part:
                await response.write(part)
                sent += len(part)
            if sent >= limit:
                break
    except ConnectionError:  # the client went away
        return response
    if cut:
        if request.transport is not None:
            request.transport.close()  # sends what is buffered, then closes
        return response
    await response.write_eof()
    return response


def _phrase(status: int) -> str:
    """The reason phrase of an HTTP status."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"

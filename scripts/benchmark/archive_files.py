"""Archive throughput and memory: real files from the simulator into a local directory or
a moto S3 server on loopback, through a `tracker daemon --exit-when-done` process.

throughput  ``files`` binary files of ``file_bytes`` each (``per_prediction`` files per
            prediction, every plan defined with ``PUT /_sim/predictions/{id}`` to
            succeed at once); MB/s from the first artifact's ``created_at`` to the last
            ``stored_at`` (the artifacts table, the daemon's own clock).
rss         one ``bigfile-`` prediction whose file is ``big_bytes`` (the simulator's
            ``--bigfile-size``); the daemon's peak RSS (VmHWM, read from /proc until it
            exits) beside its RSS once started.

Each stored file's row must say the size and sha256 the simulator's content has
(``expected_sha256``); a sample of the stored objects is read back and hashed.
"""

from __future__ import annotations

import hashlib
import resource
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from tracker.simulator import expected_sha256
from tracker.store.store import Store
from tracker.timeparse import utcnow

from .archive_daemon import ArchiveDaemon, ArtifactRow, archive_env, archive_window, read_artifacts
from .databases import Databases
from .harness import ROOT, SimulatorProcess, loadavg, log

#: the simulator's seed (its default): the content of every file depends on it
SEED = 0
#: chunks read back from the archive
READ_CHUNK = 1024 * 1024
#: the daemon's flags: poll soon, the archive does the rest
FLAGS = ("--poll-min", "0.2", "--poll-max", "1")


@dataclass
class Target:
    """Where the archive goes: ``url`` for TRACKER_ARCHIVE_URL, ``env`` beside it, and
    ``read`` that yields the bytes stored at a ``stored_url``."""

    name: str
    url: str
    env: dict[str, str]
    read: Callable[[str], Iterator[bytes]]
    cleanup: Callable[[], None] = field(default=lambda: None)


def local_target(folder: Path) -> Target:
    def read(stored_url: str) -> Iterator[bytes]:
        with Path(unquote(urlsplit(stored_url).path)).open("rb") as f:
            while chunk := f.read(READ_CHUNK):
                yield chunk

    def cleanup() -> None:
        for path in sorted(folder.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()

    return Target("local", str(folder), {}, read, cleanup)


def s3_target(server: Any) -> Target:
    """A fresh prefix in the bucket of ``server`` (tests/s3server.MotoS3), read back
    through boto3, independently of the tracker's own S3 code."""
    import boto3

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    env = server.env
    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )

    def read(stored_url: str) -> Iterator[bytes]:
        key = stored_url.removeprefix(f"s3://{server.bucket}/")
        body = client.get_object(Bucket=server.bucket, Key=key)["Body"]
        with body:
            yield from body.iter_chunks(READ_CHUNK)

    def cleanup() -> None:
        for key in server.keys(prefix):
            client.delete_object(Bucket=server.bucket, Key=key)

    return Target("s3", server.archive_url(prefix), env, read, cleanup)


def moto_server() -> Any:
    """tests/s3server.moto_s3(): a moto S3 server in a thread of this process, on
    127.0.0.1, with a fresh bucket (kept in this process's memory)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.s3server import moto_s3

    return moto_s3()


# -- the runs ------------------------------------------------------------------------------


def file_simulator(big_bytes: int) -> SimulatorProcess:
    """The simulator the throughput and rss runs share: ``bigfile-`` outputs of
    ``big_bytes``, queued and run briefly (the figures are the download's, not the
    wait for it); every other plan is defined by the run."""
    return SimulatorProcess(
        "--bigfile-size", str(big_bytes), "--queue-seconds", "0", "--run-median", "0.2"
    )


def run_throughput(
    engine: str,
    target: Target,
    dbs: Databases,
    logs: Path,
    sim: SimulatorProcess,
    *,
    files: int,
    file_bytes: int,
    per_prediction: int,
    sample: int,
) -> dict[str, Any]:
    """``files`` files of ``file_bytes`` into ``target``; MB/s and the checks."""
    tag = f"throughput-{engine}-{target.name}"
    log(f"{tag}: {files} files of {file_bytes:,} bytes")
    counts = [min(per_prediction, files - i) for i in range(0, files, per_prediction)]
    ids = [f"arch-{uuid.uuid4().hex[:8]}-{n}" for n in range(len(counts))]
    try:
        for pid, count in zip(ids, counts, strict=True):
            define(sim, pid, {"output_files": count, "output_bytes": file_bytes})
        result, rows = _archive(engine, target, dbs, logs, tag, sim, ids)
        result["checks"] = verify_rows(rows, file_bytes, target, sample)
    finally:
        target.cleanup()
    result.update(files=files, file_bytes=file_bytes, mb_per_second=_rate(result["window"]))
    return result


def run_rss(
    engine: str,
    target: Target,
    dbs: Databases,
    logs: Path,
    sim: SimulatorProcess,
    *,
    big_bytes: int,
) -> dict[str, Any]:
    """One ``bigfile-`` output of ``big_bytes`` (``file_simulator``'s) into ``target``;
    the daemon's peak RSS."""
    tag = f"rss-{engine}-{target.name}"
    log(f"{tag}: one file of {big_bytes:,} bytes")
    try:
        ids = [f"bigfile-{uuid.uuid4().hex[:8]}"]
        result, rows = _archive(engine, target, dbs, logs, tag, sim, ids)
        result["checks"] = verify_rows(rows, big_bytes, target, 1)
    finally:
        target.cleanup()
    result.update(file_bytes=big_bytes, mb_per_second=_rate(result["window"]))
    return result


def _rate(window: dict[str, Any]) -> float | None:
    """MB (10^6 bytes) per second over the archive window."""
    seconds = window["seconds"]
    return round(window["bytes"] / seconds / 1e6, 1) if seconds else None


def _archive(
    engine: str,
    target: Target,
    dbs: Databases,
    logs: Path,
    tag: str,
    sim: SimulatorProcess,
    ids: list[str],
) -> tuple[dict[str, Any], list[ArtifactRow]]:
    """Register ``ids``, run the daemon with the archive until it exits; what it did,
    and the rows of the artifacts table."""
    url = dbs.new(engine, f"{tag}-{uuid.uuid4().hex[:4]}")
    register(url, ids)
    load_start = loadavg()
    own_cpu = _own_cpu()
    sim_cpu = sim.cpu_seconds()
    daemon = ArchiveDaemon(
        url, sim.base, logs / f"{tag}.log", archive_env(target.url, target.env), FLAGS
    )
    try:
        daemon.wait_ready()
        run = daemon.run_to_exit(timeout=1800)
    finally:
        daemon.kill()  # only if still running (this benchmark was interrupted)
    rows = read_artifacts(url)
    result = {
        "engine": engine,
        "storage": target.name,
        "predictions": len(ids),
        "window": archive_window(rows),
        "daemon": run,
        "simulator_cpu_seconds": round(sim.cpu_seconds() - sim_cpu, 2),
        "benchmark_process_cpu_seconds": round(_own_cpu() - own_cpu, 2),
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
    }
    return result, rows


def _own_cpu() -> float:
    """CPU seconds of this process: the moto server runs in a thread of it."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the simulator and the database ----------------------------------------------------------


def define(sim: SimulatorProcess, prediction_id: str, plan: dict[str, Any]) -> None:
    """A prediction that succeeds at once with the files ``plan`` names."""
    body = {"queue_seconds": 0, "run_seconds": 0.1, **plan}
    answer = httpx.put(f"{sim.root}/_sim/predictions/{prediction_id}", json=body, timeout=30)
    answer.raise_for_status()


def register(url: str, ids: list[str]) -> None:
    store = Store.from_url(url, pool_size=1)
    try:
        now = utcnow()
        store.add_predictions(ids, now=now, first_poll_at=now)
    finally:
        store.close()


# -- checking what was stored ----------------------------------------------------------------


def verify_rows(rows: list[ArtifactRow], size: int, target: Target, sample: int) -> dict[str, Any]:
    """Every row stored with the expected size and sha256; ``sample`` stored objects read
    back and hashed (evenly spread over the rows)."""
    expected = {
        id(row): expected_sha256(row.prediction_id, size, index=row.position, seed=SEED)
        for row in rows
    }
    bad_rows = [
        f"{row.prediction_id}/{row.position}: {row.state}, {row.bytes} bytes"
        for row in rows
        if row.state != "stored" or row.bytes != size or row.sha256 != expected[id(row)]
    ]
    picked = rows[:: max(1, len(rows) // sample)][:sample] if sample and rows else []
    bad_objects = [
        f"{row.prediction_id}/{row.position}"
        for row in picked
        if row.stored_url is None or read_back(target, row.stored_url) != (size, expected[id(row)])
    ]
    return {
        "rows_checked": len(rows),
        "rows_wrong": bad_rows[:5],
        "objects_read_back": len(picked),
        "objects_wrong": bad_objects[:5],
        "ok": bool(rows) and not bad_rows and not bad_objects,
    }


def read_back(target: Target, stored_url: str) -> tuple[int, str]:
    """The size and sha256 of what is stored at ``stored_url``."""
    digest = hashlib.sha256()
    size = 0
    for chunk in target.read(stored_url):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()

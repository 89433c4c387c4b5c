"""The archive benchmark's daemon: `tracker daemon --exit-when-done` in its own process,
with TRACKER_ARCHIVE_URL set (or not), sampled from /proc until it exits by itself;
and what it left in the artifacts table.

    daemon = ArchiveDaemon(url, sim.base, log_path, archive_url, extra_env, flags)
    daemon.wait_ready()            # its log says " started: "; CPU and RSS noted
    run = daemon.run_to_exit(600)  # CPU, peak RSS (VmHWM) and the time from ready to exit
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tracker.store.store import Store
from tracker.store.tables import artifacts

from .harness import log_counts, proc_cpu_times, tracker_env, wait_for_log

#: seconds the daemon gets after SIGTERM before SIGKILL
KILL_AFTER = 15.0


def proc_memory_mb(pid: int) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) of a live process in MB, from /proc; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            values[line[:5]] = int(line.split()[1]) / 1024
    if len(values) < 2:
        return None  # a zombie has no memory lines
    return values["VmRSS"], values["VmHWM"]


def archive_env(archive_url: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The archive settings of a run: none (archiving off), or the URL, the simulator's
    files allowed (they are on loopback) and ``extra`` (the AWS_* of an S3 server)."""
    if archive_url is None:
        return {}
    env = {"TRACKER_ARCHIVE_URL": archive_url, "TRACKER_ARCHIVE_ALLOWED_HOSTS": "loopback"}
    env.update(extra or {})
    return env


class ArchiveDaemon:
    """`tracker daemon --exit-when-done FLAGS` on ``url`` against the simulator at ``base``."""

    def __init__(
        self,
        url: str,
        base: str,
        log_path: Path,
        env: dict[str, str],
        flags: Sequence[str] = (),
        *,
        sample_every: float = 0.02,
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        full_env = tracker_env(url, base)
        full_env.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracker", "daemon", "--exit-when-done", *flags],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        self.sample_every = sample_every
        self.ready_at = 0.0
        self.cpu_at_ready = 0.0
        self.system_at_ready = 0.0  #: of which in the kernel
        self.rss_at_ready = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait for the log's " started: "; note the time, CPU and RSS at that moment."""
        if not wait_for_log([self.log_path], [self.proc], timeout):
            self.kill()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the daemon did not start ({self.log_path}):\n{tail}")
        self.ready_at = time.monotonic()
        with contextlib.suppress(OSError, ValueError):
            user, self.system_at_ready = proc_cpu_times(self.pid)
            self.cpu_at_ready = user + self.system_at_ready
        memory = proc_memory_mb(self.pid)
        self.rss_at_ready = memory[0] if memory else 0.0

    def run_to_exit(self, timeout: float) -> dict[str, Any]:
        """Sample VmRSS and VmHWM until the daemon exits by itself (SIGTERM after
        ``timeout`` seconds, SIGKILL later); what it cost from ready to exit."""
        deadline = time.monotonic() + timeout
        signalled: float | None = None
        rss_max = hwm = 0.0
        while True:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                break
            memory = proc_memory_mb(self.pid)
            if memory is not None:
                rss_max, hwm = max(rss_max, memory[0]), max(hwm, memory[1])
            signalled = self._enforce(deadline, signalled)
            time.sleep(self.sample_every)
        ended = time.monotonic()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self._log.close()
        cpu = usage.ru_utime + usage.ru_stime
        return {
            "exit_code": self.proc.returncode,
            "timed_out": signalled is not None,
            "seconds_ready_to_exit": round(ended - self.ready_at, 2),
            "cpu_seconds": round(cpu, 2),
            "cpu_seconds_after_ready": round(cpu - self.cpu_at_ready, 2),
            "system_seconds_after_ready": round(usage.ru_stime - self.system_at_ready, 2),
            "rss_at_ready_mb": round(self.rss_at_ready, 1),
            "peak_rss_mb": round(hwm, 1),  # VmHWM, last read before the exit
            "sampled_rss_max_mb": round(rss_max, 1),
            "ru_maxrss_mb": round(usage.ru_maxrss / 1024, 1),
            "log": str(self.log_path),
            "log_counts": log_counts(self.log_path),
        }

    def _enforce(self, deadline: float, signalled: float | None) -> float | None:
        now = time.monotonic()
        if signalled is None and now > deadline:
            print("daemon still running after the deadline: stopping it", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            return now
        if signalled is not None and now > signalled + KILL_AFTER:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        return signalled

    def kill(self) -> None:
        """Stop it at once unless it exited (on an error or interruption of the
        benchmark's own)."""
        if self.proc.returncode is None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


# -- what it stored --------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactRow:
    prediction_id: str
    position: int
    state: str
    bytes: int | None
    sha256: str | None
    stored_url: str | None
    created_at: datetime
    stored_at: datetime | None
    last_error: str | None


def read_artifacts(url: str) -> list[ArtifactRow]:
    """Every row of the artifacts table, by prediction and position."""
    columns = [artifacts.c[name] for name in ArtifactRow.__dataclass_fields__]
    store = Store.from_url(url, pool_size=1)
    try:
        with store.engine.connect() as conn:
            query = select(*columns).order_by(artifacts.c.prediction_id, artifacts.c.position)
            return [ArtifactRow(**row) for row in conn.execute(query).mappings()]
    finally:
        store.close()


def archive_window(rows: list[ArtifactRow]) -> dict[str, Any]:
    """Files and bytes stored, and the seconds from the first artifact's ``created_at``
    to the last ``stored_at`` (None when nothing was stored)."""
    stored = [r for r in rows if r.state == "stored" and r.stored_at is not None]
    total = sum(r.bytes or 0 for r in stored)
    seconds = None
    if stored:
        first = min(r.created_at for r in rows)
        last = max(r.stored_at for r in stored if r.stored_at is not None)
        seconds = (last - first).total_seconds()
    errors = sorted({r.last_error for r in rows if r.last_error})
    return {
        "artifacts": len(rows),
        "stored": len(stored),
        "failed": sum(r.state == "failed" for r in rows),
        "pending": sum(r.state == "pending" for r in rows),
        "bytes": total,
        "seconds": None if seconds is None else round(seconds, 3),
        # a record transaction stamps its files with one stored_at
        "files_per_record": (
            round(len(stored) / len({r.stored_at for r in stored}), 2) if stored else None
        ),
        "errors": errors[:5],
    }

"""PostgreSQL's side of scripts/bench_daemons.py: which server backends serve which
daemon (their TCP sockets, matched to pg_stat_activity's client_port), the CPU of
those backends, what they wait for (pg_stat_activity and pg_locks, sampled), and the
database's counters (pg_stat_database, pg_stat_user_tables for ``predictions``, WAL).

One sampler connection of its own; its backend's CPU is left out of the figures. The
server's CPU is split: the daemons' backends; those plus the feeder's backend (the
benchmark registering new predictions) and the background processes (WAL writer,
checkpointer, background writer: shared with any other database on the server;
autovacuum workers on this database only); and the whole server (all of that plus
every other database's backends: other people's tests on a shared machine)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

from .harness import postgres_cpu_seconds, proc_cpu_seconds

PG_PORT = 5432
#: pg_stat_database columns whose change over the window is reported
DATABASE_COUNTERS = (
    "xact_commit",
    "xact_rollback",
    "blks_read",
    "blks_hit",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
    "deadlocks",
)
#: pg_stat_user_tables columns of ``predictions`` reported
#: the rollup triggers' pg_advisory_xact_lock key (migrations/versions/0011_report_rollup.py)
ROLLUP_LOCK = 18_001_011
#: server processes whose work the benchmark's writes cause (shared with other databases)
SHARED_BACKGROUND = ("walwriter", "checkpointer", "background writer")
#: ... and autovacuum, counted for the benchmark's database only
BACKGROUND = (*SHARED_BACKGROUND, "autovacuum worker")
TABLE_COUNTERS = ("n_tup_upd", "n_tup_hot_upd", "n_dead_tup", "n_live_tup", "autovacuum_count")


def pg_ports_of(pid: int) -> set[int]:
    """The local ports of a process's TCP connections to PostgreSQL (port 5432)."""
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                target = fd.readlink().as_posix()
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == PG_PORT:
                    ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


class PgSampler:
    """Samples the benchmark database's backends every ``interval`` seconds in a thread
    between ``start`` and ``stop``; ``daemons`` maps daemon names to process ids."""

    def __init__(
        self,
        url: str,
        daemons: dict[str, int],
        feeder_pid: int | None = None,
        interval: float = 0.2,
    ) -> None:
        self.dbname = url.rpartition("/")[2]
        self.conn = psycopg.connect(url, autocommit=True)
        self.own_pid: int = self.conn.execute("select pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        self.daemons = daemons
        #: whose TCP connections to match: the daemons, and the feeder's process
        self.owners = {**daemons, **({"feeder": feeder_pid} if feeder_pid else {})}
        self.rollup_lock_held = 0  # samples in which a transaction held the rollup's lock
        self.backend_owner: dict[int, str] = {}
        self.interval = interval
        self.samples = 0
        self.waits: Counter[str] = Counter()  # "Lock:advisory" etc., backend-samples
        self.states: Counter[str] = Counter()  # active / idle / idle in transaction
        self.lock_waits: Counter[str] = Counter()  # pg_locks not granted, by locktype
        self.connections: dict[str, set[int]] = {name: set() for name in daemons}
        self.peak_connections: dict[str, int] = dict.fromkeys(daemons, 0)
        self.backend_cpu_first: dict[int, float] = {}
        self.backend_cpu_last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.before: dict[str, Any] = {}
        self.after: dict[str, Any] = {}

    # -- counters at the window's edges --------------------------------------------

    def counters(self) -> dict[str, Any]:
        self.conn.execute("select pg_stat_clear_snapshot()")
        row = self.conn.execute(
            f"select {', '.join(DATABASE_COUNTERS)} from pg_stat_database where datname = %s",
            [self.dbname],
        ).fetchone()
        table = self.conn.execute(
            f"select {', '.join(TABLE_COUNTERS)} from pg_stat_user_tables"
            " where relname = 'predictions'"
        ).fetchone()
        wal = self.conn.execute("select pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        ended = self.conn.execute(
            "select count(*) from predictions where tracking <> 'active'"
        ).fetchone()
        return {
            **dict(zip(DATABASE_COUNTERS, row or (), strict=False)),
            **{f"predictions_{k}": v for k, v in zip(TABLE_COUNTERS, table or (), strict=False)},
            "wal_bytes": int(wal[0]) if wal else 0,
            "ended_predictions": ended[0] if ended else 0,
            "server_cpu": postgres_cpu_seconds() - self._own_cpu(),
            "own_cpu": self._own_cpu(),
        }

    def _own_cpu(self) -> float:
        try:
            return proc_cpu_seconds(self.own_pid)
        except OSError:
            return 0.0

    # -- sampling ------------------------------------------------------------------

    def start(self) -> None:
        self._sample()  # the daemons' backends and their CPU at the start
        self.before = self.counters()
        self._thread = threading.Thread(target=self._run, name="pg-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.after = self.counters()
        self._sample(count=False)  # the backends' CPU at the end

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(psycopg.Error, OSError):
                self._sample()

    def _sample(self, count: bool = True) -> None:
        rows = self.conn.execute(
            "select pid, client_port, state, wait_event_type, wait_event, backend_type,"
            " datname from pg_stat_activity"
            " where (datname = %s and pid <> pg_backend_pid()) or backend_type = any(%s)",
            [self.dbname, list(BACKGROUND)],
        ).fetchall()
        owners = {port: name for name, pid in self.owners.items() for port in pg_ports_of(pid)}
        seen: dict[str, int] = Counter()
        for pid, port, state, wait_type, wait, backend_type, datname in rows:
            if backend_type != "client backend":
                if backend_type in SHARED_BACKGROUND or datname == self.dbname:
                    self._cpu(pid, "background")
                continue
            name = owners.get(port)
            if name is None:
                continue  # a connection not yet matched
            self._cpu(pid, name)
            if name not in self.daemons:
                continue  # the feeder
            seen[name] += 1
            self.connections[name].add(pid)
            if count:
                self.states[state or "none"] += 1
                if wait_type and wait_type not in ("Client", "Activity"):
                    self.waits[f"{wait_type}:{wait}"] += 1
        for name, n in seen.items():
            self.peak_connections[name] = max(self.peak_connections[name], n)
        if count:
            self.samples += 1
            for locktype, granted, n in self.conn.execute(
                "select l.locktype, l.granted, count(*) from pg_locks l"
                " join pg_database d on d.oid = l.database where d.datname = %s"
                " and (not l.granted or (l.locktype = 'advisory' and l.objid = %s))"
                " group by 1, 2",
                [self.dbname, ROLLUP_LOCK],
            ).fetchall():
                if granted:
                    self.rollup_lock_held += 1
                else:
                    self.lock_waits[locktype] += n

    def _cpu(self, pid: int, name: str) -> None:
        with contextlib.suppress(OSError):
            cpu = proc_cpu_seconds(pid)
            self.backend_cpu_first.setdefault(pid, cpu)
            self.backend_cpu_last[pid] = cpu
            self.backend_owner[pid] = name

    # -- the result ----------------------------------------------------------------

    def result(self) -> dict[str, Any]:
        delta = {
            k: self.after[k] - self.before[k]
            for k in self.before
            if isinstance(self.before.get(k), int | float) and k in self.after
        }
        samples = max(1, self.samples)
        cpu: dict[str, float] = dict.fromkeys(("feeder", "background"), 0.0)
        for pid, last in self.backend_cpu_last.items():
            owner = self.backend_owner[pid]
            cpu[owner] = cpu.get(owner, 0.0) + last - self.backend_cpu_first[pid]
        backend_cpu = sum(v for k, v in cpu.items() if k in self.daemons)
        return {
            "samples": self.samples,
            "backends_cpu_seconds": round(backend_cpu, 2),
            "feeder_backend_cpu_seconds": round(cpu["feeder"], 2),
            "background_cpu_seconds": round(cpu["background"], 2),
            "ours_cpu_seconds": round(backend_cpu + cpu["feeder"] + cpu["background"], 2),
            "server_cpu_seconds": round(delta.pop("server_cpu"), 2),
            "sampler_cpu_seconds": round(delta.pop("own_cpu"), 2),
            "counters": delta,
            # per sample: how many of the daemons' backends were in each state / wait
            "mean_backends_by_state": {
                k: round(v / samples, 2) for k, v in sorted(self.states.items())
            },
            "mean_backends_waiting": {
                k: round(v / samples, 3) for k, v in self.waits.most_common()
            },
            "mean_ungranted_locks": {
                k: round(v / samples, 3) for k, v in self.lock_waits.most_common()
            },
            "rollup_lock_held_share": round(self.rollup_lock_held / samples, 3),
            "connections_by_daemon": {k: len(v) for k, v in sorted(self.connections.items())},
            "peak_open_connections_by_daemon": dict(sorted(self.peak_connections.items())),
        }


def wait_for_connections(daemons: dict[str, int], timeout: float = 5.0) -> None:
    """Give the daemons a moment to open their pools (best effort)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(pg_ports_of(pid) for pid in daemons.values()):
            return
        time.sleep(0.1)

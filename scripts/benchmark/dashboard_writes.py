"""What migration 0010's list indexes cost the writes: PostgreSQL's backend CPU time
(from /proc, so a busy machine slows it less than the clock) to register N
predictions in one statement, write them twice as polls do (status, next_poll_at,
poll_count) and once as they end, in a fresh database at schema 0009 and at 0010,
rounds interleaved; medians, and the indexes' size.

    cd scripts && ../.venv/bin/python -m benchmark.dashboard_writes [N] [ROUNDS]
"""

from __future__ import annotations

import argparse
import os
import statistics
import uuid
from pathlib import Path

import psycopg

from tracker.store import migrate
from tracker.store.store import Store

from .databases import pg_admin, pg_url

#: the steps, one statement each, on rows that are all active until the last
STEPS = {
    "register": "INSERT INTO predictions (id, tracking, logs, log_seq, labels, registered_at,"
    " next_poll_at, poll_count, error_count) SELECT substr(md5(g::text), 1, 26), 'active', '',"
    " 0, '{{}}', now() - ({n} - g) * interval '1 ms', now(), 0, 0 FROM generate_series(1, {n}) g",
    "poll write 1": "UPDATE predictions SET status = 'starting', last_polled_at = now(),"
    " next_poll_at = now() + interval '5 s', poll_count = poll_count + 1"
    " WHERE tracking = 'active'",
    "poll write 2": "UPDATE predictions SET status = 'processing', last_polled_at = now(),"
    " next_poll_at = now() + interval '9 s', poll_count = poll_count + 1"
    " WHERE tracking = 'active'",
    "end": "UPDATE predictions SET status = 'succeeded', tracking = 'done', completed_at = now(),"
    " last_polled_at = now(), next_poll_at = NULL WHERE tracking = 'active'",
}
REVISIONS = ("0009", "0010")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(revision: str, n: int) -> dict[str, float]:
    name = f"tracker_bench_writes_{revision}_{uuid.uuid4().hex[:6]}"
    pg_admin(f'CREATE DATABASE "{name}"')
    try:
        url = pg_url(name)
        store = Store.from_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
        migrate.upgrade(store, revision)
        store.close()
        out: dict[str, float] = {}
        with psycopg.connect(url, autocommit=True) as conn:
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
            for step, sql in STEPS.items():
                began = cpu_seconds(pid)
                conn.execute(sql.format(n=n))  # type: ignore[arg-type]
                out[step] = cpu_seconds(pid) - began
            size = conn.execute("SELECT pg_indexes_size('predictions')").fetchone()
            out["index MB"] = (size[0] if size else 0) / 1e6
        return out
    finally:
        pg_admin(f'DROP DATABASE "{name}"')


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=100_000, help="predictions")
    parser.add_argument("rounds", nargs="?", type=int, default=3, help="rounds per schema")
    args = parser.parse_args(argv)
    n, rounds = args.n, args.rounds
    runs: dict[str, list[dict[str, float]]] = {r: [] for r in REVISIONS}
    for _ in range(rounds):
        for revision in REVISIONS:
            runs[revision].append(one_run(revision, n))
            print(revision, runs[revision][-1], "load", os.getloadavg(), flush=True)
    print(f"medians of {rounds} rounds, {n:,} predictions (CPU seconds):")
    for revision, results in runs.items():
        medians = {k: statistics.median(r[k] for r in results) for k in results[0]}
        total = sum(v for k, v in medians.items() if k != "index MB")
        print(revision, {k: round(v, 2) for k, v in medians.items()}, "total", round(total, 2))


if __name__ == "__main__":
    main()

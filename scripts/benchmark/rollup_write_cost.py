"""What the reports' rollup adds to the daemon's writes: the store's CPU and wall time
per finished prediction, with the rollup's triggers and with them dropped, in one run.

Predictions are registered, claimed and ended through the daemon's own store calls
(``claim_due`` and ``apply_observations``, batches of BATCH as the writer's group
commit writes them): ``succeeded`` with a model, times and a predict_time, so each
end fires the trigger once. Rounds alternate with and without the triggers (dropped
by hand in a copy of the database) so both see the same load. SQLite's work is this
process's CPU; PostgreSQL's is in its server, so for it the wall time is the figure.

    .venv/bin/python -m benchmark.rollup_write_cost [--engines sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from tracker.domain import NextPoll
from tracker.poll.observe import parse_prediction, plan_observation
from tracker.store import migrate
from tracker.store.store import Store
from tracker.timeparse import utcnow

from .databases import pg_create, pg_drop
from .harness import loadavg, log

BATCH = 100
PER_ROUND = 2000
ROUNDS = 4
TRIGGERS = ("insert", "update", "delete")


def _end_round(store: Store, prefix: str) -> tuple[float, float]:
    """Register PER_ROUND predictions, then end them in batches; (wall, cpu) of the
    ends only."""
    now = utcnow()
    ids = [f"{prefix}-{i:05d}" for i in range(PER_ROUND)]
    store.add_predictions(ids, now=now, first_poll_at=now)
    wall = cpu = 0.0
    for start in range(0, PER_ROUND, BATCH):
        states = store.claim_due(
            now=now + timedelta(hours=1),
            limit=BATCH,
            owner="w",
            lease_until=now + timedelta(hours=2),
        )
        items = []
        for k, state in enumerate(states):
            body: dict[str, Any] = {
                "id": state.id,
                "status": "succeeded",
                "model": f"bench/model-{k % 8}",
                "created_at": (now - timedelta(seconds=30)).isoformat(),
                "started_at": (now - timedelta(seconds=25)).isoformat(),
                "completed_at": (now - timedelta(seconds=0.001 * (start + k))).isoformat(),
                "metrics": {"predict_time": 20.0 + k * 0.01},
                "output": ["https://example.com/out.png"],
            }
            update = plan_observation(state, parse_prediction(body, state.id), now)
            items.append((update, NextPoll(now + timedelta(seconds=5), 5.0), "w"))
        w0, c0 = time.perf_counter(), time.process_time()
        store.apply_observations(items)
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
    return wall, cpu


def _drop_triggers(store: Store) -> None:
    on = " ON predictions" if store.dialect == "postgresql" else ""
    with store.engine.begin() as conn:
        for name in TRIGGERS:
            conn.execute(text(f"DROP TRIGGER IF EXISTS tr_predictions_rollup_{name}{on}"))


def run_engine(engine: str, workdir: Path) -> dict[str, Any]:
    urls, names = {}, []
    for variant in ("rollup", "without"):
        if engine == "sqlite":
            urls[variant] = f"sqlite:///{workdir / f'{variant}.db'}"
        else:
            name = f"tracker_bench_write_{variant}_{uuid.uuid4().hex[:6]}"
            names.append(name)
            urls[variant] = pg_create(name)
    stores = {v: Store.from_url(u) for v, u in urls.items()}
    try:
        for variant, store in stores.items():
            migrate.upgrade(store, "0011")
            if variant == "without":
                _drop_triggers(store)
        times: dict[str, list[tuple[float, float]]] = {v: [] for v in stores}
        load = [loadavg()]
        for r in range(ROUNDS):
            for variant, store in stores.items():
                times[variant].append(_end_round(store, f"{variant}-{r}"))
        load.append(loadavg())
    finally:
        for store in stores.values():
            store.close()
        for name in names:
            pg_drop(name)
    result: dict[str, Any] = {"engine": engine, "loadavg": load}
    for variant, rounds in times.items():
        result[variant] = {
            "wall_us_per_prediction": round(
                statistics.median(w for w, _ in rounds) / PER_ROUND * 1e6
            ),
            "cpu_us_per_prediction": round(
                statistics.median(c for _, c in rounds) / PER_ROUND * 1e6
            ),
        }
    log(f"{engine}: {result}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-rollup-write-") as tmp:
        for engine in args.engines.split(","):
            r = run_engine(engine.strip(), Path(tmp))
            for variant in ("without", "rollup"):
                print(
                    f"{engine} {variant:>8}: {r[variant]['wall_us_per_prediction']} us wall,"
                    f" {r[variant]['cpu_us_per_prediction']} us CPU (this process) per"
                    f" finished prediction, load {r['loadavg']}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``ample`` and ``tight`` sections: a realistic workload, and every client (the daemon
with each scheduler on each engine, and the baseline) on its own copy of it at the same
moments. ``clients`` turns what each client left behind into its figures."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from tracker.domain import CallbackSpec
from tracker.poll.runtimes import MIN_SAMPLES
from tracker.store.store import Store
from tracker.store.tables import predictions
from tracker.timeparse import utcnow

from .baseline import BASELINE_INTERVAL, BaselineClient
from .clients import baseline_client, ratios, simulator_log, tracker_client, webhooks
from .databases import Reader
from .harness import DaemonProcess, SimulatorProcess, loadavg, log
from .profile import FAST, Profile, mean_duration
from .samplers import LagSampler, SimProbe
from .stats import dist

# -- the workload ------------------------------------------------------------------------


def make_workload(profile: Profile, running: float, seed: int) -> list[dict[str, Any]]:
    """Arrivals spread uniformly over the window (a Poisson process given its count), a
    model each, an exponential queue time and a log-normal run time: seeded."""
    rng = random.Random(seed)
    count = max(6, round(running * profile.arrival_seconds / mean_duration(profile)))
    offsets = sorted(rng.uniform(0, profile.arrival_seconds) for _ in range(count))
    items = []
    for index, offset in enumerate(offsets):
        model = profile.models[index % len(profile.models)]
        items.append(
            {
                "index": index,
                "offset": round(offset, 3),
                "model": model.name,
                "queue_seconds": round(rng.expovariate(1 / profile.queue_mean), 3),
                "run_seconds": round(rng.lognormvariate(math.log(model.median), profile.sigma), 3),
            }
        )
    return items


def plan_json(item: dict[str, Any], progress_bars: bool = True) -> dict[str, Any]:
    """The simulator's plan for one item; without ``progress_bars`` (``--logs plain``),
    runs log a line every half second but show no progress bar."""
    plan = {
        "outcome": "succeeded",
        "queue_seconds": item["queue_seconds"],
        "run_seconds": item["run_seconds"],
        "model": item["model"],
    }
    if not progress_bars:
        lines = max(1, math.ceil(item["run_seconds"] / 0.5))
        plan["log_lines"] = [f"chunk {k} rendered" for k in range(1, lines + 1)]
    return plan


def peak_running(items: Sequence[dict[str, Any]]) -> int:
    edges = []
    for it in items:
        edges.append((it["offset"], 1))
        edges.append((it["offset"] + it["queue_seconds"] + it["run_seconds"], -1))
    running = peak = 0
    for _, step in sorted(edges):
        running += step
        peak = max(peak, running)
    return peak


def workload_summary(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    by_model: dict[str, list[float]] = {}
    for it in items:
        by_model.setdefault(it["model"], []).append(it["queue_seconds"] + it["run_seconds"])
    return {
        "predictions": len(items),
        "peak_running": peak_running(items),
        "seconds_to_complete_by_model": {m: dist(v) for m, v in sorted(by_model.items())},
    }


def seed_history(url: str, profile: Profile, seed: int) -> int:
    """Give each model MIN_SAMPLES finished predictions (SQL) if the database has fewer."""
    store = Store.from_url(url, pool_size=1)
    rng = random.Random(seed)
    try:
        have = {m: len(v) for m, v in store.recent_run_times().items()}
        rows = []
        now = utcnow()
        for model in profile.models:
            for k in range(max(0, MIN_SAMPLES - have.get(model.name, 0))):
                seconds = rng.expovariate(1 / profile.queue_mean) + rng.lognormvariate(
                    math.log(model.median), profile.sigma
                )
                created = now - timedelta(seconds=3600 - k)
                rows.append(
                    {
                        "id": f"history-{model.name.replace('/', '-')}-{k}",
                        "status": "succeeded",
                        "tracking": "done",
                        "model": model.name,
                        "labels": {},
                        "registered_at": created,
                        "created_at": created,
                        "completed_at": created + timedelta(seconds=seconds),
                    }
                )
        if rows:
            with store.engine.begin() as conn:
                conn.execute(insert(predictions), rows)
        return len(rows)
    finally:
        store.close()


# -- one run: every client on its own copy of the same workload ---------------------------


@dataclass(frozen=True)
class Run:
    """What one workload run needs around it."""

    name: str  #: "ample" or "tight"
    profile: Profile
    max_rps: float
    sim: SimulatorProcess
    receiver: str  #: the webhook receiver's URL
    workdir: Path
    baseline_http: str = "tracker"
    progress_bars: bool = True


@dataclass
class Variant:
    key: str  #: e.g. "sqlite-adaptive"
    engine: str
    scheduler: str
    url: str
    prefix: str = ""
    hook: str = ""
    store: Store | None = None
    executor: ThreadPoolExecutor | None = None
    daemon: DaemonProcess | None = None
    sampler: LagSampler | None = None
    reader: Reader | None = None
    registered: list[float] = field(default_factory=list)


def short(key: str) -> str:
    engine, _, scheduler = key.partition("-")
    return ("sq" if engine == "sqlite" else "pg") + scheduler[:1]


def run_workload(run: Run, items: list[dict[str, Any]], variants: list[Variant]) -> dict[str, Any]:
    log(
        f"{run.name}: {len(items)} predictions x {len(variants) + 1} clients,"
        f" peak {peak_running(items)} running, --max-rps {run.max_rps:g}"
    )
    load_start = loadavg()
    baseline = _start_clients(run, items, variants)
    try:
        measured = _drive(run, items, variants, baseline)
    finally:
        for v in variants:  # all at once: each takes a moment to drain and release claims
            if v.daemon is not None:
                v.daemon.terminate()
        for v in variants:
            if v.daemon is not None:
                v.daemon.stop()
        base_result = baseline.result()
    log(f"{run.name}: daemons stopped")
    lags = _close(variants)
    counts, polled = simulator_log(run.sim)
    hooks = webhooks(run.receiver, run.name, [v.key for v in variants])
    model_of = {f"{it['index']:05d}": it["model"] for it in items}
    clients = [
        tracker_client(v, len(items), counts, polled, hooks[v.key], lags[v.key], model_of)
        for v in variants
    ]
    clients.append(
        baseline_client(base_result, f"{run.name}-base-", len(items), counts, polled, run, model_of)
    )
    elapsed = measured["seconds"]
    result = {
        "max_rps": run.max_rps,
        "poll_min": run.profile.poll_min,
        "poll_max": run.profile.poll_max,
        "baseline_interval": BASELINE_INTERVAL,
        "workload": workload_summary(items),
        "seconds": round(elapsed, 1),
        "unfinished": measured["unfinished"],
        "simulator_latency_seconds": measured["sim_latency"],
        "simulator_cpu_share": round(measured["sim_cpu"] / elapsed, 2),
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "clients": clients,
    }
    result["ratios"] = ratios(clients)
    log(f"{run.name}: measured")
    return result


def _start_clients(
    run: Run, items: list[dict[str, Any]], variants: list[Variant]
) -> BaselineClient:
    """Start a daemon per variant (with a store to register through) and the baseline."""
    profile = run.profile
    flags = ["--poll-min", str(profile.poll_min), "--poll-max", str(profile.poll_max)]
    flags += ["--max-rps", str(run.max_rps)]
    for v in variants:
        v.prefix = f"{run.name}-{short(v.key)}-"
        v.hook = f"{run.receiver}/hook/{run.name}-{v.key}"
        v.store = Store.from_url(v.url, pool_size=2)
        v.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"register-{v.key}")
        log_path = run.workdir / f"{run.name}-daemon-{v.key}.log"
        v.daemon = DaemonProcess(v.url, run.sim.base, log_path, "--scheduler", v.scheduler, *flags)
    base_prefix = f"{run.name}-base-"
    spec = {
        "root": run.sim.root,
        "base": run.sim.base,
        "max_rps": run.max_rps,
        "interval": BASELINE_INTERVAL,
        "http": run.baseline_http,
        "items": [
            {
                "id": f"{base_prefix}{it['index']:05d}",
                "offset": it["offset"],
                "plan": plan_json(it, run.progress_bars),
            }
            for it in items
        ],
    }
    return BaselineClient(spec, run.workdir, run.name, inline=profile is FAST)


def _drive(
    run: Run, items: list[dict[str, Any]], variants: list[Variant], baseline: BaselineClient
) -> dict[str, Any]:
    """Let every prediction arrive and end; the time it took, what did not end, and the
    simulator's CPU and answer time meanwhile."""
    for v in variants:
        assert v.daemon is not None
        v.daemon.wait_ready()
    log(f"{run.name}: daemons ready")
    t0 = time.time() + 0.5
    baseline.go(t0)
    probe = SimProbe(run.sim)
    probe.start()
    sim_cpu = run.sim.cpu_seconds()
    for v in variants:
        v.sampler = LagSampler(v.url, 0.2, schedules=True)
        v.sampler.start()
        v.reader = Reader(v.url)
    asyncio.run(_arrive(items, variants, t0, run))
    last = max(it["offset"] + it["queue_seconds"] + it["run_seconds"] for it in items)
    deadline = t0 + last + run.profile.drain_slack
    unfinished = _wait_done(variants, baseline, deadline)
    elapsed = time.time() - t0
    sim_cpu = run.sim.cpu_seconds() - sim_cpu
    sim_latency = probe.finish()
    log(f"{run.name}: every prediction ended after {elapsed:.1f} s")
    return {
        "seconds": elapsed,
        "unfinished": unfinished,
        "sim_cpu": sim_cpu,
        "sim_latency": sim_latency,
    }


def _close(variants: list[Variant]) -> dict[str, dict[str, Any]]:
    """Stop the samplers (their schedule lag by variant) and close the rest."""
    lags = {v.key: v.sampler.finish() if v.sampler else dist([]) for v in variants}
    for v in variants:
        if v.reader:
            v.reader.close()
        if v.executor:
            v.executor.shutdown()
        if v.store:
            v.store.close()
    return lags


async def _arrive(
    items: list[dict[str, Any]], variants: list[Variant], t0: float, run: Run
) -> None:
    """At each arrival: define the plan upstream (the prediction is created), then
    register it with each tracker, as a user would right after creating it."""
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Future[None]] = []
    groups: list[list[dict[str, Any]]] = []
    for it in items:
        if groups and it["offset"] - groups[-1][0]["offset"] < 0.05:
            groups[-1].append(it)
        else:
            groups.append([it])
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    poll_min = run.profile.poll_min
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for group in groups:
            delay = t0 + group[0]["offset"] - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            puts = [
                client.put(
                    f"{run.sim.root}/_sim/predictions/{v.prefix}{it['index']:05d}",
                    json=plan_json(it, run.progress_bars),
                )
                for v in variants
                for it in group
            ]
            for response in await asyncio.gather(*puts):
                response.raise_for_status()
            for v in variants:
                ids = [f"{v.prefix}{it['index']:05d}" for it in group]
                pending.append(loop.run_in_executor(v.executor, _register, v, ids, poll_min))
        await asyncio.gather(*pending)


def _register(v: Variant, ids: list[str], poll_min: float) -> None:
    assert v.store is not None
    now = utcnow()
    v.store.add_predictions(
        ids,
        now=now,
        first_poll_at=now + timedelta(seconds=poll_min),
        callbacks_to_add=[CallbackSpec("webhook", v.hook, ("completed",))],
    )
    v.registered.append((utcnow() - now).total_seconds())


def _wait_done(
    variants: list[Variant], baseline: BaselineClient, deadline: float
) -> dict[str, Any]:
    """Wait until every tracker has no active prediction and no pending delivery, and
    the baseline has seen every prediction end; what is left at the deadline."""
    state: dict[str, Any] = {}
    while True:
        state = {}
        for v in variants:
            assert v.reader is not None
            active, pending = v.reader.active_and_pending()
            if active or pending:
                state[v.key] = {"active": active, "pending_deliveries": pending}
        if not baseline.finished():
            state["baseline"] = "running"
        if not state or time.time() > deadline:
            if state:
                log(f"not finished by the deadline: {state}")
            return state
        time.sleep(0.5)

"""What each client of a workload run achieved: requests, detection and callback
latency, from the simulator's log, the webhook receiver and the client's database;
and how the clients compare (ratios)."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import select

from tracker.poll.runtimes import RunTimes
from tracker.store.engine import make_engine
from tracker.store.store import Store
from tracker.store.tables import deliveries, delivery_attempts

from .baseline import BASELINE_INTERVAL
from .databases import read_database
from .detection import detection_distribution
from .harness import SimulatorProcess
from .stats import dist, dist_ms, ratio

if TYPE_CHECKING:
    from .workload import Run, Variant


def simulator_log(sim: SimulatorProcess) -> tuple[Counter[str], dict[str, list[float]]]:
    """Requests per client (by id prefix), and when each prediction was polled."""
    counts: Counter[str] = Counter()
    polled: dict[str, list[float]] = {}
    for record in sim.requests():
        pid = record["prediction_id"] or ""
        counts[pid[: pid.rfind("-") + 1]] += 1
        polled.setdefault(pid, []).append(record["at"])
    return counts, polled


def webhooks(receiver: str, run: str, keys: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The webhooks each variant's daemon sent, as the receiver recorded them."""
    return {
        key: httpx.get(f"{receiver}/records", params={"tag": f"{run}-{key}"}, timeout=60).json()
        for key in keys
    }


def tracker_client(
    v: Variant,
    predictions: int,
    counts: Counter[str],
    polled: dict[str, list[float]],
    hooks: list[dict[str, Any]],
    lag: dict[str, Any],
    model_of: dict[str, str] | None = None,
) -> dict[str, Any]:
    assert v.daemon is not None and v.daemon.result is not None and v.sampler is not None
    db = read_database(v.url)
    terminal = {pid: t for pid, t in db["terminal"].items() if pid.startswith(v.prefix)}
    completed = {
        pid: t["completed_at"] for pid, t in terminal.items() if t["completed_at"] is not None
    }
    detect = {pid: terminal[pid]["observed_at"] - c for pid, c in completed.items()}
    intervals, late = _intervals(v.sampler.schedules, completed, polled)
    excess = [detect[pid] - intervals[pid] for pid in intervals]
    arrivals: dict[str, float] = {}
    for rec in hooks:
        if rec["event"] == "completed" and rec["prediction_id"] in terminal:
            arrivals.setdefault(rec["prediction_id"], rec["arrival"])
    callback_ms = [(at - terminal[pid]["observed_at"]) * 1000 for pid, at in arrivals.items()]
    requests = counts[v.prefix]
    windows = _learned_windows(v.url) if v.scheduler == "adaptive" else {}
    cpu = v.daemon.result["cpu_seconds"]
    return {
        "client": "tracker",
        "scheduler": v.scheduler,
        "engine": v.engine,
        "predictions": predictions,
        "finished": len(detect),
        "requests": requests,
        "requests_per_prediction": round(requests / predictions, 2),
        "detection_seconds": dist(list(detect.values())),
        "detection_distribution": detection_distribution(detect, model_of or {}),
        "interval_at_completion_seconds": dist(list(intervals.values())),
        "detection_minus_interval_seconds": dist(excess),
        "detecting_poll_late_seconds": dist(late),
        "poll_gaps": _poll_gaps(polled, v.prefix, completed),
        "learned_windows": {m: [round(x, 2) for x in w] for m, w in windows.items() if w},
        "callback_ms": dist_ms(callback_ms),
        "callbacks_delivered": len(arrivals),
        "callback_path_ms": _delivery_timing(v.url, v.prefix),
        "delivery_states": db["delivery_states"],
        "schedule_lag_seconds": lag,
        "daemon": v.daemon.result,
        "polls_per_cpu_second": round(requests / cpu, 1) if cpu else None,
    }


def _intervals(
    schedules: dict[str, dict[float, float]],
    completed: dict[str, float],
    polled: dict[str, list[float]],
) -> tuple[dict[str, float], list[float]]:
    """The poll interval in effect when each prediction ended (what the daemon
    scheduled after its last answer before the completion), and how late the poll
    that saw the end ran against that schedule."""
    intervals: dict[str, float] = {}
    late: list[float] = []
    for pid, c in completed.items():
        decided = schedules.get(pid, {})
        before = [base for base in decided if base < c]
        if not before:
            continue
        base = max(before)
        intervals[pid] = decided[base] - base
        detecting = next((at for at in polled.get(pid, []) if at >= c), None)
        if detecting is not None:
            late.append(detecting - decided[base])
    return intervals, late


def baseline_client(
    base_result: dict[str, Any],
    base_prefix: str,
    predictions: int,
    counts: Counter[str],
    polled: dict[str, list[float]],
    run: Run,
    model_of: dict[str, str] | None = None,
) -> dict[str, Any]:
    seen = base_result["results"]
    base_detect = {pid: r["seen_at"] - r["completed_at"] for pid, r in seen.items()}
    base_requests = counts[base_prefix]
    base_cpu = base_result["cpu_seconds"]
    return {
        "client": "baseline",
        "scheduler": f"fixed {BASELINE_INTERVAL:g} s",
        "http_client": run.baseline_http,
        "engine": None,
        "predictions": predictions,
        "finished": len(seen),
        "requests": base_requests,
        "requests_per_prediction": round(base_requests / predictions, 2),
        "detection_seconds": dist(list(base_detect.values())),
        "detection_distribution": detection_distribution(base_detect, model_of or {}),
        "detection_minus_interval_seconds": dist(
            [x - BASELINE_INTERVAL for x in base_detect.values()]
        ),
        "poll_gaps": _poll_gaps(
            polled, base_prefix, {pid: r["completed_at"] for pid, r in seen.items()}
        ),
        "get_seconds": base_result.get("get_seconds"),
        "get_errors": base_result.get("errors"),
        "event_loop_lag_seconds": base_result.get("event_loop_lag_seconds"),
        "cpu_seconds": base_cpu,
        "peak_rss_mb": base_result["peak_rss_mb"],
        "polls_per_cpu_second": round(base_requests / base_cpu, 1) if base_cpu else None,
    }


def _poll_gaps(
    polled: dict[str, list[float]], prefix: str, completed: dict[str, float]
) -> dict[str, Any]:
    """From the simulator's log: the time between two polls of one prediction, and at
    each completion the gap between the poll before it and the poll that saw it."""
    gaps: list[float] = []
    around: list[float] = []
    for pid, times in polled.items():
        if not pid.startswith(prefix):
            continue
        gaps.extend(b - a for a, b in itertools.pairwise(times))
        c = completed.get(pid)
        if c is None:
            continue
        after = next((i for i, at in enumerate(times) if at >= c), None)
        if after:
            around.append(times[after] - times[after - 1])
    return {"between_polls_seconds": dist(gaps), "around_completion_seconds": dist(around)}


def _delivery_timing(url: str, prefix: str) -> dict[str, Any]:
    """Where a webhook's time goes: queued (the observation's commit) to the send
    starting, and the send itself (delivery_attempts.duration_ms)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    deliveries.c.created_at,
                    delivery_attempts.c.attempted_at,
                    delivery_attempts.c.duration_ms,
                )
                .join(delivery_attempts, delivery_attempts.c.delivery_id == deliveries.c.id)
                .where(deliveries.c.prediction_id.like(f"{prefix}%"))
            ).all()
    finally:
        engine.dispose()
    waits = [((a - c).total_seconds() * 1000 - (d or 0)) for c, a, d in rows if a is not None]
    return {
        "queued_to_send_ms": dist_ms(waits),
        "send_ms": dist_ms([float(d) for _, _, d in rows if d is not None]),
        "attempts": len(rows),
    }


def _learned_windows(url: str) -> dict[str, tuple[float, float] | None]:
    """Each model's likely window as the adaptive daemon knows it from the database."""
    store = Store.from_url(url, pool_size=1)
    try:
        samples = store.recent_run_times()
    finally:
        store.close()
    known = RunTimes()
    known.load(samples)
    return {model: known.likely_window(model) for model in samples}


def ratios(clients: list[dict[str, Any]]) -> dict[str, Any]:
    """Per engine: how many times more requests and how much later detection the
    others have than the adaptive tracker (> 1: the adaptive tracker is better)."""
    base = next(c for c in clients if c["client"] == "baseline")
    out: dict[str, Any] = {}
    for engine in sorted({c["engine"] for c in clients if c["engine"]}):
        mine = {c["scheduler"]: c for c in clients if c["engine"] == engine}
        adaptive = mine.get("adaptive")
        if adaptive is None:
            continue
        for name, other in (("baseline", base), ("backoff", mine.get("backoff"))):
            if other is not None:
                out[f"{engine}: {name} / adaptive"] = _ratio_entry(other, adaptive)
        backoff = mine.get("backoff")
        if backoff is not None:
            out[f"{engine}: baseline / backoff"] = _ratio_entry(base, backoff)
    return out


def _ratio_entry(other: dict[str, Any], client: dict[str, Any]) -> dict[str, Any]:
    """``other``'s requests per prediction and detection quantiles over ``client``'s."""
    entry = {
        "requests_per_prediction": ratio(
            other["requests_per_prediction"], client["requests_per_prediction"]
        )
    }
    for q in ("p50", "p95", "p99"):
        entry[f"detection_{q}"] = ratio(
            other["detection_seconds"][q], client["detection_seconds"][q]
        )
    return entry

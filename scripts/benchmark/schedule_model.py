"""An offline model of the ``tight`` section's request budget, without progress bars
(issue 18 item 4): how low detection latency can go when the scheduler knows only
each model's run times.

The model replays the section's workload (the same seeded arrivals, queue and run
times) against a server that answers ``--max-rps`` requests a second, taken in
``next_poll_at`` order as the daemon claims them (a prediction due earlier is polled
first; when more are due than the budget allows, everyone waits alike). A poll at
or after a prediction's completion detects it. No HTTP, no database, no CPU
contention: the figures are what the schedules themselves allow. Three clients:

- ``wait() baseline``: a GET every 0.5 s per prediction, all sharing the budget;
- ``adaptive, before``: the same as it was before issue 18 item 4 (every run timed
  from its creation, no backoff past the longest run);
- ``tracker adaptive``: the tracker's own ``PollPolicy.after_answer`` and
  ``RunTimes``, started with 20 creation-to-completion times per model (what the
  benchmark seeds) and learning as runs end, plain logs (every answer during
  processing is a change);
- ``oracle``: a bound, not a schedule the daemon could run. At each request slot it
  polls, among the predictions not polled in the last ``x`` seconds, the one whose
  chance of ending now is highest (the hazard of the true run-time distribution at
  its age, counted from its start once a poll has seen it running), and leaves the
  slot unused when there is none. For a p95 objective the best use of a budget is
  to poll at one interval where that hazard is high and not at all where it is low
  (the pointwise optimum of the relaxed problem is bang-bang), and this does that
  with full knowledge of the distributions and of the load at every moment.

    .venv/bin/python scripts/bench_schedule.py [--seeds 8,9,10]
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Any

from tracker.poll.runtimes import MIN_SAMPLES, RunTimes, RunWindow
from tracker.poll.schedule import PollPolicy

from .baseline import BASELINE_INTERVAL
from .detection import QUANTILES
from .profile import FULL, Profile
from .stats import percentile
from .workload import make_workload

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
#: the oracle's shortest time between two polls of one prediction (seconds)
ORACLE_INTERVALS = (2.5, 3.0, 3.5)
_NORMAL = NormalDist()


class Item:
    """One prediction of the workload: when it is created, starts and ends."""

    def __init__(self, it: dict[str, Any]) -> None:
        self.model: str = it["model"]
        self.created: float = it["offset"]
        self.started: float = self.created + it["queue_seconds"]
        self.ended: float = self.started + it["run_seconds"]


Decide = Callable[[Item, float], float]


def replay(
    items: Sequence[Item],
    rps: float,
    first: float,
    decide: Decide,
    detected: Callable[[Item], None] = lambda _: None,
) -> list[float]:
    """Detection latencies when every poll goes out in due order at ``rps`` a second,
    the first ``first`` seconds after creation, the next when ``decide`` says;
    ``detected`` hears of each completion as a poll sees it."""
    due = [(it.created + first, n) for n, it in enumerate(items)]
    heapq.heapify(due)
    slot, clock, latency = 1.0 / rps, 0.0, []
    while due:
        at, n = heapq.heappop(due)
        clock = max(clock + slot, at)
        item = items[n]
        if clock >= item.ended:
            latency.append(clock - item.ended)
            detected(item)
        else:
            heapq.heappush(due, (decide(item, clock), n))
    return latency


def baseline(items: Sequence[Item], rps: float) -> list[float]:
    return replay(items, rps, BASELINE_INTERVAL, lambda _, now: now + BASELINE_INTERVAL)


def history(profile: Profile, seed: int) -> dict[str, list[float]]:
    """Creation-to-completion times per model, as ``workload.seed_history`` writes them."""
    rng = random.Random(seed)
    return {
        m.name: [
            rng.expovariate(1 / profile.queue_mean)
            + rng.lognormvariate(math.log(m.median), profile.sigma)
            for _ in range(MIN_SAMPLES)
        ]
        for m in profile.models
    }


def adaptive(
    items: Sequence[Item], rps: float, profile: Profile, seed: int, *, as_before: bool = False
) -> list[float]:
    """The tracker's own scheduling decisions, fed what a poll would have told them;
    ``as_before``: as before issue 18 item 4, every run timed from its creation and no
    longest run (no overrun backoff)."""
    policy = PollPolicy(profile.poll_min, profile.poll_max, rng=random.Random(seed))
    times = RunTimes()
    times.load(history(profile, seed))
    interval: dict[int, float | None] = {}

    def decide(item: Item, now: float) -> float:
        processing = now >= item.started
        window, since = times.likely_window(item.model), item.created
        if processing and times.processing_window(item.model) is not None:
            window, since = times.processing_window(item.model), item.started
        if as_before:
            known = times.likely_window(item.model)
            window = None if known is None else RunWindow(known.opens, known.closes)
            since = item.created
        nxt = policy.after_answer(
            previous_interval=interval.get(id(item)),
            changed=processing,  # plain logs: a new line every half second
            terminal=False,
            now=EPOCH + timedelta(seconds=now),
            elapsed=now - since,
            likely=window,
        )
        interval[id(item)] = nxt.interval
        assert nxt.at is not None
        return (nxt.at - EPOCH).total_seconds()

    def learn(item: Item) -> None:
        times.add(item.model, item.ended - item.created, processing=item.ended - item.started)

    return replay(items, rps, profile.poll_min, decide, learn)


def oracle(items: Sequence[Item], rps: float, profile: Profile, refractory: float) -> list[float]:
    """The hazard-first bound described in the module docstring."""
    medians = {m.name: m.median for m in profile.models}

    def hazard(item: Item, now: float, seen_running: bool) -> float:
        if seen_running:  # the run time alone: log-normal
            age, shift = now - item.started, 0.0
        else:  # queue and run: the log-normal shifted by the mean queue time
            age, shift = now - item.created, profile.queue_mean
        t = age - shift
        if t <= 0:
            return 0.0
        z = (math.log(t) - math.log(medians[item.model])) / profile.sigma
        survival = max(1.0 - _NORMAL.cdf(z), 1e-12)
        return _NORMAL.pdf(z) / (t * profile.sigma) / survival

    order = sorted(range(len(items)), key=lambda n: items[n].created)
    alive: dict[int, list[Any]] = {}  # n -> [last poll, seen running]
    slot, clock, k, latency = 1.0 / rps, 0.0, 0, []
    while k < len(order) or alive:
        clock += slot
        while k < len(order) and items[order[k]].created + profile.poll_min <= clock:
            alive[order[k]] = [-math.inf, False]
            k += 1
        best, best_hazard = None, -1.0
        for n, (last, running) in alive.items():
            if clock - last >= refractory:
                h = max(hazard(items[n], clock, running), 1e-9)
                if h > best_hazard:
                    best, best_hazard = n, h
        if best is None:
            continue
        item = items[best]
        if clock >= item.ended:
            latency.append(clock - item.ended)
            del alive[best]
        else:
            alive[best] = [clock, clock >= item.started]
    return latency


def quantiles(values: list[float]) -> dict[str, float]:
    return {f"p{q}": round(percentile(values, q) or 0.0, 2) for q in QUANTILES}


def run(seed: int, profile: Profile = FULL) -> list[dict[str, Any]]:
    items = [Item(it) for it in make_workload(profile, profile.tight_running, seed)]
    rps = profile.tight_rps
    rows = [{"client": "wait() baseline", **quantiles(baseline(items, rps))}]
    before = adaptive(items, rps, profile, seed, as_before=True)
    rows.append({"client": "adaptive, before", **quantiles(before)})
    rows.append({"client": "tracker adaptive", **quantiles(adaptive(items, rps, profile, seed))})
    for x in ORACLE_INTERVALS:
        rows.append({"client": f"oracle, x = {x:g} s", **quantiles(oracle(items, rps, profile, x))})
    base = rows[0]["p95"]
    for row in rows:
        row["p95 ratio"] = round(base / row["p95"], 2) if row["p95"] else None
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", default="8", help="workload seeds (tight uses --seed + 1)")
    args = parser.parse_args(argv)
    for seed in (int(s) for s in args.seeds.split(",")):
        print(
            f"\ntight workload, seed {seed}: --max-rps {FULL.tight_rps:g}, plain logs;"
            " detection latency (s)"
        )
        print(f"{'client':<20}" + "".join(f"{f'p{q}':>7}" for q in QUANTILES) + f"{'x p95':>8}")
        for row in run(seed):
            print(
                f"{row['client']:<20}"
                + "".join(f"{row[f'p{q}']:>7.2f}" for q in QUANTILES)
                + f"{row['p95 ratio']:>8.2f}"
            )

"""The main benchmark: efficiency, detection and callback latency, scale, and a baseline.

Starts the upstream simulator (and a webhook receiver) in their own processes and runs
`tracker daemon` against them on SQLite and on PostgreSQL. Sections (``--sections``):

efficiency  N never-ending predictions whose logs grow all the time (every answer is a
            change and a write), polled as fast as the daemon can: upstream requests per
            daemon CPU-second, from /proc, once the daemon is warm.
ample       A realistic workload (three models, log-normal run times around 8, 20 and
            60 s, an exponential queue time), each prediction's plan defined explicitly
            with ``PUT /_sim/predictions/{id}`` and seeded, arriving over a minute. Every
            client gets its own copy of the same workload at the same moments: the
            daemon with ``--scheduler adaptive`` and with ``--scheduler backoff`` on
            each engine, and the baseline, the fixed-interval loop of the official
            client's ``wait()`` (one GET every 0.5 s until terminal) with the same
            request budget as a shared token bucket, over the tracker's HTTP client
            so that only the polling strategy differs (``--baseline-http httpx``:
            plain httpx, as replicate-python). The budget covers every poll.
            Measures requests per prediction, detection latency (upstream
            ``completed_at`` to the tracker's terminal ``observed_at``; for the baseline
            to the moment it saw the terminal answer) and callback latency (terminal
            ``observed_at`` to a webhook's arrival at a local receiver).
tight       The same, with about five times more predictions running at once and a
            budget (``--max-rps``) that cannot poll each of them every second. The
            adaptive daemons start with the run times they learned in ``ample`` (seeded
            with SQL when that section did not run).
            In both, a run logs a progress bar line every half second (``step k/n |
            pct% | rate it/s``), which the adaptive scheduler reads; ``--logs plain``
            logs lines that say nothing of progress, leaving it only the run times.
scale       100,000 registered predictions (90 % finished, written in bulk with SQL,
            each shaped like what the daemon writes for a 20 s image prediction with a
            webhook) and 10,000 active never-ending ones (``tracker add``) at
            ``--poll-min 1`` with no binding budget: daemon peak RSS, schedule lag
            (how overdue the most overdue poll is, sampled every 0.5 s from the due
            index, and each poll's delay against its schedule from the simulator's
            log), database bytes per finished prediction, and the EXPLAIN plans of the
            hot-path queries on that database.

Prints one table (baseline beside the tracker, targets met or not) and writes JSON.

    scripts/bench [--fast] [--engines sqlite,postgresql] [--sections ...] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .databases import Databases, Reader, database_size, pg_version, table_bytes
from .efficiency import beside_bare_loops, run_efficiency
from .harness import (
    ROOT,
    SimulatorProcess,
    loadavg,
    log,
    machine,
    source_state,
    stop,
    terminate_on_sigterm,
)
from .profile import FAST, FULL, SECTIONS, Profile
from .receiver import start_receiver
from .report import evaluate_targets, print_report
from .scale import run_scale
from .workload import Run, Variant, make_workload, run_workload, seed_history


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join((__doc__ or "").splitlines()[2:]),
    )
    parser.add_argument("--fast", action="store_true", help="a few seconds per section")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench-results" / "bench.json")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep databases and logs")
    parser.add_argument(
        "--baseline-http",
        choices=("tracker", "httpx"),
        default="tracker",
        help="the baseline's HTTP client: the tracker's (httpx over aiohttp's pool, the"
        " default: only the polling strategy differs) or plain httpx, as replicate-python",
    )
    parser.add_argument(
        "--logs",
        choices=("progress", "plain"),
        default="progress",
        help="what a simulated run logs every half second: a progress bar (`step k/n |"
        " pct%% | rate it/s`, the default) or plain lines that say nothing of progress",
    )
    args = parser.parse_args(argv)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    for engine in args.engines:
        if engine not in ("sqlite", "postgresql"):
            parser.error(f"unknown engine {engine!r}")
    for section in args.sections:
        if section not in SECTIONS:
            parser.error(f"unknown section {section!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    terminate_on_sigterm()
    profile = FAST if args.fast else FULL
    started = time.monotonic()
    report = _start_report(args, profile, argv)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    workdir = args.json.parent / f"bench-work-{uuid.uuid4().hex[:6]}"
    workdir.mkdir()
    dbs = Databases(workdir, args.keep)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(dbs.template, args.engines))
        _run_sections(Sections(args, profile, dbs, workdir, report))
    finally:
        dbs.drop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report["machine"]["loadavg_end"] = loadavg()
    report["seconds"] = round(time.monotonic() - started, 1)
    report["targets"] = evaluate_targets(report, profile)
    args.json.write_text(json.dumps(report, indent=2, default=str))
    print_report(report)
    print(f"\nwritten to {args.json}")
    return 0


def _start_report(
    args: argparse.Namespace, profile: Profile, argv: Sequence[str] | None
) -> dict[str, Any]:
    """The report's settings, source and machine, before anything runs."""
    report: dict[str, Any] = {
        "settings": {
            "fast": args.fast,
            "engines": args.engines,
            "sections": args.sections,
            "seed": args.seed,
            "baseline_http": args.baseline_http,
            "logs": args.logs,
            "profile": {
                k: ([vars(m) for m in v] if k == "models" else v) for k, v in vars(profile).items()
            },
            "command": " ".join(["scripts/bench", *(argv or sys.argv[1:])]),
        },
        "source": source_state(),
        "machine": machine(),
    }
    if "postgresql" in args.engines:
        report["machine"]["postgresql"] = pg_version()
    return report


def _run_sections(sections: Sections) -> None:
    """The chosen sections, one after the other; with --fast, side by side (it checks
    that every part works, not how fast)."""
    args = sections.args
    jobs = []
    if "efficiency" in args.sections:
        jobs.append(sections.timed("efficiency", sections.efficiency))
    if "ample" in args.sections or "tight" in args.sections:
        runs = "+".join(name for name in ("ample", "tight") if name in args.sections)
        jobs.append(sections.timed(runs, sections.workload))
    if "scale" in args.sections:
        jobs.append(sections.timed("scale", sections.scale))
    if args.fast:
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            for future in [pool.submit(job) for job in jobs]:
                future.result()
    else:
        for job in jobs:
            job()


class Sections:
    """Each section of the run, writing its part of the report; each starts its own
    simulator."""

    def __init__(
        self,
        args: argparse.Namespace,
        profile: Profile,
        dbs: Databases,
        workdir: Path,
        report: dict[str, Any],
    ) -> None:
        self.args = args
        self.profile = profile
        self.dbs = dbs
        self.workdir = workdir
        self.report = report
        self.timings: dict[str, float] = {}
        report["section_seconds"] = self.timings

    def timed(self, name: str, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            log(name)
            mark = time.monotonic()
            try:
                fn()
            finally:
                self.timings[name] = round(time.monotonic() - mark, 1)

        return run

    def efficiency(self) -> None:
        sim = SimulatorProcess()
        try:
            rows = [
                run_efficiency(engine, self.profile, self.dbs, self.workdir, sim)
                for engine in self.args.engines
            ]
            beside_bare_loops(rows, self.profile, sim)
            self.report["efficiency"] = rows
        finally:
            sim.stop()

    def workload(self) -> None:
        args, profile = self.args, self.profile
        variants = [
            Variant(f"{engine}-{scheduler}", engine, scheduler, "")
            for engine in args.engines
            for scheduler in ("adaptive", "backoff")
        ]
        for v in variants:
            v.url = self.dbs.new(v.engine, v.key)
        receiver_proc, receiver = start_receiver()
        sim = SimulatorProcess()
        try:

            def run(name: str, max_rps: float) -> Run:
                return Run(
                    name,
                    profile,
                    max_rps,
                    sim,
                    receiver,
                    self.workdir,
                    args.baseline_http,
                    progress_bars=args.logs == "progress",
                )

            if "ample" in args.sections:
                items = make_workload(profile, profile.ample_running, args.seed)
                self.report["ample"] = run_workload(
                    run("ample", profile.ample_rps), items, variants
                )
            if "tight" in args.sections:
                seeded = {
                    v.key: seed_history(v.url, profile, args.seed)
                    for v in variants
                    if v.scheduler == "adaptive"
                }
                items = make_workload(profile, profile.tight_running, args.seed + 1)
                self.report["tight"] = run_workload(
                    run("tight", profile.tight_rps), items, variants
                )
                self.report["tight"]["history_seeded_with_sql"] = seeded
        finally:
            sim.stop()
            stop(receiver_proc)
        self.report["workload_db_bytes"] = [workload_db_bytes(v, self.dbs) for v in variants]

    def scale(self) -> None:
        sim = SimulatorProcess()
        try:
            self.report["scale"] = [
                run_scale(engine, self.profile, self.dbs, self.workdir, self.args.seed, sim)
                for engine in self.args.engines
            ]
        finally:
            sim.stop()


def workload_db_bytes(v: Variant, dbs: Databases) -> dict[str, Any]:
    """Database bytes per finished prediction as the daemon wrote them (with a webhook
    delivery each), beyond the empty migrated database."""
    reader = Reader(v.url)
    try:
        done = int(reader.scalar("SELECT count(*) FROM predictions WHERE tracking = 'done'"))
    finally:
        reader.close()
    size = database_size(v.url)
    extra = size - dbs.empty_bytes[v.engine]
    return {
        "variant": v.key,
        "finished": done,
        "db_bytes": size,
        "bytes_per_finished": round(extra / done) if done else None,
        "table_bytes_per_finished": {n: round(b / done) for n, b in table_bytes(v.url).items()}
        if done
        else None,
    }

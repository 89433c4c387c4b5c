"""The archive benchmark (scripts/bench_archive.py, issue 15 item 8): what archiving
output files costs, through a real `tracker daemon --exit-when-done` process against
the simulator's real files.

throughput  MB/s downloading 100 files of 5 MB into a local directory and into a moto
            S3 server on loopback (tests/s3server.py), from the first artifact's
            ``created_at`` to the last ``stored_at``; every row's size and sha256
            checked against the simulator's content, a sample read back.
rss         the daemon's peak RSS (VmHWM) while archiving one 1 GiB output (goal:
            under 150 MB), the stored file read back and hashed.
polls       polls per daemon CPU-second with archiving on beside off, 2,000
            predictions with one PNG each (goal: no more than 10 % fewer).

    .venv/bin/python scripts/bench_archive.py                  # about 10 minutes
    .venv/bin/python scripts/bench_archive.py --quick          # toy sizes, ~15 s
    .venv/bin/python scripts/bench_archive.py --parts polls --engines sqlite,postgresql

Prints a table per part and a line per goal and check; writes everything to JSON.
Exits 1 when a check of what was stored fails (a goal missed is only reported).

``--quick`` (the test suite's smoke run) shrinks every size and runs the parts side by
side instead of one after the other: every figure is reported and every check made,
but its timings mean nothing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .archive_files import (
    file_simulator,
    local_target,
    moto_server,
    run_rss,
    run_throughput,
    s3_target,
)
from .archive_polls import Workload, run_polls
from .archive_report import evaluate, print_report
from .databases import Databases, pg_reachable
from .harness import (
    comma_list,
    engines_arg,
    loadavg,
    log,
    machine,
    source_state,
    terminate_on_sigterm,
)

PARTS = ("throughput", "rss", "polls")
STORAGES = ("local", "s3")
_SIZE = re.compile(r"^(\d+)([KMG]?)$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes, or with K, M, G (binary units): ``1G`` is 2**30."""
    match = _SIZE.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1G, 64M, 5000000)")
    power = " KMG".index(match.group(2).upper() or " ")
    return int(match.group(1)) * 1024**power


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_archive.py",
        description="What archiving output files costs the daemon: MB/s into a local"
        " directory and a moto S3 server on loopback (throughput), its peak RSS archiving"
        " one 1 GiB output (rss), polls per daemon CPU-second with archiving on beside"
        " off (polls). Prints a line per goal and check; the module docstring of"
        " scripts/benchmark/archive.py tells more.",
    )
    add = parser.add_argument
    add(
        "--quick",
        action="store_true",
        help="toy sizes, the runs side by side: a smoke run of about 15 s (no figure means"
        " anything)",
    )
    add("--parts", type=lambda t: comma_list(t, PARTS), default=list(PARTS), help="default: all")
    add(
        "--engines",
        type=engines_arg,
        help="databases, for every part (default: sqlite for throughput and rss, sqlite"
        " and postgresql for polls)",
    )
    add(
        "--storages",
        type=lambda t: comma_list(t, STORAGES),
        default=list(STORAGES),
        help="archives of throughput and rss (default: local,s3)",
    )
    add("--files", type=int, default=100, help="files of the throughput part (100)")
    add("--file-size", type=parse_size, default=5_000_000, help="bytes of each (5 MB)")
    add("--files-per-prediction", type=int, default=10, help="(10)")
    add("--sample", type=int, default=10, help="stored files read back and hashed (10)")
    add("--big-size", type=parse_size, default=2**30, help="the rss part's file (1G)")
    add("--predictions", type=int, default=2000, help="of the polls part, one PNG each (2000)")
    add("--run-median", type=float, default=8.0, help="their median run time, seconds (8)")
    add("--interval", type=float, default=1.0, help="seconds between polls of one (1)")
    add("--arrival-seconds", type=float, default=60.0, help="registered over this long (60)")
    add("--runs", type=int, default=2, help="runs of each mode of the polls part (2)")
    add(
        "--alternate",
        action="store_true",
        help="polls part: one run at a time, off, on, off... (default: each off run at the"
        " same time as its on run)",
    )
    add(
        "--json",
        type=Path,
        default=Path("bench-results/archive.json"),
        help="the figures (default: bench-results/archive.json; daemon logs beside it)",
    )
    add("--keep", action="store_true", help="keep the databases and the archive folders")
    args = parser.parse_args(argv)
    if args.quick:
        args.files, args.file_size, args.files_per_prediction = 4, 1_000_000, 2
        args.sample, args.big_size = 2, 16 * 2**20
        args.predictions, args.run_median, args.runs = 30, 0.3, 1
        args.interval, args.arrival_seconds = 0.25, 1.0
    return args


def engines_for(args: argparse.Namespace, part: str) -> list[str]:
    if args.engines:
        return list(args.engines)
    return ["sqlite", "postgresql"] if part == "polls" and not args.quick else ["sqlite"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    terminate_on_sigterm()
    used = {e for part in args.parts for e in engines_for(args, part)}
    if "postgresql" in used and (why := pg_reachable()):
        raise SystemExit(why)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    logs = args.json.parent / "archive-logs"
    logs.mkdir(exist_ok=True)
    started = time.monotonic()
    report: dict[str, Any] = {
        "benchmark": "archive",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(),
        "source": source_state(),
    }
    with _workdir(args.keep) as workdir:
        dbs = Databases(workdir, keep=args.keep)
        try:
            report.update(run_parts(args, dbs, workdir, logs))
        finally:
            dbs.drop_all()
    report["machine"]["loadavg_end"] = loadavg()
    report["seconds"] = round(time.monotonic() - started, 1)
    report["goals"] = evaluate(report)
    print_report(report)
    args.json.write_text(json.dumps(report, indent=2, default=str))
    print(f"results: {args.json}")
    return 0 if all(g["met"] is not False for g in report["goals"] if g["kind"] == "check") else 1


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    """Databases and archives of the run (on the local disk, removed unless ``keep``)."""
    path = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    try:
        yield path
    finally:
        if keep:
            log(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def run_parts(args: argparse.Namespace, dbs: Databases, workdir: Path, logs: Path) -> dict:
    results: dict[str, list[dict[str, Any]]] = {part: [] for part in args.parts}
    with contextlib.ExitStack() as stack:
        s3 = None
        files = [p for p in ("throughput", "rss") if p in args.parts]
        if files:
            sim = file_simulator(args.big_size)
            stack.callback(sim.stop)
            if "s3" in args.storages:
                s3 = stack.enter_context(moto_server())

        def target(storage: str, label: str) -> Any:
            if storage == "s3":
                return s3_target(s3)
            return local_target(workdir / f"archive-{label}")

        runs: list[tuple[str, Callable[[], dict[str, Any]]]] = []
        for part in files:
            for engine in engines_for(args, part):
                for storage in args.storages:
                    place = target(storage, f"{part}-{engine}")
                    if part == "throughput":
                        run = functools.partial(
                            run_throughput,
                            engine,
                            place,
                            dbs,
                            logs,
                            sim,
                            files=args.files,
                            file_bytes=args.file_size,
                            per_prediction=args.files_per_prediction,
                            sample=args.sample,
                        )
                    else:
                        run = functools.partial(
                            run_rss, engine, place, dbs, logs, sim, big_bytes=args.big_size
                        )
                    runs.append((part, run))
        work = Workload(
            args.predictions,
            args.run_median,
            args.interval,
            args.arrival_seconds,
            queue_seconds=0.2 if args.quick else 1.0,
        )
        for engine in engines_for(args, "polls") if "polls" in args.parts else []:
            polls = functools.partial(
                run_polls, engine, dbs, workdir, logs, work, args.runs, paired=not args.alternate
            )
            runs.append(("polls", functools.partial(polls, side_by_side=args.quick)))
        for part, result in _run_all(runs, side_by_side=args.quick):
            results[part].append(result)
    return results


def _run_all(
    runs: list[tuple[str, Callable[[], dict[str, Any]]]], *, side_by_side: bool
) -> list[tuple[str, dict[str, Any]]]:
    """Each run's result, in order: one after the other (measuring), or all at once
    (``--quick``: a smoke run has no timing to protect)."""
    if not side_by_side:
        return [(part, run()) for part, run in runs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(runs))) as pool:
        futures = [(part, pool.submit(run)) for part, run in runs]
        return [(part, future.result()) for part, future in futures]

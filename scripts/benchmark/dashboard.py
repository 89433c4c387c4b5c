"""The dashboard benchmark (scripts/bench_dashboard.py, issue 16 item 8): how long each
page of `tracker serve`'s dashboard takes with many predictions (goal: under 200 ms
server-side with 1M on PostgreSQL).

A throwaway database per engine is filled (``dashboard_fill``: N predictions over the
last days, the newest active, models, statuses and labels by weight, some with their
transitions, logs and deliveries, some deliveries dead, a stored file for each that
succeeded in the last day), then a real `tracker serve --no-daemon` process serves it
on loopback (``dashboard_server``: the product plus a ``Server-Timing`` header) and
each page is requested ``--requests`` times, one at a time, after one request not
counted: the HTTP round trip (on loopback, about the server's time) and the server's
own time from its header, median and p95; PASS when the server's p95 is under 200 ms.
The overview "uncached" has its cached numbers dropped before each request, as on
the first request after a start; "cached" is what every other request gets. Requests
answered while those numbers were being read in the background (the overview and the
list start such a read once they are 5 s old) are counted apart too ("alone": the
others).

Then ``--batch`` predictions registered at one same time (as one `tracker add` call
stamps them) are added and the list is measured inside that batch, and its filtered
pages with the batch at the top (BATCH_FILTERS).
The plans of every read (``dashboard_explain``) are printed and written to the JSON.
Last, TRIAL_INDEXES, when there are any, are made (``--no-index-trial``: not) and
the batch's pages are measured again with them.

    .venv/bin/python scripts/bench_dashboard.py                       # 1M on PostgreSQL
    .venv/bin/python scripts/bench_dashboard.py --quick --engines sqlite   # 20,000 rows
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tracker.service.dashboard.pages import cursor_text
from tracker.store.dashboard import Cursor, PredictionFilter
from tracker.timeparse import utcnow

from . import dashboard_fill as fill
from .dashboard_db import (
    TRIAL_INDEXES,
    analyze,
    batch_cursors,
    deep_cursors,
    last_cursors,
    sample_ids,
    sample_prefixes,
    with_indexes,
)
from .dashboard_explain import ListRead, explain_dashboard
from .dashboard_report import GOAL_MS, print_report
from .databases import Databases, database_size, pg_reachable, pg_version
from .harness import (
    ROOT,
    free_port,
    loadavg,
    log,
    machine,
    module_command,
    source_state,
    stop,
    terminate_on_sigterm,
    tracker_env,
)
from .stats import percentile

ENGINES = ("postgresql", "sqlite")
#: a page measured: its name, the paths requested in turn, the overview forgotten first
Page = tuple[str, list[str], bool]
#: the filters measured: (page name, query string, filter as the store reads it)
FILTERS = (
    ("list, status=failed", "status=failed", PredictionFilter(status="failed")),
    ("list, status=aborted", "status=aborted", PredictionFilter(status="aborted")),
    ("list, tracking=active", "tracking=active", PredictionFilter(tracking="active")),
    ("list, model (12 %)", "model=stability-ai/sdxl", PredictionFilter(model="stability-ai/sdxl")),
    ("list, model (0.05 %)", "model=bench/rare-model", PredictionFilter(model="bench/rare-model")),
    ("list, label (14 %)", "label=team=studio", PredictionFilter(labels={"team": "studio"})),
    (
        "list, label (0.02 %)",
        "label=campaign=spring-sale",
        PredictionFilter(labels={"campaign": "spring-sale"}),
    ),
)


#: filtered pages measured with the batch in the table: (page name, query string,
#: filter, where): the newest page (None), pages at cursors inside the batch
#: ("inside"), or last pages, at cursors on the oldest rows matching an SQL condition
BATCH_FILTERS: tuple[tuple[str, str, PredictionFilter, str | None], ...] = (
    ("list, status=failed", "status=failed", PredictionFilter(status="failed"), None),
    (
        "list, model (12 %)",
        "model=stability-ai/sdxl",
        PredictionFilter(model="stability-ai/sdxl"),
        None,
    ),
    (
        "list, tracking=active, inside",
        "tracking=active",
        PredictionFilter(tracking="active"),
        "inside",
    ),
    ("list, status=none, inside", "status=none", PredictionFilter(status="none"), "inside"),
    (
        "list, tracking=active, last page",
        "tracking=active",
        PredictionFilter(tracking="active"),
        "tracking = 'active'",
    ),
    (
        "list, status=none, last page",
        "status=none",
        PredictionFilter(status="none"),
        "status IS NULL",
    ),
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_dashboard.py",
        description="Server-side time of each dashboard page of tracker serve with many"
        " predictions (goal: under 200 ms with 1M on PostgreSQL), and the plans of its"
        " reads. The module docstring of scripts/benchmark/dashboard.py tells more.",
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="20,000 predictions, 5 requests a page")
    add("--predictions", type=int, help="in the database (1,000,000; --quick 20,000)")
    add("--detailed", type=int, help="of them with children (20,000; --quick 1,000)")
    add("--days", type=float, default=7.0, help="registered over the last DAYS (7)")
    add("--active-share", type=float, default=0.002, help="newest share still active")
    add("--batch", type=int, help="registered at one time, after (100,000; --quick 5,000)")
    add("--no-index-trial", action="store_true", help="no trial of TRIAL_INDEXES")
    add("--requests", type=int, help="measured per page (20; 5 with --quick)")
    add("--engines", default="postgresql", help="comma list of postgresql, sqlite")
    add("--seed", type=int, default=7)
    add("--json", type=Path, default=Path("bench-results/dashboard.json"))
    add("--keep", action="store_true", help="keep the databases (PostgreSQL: not dropped)")
    args = parser.parse_args(argv)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not args.engines or set(args.engines) - set(ENGINES):
        parser.error(f"--engines: choose among {', '.join(ENGINES)}")
    sizes = (20_000, 1_000, 5_000) if args.quick else (1_000_000, 20_000, 100_000)
    args.predictions = args.predictions or sizes[0]
    args.detailed = args.detailed or sizes[1]
    args.batch = args.batch or sizes[2]
    args.requests = args.requests or (5 if args.quick else 20)
    args.detailed = min(args.detailed, args.predictions)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    terminate_on_sigterm()
    if "postgresql" in args.engines and (why := pg_reachable()):
        raise SystemExit(why)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "source": _source(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "goal_ms": GOAL_MS,
        "results": [],
    }
    if "postgresql" in args.engines:
        report["machine"]["postgresql"] = pg_version()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        dbs = Databases(Path(tmp), keep=args.keep)
        try:
            for engine in args.engines:
                report["results"].append(run_engine(engine, args, dbs, Path(tmp)))
        finally:
            dbs.drop_all()
    report["machine"]["loadavg_end"] = loadavg()
    report["seconds"] = round(time.monotonic() - began, 1)
    print_report(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str))
    log(f"figures and plans written to {args.json}")
    return 0


def _source() -> dict[str, Any]:
    with contextlib.chdir(ROOT):  # the repository measured, wherever this runs from
        return source_state()


def run_engine(engine: str, args: argparse.Namespace, dbs: Databases, tmp: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"engine": engine, "loadavg_start": loadavg()}
    url = dbs.new(engine, f"dashboard-{engine}")
    log(f"{engine}: writing {args.predictions:,} predictions")
    t0 = time.monotonic()
    result["detailed"] = fill.fill_detailed(url, args.detailed, args.seed)
    fill.fill_bulk(
        url,
        args.predictions - args.detailed,
        days=args.days,
        active_share=args.active_share,
        seed=args.seed,
    )
    result["artifacts"] = fill.add_artifacts(url, since=utcnow() - timedelta(days=1))
    analyze(url)
    result["fill_seconds"] = round(time.monotonic() - t0, 1)
    result["database_bytes"] = database_size(url)
    detailed = sample_ids(url, args.requests)
    cursors = deep_cursors(url, args.requests, args.days, args.seed)
    prefixes = sample_prefixes(args.requests, args.seed)
    server, base = start_server(url, tmp / f"serve-{engine}.log")
    try:
        with httpx.Client(base_url=base, timeout=120, trust_env=False) as client:
            pages = main_pages(detailed, cursors, prefixes)
            result["cold_first_overview_ms"] = timed(client, "/")
            result["pages"] = [measure(client, args.requests, *p) for p in pages]
            lists: list[ListRead] = [("list, newest page", PredictionFilter(), None)]
            lists += [("list, deep page (after=)", PredictionFilter(), cursors[0])]
            lists += [(name, flt, None) for name, _, flt in FILTERS]
            lists += [("list, status=failed, deep", PredictionFilter(status="failed"), cursors[0])]
            lists += [("list, ID prefix", PredictionFilter(id_prefix=prefixes[0]), None)]
            log(f"{engine}: explaining")
            result["plans"] = explain_dashboard(url, lists, detail_id=detailed[0], overview=True)
            log(f"{engine}: {args.batch:,} predictions registered at one time")
            result["batch"] = batch_phase(url, client, args, engine)
    finally:
        stop(server)
    result["loadavg_end"] = loadavg()
    return result


def main_pages(ids: list[str], cursors: list[Cursor], prefixes: list[str]) -> list[Page]:
    """(name, paths cycled through, forget the overview first) of each page measured."""
    deep = [f"/predictions?after={cursor_text(c)}" for c in cursors]
    pages: list[Page] = [
        ("overview, uncached", ["/"], True),
        ("overview, cached", ["/"], False),
        ("overview fragment (live)", ["/fragments/overview"], False),
        ("list, newest page", ["/predictions"], False),
        ("list, deep page (after=)", deep, False),
    ]
    pages += [(name, [f"/predictions?{query}"], False) for name, query, _ in FILTERS]
    pages += [("list, status=failed, deep", [f"{p}&status=failed" for p in deep], False)]
    pages += [("list, ID prefix (2 chars)", [f"/predictions?q={p}" for p in prefixes], False)]
    pages += [("prediction page", [f"/predictions/{i}" for i in ids], False)]
    pages += [("prediction fragment (live)", [f"/fragments/predictions/{i}" for i in ids], False)]
    return pages


def batch_phase(
    url: str, client: httpx.Client, args: argparse.Namespace, engine: str
) -> dict[str, Any]:
    at = fill.fill_batch(url, args.batch, seed=args.seed + 1)
    analyze(url)
    inside = batch_cursors(url, at, args.requests)
    middle = inside[len(inside) // 2]
    pages: list[Page] = [
        ("batch: list, newest page", ["/predictions"], False),
        (
            "batch: list, page inside",
            [f"/predictions?after={cursor_text(c)}" for c in inside],
            False,
        ),
    ]
    lists: list[ListRead] = [
        ("batch: list, newest page", PredictionFilter(), None),
        ("batch: list, page inside", PredictionFilter(), middle),
    ]
    # filtered pages with the batch at the top of the list: those that skip it, and
    # those whose rows are the batch (its rows are active and not polled yet)
    for name, query, flt, where in BATCH_FILTERS:
        if where is None:
            pages.append((f"batch: {name}", [f"/predictions?{query}"], False))
            lists.append((f"batch: {name}", flt, None))
            continue
        cursors = inside if where == "inside" else last_cursors(url, where, args.requests)
        paths = [f"/predictions?{query}&after={cursor_text(c)}" for c in cursors]
        pages.append((f"batch: {name}", paths, False))
        lists.append((f"batch: {name}", flt, cursors[len(cursors) // 2]))
    out: dict[str, Any] = {"rows": args.batch, "registered_at": at.isoformat()}
    out["pages"] = [measure(client, args.requests, *p) for p in pages]
    out["plans"] = explain_dashboard(url, lists, detail_id=None, overview=False)
    if TRIAL_INDEXES and not args.no_index_trial:
        log(f"{engine}: trial indexes: {', '.join(TRIAL_INDEXES)}")
        with_indexes(url)
        trial = [(f"{name}, trial indexes", paths, forget) for name, paths, forget in pages]
        out["index_trial_pages"] = [measure(client, args.requests, *p) for p in trial]
        trial_lists = [(f"{n}, trial indexes", f, a) for n, f, a in lists]
        out["index_trial_plans"] = explain_dashboard(
            url, trial_lists, detail_id=None, overview=False
        )
    return out


# -- requests ------------------------------------------------------------------------------


def timed(client: httpx.Client, path: str) -> float:
    began = time.perf_counter()
    client.get(path).raise_for_status()
    return round((time.perf_counter() - began) * 1000, 2)


def measure(
    client: httpx.Client, n: int, name: str, paths: list[str], forget: bool
) -> dict[str, Any]:
    """One request not counted, then ``n``: round trips and the server's own times."""
    rtt: list[float] = []
    server: list[float] = []
    sizes: list[int] = []
    beside: list[float] = []  # server times with an overview read in the background
    for i in range(n + 1):
        path = paths[i % len(paths)]
        if forget:
            client.post("/_bench/forget-overview").raise_for_status()
        began = time.perf_counter()
        response = client.get(path)
        took = (time.perf_counter() - began) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{name}: GET {path} answered {response.status_code}")
        if i == 0:
            continue
        rtt.append(took)
        header = response.headers.get("Server-Timing", "")
        server.append(float(header.partition("dur=")[2]))
        sizes.append(len(response.content))
        if "X-Bench-Overview-Reading" in response.headers:
            beside.append(server[-1])
    row: dict[str, Any] = {
        "page": name,
        "path": paths[0],
        "requests": n,
        "rtt_median_ms": _r(percentile(rtt, 50)),
        "rtt_p95_ms": _r(percentile(rtt, 95)),
        "server_median_ms": _r(percentile(server, 50)),
        "server_p95_ms": _r(percentile(server, 95)),
        "server_max_ms": _r(max(server)),
        "bytes_median": int(percentile([float(s) for s in sizes], 50) or 0),
        "beside_overview_read": len(beside),
        "server_ms": [round(v, 1) for v in server],
    }
    alone = list(server)
    for value in beside:
        alone.remove(value)
    row["server_median_alone_ms"] = _r(percentile(alone, 50)) if alone else None
    row["server_p95_alone_ms"] = _r(percentile(alone, 95)) if alone else None
    row["pass"] = row["server_p95_ms"] < GOAL_MS
    log(f"  {name}: server p50 {row['server_median_ms']} ms, p95 {row['server_p95_ms']} ms")
    return row


def _r(value: float | None) -> float:
    return round(value or 0.0, 2)


def start_server(url: str, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The dashboard's service (``dashboard_server``) once it answers /healthz.

    The port is chosen free and then bound by the service a moment later, so another
    program (a test's server on another xdist worker) may take it in between: the
    service then cannot bind and exits, and a new port is tried. /healthz must give
    the service's own answer, not any HTTP answer on that port."""
    for _ in range(PORT_TRIES - 1):
        try:
            return _start_server_on(free_port(), url, log_path)
        except _PortTaken:
            continue
    return _start_server_on(free_port(), url, log_path)


#: ports tried when the one chosen was taken before the service bound it
PORT_TRIES = 3


class _PortTaken(RuntimeError):
    pass


def _start_server_on(port: int, url: str, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    command, module_env = module_command("benchmark.dashboard_server", "--port", str(port))
    # this process's environment and the run's settings, with the PYTHONPATH that
    # finds the benchmark's modules (tracker_env's copy of PYTHONPATH would not)
    env = {**tracker_env(url, "http://127.0.0.1:9/v1"), "PYTHONPATH": module_env["PYTHONPATH"]}
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(command, env=env, stderr=log_file)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = log_path.read_text(errors="replace")
            if "address already in use" in log.lower():
                raise _PortTaken(f"port {port} was taken")
            raise RuntimeError(f"the service exited ({proc.returncode}): {log}")
        try:
            answer = httpx.get(f"{base}/healthz", timeout=2, trust_env=False)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        if _is_health(answer):
            return proc, base
        time.sleep(0.1)  # another program's answer: ours exits when it cannot bind
    stop(proc)
    raise RuntimeError(f"the service did not answer within 60 s; see {log_path}")


def _is_health(answer: httpx.Response) -> bool:
    """Whether this is tracker serve's /healthz answer (200 or 503, JSON with a status)."""
    if answer.status_code not in (200, 503):
        return False
    try:
        body = answer.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "status" in body

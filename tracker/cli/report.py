"""`tracker report NAME`: canned reports over the tracker's tables."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import click

from tracker.cli.common import (
    Col,
    database_option,
    emit,
    format_option,
    is_terminal,
    mask_targets,
    open_store,
    wide_option,
)
from tracker.cli.when import since_until_options
from tracker.inputs import parse_labels
from tracker.store.cancel_reports import DEADLINE_COLUMNS
from tracker.store.reports import ReportFilter, Row
from tracker.store.store import Store
from tracker.text import human
from tracker.timeparse import utcnow

#: buckets of a run-time sparkline, and the samples per model it is drawn from
CHART_BUCKETS = 12
CHART_SAMPLES = 1000


@dataclass(frozen=True)
class Report:
    columns: tuple[str, ...]  #: what JSON and CSV have, in this order
    table: tuple[Col, ...]  #: the table: main columns, then those --wide adds
    run: Callable[[Store, ReportFilter, int], list[Row]]


def _stats(metric: str, title: str, shown: Sequence[str] = ()) -> tuple[Col, ...]:
    """The mean, p50 and p95 columns of a metric; ``shown`` are the main ones."""
    return tuple(
        Col(f"{metric}_{s}", f"{title} {s}", kind="seconds", wide=s not in shown, priority=p)
        for s, p in (("mean", 1), ("p50", 3), ("p95", 2))
    )


MODEL_TABLE = (
    Col("model", floor=20, priority=9),
    Col("predictions", "total", kind="count", priority=5),
    *(Col(s, kind="count", wide=True) for s in ("succeeded", "failed", "canceled", "aborted")),
    Col("success_rate", "success", kind="percent", priority=4),
    *_stats("predict_time", "predict"),
    *_stats("queue_seconds", "queue", ("p95",)),
    *_stats("run_seconds", "run", ("p50", "p95")),
)

REPORTS: dict[str, Report] = {
    "status": Report(
        ("status", "tracking", "predictions"),
        (Col("status"), Col("tracking"), Col("predictions", kind="count")),
        lambda store, flt, limit: store.report_status(flt),
    ),
    "models": Report(
        tuple(c.name for c in MODEL_TABLE),
        MODEL_TABLE,
        lambda store, flt, limit: store.report_models(flt),
    ),
    "daily": Report(
        ("day", "registered", "succeeded", "failed", "canceled", "aborted", "mean_run_seconds"),
        (
            Col("day", kind="key"),
            *(
                Col(name, kind="count")
                for name in ("registered", "succeeded", "failed", "canceled", "aborted")
            ),
            Col("mean_run_seconds", "mean run", kind="seconds"),
        ),
        lambda store, flt, limit: store.report_daily(flt),
    ),
    "failures": Report(
        ("predictions", "error", "example_id", "last_seen"),
        (
            Col("predictions", kind="count"),
            Col("example_id", "example", kind="key"),
            Col("last_seen", "last seen", kind="ago"),
            Col("error"),
        ),
        lambda store, flt, limit: store.report_failures(flt, limit=limit),
    ),
    "deliveries": Report(
        (
            "kind",
            "target",
            "deliveries",
            "delivered",
            "dead",
            "pending",
            "mean_attempts",
            "p95_delivery_seconds",
        ),
        (
            Col("kind", priority=0),
            Col("target", floor=20, priority=9),
            Col("deliveries", "total", kind="count"),
            *(Col(state, kind="count") for state in ("delivered", "dead", "pending")),
            Col("mean_attempts", "tries", kind="number", wide=True),
            Col("p95_delivery_seconds", "p95 latency", kind="seconds"),
        ),
        lambda store, flt, limit: store.report_deliveries(flt),
    ),
    "archive": Report(
        ("day", "model", "predictions", "files", "stored", "failed", "pending", "stored_bytes"),
        (
            Col("day", kind="key"),
            Col("model", floor=20, priority=9),
            Col("predictions", kind="count", wide=True),
            Col("files", kind="count", priority=3),
            *(Col(state, kind="count", priority=4) for state in ("stored", "failed", "pending")),
            Col("stored_bytes", "stored size", kind="bytes", priority=3),
        ),
        lambda store, flt, limit: store.report_archive(flt),
    ),
    "deadlines": Report(
        DEADLINE_COLUMNS,
        (
            Col("model", floor=20, priority=9),
            Col("predictions", "with deadline", kind="count", priority=3),
            Col("cancelled", kind="count", priority=5),
            Col("canceled", kind="count", priority=4),
            Col("ended_first", "ended first", kind="count", priority=2),
            Col("not_ended", "not ended", kind="count", wide=True),
            Col("failed_requests", "failed", kind="count", priority=4),
            Col("mean_overrun_seconds", "mean overrun", kind="seconds", priority=2),
            Col("max_overrun_seconds", "max overrun", kind="seconds", wide=True),
        ),
        lambda store, flt, limit: store.report_deadlines(flt),
    ),
    "slow": Report(
        ("id", "status", "model", "since", "running_seconds", "poll_count", "last_polled_at"),
        (
            Col("id", kind="key"),
            Col("status", priority=2),
            Col("model"),
            Col("since", "started", kind="ago", wide=True),
            Col("running_seconds", "running", kind="seconds", priority=3),
            Col("poll_count", "polls", kind="count"),
            Col("last_polled_at", "last poll", kind="ago", wide=True),
        ),
        lambda store, flt, limit: store.report_slow(flt, now=utcnow(), limit=limit),
    ),
}


@click.command("report")
@click.argument("name", type=click.Choice(tuple(REPORTS)))
@since_until_options("Predictions registered")
@click.option("--model", metavar="OWNER/NAME", help="Only this model.")
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only predictions with this label (all of them when repeated).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    metavar="N",
    default=20,
    show_default=True,
    help="Rows for `failures` and `slow`.",
)
@click.option(
    "--chart",
    is_flag=True,
    help="models: each model's run time distribution (succeeded predictions) as a"
    " sparkline, in a terminal only.",
)
@wide_option()
@format_option()
@database_option
def report_command(
    name: str,
    since: datetime | None,
    until: datetime | None,
    model: str | None,
    labels: tuple[str, ...],
    limit: int,
    chart: bool,
    wide: bool,
    fmt: str,
    database_url: str,
) -> None:
    """Print a canned report: status, models, daily, failures, deliveries, archive,
    deadlines or slow.

    \b
    status      predictions per status and tracking state
    models      per model: outcomes, success rate, mean/p50/p95 of predict_time,
                queue and run seconds (--chart: run time distribution)
    daily       per UTC day: registered, completed by status, mean run seconds
    failures    failed predictions grouped by error text, most frequent first
    deliveries  per callback target: delivered, dead, pending, attempts, p95 latency
    archive     per UTC day a file was found and model: output files stored,
                failed and pending, bytes stored (TRACKER_ARCHIVE_URL)
    deadlines   per model: predictions with a deadline, cancelled at it, how
                those ended, failed requests, how long past it they ran
    slow        the longest-running active predictions

    The table shows the main columns in a terminal (--wide for all; piped, one
    tab-separated line per row); JSON and CSV have every column.
    """
    if chart and name != "models":
        raise click.UsageError("--chart goes with the models report")
    flt = ReportFilter(since=since, until=until, model=model, labels=parse_labels(labels))
    report = REPORTS[name]
    table = report.table
    drawn = chart and fmt == "table" and is_terminal()  # a picture is for people
    with open_store(database_url) as store:
        rows = report.run(store, flt, limit)
        if drawn:
            samples = store.run_time_samples(flt, per_model=CHART_SAMPLES)
            rows = [{**row, "run_chart": run_chart(samples.get(row["model"], []))} for row in rows]
            table = (*table, Col("run_chart", "run time distribution", kind="chart", priority=3))
    emit(mask_targets(rows), fmt, table, data=report.columns, wide=wide)


def run_chart(samples: Sequence[float], buckets: int = CHART_BUCKETS) -> str:
    """``4.1 s ▁▂▅█▆▃▂▁ 68 s``: how many runs took how long, from the shortest to the
    longest, on a log scale when they span more than a factor of 4 (run times
    have a long tail)."""
    if not samples:
        return ""
    low, high = min(samples), max(samples)
    if high <= low:
        return f"{human.seconds(low)} {human.BLOCKS[-1]} {human.seconds(high)}"
    log = low > 0 and high / low > 4
    scale = (lambda v: math.log(v)) if log else (lambda v: v)
    start, width = scale(low), scale(high) - scale(low)
    counts = [0] * buckets
    for value in samples:
        counts[min(buckets - 1, int((scale(value) - start) / width * buckets))] += 1
    return f"{human.seconds(low)} {human.sparkline(counts)} {human.seconds(high)}"

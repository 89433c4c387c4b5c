"""`tracker show`: everything known about one prediction."""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import datetime

import click
from rich.text import Text

from tracker.api import Tracker
from tracker.cli import timeline as bars
from tracker.cli.common import (
    Col,
    cell,
    console,
    database_option,
    format_option,
    mask_targets,
    print_table,
)
from tracker.domain import ArtifactState, CancelReason, Prediction, PredictionDetail
from tracker.records import detail_record
from tracker.text import human, timeline
from tracker.text.display import escape_text, json_text, mask_url
from tracker.timeparse import utcnow

#: where the values of `show`'s fields begin, and how a value continues on the next line
INDENT = " " * 15
FOLD = "\n" + INDENT
#: log lines shown unless --tail or --logs says otherwise
DEFAULT_TAIL = 40


@click.command("show")
@click.argument("prediction_id")
@click.option(
    "--tail",
    type=click.IntRange(min=0),
    metavar="N",
    help=f"Show the last N lines of the logs  [default: {DEFAULT_TAIL}].",
)
@click.option(
    "--logs",
    "logs_shown",
    type=click.Choice(("tail", "all", "none")),
    default="tail",
    show_default=True,
    help="Which log lines the text shows: the last --tail lines, all of them, or none"
    " (--format json always has them all).",
)
@format_option(("text", "json"), default="text")
@database_option
def show_command(
    prediction_id: str, tail: int | None, logs_shown: str, fmt: str, database_url: str
) -> None:
    """Everything known about one prediction: timeline, logs, metrics, callbacks,
    archived output files.

    The text shows the time spent in each state, where each output file is
    archived (or why it is not) and the last lines of the logs (a terminal gets
    a bar of the states too); --format json has everything.
    """
    if tail is not None and logs_shown != "tail":
        raise click.UsageError(f"--tail cannot be combined with --logs {logs_shown}")
    with Tracker(database_url) as tracker:
        detail = tracker.detail(prediction_id)
    if fmt == "json":
        click.echo(json_text(detail_record(detail), indent=2))
    else:
        lines = {"all": None, "none": 0}.get(logs_shown, DEFAULT_TAIL if tail is None else tail)
        _print_detail(detail, tail=lines, now=utcnow())


def _print_detail(detail: PredictionDetail, *, tail: int | None, now: datetime) -> None:
    """The text of ``show``; ``tail``: how many log lines (None: all)."""
    p = detail.prediction
    out = console()
    shown = [
        ("id", p.id),
        ("status", p.status or "(not seen yet)"),
        ("tracking", p.tracking),
        ("model", p.model),
        ("version", p.version),
        ("created", p.created_at),
        ("started", p.started_at),
        ("completed", p.completed_at),
        ("predict time", f"{p.predict_time:.3f} s" if p.predict_time is not None else None),
        ("output", p.output),
        ("error", p.error),
        ("data removed", p.data_removed),
        ("labels", p.labels or None),
        ("metrics", p.metrics),
        ("registered", p.registered_at),
        ("polls", f"{p.poll_count} ({p.error_count} errors)"),
        ("last polled", p.last_polled_at),
        ("next poll", p.next_poll_at),
        ("last error", p.last_error),
        ("deadline", p.deadline_at),
        ("cancel", _cancel_text(p)),
    ]
    for name, value in shown:
        if value is not None and value != "":
            out.print(_field_line(name, cell(value)))
    out.print()
    _print_timeline(detail, now)
    if detail.callbacks:
        out.print()
        print_table(
            mask_targets(asdict(c) for c in detail.callbacks),
            ("id", "kind", "target", "events"),
            title="callbacks",
        )
    if detail.deliveries:
        _print_deliveries(detail)
    if detail.artifacts:
        _print_artifacts(detail)
    out.print()
    _print_logs(detail, tail)


def _cancel_text(p: Prediction) -> str | None:
    """The last cancel request: who asked, when, and what became of it."""
    if p.cancel_requested_at is None:
        return None
    who = "the deadline" if p.cancel_reason == CancelReason.DEADLINE else "a user"
    text = f"asked by {who} at {cell(p.cancel_requested_at)}: {p.cancel_outcome or 'unknown'}"
    return f"{text} ({p.cancel_detail})" if p.cancel_detail else text


def _print_timeline(detail: PredictionDetail, now: datetime) -> None:
    """The transitions with the time spent in each state, that in words and, in a
    terminal only, as a bar of the states."""
    p = detail.prediction
    found = timeline.phases(p, detail.transitions, now=now)
    # the last phases are the transitions' (states never seen may come first)
    of_transitions = found[len(found) - len(detail.transitions) :]
    rows = [
        {
            "observed": t.observed_at,
            "from": t.from_status or "",
            "to": t.to_status,
            "upstream time": t.upstream_at,
            "in state": timeline.in_state(phase),
        }
        for t, phase in zip(detail.transitions, of_transitions, strict=True)
    ]
    print_table(rows, ("observed", "from", "to", "upstream time", "in state"), title="timeline")
    words = timeline.in_words(found, tracking=p.tracking)
    if not words:
        return
    out = console()
    out.print(_field_line("time in state", words))
    if sys.stdout.isatty():
        line = bars.bar(found, min(out.width, 100) - len(INDENT))
        if line is not None:
            out.print(Text(INDENT) + line, soft_wrap=True)


def _print_logs(detail: PredictionDetail, tail: int | None) -> None:
    """The logs: a line saying how much there is, then the last ``tail`` lines (all
    when None) after a line saying how many earlier ones are not shown."""
    logs = detail.prediction.logs
    out = console()
    total = logs.count("\n") + (0 if logs.endswith("\n") or not logs else 1)
    size = len(logs.encode("utf-8", "surrogatepass"))
    chunks = len(detail.logs)
    about = (
        f"  {total:,} line{'' if total == 1 else 's'}, {human.size(size)}"
        f" in {chunks:,} chunk{'' if chunks == 1 else 's'}"
        if logs
        else "  none"
    )
    out.print(Text.assemble(("logs", "bold"), about))
    shown, hidden = _last_lines(logs, total, tail)
    if hidden and tail != 0:
        what = "earlier line" if hidden == 1 else "earlier lines"
        note = f"… {hidden:,} {what} not shown (--tail N, --logs all)"
        out.print(Text(note, style="dim"))
    sys.stdout.flush()
    text = escape_text(shown)  # newlines and tabs kept, every other control shown escaped
    if text:
        click.echo(text, nl=not text.endswith("\n"))


def _last_lines(logs: str, total: int, tail: int | None) -> tuple[str, int]:
    """The last ``tail`` lines of ``logs`` (all when None) and how many come before."""
    if tail is None or total <= tail:
        return logs, 0
    if tail == 0:
        return "", total
    body = logs[:-1] if logs.endswith("\n") else logs
    kept = body.rsplit("\n", tail)[1:]
    return "\n".join(kept) + "\n", total - tail


def _field_line(name: str, value: str) -> Text:
    """One field of ``show``: the name in bold, the value as plain text (never markup),
    escaped, its further lines indented so that they cannot pass for other fields."""
    return Text.assemble((f"{name:>13}", "bold"), "  ", escape_text(value).replace("\n", FOLD))


def _print_deliveries(detail: PredictionDetail) -> None:
    console().print()
    rows = mask_targets(asdict(d) for d in detail.deliveries)
    columns = ("id", "event", "kind", "target", "state", "attempts", "last_status_code")
    print_table(rows, (*columns, "last_error", "delivered_at"), title="deliveries")
    attempts = [{"delivery": d.id, **asdict(a)} for d in detail.deliveries for a in d.history]
    if attempts:
        console().print()
        print_table(
            attempts,
            ("delivery", "attempted_at", "status_code", "error", "duration_ms"),
            title="delivery attempts",
        )


#: the archived files of a prediction, as `show` lists them
ARTIFACT_COLUMNS = (
    Col("position", "#", kind="key"),
    Col("state"),
    Col("bytes", "size", kind="bytes"),
    Col("sha256", "sha256", kind="key"),
    Col("where", "stored at, or last error", floor=24),
    Col("source", floor=16, priority=0),
)
#: hex digits of a file's sha256 shown (JSON has all of them)
SHA_SHOWN = 12


def _print_artifacts(detail: PredictionDetail) -> None:
    """The output files and what became of each: where it is stored, or why not.
    Every value goes through the table's escaping; source URLs are masked."""
    console().print()
    rows = [
        {
            "position": a.position,
            "state": a.state,
            "bytes": a.bytes,
            "sha256": (a.sha256 or "")[:SHA_SHOWN],
            "where": a.stored_url if a.state == ArtifactState.STORED else a.last_error,
            "source": mask_url(a.source_url),
        }
        for a in detail.artifacts
    ]
    print_table(rows, ARTIFACT_COLUMNS, title="archived files")

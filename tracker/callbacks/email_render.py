"""The email for one delivery: plain text with an HTML alternative.

``render_email`` is the only entry point. The payload comes from upstream and
is hostile: every field is cut to a bounded length, stripped of ANSI sequences
and control characters, kept to one line where it reaches a header, and
escaped wherever it reaches the HTML part. What a message shows is computed
once (``_View``) and written out twice, so the two parts cannot disagree.
"""

from __future__ import annotations

import html
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from tracker.domain import DeliveryJob
from tracker.timeparse import parse_timestamp

log = logging.getLogger(__name__)

#: how many trailing log lines a message shows
LOG_TAIL_LINES = 20

_MAX_FIELD = 500  # characters shown for a one-line field (model, status, a time)
_MAX_ITEM = 2048  # characters shown for one output item; longer URLs are not linked
_MAX_ITEMS = 100  # output list items shown
_MAX_BLOCK = 10_000  # characters shown for the error or a JSON output
_MAX_LOG_LINE = 1000  # characters shown per log line

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # keeps \t and \n
_MSGID_UNSAFE = re.compile(r"[^A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]")
_EVENT_HEADLINES = {
    "start": "started",
    "output": "produced output",
    "logs": "wrote new logs",
    "completed": "completed",
    "archived": "has its output files archived",
    "deadline": "passed its deadline and is being cancelled",
}


def render_email(job: DeliveryJob, mail_from: str) -> EmailMessage:
    """The message for one delivery: plain text with an HTML alternative.

    Nothing in the payload can make this raise: it may be any text, any JSON,
    or a prediction with missing or odd fields. (A ``job.target`` or
    ``mail_from`` with line breaks is rejected by the email package with
    ``ValueError``; ``Mailer.send`` reports that as a permanent failure.)
    """
    prediction, note = _load_payload(job.payload)
    prediction_id = _one_line(job.prediction_id, 200) or _one_line(prediction.get("id"), 200)
    status = _one_line(prediction.get("status"), 100) or "unknown"
    event = _one_line(job.event, 100) or "unknown"

    files = _archived_files(prediction.get("artifacts")) if event == "archived" else []
    msg = EmailMessage()
    msg["Subject"] = f"[tracker] {prediction_id or 'unknown'} {status}" + (
        f", {len(files)} file{'' if len(files) == 1 else 's'} archived" if files else ""
    )
    msg["From"] = mail_from
    msg["To"] = job.target
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = _message_id(job)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Tracker-Event"] = event
    if prediction_id:
        msg["X-Tracker-Prediction"] = prediction_id

    try:
        view = _View.build(prediction, note, prediction_id, status, event, files)
        text, page = view.text(), view.html(msg["Subject"])
    except Exception:  # a bug here must not stop the delivery: send what is certain
        log.exception("rendering prediction %s failed; sending a minimal message", prediction_id)
        headline = f"Prediction {prediction_id or 'unknown'}: {event} ({status})"
        text = f"{headline}\n\nThe details could not be rendered.\n"
        page = f"<!DOCTYPE html><html><body><p>{html.escape(headline)}</p></body></html>\n"
    msg.set_content(text)
    msg.add_alternative(page, subtype="html")
    return msg


def _message_id(job: DeliveryJob) -> str:
    """Stable across retries (it derives from ``job.message_id``), so receivers can dedupe."""
    local = _MSGID_UNSAFE.sub("-", str(job.message_id)).strip(".")[:200]
    return f"<{local or f'delivery-{job.id}'}@tracker>"


def _load_payload(payload: object) -> tuple[dict[str, Any], str | None]:
    """The prediction object, or ``{}`` and a note saying why there is none."""
    try:
        data = json.loads(payload)  # type: ignore[arg-type]
    except (TypeError, ValueError, RecursionError):
        return {}, "The payload is not valid JSON."
    if not isinstance(data, dict):
        return {}, "The payload is not a prediction object."
    return data, None


# --------------------------------------------------------------------------- cleaning


def _clean(text: str, limit: int) -> str:
    """Printable text: no lone surrogates, ANSI sequences or control characters except tab and
    newline; at most ``limit`` characters (plus a note of what was cut)."""
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = _CONTROL.sub("", _ANSI.sub("", text.replace("\r\n", "\n")))
    if cut > 0:
        text += f"… ({cut} more characters)"
    return text


def _one_line(value: object, limit: int = _MAX_FIELD) -> str:
    """A header-safe single line; '' for None. Non-strings are shown as JSON."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else _json(value, compact=True)
    # str.splitlines knows every character the email package treats as a line break
    return " ".join(" ".join(_clean(text, limit).splitlines()).split())


def _json(value: object, *, compact: bool = False) -> str:
    try:
        if compact:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return json.dumps(value, ensure_ascii=False, indent=2)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _is_link(text: str) -> bool:
    """Whether ``text`` may become an ``href``: http(s), bounded, nothing that ends an attribute."""
    return (
        text.startswith(("http://", "https://"))
        and len(text) <= _MAX_ITEM
        and not any(ch.isspace() or ch in "<>\"'" for ch in text)
    )


def _log_tail(logs: object, count: int) -> tuple[list[str], int]:
    """The last ``count`` lines of the logs, and how many lines there are in all.

    A line holding carriage returns (a progress bar) shows what a terminal
    would: the text after the last one.
    """
    if not isinstance(logs, str):
        return [], 0
    text = logs.rstrip()
    if not text:
        return [], 0
    total = text.count("\n") + 1
    start = len(text)
    for _ in range(count):
        start = text.rfind("\n", 0, start)
        if start < 0:
            break
    lines = []
    for raw in text[start + 1 :].split("\n"):
        line = raw.rstrip("\r").rpartition("\r")[2]
        lines.append(_clean(line, _MAX_LOG_LINE).rstrip())
    return lines, total


# --------------------------------------------------------------------------- what is shown


@dataclass
class _Row:
    label: str
    value: str
    href: str | None = None


def _headline(prediction_id: str, status: str, event: str) -> str:
    name = prediction_id or "unknown"
    verb = _EVENT_HEADLINES.get(event)
    headline = f"Prediction {name} {verb}" if verb else f"Prediction {name}: {event}"
    if event == "completed":
        headline += f" ({status})"
    return headline


def _summary_rows(p: dict[str, Any], status: str, event: str) -> list[_Row]:
    rows = [_Row("Event", event), _Row("Status", status)]
    for label, key in (("Model", "model"), ("Version", "version")):
        value = _one_line(p.get(key))
        if value:
            rows.append(_Row(label, value))
    return rows


def _time_rows(p: dict[str, Any]) -> list[_Row]:
    """The three timestamps (as given when they do not parse), then the two durations."""
    rows = []
    moments: dict[str, datetime | None] = {}
    for label, key in (
        ("Created", "created_at"),
        ("Started", "started_at"),
        ("Completed", "completed_at"),
    ):
        raw = p.get(key)
        parsed = parse_timestamp(raw)
        moments[key] = parsed
        if parsed is not None:
            rows.append(_Row(label, parsed.isoformat(timespec="milliseconds")[:-6] + "Z"))
        elif raw is not None and _one_line(raw):
            rows.append(_Row(label, _one_line(raw, 100)))
    for label, first, last in (
        ("Queued", "created_at", "started_at"),
        ("Ran", "started_at", "completed_at"),
    ):
        begin, end = moments[first], moments[last]
        if begin is not None and end is not None:
            rows.append(_Row(label, f"{(end - begin).total_seconds():.1f} s"))
    return rows


def _extra_rows(p: dict[str, Any]) -> list[_Row]:
    """The predict time and the prediction's web page, when present."""
    rows = []
    metrics = p.get("metrics")
    predict_time = metrics.get("predict_time") if isinstance(metrics, dict) else None
    if isinstance(predict_time, int | float) and not isinstance(predict_time, bool):
        rows.append(_Row("Predict time", f"{predict_time} s"))
    elif predict_time is not None and _one_line(predict_time):
        rows.append(_Row("Predict time", _one_line(predict_time, 100)))

    urls = p.get("urls")
    web = urls.get("web") if isinstance(urls, dict) else None
    if isinstance(web, str) and _is_link(web):
        rows.append(_Row("Web", _clean(web, _MAX_ITEM), href=web))
    return rows


def _output(output: object) -> tuple[list[str], str | None]:
    """A string or a list as items (one per line), anything else as a JSON block."""
    items: list[str] = []
    block: str | None = None
    if isinstance(output, str):
        items.append(_clean(output, _MAX_ITEM))
    elif isinstance(output, list):
        for item in output[:_MAX_ITEMS]:
            text = item if isinstance(item, str) else _json(item, compact=True)
            items.append(_one_line(text, _MAX_ITEM))
        if len(output) > _MAX_ITEMS:
            items.append(f"… and {len(output) - _MAX_ITEMS} more")
        if not output:
            block = "[]"
    elif output is not None:
        block = _clean(_json(output), _MAX_BLOCK)
    return items, block


def _archived_files(value: object) -> list[str]:
    """The ``archived`` event's files, one line each: where it is stored, its size,
    content type and sha256 (``artifacts`` of the body; anything else is skipped)."""
    if not isinstance(value, list):
        return []
    lines = []
    for item in value[:_MAX_ITEMS]:
        if not isinstance(item, dict):
            continue
        where = _one_line(item.get("stored_url"), _MAX_ITEM) or "(not stored)"
        size = item.get("bytes")
        about = [f"{size:,} bytes"] if isinstance(size, int) and not isinstance(size, bool) else []
        about += [_one_line(item.get("content_type"), 100)]
        digest = _one_line(item.get("sha256"), 64)
        about += [f"sha256 {digest}" if digest else ""]
        details = ", ".join(part for part in about if part)
        lines.append(f"{where} ({details})" if details else where)
    if len(value) > _MAX_ITEMS:
        lines.append(f"… and {len(value) - _MAX_ITEMS} more")
    return lines


def _error(value: object) -> str | None:
    if value is None:
        return None
    raw = value if isinstance(value, str) else _json(value)
    return _clean(raw, _MAX_BLOCK).strip() or None


@dataclass
class _View:
    """What a message shows, computed once for both the text and the HTML part."""

    headline: str
    note: str | None
    rows: list[_Row]
    output_items: list[str]  # shown one per line, links where they are URLs
    output_block: str | None  # JSON text, when the output is not a string or a list
    error: str | None
    log_lines: list[str]
    log_total: int
    archived: list[str]  # the `archived` event's files, one line each

    @classmethod
    def build(
        cls,
        p: dict[str, Any],
        note: str | None,
        prediction_id: str,
        status: str,
        event: str,
        archived: list[str],
    ) -> _View:
        rows = _summary_rows(p, status, event) + _time_rows(p) + _extra_rows(p)
        items, block = _output(p.get("output"))
        log_lines, log_total = _log_tail(p.get("logs"), LOG_TAIL_LINES)
        headline = _headline(prediction_id, status, event)
        error = _error(p.get("error"))
        return cls(headline, note, rows, items, block, error, log_lines, log_total, archived)

    def _log_title(self) -> str:
        if self.log_total > len(self.log_lines):
            return f"Logs (last {len(self.log_lines)} of {self.log_total} lines)"
        return "Logs"

    def text(self) -> str:
        out = [self.headline, ""]
        if self.note:
            out += [self.note, ""]
        width = max(len(r.label) for r in self.rows) + 2
        out += [f"{(r.label + ':'):<{width}}{r.value}" for r in self.rows]
        out += ["", "Output:"]
        if self.output_items:
            out += [f"  {item}" for item in self.output_items]
        elif self.output_block is not None:
            out += [f"  {line}" for line in self.output_block.split("\n")]
        else:
            out.append("  (none)")
        if self.archived:
            out += ["", "Archived files:"] + [f"  {line}" for line in self.archived]
        if self.error:
            out += ["", "Error:"] + [f"  {line}" for line in self.error.split("\n")]
        if self.log_lines:
            out += ["", f"{self._log_title()}:"] + [f"  {line}" for line in self.log_lines]
        out += ["", "-- ", "Sent by tracker."]
        return "\n".join(out) + "\n"

    def html(self, title: str) -> str:
        """The HTML part; every value from the payload passes through ``html.escape``."""
        e = html.escape
        out = [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8">',
            f"<title>{e(title)}</title></head>",
            '<body style="font-family: sans-serif">',
            f"<h2>{e(self.headline)}</h2>",
        ]
        if self.note:
            out.append(f"<p><em>{e(self.note)}</em></p>")
        out.append("<table>")
        for r in self.rows:
            value = f'<a href="{e(r.href)}">{e(r.value)}</a>' if r.href else e(r.value)
            out.append(f'<tr><th align="left">{e(r.label)}</th><td>{value}</td></tr>')
        out += ["</table>", "<h3>Output</h3>", *self._html_output()]
        if self.archived:
            out += ["<h3>Archived files</h3>", "<ul>"]
            out += [f"<li>{e(line)}</li>" for line in self.archived] + ["</ul>"]
        if self.error:
            out += ["<h3>Error</h3>", f"<pre>{e(self.error)}</pre>"]
        if self.log_lines:
            out += [
                f"<h3>{e(self._log_title())}</h3>",
                f"<pre>{e(chr(10).join(self.log_lines))}</pre>",
            ]
        out += ["<hr><p><small>Sent by tracker.</small></p>", "</body></html>"]
        return "\n".join(out) + "\n"

    def _html_output(self) -> list[str]:
        e = html.escape
        if self.output_items:
            out = ["<ul>"]
            for item in self.output_items:
                shown = f'<a href="{e(item)}">{e(item)}</a>' if _is_link(item) else e(item)
                out.append(f"<li>{shown}</li>")
            return [*out, "</ul>"]
        if self.output_block is not None:
            return [f"<pre>{e(self.output_block)}</pre>"]
        return ["<p>(none)</p>"]

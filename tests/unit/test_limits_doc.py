"""docs/limits.md says what the code does: every row of its table of caps is
computed here from the constant that enforces it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from tracker import config, domain, inputs
from tracker.archive import archiver, download, fetch, recording
from tracker.callbacks import retry, webhook
from tracker.poll import cancel, daemon, deadlines, observe, upstream
from tracker.service import push
from tracker.store import engine, pushes
from tracker.store.runner import WRITE_RETRY_DELAYS
from tracker.text import sanitize

DOC = Path(__file__).parents[2] / "docs" / "limits.md"
MiB = 2**20
GiB = 2**30
KiB = 2**10


def seconds(value: float) -> str:
    return f"{value:,.0f} s"


#: row ("what") -> (the limit as written, the variable or "")
EXPECTED: dict[str, Callable[[], tuple[str, str]]] = {
    "one upstream answer (body)": lambda: (
        f"{upstream.DEFAULT_MAX_ANSWER_BYTES // MiB} MiB",
        "`TRACKER_MAX_ANSWER_BYTES`",
    ),
    "one poll in all (connect, headers, whole body)": lambda: (
        seconds(upstream.DEFAULT_POLL_TIMEOUT),
        "`TRACKER_POLL_TIMEOUT`",
    ),
    "connecting to the upstream": lambda: (seconds(upstream.CONNECT_TIMEOUT), ""),
    "an upstream error answer (not 2xx)": lambda: (
        f"{upstream.ERROR_BODY_BYTES // KiB} KiB read",
        "",
    ),
    "answers parsed off the event loop": lambda: (
        f"above {upstream.THREAD_PARSE_BYTES // MiB} MiB",
        "",
    ),
    "nesting of arrays and objects in an answer": lambda: (
        f"{sanitize.MAX_JSON_DEPTH} levels",
        "",
    ),
    "a `status` value": lambda: (f"{observe.MAX_STATUS_LENGTH} printable characters", ""),
    "`predict_time` copied to its column": lambda: (f"0 to {observe.MAX_PREDICT_TIME:,.0f} s", ""),
    "`model` or `version` copied to its column": lambda: (
        f"{observe.MAX_NAME_BYTES:,} bytes (UTF-8)",
        "",
    ),
    "`Retry-After` from the upstream": lambda: (seconds(upstream.MAX_UPSTREAM_RETRY_AFTER), ""),
    "one webhook attempt in all (connect, send, answer)": lambda: (
        seconds(config.DEFAULT_WEBHOOK_TIMEOUT),
        "`TRACKER_WEBHOOK_TIMEOUT`",
    ),
    "a webhook receiver's answer": lambda: (f"{webhook.ANSWER_BYTES // KiB} KiB read", ""),
    "`Retry-After` from a webhook receiver": lambda: (
        seconds(retry.MAX_DELIVERY_RETRY_AFTER),
        "",
    ),
    "a webhook URL": lambda: (f"{inputs.MAX_URL_LENGTH:,} characters", ""),
    "a label value (`--label KEY=VALUE`, the API's `labels`)": lambda: (
        f"{inputs.MAX_LABEL_VALUE_BYTES:,} bytes (UTF-8), no NUL",
        "",
    ),
    "a prediction ID": lambda: (f"{_id_length()} characters", ""),
    "a line of `tracker add --file`": lambda: (f"{inputs.MAX_ID_LINE_BYTES:,} bytes", ""),
    "a file given to `tracker add --file`": lambda: (
        f"{inputs.MAX_ID_FILE_BYTES // MiB} MiB",
        "",
    ),
    "a database write during an outage": lambda: (
        f"retried for about {int(sum(WRITE_RETRY_DELAYS))} s",
        "",
    ),
    "SQLite waiting for another writer": lambda: (
        seconds(engine.SQLITE_BUSY_TIMEOUT_MS / 1000),
        "",
    ),
    "a PostgreSQL session idle inside a transaction": lambda: (
        seconds(engine.PG_IDLE_IN_TRANSACTION_MS / 1000),
        "",
    ),
    "in-flight polls at shutdown, waiting for the upstream": lambda: (
        seconds(daemon.FETCH_GRACE_SECONDS),
        "",
    ),
    "in-flight polls at shutdown, in all": lambda: (seconds(daemon.DRAIN_SECONDS), ""),
    "a push's `webhook-timestamp` (`tracker serve`)": lambda: (
        f"{push.TIMESTAMP_TOLERANCE.total_seconds():,.0f} s from now",
        "",
    ),
    "a push's `webhook-id`": lambda: (f"{push.MAX_WEBHOOK_ID} characters", ""),
    "a push's `webhook-id` kept against replays": lambda: (
        f"{pushes.REPLAY_WINDOW.total_seconds():,.0f} s at least",
        "",
    ),
    "requests one cancel may make": lambda: (str(cancel.CANCEL_ATTEMPTS), ""),
    "a rate limit waited out by a cancel": lambda: (seconds(cancel.MAX_CANCEL_WAIT), ""),
    "a deadline cancel left `sending` by a daemon that died": lambda: (
        seconds(deadlines.UNANSWERED_SECONDS),
        "",
    ),
    "one output file archived": lambda: (
        f"{config.DEFAULT_ARCHIVE_MAX_BYTES // GiB} GiB",
        "`TRACKER_ARCHIVE_MAX_BYTES`",
    ),
    "redirects followed by one download": lambda: (str(download.MAX_REDIRECTS), ""),
    "a file host silent during a download": lambda: (seconds(fetch.ARCHIVE_TIMEOUT), ""),
    "retrying a file that fails to download": lambda: (
        f"{archiver.GIVE_UP_AFTER.total_seconds() / 3600:g} h after it was found",
        "`TRACKER_ARCHIVE_RETRY_SCHEDULE`",
    ),
    "downloads in flight at once, per daemon": lambda: (
        str(archiver.DEFAULT_ARCHIVE_CONCURRENCY),
        "",
    ),
    "downloaded files held in memory until their group is written, per daemon": lambda: (
        f"{recording.MAX_DEFERRED_BYTES // MiB} MiB",
        "",
    ),
}


def _id_length() -> int:
    match = re.search(r"\{0,(\d+)\}", domain.ID_PATTERN.pattern)
    assert match is not None
    return int(match.group(1)) + 1


def table_rows() -> dict[str, tuple[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Caps and timeouts", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("what", "---"):
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def test_every_cap_in_the_doc_is_the_one_in_the_code() -> None:
    rows = table_rows()
    assert set(rows) == set(EXPECTED), "a row of docs/limits.md has no check here, or vice versa"
    for what, expected in EXPECTED.items():
        assert rows[what] == expected(), what

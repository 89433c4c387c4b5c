"""What every command shares: options, opening the store, printing rows."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tracker.cli.options import database_option as database_option  # re-exported
from tracker.store.store import Store
from tracker.text.display import escape_line, escape_text, json_text, mask_url

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = ("table", "json", "csv")


def format_option(choices: Sequence[str] = FORMATS, default: str = "table") -> Callable[[F], F]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Output format: a table for people, JSON or CSV for scripts.",
    )


def open_store(database_url: str, *, check: bool = True) -> Store:
    """The store, its schema checked unless ``check`` is False; use it as
    ``with open_store(url) as store:`` so it is closed whatever happens."""
    return Store.open_checked(database_url) if check else Store.from_url(database_url)


def to_jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def cell(value: Any) -> str:
    """A value as one short line for tables and CSV."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds").replace("+00:00", "Z")
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def csv_cell(value: Any) -> str:
    """A value for CSV: exact (no rounding), timestamps in ISO 8601, JSON as JSON."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def emit_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: str) -> None:
    """Print rows as an aligned table, a JSON array or CSV with a header."""
    if fmt == "json":
        ordered = [{**{c: r[c] for c in columns if c in r}, **r} for r in rows]
        click.echo(json_text([to_jsonable(r) for r in ordered], indent=2))
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        # csv quotes a field holding "\n" but not one holding a lone "\r", which
        # readers take for the end of the row: such rows get every field quoted.
        quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(columns)
        for row in rows:
            cells = [csv_cell(row.get(c)) for c in columns]
            (quoted if any("\r" in c for c in cells) else writer).writerow(cells)
        click.echo(_csv_text(buffer.getvalue()), nl=False, color=True)
    else:
        print_table(rows, columns)


def _csv_text(text: str) -> str:
    """CSV is data: exact when it goes to a file or a pipe (``color=True`` above keeps
    click from stripping escape sequences). A person reading it in a terminal gets
    control characters escaped, as ``ls`` quotes odd file names only there."""
    return escape_text(text) if _isatty() else text


def print_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None
) -> None:
    """Rows as an aligned table; every cell is one line of plain text (never markup)."""
    table = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(escape_line(cell(row.get(c)))) for c in columns))
    console().print(table)


def mask_targets(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with each webhook ``target`` masked (password, query values): what the
    CLI prints, in every format; the stored target keeps them for delivery."""
    return [
        {**row, "target": mask_url(row["target"])} if row.get("kind") == "webhook" else row
        for row in rows
    ]


def console() -> Console:
    # Wide enough for IDs and timestamps even when stdout is not a terminal.
    return Console(highlight=False, soft_wrap=False, width=None if _isatty() else 200)


def _isatty() -> bool:
    return sys.stdout.isatty()

"""What every command shares: options, opening the store, printing rows (the
printing itself lives in tracker.cli.output)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click

from tracker.cli.options import database_option
from tracker.cli.output import (
    Col,
    cell,
    console,
    csv_cell,
    emit,
    is_terminal,
    print_table,
    to_jsonable,
)
from tracker.records import mask_target, mask_targets
from tracker.store.store import Store

__all__ = [  # what commands import from here, printing included
    "Col",
    "cell",
    "console",
    "csv_cell",
    "database_option",
    "emit",
    "emit_rows",
    "format_option",
    "is_terminal",
    "mask_target",
    "mask_targets",
    "open_store",
    "print_table",
    "to_jsonable",
    "wide_option",
]

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = ("table", "json", "csv")

#: what each --format word means, for the help of the commands that take it
FORMAT_HELP = {
    "table": "table (aligned in a terminal; tab-separated lines, one per row, when piped)",
    "text": "text (for people)",
    "json": "json",
    "csv": "csv (with a header row)",
}


def format_option(choices: Sequence[str] = FORMATS, default: str = "table") -> Callable[[F], F]:
    """``--format`` with the words this command takes (the same words everywhere:
    table or text for people, json and csv for scripts); its help names only those."""
    described = ", ".join(FORMAT_HELP[c] for c in choices)
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help=f"Output format: {described}.",
    )


def wide_option(what: str = "every column") -> Callable[[F], F]:
    """``--wide``: the table shows every column (JSON and CSV always have them all)."""
    return click.option(
        "--wide",
        "-w",
        is_flag=True,
        help=f"In the table, show {what}, not only the main ones (JSON and CSV have them all).",
    )


def open_store(database_url: str, *, check: bool = True) -> Store:
    """The store, its schema checked unless ``check`` is False; use it as
    ``with open_store(url) as store:`` so it is closed whatever happens."""
    return Store.open_checked(database_url) if check else Store.from_url(database_url)


def emit_rows(rows: Iterable[dict[str, Any]], columns: Sequence[str | Col], fmt: str) -> None:
    """Print rows as a table, a JSON array or CSV with a header (``output.emit``)."""
    emit(rows, fmt, columns)

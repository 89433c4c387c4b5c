"""What `tracker list` and `tracker deliveries list` share: --limit (newest 50 by
default, 0 for all), --label, and the line that says how many rows were left out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

#: rows a listing shows unless --limit says otherwise
DEFAULT_LIMIT = 50


def limit_option(rows: str) -> Callable[[F], F]:
    return click.option(
        "--limit",
        type=click.IntRange(min=0),
        metavar="N",
        default=DEFAULT_LIMIT,
        show_default=True,
        help=f"Show the newest N {rows}; 0 for all of them.",
    )


def label_option(help_subject: str) -> Callable[[F], F]:
    return click.option(
        "--label",
        "labels",
        multiple=True,
        metavar="KEY=VALUE",
        help=f"{help_subject} (all of them when repeated).",
    )


def say_how_many(shown: int, limit: int, rows: str, count: Callable[[], int]) -> None:
    """Under a table in a terminal, on stderr: how many rows --limit left out
    ("showing 50 of 100,000 (--limit 0 for all)"), or that there are none. The
    rows are counted only when the limit was reached."""
    if shown == 0:
        click.echo(f"no {rows}", err=True)
    elif limit and shown == limit:
        total = count()
        if total > shown:
            click.echo(f"showing {shown:,} of {total:,} (--limit 0 for all)", err=True)

"""`--since` and `--until`: points in time on the command line, read one way everywhere.

Every command that takes a time uses these, so each says WHEN in its help, accepts
the same forms (``tracker.timeparse.parse_moment``: ISO dates and times, UTC unless
a zone is given; durations ago such as ``36h``; ``today``, ``yesterday``) and
refuses anything else with the same one-line error, exit 2::

    @since_until_options("Predictions registered")
    def list_command(since: datetime | None, until: datetime | None, ...) -> None:

The command gets aware UTC datetimes (or None), never text; an ``--until`` before
``--since`` is refused before the command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click
from click.shell_completion import CompletionItem

from tracker.exceptions import InvalidInput
from tracker.timeparse import MOMENT_FORMS, read_moment

F = TypeVar("F", bound=Callable[..., Any])

#: the placeholder every time option shows in --help
METAVAR = "WHEN"
#: words completed for a WHEN in the shell
KEYWORDS = ("today", "yesterday")


class When(click.ParamType):
    """A point in time as an aware UTC datetime (click type, shown as WHEN)."""

    name = "when"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return METAVAR

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):  # a default given as a value
            return value
        option = param.opts[0] if param is not None and param.opts else METAVAR
        try:
            return read_moment(str(value), option)
        except InvalidInput as exc:
            # The message the Python API gives for the same text (it names the option
            # and the forms); a usage error, so exit 2.
            raise click.UsageError(str(exc), ctx) from None

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return [CompletionItem(word) for word in KEYWORDS if word.startswith(incomplete)]


WHEN = When()


def since_option(help_subject: str) -> Callable[[F], F]:
    """``--since WHEN``; the help reads "{help_subject} since WHEN: {the forms}"."""
    return click.option(
        "--since",
        type=WHEN,
        callback=_in_order,
        help=f"{help_subject} since WHEN: {MOMENT_FORMS}.",
    )


def until_option(help_subject: str, *, forms: bool = True) -> Callable[[F], F]:
    """``--until WHEN``; the help names the forms unless ``--since`` beside it does."""
    forms_text = f": {MOMENT_FORMS}." if forms else " (the same forms as --since)."
    return click.option(
        "--until",
        type=WHEN,
        callback=_in_order,
        help=f"{help_subject} before WHEN{forms_text}",
    )


def since_until_options(help_subject: str) -> Callable[[F], F]:
    """``--since WHEN`` and ``--until WHEN`` together, e.g. for "Predictions registered"."""

    def decorate(fn: F) -> F:
        return since_option(help_subject)(until_option(help_subject, forms=False)(fn))

    return decorate


def _in_order(ctx: click.Context, param: click.Parameter, value: datetime | None) -> Any:
    """Refuse an --until before --since. Click reads the options in the order they
    were typed, so whichever comes second sees the other in ``ctx.params``."""
    values = {"since": ctx.params.get("since"), "until": ctx.params.get("until")}
    values[str(param.name)] = value
    since, until = values["since"], values["until"]
    if isinstance(since, datetime) and isinstance(until, datetime) and until < since:
        raise click.UsageError(
            f"--until ({_shown(until)}) is before --since ({_shown(since)})", ctx
        )
    return value


def _shown(moment: datetime) -> str:
    return moment.isoformat(sep=" ", timespec="seconds").replace("+00:00", " UTC")

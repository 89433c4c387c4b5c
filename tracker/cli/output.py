"""Printing rows: a table for people, tab-separated lines for pipes, JSON and CSV for
scripts. Rows are written as they come, so the first line of a long listing shows
before the last row is read.

``--format table`` looks at where it goes. In a terminal: an aligned table that fits
the screen (the key column, an ID, is never wrapped or cut; other text is cut with
``…``), numbers right-aligned and in human units (``3.2 s``, ``70 %``, ``12 s ago``),
only the columns that matter unless ``--wide``. Anywhere else: a header line and one
line per row, tab-separated, values exact (ISO times, plain numbers), never padded or
wrapped, so ``grep``, ``cut -f`` and ``head`` work. JSON and CSV are always the whole
rows, exact. Every value from outside is escaped (``tracker.text.display``).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import click
from rich.cells import cell_len, set_cell_size
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tracker.records import to_jsonable
from tracker.text import human
from tracker.text.display import escape_line, escape_text, json_text
from tracker.timeparse import utcnow

Row = dict[str, Any]

#: rows a terminal table measures at a time: later rows keep the widths of the first
PAGE = 500
#: what a cut text column keeps at least (its title may ask for more)
MIN_TEXT = 8
#: how far text columns are cut before whole columns are left out instead
COMFORT = 20
#: spaces between two columns of a terminal table
GAP = 2


@dataclass(frozen=True, slots=True)
class Col:
    """A column of a table: ``name`` is the row's key and the header of piped, JSON and
    CSV output; ``title`` the header in a terminal; ``kind`` how a terminal shows the
    value (KINDS); ``wide``: shown only with ``--wide``. A terminal narrower than the
    table first cuts text columns, then drops the columns of lowest ``priority``."""

    name: str
    title: str | None = None
    kind: str = "text"
    wide: bool = False
    #: which columns a screen too narrow for all of them drops first (lowest first;
    #: key columns are never dropped)
    priority: int = 1
    #: the least width a text column is cut to (default: MIN_TEXT, or its title)
    floor: int | None = None

    @property
    def header(self) -> str:
        return self.title or self.name


@dataclass(frozen=True, slots=True)
class Kind:
    show: Callable[[Any, datetime], str]  #: the value for a terminal (``now`` for ago)
    right: bool = False  #: right-aligned (numbers)
    cut: bool = False  #: may be cut with … when the screen is narrow


KINDS: dict[str, Kind] = {
    "key": Kind(lambda v, now: cell(v)),
    "text": Kind(lambda v, now: cell(v), cut=True),
    "time": Kind(lambda v, now: cell(v)),
    "ago": Kind(lambda v, now: human.ago(v, now), right=True),
    "count": Kind(lambda v, now: human.count(v), right=True),
    "number": Kind(lambda v, now: human.number(v), right=True),
    "seconds": Kind(lambda v, now: human.seconds(v), right=True),
    "percent": Kind(lambda v, now: human.percent(v), right=True),
    "bytes": Kind(lambda v, now: human.size(v), right=True),
    "labels": Kind(lambda v, now: " ".join(f"{k}={x}" for k, x in (v or {}).items()), cut=True),
    "chart": Kind(lambda v, now: "" if v is None else str(v)),
}


def is_terminal() -> bool:
    return sys.stdout.isatty()


def _screen() -> Console:
    """A console as wide as the screen (COLUMNS, else the terminal's size), even when
    TERM says ``dumb`` (rich would assume 80 columns there)."""
    size = shutil.get_terminal_size()
    return Console(highlight=False, width=size.columns, height=size.lines)


def console() -> Console:
    """Rich's console on stdout: the terminal's width in a terminal; elsewhere lines
    are never wrapped (no width is made up for a pipe)."""
    return Console(highlight=False, soft_wrap=not is_terminal())


# -- values --------------------------------------------------------------------------


def cell(value: Any) -> str:
    """A value as one short line: times to the second in UTC, floats to 3 places."""
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


def piped_cell(value: Any) -> str:
    """A value in a tab-separated line: as in CSV but times in ISO 8601 to the second
    (``2026-11-01T14:30:05Z``), on one line (tab, newline and every other control
    character escaped)."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds").replace("+00:00", "Z")
    return escape_line(csv_cell(value))


# -- the formats -----------------------------------------------------------------------


def emit(
    rows: Iterable[Row],
    fmt: str,
    columns: Sequence[Col | str],
    *,
    data: Sequence[str] | None = None,
    wide: bool = False,
    title: str | None = None,
) -> int:
    """Print ``rows`` in ``fmt`` as they come and return how many there were.

    ``columns`` make the table (those marked ``wide`` only with ``wide``); JSON and
    CSV have the keys ``data`` names (default: every column's), whole and exact."""
    cols = [c if isinstance(c, Col) else Col(c) for c in columns]
    names = list(data) if data is not None else [c.name for c in cols]
    if fmt == "json":
        return _json(rows, names)
    if fmt == "csv":
        return _csv(rows, names)
    shown = [c for c in cols if wide or not c.wide]
    if is_terminal():  # asked for every column: cut text, but leave none out
        return _terminal_table(rows, shown, title, drop=not wide)
    return _piped_table(rows, shown, title)


def _json(rows: Iterable[Row], names: Sequence[str]) -> int:
    """A JSON array, one element at a time: the text ``json_text(list, indent=2)``
    gives, with each row's keys in ``names`` order first."""
    written = 0
    for row in rows:
        ordered = {**{c: row[c] for c in names if c in row}, **row}
        element = json_text(to_jsonable(ordered), indent=2).replace("\n", "\n  ")
        click.echo(("[\n  " if written == 0 else ",\n  ") + element, nl=False)
        written += 1
    click.echo("[]" if written == 0 else "\n]")
    return written


def _csv(rows: Iterable[Row], names: Sequence[str]) -> int:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    # csv quotes a field holding "\n" but not one holding a lone "\r", which readers
    # take for the end of the row: such rows get every field quoted.
    quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(names)
    _write_csv(buffer)
    written = 0
    for row in rows:
        cells = [csv_cell(row.get(c)) for c in names]
        (quoted if any("\r" in c for c in cells) else writer).writerow(cells)
        _write_csv(buffer)
        written += 1
    return written


def _write_csv(buffer: io.StringIO) -> None:
    """CSV is data: exact when it goes to a file or a pipe (``color=True`` keeps click
    from stripping escape sequences). A person reading it in a terminal gets control
    characters escaped, as ``ls`` quotes odd file names only there."""
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    click.echo(escape_text(text) if is_terminal() else text, nl=False, color=True)


def _piped_table(rows: Iterable[Row], cols: Sequence[Col], title: str | None) -> int:
    if title:
        click.echo(title)
    click.echo("\t".join(c.name for c in cols))
    written = 0
    for row in rows:
        click.echo("\t".join(piped_cell(row.get(c.name)) for c in cols))
        written += 1
    return written


# -- the terminal table ----------------------------------------------------------------


def _terminal_table(
    rows: Iterable[Row], cols: Sequence[Col], title: str | None, *, drop: bool = True
) -> int:
    """Pages of PAGE rows, the widths measured on the first: a long listing starts at
    once and never holds more than a page. The first page is a rich table; the
    others are laid out as it lays them out (``_plain_lines``), a hundred times
    faster."""
    now = utcnow()
    out = _screen()
    kept: list[Col] = []
    widths: list[int] = []
    written = 0
    for page in _pages(rows):
        if not written:
            everything = [[_shown(c, r.get(c.name), now) for c in cols] for r in page]
            kept, widths = fit(cols, everything, out.width, drop=drop)
        shown = [[_shown(c, row.get(c.name), now) for c in kept] for row in page]
        # a longer ID or number further down widens its column, never cut
        widths = [
            w if KINDS[c.kind].cut else max(w, *(cell_len(r[i]) for r in shown))
            for i, (c, w) in enumerate(zip(kept, widths, strict=True))
        ]
        if written:  # rich's layout, without its cost per cell (1 ms a row)
            click.echo("\n".join(_plain_lines(kept, widths, shown)))
        else:
            _print_page(out, kept, widths, shown, header=True, title=title)
        written += len(page)
    if not written:  # no rows: the header alone says what would be there
        kept, widths = fit(cols, [], out.width, drop=drop)
        _print_page(out, kept, widths, [], header=True, title=title)
    return written


def _pages(rows: Iterable[Row]) -> Iterator[list[Row]]:
    page: list[Row] = []
    for row in rows:
        page.append(row)
        if len(page) == PAGE:
            yield page
            page = []
    if page:
        yield page


def _shown(col: Col, value: Any, now: datetime) -> str:
    return escape_line(KINDS[col.kind].show(value, now))


def fit(
    cols: Sequence[Col], shown: Sequence[Sequence[str]], width: int, *, drop: bool = True
) -> tuple[list[Col], list[int]]:
    """The columns a screen ``width`` wide shows, and their widths. Each is as wide as
    its widest value and header; when that is too wide, the widest text columns are
    cut first, to no less than COMFORT; then the columns of lowest priority (the
    last of equals first) are left out; only then are text columns cut further, to
    their floor. Key columns are never cut nor dropped: a screen narrower than them
    gets lines wider than itself, never a broken ID."""
    keep = list(range(len(cols)))
    while True:
        kept = [cols[i] for i in keep]
        values = [[r[i] for i in keep] for r in shown]
        widths, excess = _shrink(kept, values, width, COMFORT)
        droppable = [i for i in keep if cols[i].kind != "key" and drop]
        if excess <= 0:
            return kept, widths
        if not droppable:
            return kept, _shrink(kept, values, width, 0)[0]
        keep.remove(min(reversed(droppable), key=lambda i: cols[i].priority))


def _shrink(
    cols: Sequence[Col], shown: Sequence[Sequence[str]], width: int, comfort: int
) -> tuple[list[int], int]:
    """Widths with the text columns cut as far as needed, widest first, down to their
    floor or ``comfort``, whichever is wider; and how much wider than ``width`` the
    table still is."""
    widths = [
        max([cell_len(c.header), *(cell_len(r[i]) for r in shown)]) for i, c in enumerate(cols)
    ]
    floors = [
        min(w, max(comfort, c.floor or max(MIN_TEXT, cell_len(c.header))))
        if KINDS[c.kind].cut
        else w
        for c, w in zip(cols, widths, strict=True)
    ]
    excess = sum(widths) + GAP * (len(cols) - 1) - width
    while excess > 0:
        can = [i for i, (w, f) in enumerate(zip(widths, floors, strict=True)) if w > f]
        if not can:
            break
        widths[max(can, key=lambda i: widths[i])] -= 1
        excess -= 1
    return widths, excess


def _print_page(
    out: Console,
    cols: Sequence[Col],
    widths: Sequence[int],
    shown: Sequence[Sequence[str]],
    *,
    header: bool,
    title: str | None,
) -> None:
    table = Table(
        title=title if header else None,
        box=None,
        header_style="bold",
        pad_edge=False,
        padding=(0, GAP // 2),
        show_header=header,
        title_justify="left",
    )
    for col, col_width in zip(cols, widths, strict=True):
        kind = KINDS[col.kind]
        table.add_column(
            col.header,
            width=col_width,
            no_wrap=True,
            # never cut: sized to their values ("ignore" would also undo the justify)
            overflow="ellipsis" if kind.cut else "crop",
            justify="right" if kind.right else "left",
        )
    for values in shown:
        table.add_row(*(Text(v) for v in values))
    needed = sum(widths) + GAP * (len(widths) - 1)
    if needed > out.width:  # wider than the screen: the terminal wraps the line, IDs whole
        out = Console(highlight=False, width=needed, height=out.height)
    out.print(table)


def _plain_lines(
    cols: Sequence[Col], widths: Sequence[int], shown: Sequence[Sequence[str]]
) -> Iterator[str]:
    """The rows of ``_print_page`` without a header: each cell cut with … or padded
    to its width (in terminal cells), GAP spaces apart."""
    gap = " " * GAP
    for values in shown:
        cells = []
        for col, width, value in zip(cols, widths, values, strict=True):
            if cell_len(value) > width:  # only text cells are ever wider than their column
                value = set_cell_size(value, width - 1) + "…"
            padding = " " * (width - cell_len(value))
            cells.append(padding + value if KINDS[col.kind].right else value + padding)
        yield gap.join(cells)


def print_table(
    rows: Sequence[Row], columns: Sequence[Col | str], title: str | None = None
) -> None:
    """Rows as a table (as ``emit`` with ``table``). Columns given by name take their
    kind from their values: the first is the key, numbers are right-aligned, times
    are shown in full, other text may be cut."""
    cols = [c if isinstance(c, Col) else _guess(c, i, rows) for i, c in enumerate(columns)]
    emit(rows, "table", cols, title=title)


def _guess(name: str, index: int, rows: Sequence[Row]) -> Col:
    if index == 0:
        return Col(name, kind="key")
    value = next((r.get(name) for r in rows if r.get(name) is not None), None)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return Col(name)
    if isinstance(value, int):
        return Col(name, kind="count")
    if isinstance(value, float):
        return Col(name, kind="number")
    return Col(name, kind="time" if isinstance(value, datetime) else "text")

"""The queries of `tracker serve`'s dashboard, on both engines, each a few indexed
reads however many predictions there are (the overview's are in
``tracker.store.dashboard_overview``).

The predictions list (``page``) is newest registration first, by keyset on
``(registered_at, id)``: the page after a cursor reads ``(registered_at, id) < (t,
i)`` down ``ix_predictions_registered`` on that pair, a range that starts at the
cursor on both engines even inside one registration batch (its rows share a time
and are ordered by ``id``; the expanded form ``registered_at <= t AND
(registered_at < t OR id < i)`` bounds the scan by the time only, so a page deep in
a batch of 100,000 read every row of it above the cursor), and asks for one row more
than it shows to learn whether there is a further page. There is no
``COUNT``: the pages say "about N" from the overview's cached counts.

Filters an index serves go straight into that query, each index in list order
after the filter's column so that a page is a range of it from the cursor however
deep: ``status`` (``ix_predictions_status``), ``model`` (``ix_predictions_model``),
``tracking = 'active'`` (``ix_predictions_active``), an ID prefix as a range of the primary key
where the collation sorts IDs byte by byte (SQLite; PostgreSQL with a ``C``
collation). The others (labels, another tracking state, an ID prefix under another
collation) would read the whole table when nothing matches, so they look through
at most SCAN_ROWS rows in list order per page: a page that stops there with fewer
rows than asked says how far it searched (``searched``) and its ``older`` cursor
continues the search where it stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, select, tuple_

from tracker.domain import Tracking
from tracker.store.dashboard_overview import OverviewReads
from tracker.store.tables import predictions

#: the columns a row of the list has (never the logs, the raw body, input or output)
LIST_COLUMNS = (
    "id",
    "status",
    "tracking",
    "model",
    "labels",
    "registered_at",
    "created_at",
    "started_at",
    "completed_at",
    "predict_time",
    "last_error",
)
#: the status filter for predictions not polled successfully yet (status NULL)
NO_STATUS = "none"
#: rows a page reads at most for a filter no index serves
SCAN_ROWS = 20_000
#: collations (PostgreSQL's datcollate) that sort IDs byte by byte
_BYTE_ORDER = ("C", "POSIX")


@dataclass(frozen=True, slots=True)
class Cursor:
    """A place in the list: the registration time and ID of one row."""

    registered_at: datetime
    id: str


@dataclass(frozen=True, slots=True)
class PredictionFilter:
    """Which predictions the list shows; every field optional."""

    status: str | None = None  #: an upstream status, or NO_STATUS
    tracking: str | None = None
    model: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    id_prefix: str | None = None

    @property
    def only_counted(self) -> bool:
        """Whether the overview's counts (by status and tracking) say how many match."""
        return not (self.model or self.labels or self.id_prefix)


@dataclass(frozen=True, slots=True)
class PredictionPage:
    """Rows of LIST_COLUMNS, newest first; ``newer``: the cursor of the page before
    this one (None on the first page), ``older``: of the page after it (None on the
    last); ``searched``: SCAN_ROWS when the search stopped there before the page
    was full (``older`` then continues it)."""

    rows: list[dict[str, Any]]
    newer: Cursor | None
    older: Cursor | None
    searched: int | None = None


@dataclass(frozen=True, slots=True)
class _Found:
    rows: list[dict[str, Any]]
    #: the last row searched, when the search stopped at its cap
    edge: Cursor | None = None


class DashboardQueries(OverviewReads):
    """The dashboard's reads (on the engine of the service's ``Store``)."""

    _byte_order_ids: bool | None = None
    #: rows a page reads at most for a filter no index serves
    scan_rows: int = SCAN_ROWS

    def page(
        self,
        flt: PredictionFilter,
        *,
        size: int,
        after: Cursor | None = None,
        before: Cursor | None = None,
    ) -> PredictionPage:
        """``size`` rows: the newest, those just older than ``after``, or those just
        newer than ``before`` (the newest page when fewer than ``size`` are)."""
        with self._reading() as conn:
            byte_order = self._ids_in_byte_order(conn)
            if before is not None:
                newer_rows = _newer_than(before)
                found = self._read(conn, flt, byte_order, newer_rows, size, newest_first=False)
                if len(found.rows) > size:
                    shown = found.rows[:size][::-1]
                    return PredictionPage(shown, _cursor(shown[0]), _cursor(shown[-1]))
                if found.edge is not None:
                    shown = found.rows[::-1]
                    last = _cursor(shown[-1]) if shown else None
                    return PredictionPage(shown, found.edge, last, self.scan_rows)
                after = None  # at the top: the newest page
            keyset = None if after is None else _older_than(after)
            found = self._read(conn, flt, byte_order, keyset, size, newest_first=True)
        shown = found.rows[:size]
        newer = None if after is None else (_cursor(shown[0]) if shown else after)
        if len(found.rows) > size:
            return PredictionPage(shown, newer, _cursor(shown[-1]))
        searched = None if found.edge is None else self.scan_rows
        return PredictionPage(shown, newer, found.edge, searched)

    def _read(
        self,
        conn: Connection,
        flt: PredictionFilter,
        byte_order: bool,
        keyset: ColumnElement[bool] | None,
        size: int,
        *,
        newest_first: bool,
    ) -> _Found:
        """Up to ``size + 1`` rows in list order; a filter no index serves is applied to
        a window of ``scan_rows`` rows (and the window's last row is the edge when it ends
        the search)."""
        c = predictions.c
        indexed, scanned = _conditions(c, flt, byte_order)
        where = [*indexed, *([] if keyset is None else [keyset])]
        # Rows without a status are all NULL there, so ordering by it first changes
        # nothing but lets PostgreSQL read ix_predictions_status in that order (for
        # IS NULL, unlike =, it does not otherwise count the column as fixed).
        first = (c.status,) if flt.status == NO_STATUS else ()
        if not scanned:
            stmt = _listing(c, newest_first, first).where(*where).limit(size + 1)
            return _Found([dict(r) for r in conn.execute(stmt).mappings()])
        # The window's far end first (from the index alone where it covers the
        # conditions), then one range of the index up to it, the other conditions a
        # filter on that scan: it stops at the page's last row on both engines (a
        # subquery of the window made SQLite sort all of its rows again).
        ends = select(c.registered_at, c.id).where(*where).order_by(*_order(c, newest_first, first))
        found = conn.execute(ends.offset(self.scan_rows - 1).limit(1)).first()
        edge = None if found is None else Cursor(found[0], found[1])
        if edge is not None:
            where.append(_row_key() >= _key(edge) if newest_first else _row_key() <= _key(edge))
        stmt = _listing(c, newest_first, first).where(*where, *scanned).limit(size + 1)
        rows = [dict(r) for r in conn.execute(stmt).mappings()]
        return _Found(rows) if len(rows) > size else _Found(rows, edge)

    def _ids_in_byte_order(self, conn: Connection) -> bool:
        if self._byte_order_ids is None:
            if self.dialect != "postgresql":
                self._byte_order_ids = True
            else:
                collation = conn.exec_driver_sql(
                    "SELECT datcollate FROM pg_database WHERE datname = current_database()"
                ).scalar()
                name = str(collation or "")
                self._byte_order_ids = name in _BYTE_ORDER or name.startswith("C.")
        return self._byte_order_ids


def _listing(columns: Any, newest_first: bool, first: tuple[Any, ...] = ()) -> Any:
    return select(*(columns[name] for name in LIST_COLUMNS)).order_by(
        *_order(columns, newest_first, first)
    )


def _order(columns: Any, newest_first: bool, first: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    keys = (*first, columns.registered_at, columns.id)
    return tuple(k.desc() for k in keys) if newest_first else keys


def _conditions(
    columns: Any, flt: PredictionFilter, byte_order: bool
) -> tuple[list[ColumnElement[bool]], list[ColumnElement[bool]]]:
    """The filter's conditions on ``columns``: those an index serves, and the others."""
    indexed: list[ColumnElement[bool]] = []
    scanned: list[ColumnElement[bool]] = []
    if flt.status == NO_STATUS:
        indexed.append(columns.status.is_(None))
    elif flt.status:
        indexed.append(columns.status == flt.status)
    if flt.tracking:
        active = flt.tracking == Tracking.ACTIVE.value
        (indexed if active else scanned).append(columns.tracking == flt.tracking)
    if flt.model:
        indexed.append(columns.model == flt.model)
    for key, value in flt.labels.items():
        scanned.append(columns.labels[key].as_string() == value)
    if flt.id_prefix:
        prefix = flt.id_prefix
        like = columns.id.startswith(prefix, autoescape=True)
        if byte_order:  # the range alone is exact; LIKE keeps it so under any collation
            following = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            indexed.extend([columns.id >= prefix, columns.id < following, like])
        else:
            scanned.append(like)
    return indexed, scanned


def _older_than(cursor: Cursor) -> ColumnElement[bool]:
    return _row_key() < _key(cursor)


def _newer_than(cursor: Cursor) -> ColumnElement[bool]:
    return _row_key() > _key(cursor)


def _row_key() -> Any:
    """The list's order as one row value: compared with a cursor's, an index range."""
    return tuple_(predictions.c.registered_at, predictions.c.id)


def _key(cursor: Cursor) -> Any:
    c = predictions.c  # the columns' types bind the values (UTC text on SQLite)
    return tuple_(cursor.registered_at, cursor.id, types=[c.registered_at.type, c.id.type])


def _cursor(row: Mapping[str, Any]) -> Cursor:
    return Cursor(row["registered_at"], row["id"])

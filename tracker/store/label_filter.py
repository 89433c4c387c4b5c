"""Filtering predictions by label through ``prediction_labels`` (the index of text
labels that triggers keep, migration 0013) rather than by reading the labels JSON of
every row: reports, listings and the delivery log select the same predictions for
the same ``--label``, and a rare label costs a few index reads, not a scan.

Two shapes of the same condition. ``id IN (the label's carriers)`` reads the carriers
and then their rows, to be sorted: right for a rare label, or for every row of a
common one. ``EXISTS (this row carries it)`` probes the label's index from each row
of a scan in the listing's own order: right for the first rows of a common label
(the newest 50 of 137,000 carriers among 1M predictions: about 400 rows read instead
of 137,000 read and sorted). PostgreSQL's planner picks between them from its
statistics whichever is written; SQLite's has none to go by, so a listing asks
``scan_first`` (a bounded count of the carriers) which one to write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, func, select

from tracker.store.tables import prediction_labels

#: carriers of every label above which the first rows of a listing on SQLite are found
#: by a scan in the listing's order (then at least one row in 200 of 1M carries them)
SCAN_ABOVE = 5_000


def carrying(
    prediction_id: Any, labels: Mapping[str, str], *, scan: bool = False
) -> list[ColumnElement[bool]]:
    """A condition per label: the prediction ``prediction_id`` (a column) carries
    ``key`` with exactly ``value`` (``scan``: written for a scan, probing each row)."""
    conditions: list[ColumnElement[bool]] = []
    for key, value in labels.items():
        carriers = _carriers(key, value)
        if scan:
            carries = carriers.where(prediction_labels.c.prediction_id == prediction_id)
            conditions.append(carries.exists())
        else:
            conditions.append(prediction_id.in_(carriers))
    return conditions


def scan_first(conn: Connection, labels: Mapping[str, str], limit: int | None) -> bool:
    """Whether a listing of the first ``limit`` rows should scan in its order: on
    SQLite, when every label has more than SCAN_ABOVE carriers (counted no further)."""
    if conn.dialect.name != "sqlite" or not labels or limit is None:
        return False
    for key, value in labels.items():
        some = _carriers(key, value).limit(SCAN_ABOVE + 1).subquery()
        if conn.execute(select(func.count()).select_from(some)).scalar_one() <= SCAN_ABOVE:
            return False
    return True


def _carriers(key: str, value: str) -> Select[Any]:
    """The IDs of the predictions that carry ``key`` with exactly ``value``."""
    return select(prediction_labels.c.prediction_id).where(
        prediction_labels.c.key == key, prediction_labels.c.value == value
    )


__all__ = ["SCAN_ABOVE", "carrying", "scan_first"]

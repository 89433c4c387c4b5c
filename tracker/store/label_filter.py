"""Filtering predictions by label through ``prediction_labels`` (the index of text
labels that triggers keep, migration 0013) rather than by reading the labels JSON of
every row: reports, listings and the delivery log select the same predictions for
the same ``--label``, and a rare label costs a few index reads, not a scan."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, select

from tracker.store.tables import prediction_labels


def carrying(prediction_id: Any, labels: Mapping[str, str]) -> list[ColumnElement[bool]]:
    """A condition per label: the prediction ``prediction_id`` (a column) carries
    ``key`` with exactly ``value``."""
    conditions: list[ColumnElement[bool]] = []
    for key, value in labels.items():
        carriers = select(prediction_labels.c.prediction_id).where(
            prediction_labels.c.key == key, prediction_labels.c.value == value
        )
        conditions.append(prediction_id.in_(carriers))
    return conditions


__all__ = ["carrying"]

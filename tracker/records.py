"""Records as JSON: the shapes `tracker list --format json`, `tracker show --format json`
and `tracker serve`'s API print alike (times in ISO 8601, webhook targets masked)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from tracker.domain import CancelResult, Prediction, PredictionDetail
from tracker.text.display import mask_url

#: a listed prediction (`list --format json|csv`, the API's list): every field but the logs
RECORD_COLUMNS = tuple(f.name for f in fields(Prediction) if f.name != "logs")


def to_jsonable(value: Any) -> Any:
    """``value`` with every datetime as ISO 8601 text (in dicts, lists and tuples)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def mask_targets(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with each webhook ``target`` masked (password, query values): what every
    output shows; the stored target keeps them, since delivery needs them."""
    return [mask_target(row) for row in rows]


def mask_target(row: dict[str, Any]) -> dict[str, Any]:
    """One row of ``mask_targets``."""
    return {**row, "target": mask_url(row["target"])} if row.get("kind") == "webhook" else row


def detail_record(detail: PredictionDetail) -> dict[str, Any]:
    """Everything known about a prediction as JSON (`tracker show --format json`), with
    webhook targets masked."""
    record = asdict(detail)
    record["callbacks"] = mask_targets(record["callbacks"])
    record["deliveries"] = mask_targets(record["deliveries"])
    jsonable: dict[str, Any] = to_jsonable(record)
    return jsonable


def listed_record(row: dict[str, Any]) -> dict[str, Any]:
    """A row of ``RECORD_COLUMNS`` as `tracker list --format json` prints it (labels
    always a mapping)."""
    return {**row, "labels": row["labels"] or {}}


def cancel_record(result: CancelResult) -> dict[str, Any]:
    """What one cancel did, as `tracker cancel --format json` and the service answer it."""
    record: dict[str, Any] = to_jsonable(asdict(result))
    record["outcome"] = str(result.outcome)
    record["ok"] = result.ok
    return record

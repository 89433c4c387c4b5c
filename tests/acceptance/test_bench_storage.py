"""scripts/bench_storage.py runs end to end at toy size on both engines and reports the
bytes per finished prediction of every table, bulk-written and written by the daemon.
No goal is asserted here (the figures are in docs/performance.md); what the daemon
stored is checked: every prediction ended and its answer kept no second copy of its
logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchrun import run_benchmark

TABLES = {
    "predictions",
    "status_transitions",
    "prediction_logs",
    "callbacks",
    "deliveries",
    "delivery_attempts",
}


@pytest.mark.slow
@pytest.mark.postgres
def test_the_storage_benchmark_reports_every_table(tmp_path: Path) -> None:
    out = tmp_path / "storage.json"
    args = ["--fill", "200", "--daemon", "12", "--run-median", "2", "--json", str(out)]
    result = run_benchmark("bench_storage.py", *args, cwd=tmp_path)
    assert "bytes per finished prediction" in result.stdout
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"sqlite", "postgresql"}
    for engine, parts in report["results"].items():
        assert set(parts) == {"fill", "daemon"}, engine
        for part in parts.values():
            tables = part["table_bytes_per_finished"]
            assert set(tables) == TABLES
            assert tables["predictions"] > 0 and tables["prediction_logs"] > 0
            assert part["bytes_per_finished"] == pytest.approx(sum(tables.values()), abs=6)
        assert parts["daemon"]["finished"] == 12 and parts["daemon"]["daemon_exit_code"] == 0
        assert parts["daemon"]["raw_logs_moved"] == 12, engine

"""scripts/bench_reports.py runs end to end at toy size (3,000 predictions on SQLite,
one run of each report), times every canned report and its filtered variants and says
met or not met against 2 s. No goal is asserted (the machine is shared: the figures
with 1M predictions on both engines live in docs/performance.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchrun import run_benchmark
from tracker.cli.report import REPORTS


@pytest.mark.slow
def test_the_reports_benchmark_times_every_report(tmp_path: Path) -> None:
    out = tmp_path / "reports.json"
    result = run_benchmark(
        "bench_reports.py",
        "--rows",
        "3000",
        "--engines",
        "sqlite",
        "--runs",
        "1",
        "--json",
        str(out),
        cwd=tmp_path,
    )
    assert "goal (every report under 2.0 s)" in result.stdout
    assert "within 5 %" in result.stdout  # the percentiles' error bound is printed
    (engine,) = json.loads(out.read_text())["results"]
    assert engine["engine"] == "sqlite" and engine["revision"] is not None
    timed = {(r["report"], r["filter"]) for r in engine["reports"]}
    assert {(name, "") for name in REPORTS} <= timed
    assert ("models", "--since 3d") in timed and ("models", "--label team=studio") in timed
    for row in engine["reports"]:
        assert row["first_seconds"] > 0 and row["median_seconds"] > 0
        assert isinstance(row["goal_met"], bool)
    models = next(r for r in engine["reports"] if (r["report"], r["filter"]) == ("models", ""))
    assert models["rows"] >= 10  # the fill's models

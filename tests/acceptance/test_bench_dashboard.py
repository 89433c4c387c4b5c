"""scripts/bench_dashboard.py runs end to end at toy size (4,000 predictions and a
batch of 1,000 on SQLite, one request a page), reports a positive number for every
figure of every page and the plans of the dashboard's reads, and each filtered page
of the batch reads its own index from the cursor. No goal is asserted (the machine
is shared: the figures with 1M predictions on PostgreSQL live in
docs/performance.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.benchrun import run_benchmark

FIGURES = (
    "rtt_median_ms",
    "rtt_p95_ms",
    "server_median_ms",
    "server_p95_ms",
    "server_max_ms",
    "bytes_median",
)


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


@pytest.mark.slow
def test_the_dashboard_benchmark_reports_every_page(tmp_path: Path) -> None:
    out = tmp_path / "dashboard.json"
    sizes = ["--predictions", "4000", "--detailed", "200", "--batch", "1000"]
    result = run_benchmark(
        "bench_dashboard.py",
        "--quick",
        *sizes,
        "--engines",
        "sqlite",
        "--requests",
        "1",
        "--json",
        str(out),
        cwd=tmp_path,
    )
    assert "server p95 < 200 ms" in result.stdout and "query plans, sqlite" in result.stdout
    report = json.loads(out.read_text())
    assert report["machine"]["nproc"] >= 1 and report["date"]
    (run,) = report["results"]
    assert run["engine"] == "sqlite" and positive(run["cold_first_overview_ms"])
    assert positive(run["database_bytes"]) and positive(run["artifacts"])
    assert positive(run["detailed"]["dead_deliveries"])
    batch = run["batch"]
    assert batch["rows"] == 1_000
    pages = [*run["pages"], *batch["pages"], *batch.get("index_trial_pages", [])]
    assert len(run["pages"]) == 16 and len(batch["pages"]) == 8
    assert len({p["page"] for p in pages}) == len(pages)
    for page in pages:
        assert page["requests"] == 1, page
        assert all(positive(page[name]) for name in FIGURES), page
        assert page["server_median_ms"] <= page["server_p95_ms"] <= page["server_max_ms"]
        assert page["pass"] in (True, False)
        assert 0 <= page["beside_overview_read"] <= 1
    names = {p["page"] for p in pages}
    assert {"overview, uncached", "list, deep page (after=)", "prediction page"} <= names
    assert "batch: list, tracking=active, last page" in names
    operations = [op["operation"] for op in run["plans"]]
    assert (
        "list, newest page" in operations and "overview: counts (Store.report_status)" in operations
    )
    for op in [*run["plans"], *batch["plans"]]:
        assert op["statements"], op
        for statement in op["statements"]:
            assert statement["plan"] and positive(statement["ms"]), statement
    # each filtered page of the batch reads its filter's index from the cursor
    plans = {op["operation"]: " ".join(op["statements"][0]["plan"]) for op in batch["plans"]}
    keyset = "(registered_at,id)<(?,?)"
    assert f"ix_predictions_registered ({keyset})" in plans["batch: list, page inside"]
    assert "ix_predictions_status (status=?)" in plans["batch: list, status=failed"]
    assert f"ix_predictions_active ({keyset})" in plans["batch: list, tracking=active, last page"]
    assert (
        f"ix_predictions_status (status=? AND {keyset})"
        in (plans["batch: list, status=none, last page"])
    )

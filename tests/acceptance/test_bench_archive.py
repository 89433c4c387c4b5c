"""scripts/bench_archive.py runs end to end at toy size and reports a positive number for
every figure: MB/s into a local directory and into a moto S3 server on loopback, the
daemon's peak RSS archiving one file, polls per daemon CPU-second with archiving on
and off. No goal is asserted (the machine is shared: timing goals live in
docs/performance.md); what was stored is, as the benchmark checks it (exit 0)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.benchrun import run_benchmark


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


@pytest.mark.slow
def test_the_archive_benchmark_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "archive.json"
    result = run_benchmark(
        "bench_archive.py",
        "--quick",
        "--engines",
        "sqlite",
        "--json",
        str(out),
        cwd=tmp_path,
        drop=("TRACKER_", "AWS_"),
    )
    assert "goals and checks" in result.stdout and "FAILED" not in result.stdout
    report = json.loads(out.read_text())
    assert report["machine"]["nproc"] >= 1 and report["date"]

    throughput = {r["storage"]: r for r in report["throughput"]}
    assert set(throughput) == {"local", "s3"}
    for run in throughput.values():
        window = run["window"]
        assert window["stored"] == window["artifacts"] == 4
        assert window["bytes"] == 4 * run["file_bytes"]
        assert positive(window["seconds"]) and positive(run["mb_per_second"])
        assert run["checks"]["ok"] and run["checks"]["objects_read_back"] == 2
        assert positive(run["daemon"]["peak_rss_mb"])

    rss = {r["storage"]: r for r in report["rss"]}
    assert set(rss) == {"local", "s3"}
    for run in rss.values():
        assert run["window"]["bytes"] == run["file_bytes"] and run["checks"]["ok"]
        assert positive(run["daemon"]["peak_rss_mb"]) and positive(run["daemon"]["rss_at_ready_mb"])
        assert positive(run["mb_per_second"])

    (polls,) = report["polls"]
    for mode in ("off", "on"):
        assert positive(polls[mode]["best"]) and positive(polls[mode]["median"])
        (run,) = polls["runs"][mode]
        assert positive(run["polls"]) and positive(run["daemon_cpu_seconds"])
    assert polls["runs"]["on"][0]["artifacts"]["stored"] == polls["predictions"]
    assert polls["runs"]["off"][0]["file_requests"] == 0
    assert positive(polls["ratio_best"]) and positive(polls["cost"]["ms_per_poll"])
    (pair,) = polls["pair_ratios"]  # the smoke run starts every run at once
    assert positive(pair) and polls["ratio_pairs_median"] == pair
    assert polls["method"] == "all at once"
    assert polls["runs"]["on"][0]["daemon_system_seconds"] >= 0
    assert isinstance(polls["cost"]["system_ms_per_poll"], float)
    # CPU per archived file is a difference of two runs: at toy size, noise may swamp it
    assert isinstance(polls["cost"]["ms_per_file"], float)
    assert [g["kind"] for g in report["goals"]].count("goal") == 3  # 2 RSS, 1 polls

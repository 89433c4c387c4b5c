"""Running a benchmark script (scripts/bench_*.py) to its end, as the acceptance tests
of the benchmarks do: in a process of its own, without the caller's TRACKER_
settings (but the PostgreSQL server the tests use), its output captured."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def run_benchmark(
    script: str, *args: str, cwd: Path, drop: Sequence[str] = ("TRACKER_",)
) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/<script>`` with ``args`` in ``cwd``; it must exit 0 within 5 min.
    Variables starting with one of ``drop`` are left out, TRACKER_TEST_PG_URL kept."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop))}
    if "TRACKER_TEST_PG_URL" in os.environ:
        env["TRACKER_TEST_PG_URL"] = os.environ["TRACKER_TEST_PG_URL"]
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result

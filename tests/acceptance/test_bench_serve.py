"""scripts/bench_serve.py register runs end to end at toy size and reports numbers
(no timing is asserted: the machine is shared)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def test_the_registration_benchmark_reports_its_rates(tmp_path: Path) -> None:
    out = tmp_path / "register.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "bench_serve.py"),
            "register",
            "--quick",
            "--engines",
            "sqlite",
            "--requests",
            "20",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "1,000 IDs per request" in result.stdout and "goal:" in result.stdout
    (run,) = json.loads(out.read_text())["results"]
    assert run["engine"] == "sqlite"
    assert run["single"]["requests"] == 20 and run["single"]["per_second"] > 0
    assert run["concurrent"]["requests"] == 20 and run["concurrent"]["per_second"] > 0
    assert run["batched"]["requests"] == 1 and run["batched"]["per_second"] > 0
    assert run["single"]["latency"]["count"] == 20

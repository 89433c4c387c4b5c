"""Every script's --help works (exit 0, a usage line, nothing run): the shell scripts
and Python entry points in scripts/, and the runnable modules of scripts/benchmark/."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
#: what each script is: a shell script run as is, or Python run by this interpreter
EXECUTABLES = sorted(p.name for p in SCRIPTS.iterdir() if p.is_file() and os.access(p, os.X_OK))
PYTHON_SCRIPTS = sorted(p.name for p in SCRIPTS.glob("*.py"))
#: benchmark modules that run as ``python -m benchmark.NAME``
MODULES = sorted(
    p.stem
    for p in (SCRIPTS / "benchmark").glob("*.py")
    if 'if __name__ == "__main__":' in p.read_text(encoding="utf-8")
)


def test_the_scripts_are_found() -> None:
    """New scripts are picked up by the tests below as they come; these must be there."""
    assert {"bench", "demo", "setup", "test"} <= set(EXECUTABLES)
    assert {"bench.py", "bench_callbacks.py", "bench_daemons.py"} <= set(PYTHON_SCRIPTS)
    assert {"baseline", "receiver"} <= set(MODULES)  # the others run through scripts/*.py


def run(command: list[str], cwd: Path = SCRIPTS) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"
    started = time.monotonic()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60, env=env)
    # help only: scripts/test --help must not lint, type-check and run the suite
    assert time.monotonic() - started < 30, command
    return result


def assert_help(result: subprocess.CompletedProcess[str], usage: str) -> None:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"usage: {usage}"), result.stdout[:200]
    assert "Traceback" not in result.stdout


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("name", EXECUTABLES)
def test_shell_scripts(name: str, flag: str) -> None:
    usage = "bench.py" if name == "bench" else f"scripts/{name}"  # bench hands over to bench.py
    assert_help(run([str(SCRIPTS / name), flag]), usage)


@pytest.mark.parametrize("name", PYTHON_SCRIPTS)
def test_python_scripts(name: str) -> None:
    assert_help(run([sys.executable, str(SCRIPTS / name), "--help"]), name)


@pytest.mark.parametrize("name", MODULES)
def test_benchmark_modules(name: str) -> None:
    result = run([sys.executable, "-m", f"benchmark.{name}", "--help"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: "), result.stdout[:200]


def test_the_percent_sign_in_the_benchmarks_help_is_shown() -> None:
    """`scripts/bench --help` once crashed on an unescaped % in a help string."""
    result = run([str(SCRIPTS / "bench"), "--help"])
    assert "pct% | rate it/s" in result.stdout and "90 % finished" in result.stdout


@pytest.mark.parametrize("name", ["register", "push"])
def test_each_benchmark_of_bench_serve_has_help(name: str) -> None:
    result = run([sys.executable, str(SCRIPTS / "bench_serve.py"), name, "--help"])
    assert_help(result, f"bench_serve.py {name}")

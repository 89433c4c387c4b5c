"""Processes for the benchmarks: the simulator, the daemon and helpers in their own
processes, free ports, the tracker CLI, CPU and RSS from /proc, and a description of
the machine and of the source that was measured."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

SCRIPTS = Path(__file__).resolve().parent.parent
ROOT = SCRIPTS.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: the daemons' API key (the simulator accepts any)
API_KEY = "tracker-bench-key"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def terminate_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that the finally blocks stop processes and
    drop databases."""

    def _terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)


# -- command-line arguments ---------------------------------------------------------------

ENGINES = ("sqlite", "postgresql")


def comma_list(text: str, allowed: Sequence[str]) -> list[str]:
    """An argparse type: a comma list of some of ``allowed`` (at least one)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose among {', '.join(allowed)}")
    return names


def engines_arg(text: str) -> list[str]:
    """An argparse type: a comma list of sqlite, postgresql."""
    return comma_list(text, ENGINES)


def count_arg(text: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (0 or more)")
    return value


# -- the tracker CLI ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tracker_env(url: str, base: str) -> dict[str, str]:
    """This process's environment without TRACKER_ settings or API keys, plus the run's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    for name in ("ANYAPI_API_KEY", "REPLICATE_API_TOKEN"):
        env.pop(name, None)
    # A key no answer contains: the tracker masks the key wherever the upstream echoes
    # it, and "bench" made the models' "bench/..." names "***/...", so the run-time
    # history the benchmark seeds under "bench/..." never matched.
    env.update(TRACKER_DATABASE_URL=url, TRACKER_API_BASE=base, TRACKER_API_KEY=API_KEY)
    env["TRACKER_WEBHOOK_ALLOWED_HOSTS"] = "loopback"  # the receiver listens on 127.0.0.1
    return env


def tracker(*args: str, env: dict[str, str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a `tracker` command to its end; its output is captured."""
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def module_command(module: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run a module of this package in its own process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SCRIPTS), env.get("PYTHONPATH")]))
    return [sys.executable, "-m", module, *args], env


# -- processes ---------------------------------------------------------------------------


def start_listening(
    cmd: list[str], what: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Start a server process that prints '... listening on URL' once ready."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        stop(proc)
        raise RuntimeError(f"the {what} did not start (said {line!r})")
    return proc, line.rsplit(" ", 1)[1].strip()


def stop(proc: subprocess.Popen[Any] | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not go within ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for_exit(proc: subprocess.Popen[Any], timeout: float) -> tuple[int, float, float]:
    """Wait for a daemon to exit by itself (SIGTERM after ``timeout`` seconds, SIGKILL 15 s
    later); returns (exit code, CPU seconds, peak RSS MB)."""
    deadline = time.monotonic() + timeout
    signalled = None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
        now = time.monotonic()
        if signalled is None and now > deadline:
            print(f"daemon still running after {timeout:g} s: stopping it", file=sys.stderr)
            proc.send_signal(signal.SIGTERM)
            signalled = now
        elif signalled is not None and now > signalled + 15:
            proc.kill()
        time.sleep(0.05)


def wait_for_log(logs: list[Path], procs: list[subprocess.Popen[Any]], timeout: float) -> bool:
    """Wait until every log says the daemon started; False if one exited or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(" started: " in log.read_text(errors="replace") for log in logs):
            return True
        if any(p.poll() is not None for p in procs):
            return False
        time.sleep(0.05)
    return False


class SimulatorProcess:
    """`tracker simulate` in its own process; ``flags`` go to the command."""

    def __init__(self, *flags: str) -> None:
        cmd = [sys.executable, "-m", "tracker", "simulate", "--port", str(free_port()), *flags]
        self.proc, self.base = start_listening(cmd, "simulator")
        self.root = self.base.removesuffix("/v1")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def request_count(self) -> int:
        return httpx.get(f"{self.root}/_sim/health", timeout=30).json()["requests"]

    def requests(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.root}/_sim/requests", timeout=120).json()["requests"]

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        stop(self.proc)


class DaemonProcess:
    """`tracker daemon` in its own process; CPU from /proc while it runs, rusage at exit."""

    def __init__(self, url: str, base: str, log_path: Path, *flags: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracker", "daemon", *flags],
            env=tracker_env(url, base),
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        self.result: dict[str, Any] | None = None
        self._signalled = False
        self._peak: float | None = None

    def wait_ready(self, timeout: float = 60.0) -> None:
        if not wait_for_log([self.log_path], [self.proc], timeout):
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the daemon did not start ({self.log_path}):\n{tail}")

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def terminate(self) -> None:
        # os.kill, not Popen.send_signal: that polls first, reaping an exited daemon
        # before os.wait4 can read its resource usage.
        if self.result is None and not self._signalled:
            self._signalled = True
            self._peak = proc_rss_mb(self.proc.pid)  # while it is still certainly alive
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """SIGTERM (SIGKILL after ``timeout``); exit code, CPU seconds and peak RSS."""
        if self.result is not None:
            return self.result
        self.terminate()
        peak = self._peak
        deadline = time.monotonic() + timeout
        killed = False
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                break
            reading = proc_rss_mb(self.proc.pid)
            if reading is not None:
                peak = max(peak or 0.0, reading)
            if not killed and time.monotonic() > deadline:
                self.proc.kill()
                killed = True
            time.sleep(0.02)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self._log.close()
        self.result = {
            "exit_code": self.proc.returncode,
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            # VmHWM of the daemon's own address space. ru_maxrss is not that: a child
            # started with vfork inherits, at exec, the parent's high-water mark, so it
            # reports this benchmark's own peak whenever that is the larger.
            "peak_rss_mb": peak,
            "ru_maxrss_mb": round(usage.ru_maxrss / 1024, 1),
            "log": str(self.log_path),
            "log_counts": log_counts(self.log_path),
        }
        return self.result


def log_counts(path: Path) -> dict[str, int]:
    counts = {"lines": 0, "WARNING": 0, "ERROR": 0, "claim_lost": 0}
    for line in path.read_text(errors="replace").splitlines():
        counts["lines"] += 1
        for level in ("WARNING", "ERROR"):
            if level in line:
                counts[level] += 1
        if "claim lost" in line:
            counts["claim_lost"] += 1
    return counts


# -- CPU and memory ----------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc."""
    return sum(proc_cpu_times(pid))


def proc_cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a live process, from /proc."""
    data = Path(f"/proc/{pid}/stat").read_text()
    fields = data[data.rindex(")") + 2 :].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_of(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (0 for vanished ones)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            total += proc_cpu_seconds(pid)
    return total


def proc_rss_mb(pid: int) -> float | None:
    """The peak resident memory (VmHWM) of a live process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def postgres_cpu_seconds() -> float:
    """CPU time of the local PostgreSQL server: its live processes, plus the backends
    that already ended (the postmaster's reaped children)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() not in ("postgres", "postmaster"):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        parent = Path(f"/proc/{fields[1]}/comm")
        if not parent.exists() or parent.read_text().strip() not in ("postgres", "postmaster"):
            total += int(fields[13]) + int(fields[14])  # the postmaster: ended children
    return total / CLK_TCK


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs together, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


# -- what was measured, where ------------------------------------------------------------


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def report_header(name: str, args: Any, engines: list[str]) -> dict[str, Any]:
    """The start of a benchmark's JSON: what ran, with which settings, on what machine
    (and PostgreSQL version, when it is measured), from which source."""
    info = machine()
    if "postgresql" in engines:
        from .databases import pg_version

        info["postgresql"] = pg_version()
    return {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": info,
        "source": source_state(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }


def write_report(report: dict[str, Any], path: Path) -> None:
    """Close a benchmark's JSON (the load average at the end) and write it to ``path``."""
    report["machine"]["loadavg_end"] = loadavg()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
        "loadavg_start": loadavg(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    return info


def source_state() -> dict[str, Any]:
    """The commit and uncommitted files of the tracker that was measured."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"), "dirty": git("status", "--porcelain").splitlines()}

"""`tracker serve` as a process of its own, for the service's benchmarks."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from .databases import drop_database
from .harness import free_port, stop

#: the bearer token the benchmarks' services ask for
TOKEN = "bench-serve-token"
#: seconds a service has to start answering
START_SECONDS = 60.0


def start_service(
    env: dict[str, str], log_path: Path, *options: str
) -> tuple[subprocess.Popen[bytes], str]:
    """`tracker serve OPTIONS` on a free loopback port, once it answers /healthz; its
    stderr goes to ``log_path``."""
    port = free_port()
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tracker", "serve", "--port", str(port), *options],
            env=env,
            stderr=log_file,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tracker serve exited ({proc.returncode}); see {log_path}")
        try:
            httpx.get(f"{url}/healthz", timeout=2, trust_env=False)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"tracker serve did not answer within {START_SECONDS:g} s; see {log_path}")


def stop_and_drop(
    service: subprocess.Popen[bytes] | None, dbname: str | None, workdir: Path, tag: str
) -> None:
    """Stop the service (if it started) and drop its database; on SQLite (no
    ``dbname``), delete the ``{tag}.db*`` files left in ``workdir``."""
    stop(service)
    drop_database(dbname)
    if dbname is None:
        for leftover in workdir.glob(f"{tag}.db*"):
            leftover.unlink(missing_ok=True)

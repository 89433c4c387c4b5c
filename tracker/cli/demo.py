"""`tracker demo`: the whole loop against the bundled simulator, no API key needed."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import sys

import click

from tracker.cli.common import emit_rows, open_store
from tracker.cli.daemon import run_daemon
from tracker.config import Settings
from tracker.logsetup import configure_logging
from tracker.simulator import SimConfig, SimulatorThread
from tracker.store import migrate
from tracker.timeparse import utcnow

#: one prediction per simulator scenario worth watching
DEMO_SCENARIOS = (
    "ok",
    "quick",
    "fail",
    "cancel",
    "abort",
    "flaky",
    "junk",
    "ratelimit",
    "weird",
    "unicode",
)
DEMO_DATABASE_URL = "sqlite:///tracker-demo.db"


@click.command("demo")
@click.option(
    "--database-url",
    default=DEMO_DATABASE_URL,
    show_default=True,
    help="Where the demo writes (its own file: real data is never polled against the simulator).",
)
@click.option("--quiet", is_flag=True, help="Only print the final table.")
def demo_command(database_url: str, quiet: bool) -> None:
    """Start the simulator, register one prediction per scenario, poll until all end."""
    configure_logging(level=logging.WARNING if quiet else logging.INFO)
    with open_store(database_url, check=False) as store:
        migrate.upgrade(store)
        suffix = secrets.token_hex(3)
        ids = [f"{scenario}-demo-{suffix}" for scenario in DEMO_SCENARIOS]
        now = utcnow()
        store.add_predictions(ids, now=now, first_poll_at=now)

    config = SimConfig(queue_seconds=0.5, run_median_seconds=3.0, log_interval_seconds=0.5)
    with SimulatorThread(config) as sim:
        click.echo(f"simulator at {sim.base_url}; polling {len(ids)} predictions until they end")
        settings = Settings.build(
            database_url=database_url, api_base=sim.base_url, api_key="", poll_min=0.5, poll_max=3.0
        )
        asyncio.run(run_daemon(settings, exit_when_done=True))

    with open_store(database_url) as store:
        rows = [
            {
                "id": d.prediction.id,
                "status": d.prediction.status,
                "tracking": d.prediction.tracking,
                "transitions": " > ".join(t.to_status for t in d.transitions),
                "log chunks": len(d.logs),
                "polls": d.prediction.poll_count,
                "errors": d.prediction.error_count,
            }
            for d in (store.get_detail(i) for i in ids)
            if d is not None
        ]
    click.echo()
    emit_rows(rows, list(rows[0]), "table")
    me = _how_i_was_called()
    click.echo(
        f"\nEverything is in {database_url}. Try:\n"
        f"  {me} show {ids[0]} --database-url {database_url}\n"
        f"  {me} list --database-url {database_url} --format csv"
    )


def _how_i_was_called() -> str:
    """`tracker`, or the path it was run from when that is not on PATH."""
    argv0 = sys.argv[0]
    if os.path.basename(argv0) == "tracker" and shutil.which("tracker") != os.path.abspath(argv0):
        return os.path.relpath(argv0)
    return "tracker"

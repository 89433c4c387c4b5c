"""`tracker demo`: the whole loop against the bundled simulator, no API key needed.

``tracker demo`` registers one prediction per scenario and polls them to the end;
``tracker demo --push`` runs `tracker serve` (with its daemon) instead, creates
predictions on the simulator with their ``webhook`` pointing at the service, and
lets the pushes (some lost, repeated or late) and the safety-net polls track them.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import os
import secrets
import shutil
import sys
import time
from collections import Counter
from typing import Any

import click
import httpx

from tracker import eventloop
from tracker.cli.common import emit_rows, open_store
from tracker.cli.daemon import run_daemon
from tracker.config import ARCHIVE_HOSTS_VARIABLE, Settings
from tracker.domain import is_terminal
from tracker.logsetup import configure_logging
from tracker.net.policy import parse_policy
from tracker.service.push import PUSH_PATH
from tracker.service.run import Listening, serve
from tracker.simulator import PushRecord, SimConfig, Simulator, SimulatorThread
from tracker.store import migrate
from tracker.store.engine import sqlite_file
from tracker.store.pushes import PushOutcome
from tracker.store.store import Store
from tracker.timeparse import utcnow

#: one prediction per simulator scenario worth watching
DEMO_SCENARIOS = (
    "ok",
    "multi",
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
#: where the demo archives output files when its database is not a SQLite file
DEMO_ARCHIVE = "tracker-demo-archive"
#: predictions the push demo creates on the simulator
PUSH_DEMO_COUNT = 8
#: the push demo's --poll-max: how often the safety net polls a pushed prediction (s)
PUSH_DEMO_POLL_MAX = 3.0
#: the push demo gives up waiting after this long (seconds)
PUSH_DEMO_TIMEOUT = 120.0


@click.command("demo")
@click.option(
    "--database-url",
    default=DEMO_DATABASE_URL,
    show_default=True,
    help="Where the demo writes (its own file: real data is never polled against the simulator).",
)
@click.option("--quiet", is_flag=True, help="Only print the final table.")
@click.option(
    "--push",
    is_flag=True,
    help="Run `tracker serve` and let the simulator push (its webhooks, some lost,"
    " repeated or late) instead of registering predictions by hand.",
)
def demo_command(database_url: str, quiet: bool, push: bool) -> None:
    """Start the simulator, register one prediction per scenario, poll until all end.

    With --push: start the simulator and `tracker serve` (with its daemon), create
    predictions on the simulator whose webhook is the service's /webhooks/upstream,
    and show them tracked to the end by the pushes and the safety-net polls.
    """
    configure_logging(level=logging.WARNING if quiet else logging.INFO)
    if push:
        push_demo(database_url)
        return
    with open_store(database_url, check=False) as store:
        migrate.upgrade(store)
        suffix = secrets.token_hex(3)
        ids = [f"{scenario}-demo-{suffix}" for scenario in DEMO_SCENARIOS]
        now = utcnow()
        store.add_predictions(ids, now=now, first_poll_at=now)

    config = SimConfig(queue_seconds=0.5, run_median_seconds=3.0, log_interval_seconds=0.5)
    archive = demo_archive(database_url)
    with SimulatorThread(config) as sim:
        click.echo(f"simulator at {sim.base_url}; polling {len(ids)} predictions until they end")
        settings = Settings.build(
            database_url=database_url,
            api_base=sim.base_url,
            api_key="",
            poll_min=0.5,
            poll_max=3.0,
            archive_url=archive,
            # the simulator serves its output files on loopback
            archive_allowed_hosts=parse_policy("loopback", ARCHIVE_HOSTS_VARIABLE),
        )
        eventloop.run(run_daemon(settings, exit_when_done=True))

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
                "files archived": sum(1 for a in d.artifacts if a.state == "stored"),
            }
            for d in (store.get_detail(i) for i in ids)
            if d is not None
        ]
    click.echo()
    emit_rows(rows, list(rows[0]), "table")
    me = _how_i_was_called()
    stored = sum(int(row["files archived"] or 0) for row in rows)
    click.echo(
        f"\n{stored} output files archived in {archive} before the upstream removes them."
        f"\nEverything is in {database_url}. Try:\n"
        f"  {me} show {ids[0]} --database-url {database_url}\n"
        f"  {me} list --database-url {database_url} --format csv"
    )


def demo_archive(database_url: str) -> str:
    """Where the demo archives output files: a folder beside its SQLite file."""
    path = sqlite_file(database_url)
    if path is None:
        return DEMO_ARCHIVE
    stem, _ = os.path.splitext(path)
    return f"{stem}-archive"


def push_demo(database_url: str) -> None:
    """`tracker demo --push` (see ``demo_command``)."""
    with open_store(database_url, check=False) as store:
        migrate.upgrade(store)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    config = SimConfig(
        queue_seconds=0.5,
        run_median_seconds=6.0,
        run_sigma=0.3,
        log_interval_seconds=0.5,
        webhook_secret=secret,
        push_drop=0.3,
        push_repeat=0.1,
        push_late=0.1,
        push_late_seconds=5.0,
        seed=secrets.randbelow(2**31),
    )
    settings = Settings.build(  # polling the simulator (api_base), once it listens
        database_url=database_url,
        api_key="",
        poll_min=0.5,
        poll_max=PUSH_DEMO_POLL_MAX,
        upstream_webhook_secret=secret,
    )
    ids, pushes = eventloop.run(_push_loop(settings, config))
    with open_store(database_url) as store:
        rows = [_push_row(store, pid, [p for p in pushes if p.prediction_id == pid]) for pid in ids]
    click.echo()
    emit_rows(rows, list(rows[0]), "table")
    fates = Counter(p.fate for p in pushes)
    ended_by_poll = sum(1 for row in rows if row["ended by"] == "poll")
    click.echo(
        f"\n{len(pushes)} pushes: {fates['dropped']} lost, {fates['repeated']} sent twice"
        f" (the second answered as a duplicate), {fates['late']} held back until after the end"
        f" (recorded stale when older than what was stored).\n"
        f"{sum(row['polls'] for row in rows)} polls in all: a pushed prediction is polled every"
        f" {PUSH_DEMO_POLL_MAX:g} s (--poll-max) only; {ended_by_poll} of {len(rows)} ended by"
        " a poll, their end's pushes lost.\n"
        f"\nEverything is in {database_url}, every push in its upstream_pushes table. Try:\n"
        f"  {_how_i_was_called()} show {ids[0]} --database-url {database_url}"
    )


async def _push_loop(settings: Settings, config: SimConfig) -> tuple[list[str], list[PushRecord]]:
    """Run the simulator and the service until every prediction created has ended."""
    simulator = Simulator(config)
    await simulator.start()
    settings = dataclasses.replace(settings, api_base=simulator.base_url)
    stop = asyncio.Event()
    ready: asyncio.Future[Listening] = asyncio.get_running_loop().create_future()
    service = asyncio.create_task(
        serve(settings, host="127.0.0.1", port=0, on_listening=ready.set_result, stop=stop)
    )
    try:
        either: list[asyncio.Future[Any]] = [service, ready]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            service.result()  # raises why it could not start
            raise click.ClickException("tracker serve stopped before it listened")
        hook = ready.result().url + PUSH_PATH
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            ids = [await _create(http, simulator.base_url, hook, n) for n in range(PUSH_DEMO_COUNT)]
        click.echo(
            f"simulator at {simulator.base_url} pushes to {hook}; created {len(ids)}"
            " predictions there, none registered here: waiting for their ends"
        )
        await _until_ended(settings.database_url, ids, simulator)
        return ids, simulator.pushes()
    finally:
        stop.set()
        await asyncio.gather(service, return_exceptions=True)
        await simulator.stop()


async def _create(http: httpx.AsyncClient, base_url: str, hook: str, n: int) -> str:
    answer = await http.post(
        f"{base_url}/predictions",
        json={"version": "demo", "input": {"prompt": f"demo {n}"}, "webhook": hook},
    )
    answer.raise_for_status()
    prediction_id: str = answer.json()["id"]
    return prediction_id


async def _until_ended(database_url: str, ids: list[str], simulator: Simulator) -> None:
    """Until every prediction is done here and every held-back push was sent."""
    store = Store.from_url(database_url)
    give_up = time.monotonic() + PUSH_DEMO_TIMEOUT
    try:
        while time.monotonic() < give_up:
            done = await asyncio.to_thread(_count_done, store, ids)
            late = [p for p in simulator.pushes() if p.fate == "late"]
            if done == len(ids) and all(p.attempts for p in late):
                return
            await asyncio.sleep(0.5)
    finally:
        store.close()
    raise click.ClickException(f"not every prediction ended within {PUSH_DEMO_TIMEOUT:g} s")


def _count_done(store: Store, ids: list[str]) -> int:
    details = (store.get_detail(pid) for pid in ids)
    return sum(1 for d in details if d is not None and d.prediction.tracking == "done")


def _push_row(store: Store, pid: str, pushes: list[PushRecord]) -> dict[str, Any]:
    detail = store.get_detail(pid)
    assert detail is not None
    receipts = store.push_receipts(pid)
    outcomes = Counter(r.outcome for r in receipts)
    ended_by_push = any(
        is_terminal(r.status) and r.outcome == PushOutcome.APPLIED for r in receipts
    )
    return {
        "id": pid,
        "status": detail.prediction.status,
        "transitions": " > ".join(t.to_status for t in detail.transitions),
        "pushed": sum(1 for p in pushes if p.fate != "dropped"),
        "lost": sum(1 for p in pushes if p.fate == "dropped"),
        "applied": outcomes[PushOutcome.APPLIED],
        "stale": outcomes[PushOutcome.STALE],
        "polls": detail.prediction.poll_count,
        "ended by": "push" if ended_by_push else "poll",
    }


def _how_i_was_called() -> str:
    """`tracker`, or the path it was run from when that is not on PATH."""
    argv0 = sys.argv[0]
    if os.path.basename(argv0) == "tracker" and shutil.which("tracker") != os.path.abspath(argv0):
        return os.path.relpath(argv0)
    return "tracker"

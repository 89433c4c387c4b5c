"""``tracker simulate``: serve the upstream simulator until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys

import click

from tracker import eventloop
from tracker.simulator import SimConfig, Simulator

_SIZE = re.compile(r"(\d+)\s*([KMG]?)(?:I?B)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


class _Size(click.ParamType):
    """A size in bytes: ``1048576``, ``512K``, ``64M``, ``1G`` (binary units)."""

    name = "size"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        match = _SIZE.fullmatch(str(value).strip())
        if match is None:
            self.fail(f"{value!r} is not a size like 1048576, 512K, 64M or 1G", param, ctx)
        return int(match[1]) * _UNITS[match[2].upper()]


@click.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--api-key",
    envvar="TRACKER_SIM_API_KEY",
    show_envvar=True,
    default=None,
    help="Require 'Authorization: Bearer KEY' on the API (default: no auth).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of every random choice.")
@click.option(
    "--run-median",
    default=4.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Median run time in seconds (log-normal).",
)
@click.option(
    "--queue-seconds",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Mean time in 'starting' in seconds (exponential).",
)
@click.option(
    "--rate-limit",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Requests per second allowed (global token bucket); excess gets 429.",
)
@click.option(
    "--fault-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Probability that any request gets a random 500 or 502.",
)
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Time scale: 2 makes every duration half as long.",
)
@click.option(
    "--webhook-secret",
    envvar="TRACKER_SIM_WEBHOOK_SECRET",
    show_envvar=True,
    default=None,
    metavar="whsec_...",
    help="Standard Webhooks secret signing the pushes to a prediction's 'webhook' "
    "(without it, creating a prediction with a webhook gets 422).",
)
@click.option(
    "--push-drop",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of pushes never sent.",
)
@click.option(
    "--push-repeat",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of pushes sent twice, with the same webhook-id.",
)
@click.option(
    "--push-late",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of pushes (never 'completed') held back and sent, with their old body, "
    "after the prediction's 'completed' push.",
)
@click.option(
    "--data-removed-after",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Seconds after a prediction's end when 'data_removed' turns true, 'output' "
    "null and its output files answer 404.",
)
@click.option(
    "--bigfile-size",
    default="64M",
    show_default=True,
    type=_Size(),
    help="Size of the output file of a 'bigfile-...' prediction (bytes, or with K, M, G: "
    "binary units), streamed in 64 KiB chunks.",
)
def simulate_command(
    host: str,
    port: int,
    api_key: str | None,
    seed: int,
    run_median: float,
    queue_seconds: float,
    rate_limit: float | None,
    fault_rate: float,
    speed: float,
    webhook_secret: str | None,
    push_drop: float,
    push_repeat: float,
    push_late: float,
    data_removed_after: float,
    bigfile_size: int,
) -> None:
    """Serve a fake Replicate-compatible prediction API for trying the tracker.

    Every prediction ID exists; the prefix before the first '-' picks its fate:
    ok, fail, cancel, abort, gone, flaky, junk, ratelimit, weird, slow, unicode,
    biglogs, forever, quick, multi, bigfile, flakyfile (e.g. GET
    /v1/predictions/fail-1). The full guide, with the control API under /_sim/,
    is the documentation of the tracker.simulator module:
    python -m pydoc tracker.simulator

    \b
    Output files: a succeeded prediction's output is the URL of a file this
    simulator serves, http://HOST:PORT/files/ID/0/output.png (a small PNG
    image); multi-... gives a list of 4 such URLs; bigfile-... one
    /files/ID/0/output.bin of --bigfile-size bytes (application/octet-stream);
    flakyfile-... answers the first request for its file 503 and cuts the
    second off halfway through the body. Files answer 404 before success and
    from --data-removed-after seconds after the end; they need no API key and
    are neither rate limited nor faulted by --fault-rate.

    \b
    Pushes: a prediction created with {"webhook": URL} (POST /v1/predictions,
    or /v1/models/OWNER/NAME/predictions) gets the prediction object POSTed to
    URL on start, new logs (at most every 0.5 s), output and completion, as
    Replicate does; "webhook_events_filter" picks among start, output, logs,
    completed (default: all). Each push is signed per Standard Webhooks with
    --webhook-secret; failed deliveries are retried with the same webhook-id.
    URL must be on this machine (127.0.0.0/8, ::1, localhost), else 422.
    --push-drop, --push-repeat and --push-late (together at most 1) make the
    pushes unreliable, per prediction, reproducibly under --seed.

    Prints 'simulator listening on URL' and serves until SIGINT or SIGTERM.
    """
    try:
        config = SimConfig(
            queue_seconds=queue_seconds,
            run_median_seconds=run_median,
            api_key=api_key or None,
            rate_limit_rps=rate_limit,
            seed=seed,
            fault_rate=fault_rate,
            speed=speed,
            webhook_secret=webhook_secret or None,
            push_drop=push_drop,
            push_repeat=push_repeat,
            push_late=push_late,
            data_removed_after_seconds=data_removed_after,
            bigfile_bytes=bigfile_size,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        eventloop.run(_serve(Simulator(config), host, port))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from exc


async def _serve(simulator: Simulator, host: str, port: int) -> None:
    """Run ``simulator`` until SIGINT or SIGTERM."""
    base_url = await simulator.start(host, port)
    try:
        click.echo(f"simulator listening on {base_url}")
        sys.stdout.flush()
        await _wait_for_signal()
    finally:
        await simulator.stop()


async def _wait_for_signal() -> None:
    """Return when the process gets SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        for signum in signals:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)

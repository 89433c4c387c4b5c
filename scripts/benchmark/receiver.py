"""The webhook receiver: an aiohttp server in its own process that answers every
POST /hook/{tag} with 200 at once and remembers when it arrived (GET /records?tag=)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from typing import Any

from .harness import module_command, start_listening


def start_receiver() -> tuple[subprocess.Popen[str], str]:
    """The receiver in its own process, and its URL."""
    cmd, env = module_command("benchmark.receiver", "0")
    return start_listening(cmd, "receiver", env)


def serve_receiver(port: int) -> None:
    """Answer every POST /hook/{tag} with 200 at once, remembering when it arrived."""
    from aiohttp import web

    records: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        arrival = time.time()
        body = await request.read()
        try:
            prediction = json.loads(body)
            prediction_id, status = prediction.get("id"), prediction.get("status")
        except (ValueError, AttributeError):
            prediction_id = status = None
        records.append(
            {
                "tag": request.match_info["tag"],
                "arrival": arrival,
                "prediction_id": prediction_id,
                "status": status,
                "event": request.headers.get("tracker-event"),
                "webhook_id": request.headers.get("webhook-id"),
            }
        )
        return web.Response(text="ok")

    async def get_records(request: web.Request) -> web.Response:
        tag = request.query.get("tag")
        return web.json_response([r for r in records if tag is None or r["tag"] == tag])

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/hook/{tag}", hook)
        app.router.add_get("/records", get_records)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        await web.SockSite(runner, sock, backlog=1024).start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        print(f"receiver listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
        try:
            await stopping.wait()
        finally:
            await runner.cleanup()

    asyncio.run(serve())


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m benchmark.receiver",
        description="Serve the benchmark's webhook receiver (start_receiver runs it).",
    )
    parser.add_argument("port", type=int, help="port on 127.0.0.1 (0: any free port)")
    serve_receiver(parser.parse_args(argv).port)


if __name__ == "__main__":
    main()

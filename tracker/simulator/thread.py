"""A :class:`~tracker.simulator.server.Simulator` in a background thread, for synchronous code."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tracker.simulator.files import FileRequest
from tracker.simulator.push import PushRecord
from tracker.simulator.scenarios import PredictionPlan, SimConfig
from tracker.simulator.server import RequestRecord, Simulator

_T = TypeVar("_T")

#: seconds :class:`SimulatorThread` waits for the server to start or stop
_THREAD_TIMEOUT = 10.0


class SimulatorThread:
    """A :class:`Simulator` on its own event loop in a daemon thread, for synchronous code.

    Use it as a context manager::

        with SimulatorThread(SimConfig(speed=10)) as sim:
            httpx.get(f"{sim.base_url}/predictions/quick-1")
    """

    def __init__(
        self, config: SimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.simulator = Simulator(config)
        self._host = host
        self._port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> str:
        """Start the thread and the server; return the API base URL."""
        if self._thread is not None:
            raise RuntimeError("the simulator thread is already running")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._serve, name="tracker-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(_THREAD_TIMEOUT):
            raise RuntimeError("the simulator did not start in time")
        if self._error is not None:
            self._thread.join(_THREAD_TIMEOUT)
            self._thread = None
            raise self._error
        return self.base_url

    def stop(self) -> None:
        """Stop the server and wait for the thread to end."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        thread.join(_THREAD_TIMEOUT)

    @property
    def base_url(self) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return self.simulator.base_url

    def define(self, id: str, plan: PredictionPlan) -> None:
        """:meth:`Simulator.define`, run on the server's loop."""
        self._call(self.simulator.define, id, plan)

    def requests(self, id: str | None = None) -> list[RequestRecord]:
        """:meth:`Simulator.requests` (a snapshot copy)."""
        return self._call(self.simulator.requests, id)

    def request_count(self, id: str | None = None) -> int:
        """:meth:`Simulator.request_count`."""
        return self._call(self.simulator.request_count, id)

    def cancels(self, id: str | None = None) -> list[RequestRecord]:
        """:meth:`Simulator.cancels`."""
        return self._call(self.simulator.cancels, id)

    def file_requests(self, id: str | None = None) -> list[FileRequest]:
        """:meth:`Simulator.file_requests` (a snapshot copy)."""
        return self._call(self.simulator.file_requests, id)

    def file_request_count(self, id: str | None = None) -> int:
        """:meth:`Simulator.file_request_count`."""
        return self._call(self.simulator.file_request_count, id)

    def pushes(self, id: str | None = None) -> list[PushRecord]:
        """:meth:`Simulator.pushes` (copies)."""
        return self._call(self.simulator.pushes, id)

    def _call(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run ``function(*args)`` on the server's loop and return its result."""
        loop = self._loop
        if loop is None or self._thread is None:
            return function(*args)

        async def call() -> _T:
            return function(*args)

        coroutine: Coroutine[Any, Any, _T] = call()
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(_THREAD_TIMEOUT)

    def _serve(self) -> None:
        """Thread body: run the server until :meth:`stop`."""
        asyncio.run(self._main())

    async def _main(self) -> None:
        """Start the server, signal readiness, wait for the stop request, clean up."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            await self.simulator.start(self._host, self._port)
        except BaseException as exc:
            self._error = exc
            return
        finally:
            self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self.simulator.stop()
            self._loop = None

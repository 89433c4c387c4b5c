"""The commands' event loop: uvloop's, installed with the tracker."""

from __future__ import annotations

import asyncio

import pytest

from tracker import eventloop


def test_run_uses_uvloop_and_returns_the_result() -> None:
    import uvloop

    async def which() -> tuple[type, int]:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()), await asyncio.to_thread(lambda: 42)

    loop_type, answer = eventloop.run(which())
    assert issubclass(loop_type, uvloop.Loop) and answer == 42


def test_run_raises_what_the_coroutine_raises() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        eventloop.run(fails())

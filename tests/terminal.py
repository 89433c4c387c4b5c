"""Running a command in a pseudo-terminal, as an operator would, for tests where the
terminal matters (what is shown only to people, prompts, the width of a screen)."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: escape sequences a terminal interprets (colours, bold, cursor moves)
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")


@dataclass(frozen=True)
class Screen:
    returncode: int
    raw: str  #: what the terminal received, escape sequences included

    @property
    def text(self) -> str:
        """What a person sees: escape sequences removed, ``\\r\\n`` as ``\\n``."""
        return ANSI.sub("", self.raw).replace("\r\n", "\n")


def run_in_terminal(
    args: Sequence[str],
    *,
    env: dict[str, str],
    columns: int = 100,
    rows: int = 50,
    answer: str | None = None,
    after: str | None = None,
    timeout: float = 60,
    popen: Callable[..., subprocess.Popen[Any]] = subprocess.Popen,
) -> Screen:
    """Run ``args`` with stdin, stdout and stderr on one pseudo-terminal of this size;
    type ``answer`` once ``after`` has appeared on the screen (or at once). ``popen``
    starts it: tests.clirun.forked forks `python -m tracker ...` instead."""
    main_fd, side_fd = os.openpty()
    fcntl.ioctl(side_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.setdefault("TERM", "xterm-256color")
    process = popen(
        list(args), stdin=side_fd, stdout=side_fd, stderr=side_fd, env=env, start_new_session=True
    )
    os.close(side_fd)
    received = b""
    pending = answer
    deadline = time.monotonic() + timeout
    try:
        while True:
            if pending is not None and (after is None or after.encode() in received):
                os.write(main_fd, pending.encode())
                pending = None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{args} still running after {timeout} s: {received!r}")
            ready, _, _ = select.select([main_fd], [], [], 0.1)
            if not ready:
                if process.poll() is not None and not _readable(main_fd):
                    break
                continue
            try:
                chunk = os.read(main_fd, 65536)
            except OSError as exc:  # EIO: every writer of the terminal has closed it
                if exc.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            received += chunk
    finally:
        os.close(main_fd)
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
    return Screen(process.returncode, received.decode("utf-8", errors="replace"))


def _readable(fd: int) -> bool:
    ready, _, _ = select.select([fd], [], [], 0)
    return bool(ready)

"""Run a `tracker` command in the test process, as `python -m tracker` would run it.

Starting a Python process costs about a second of CPU on this machine (imports of
SQLAlchemy, click, rich), and the suite runs hundreds of short commands; the
daemon, the simulator and anything that needs signals or a terminal still run as
real processes. What a command sees is what it sees in a process of its own: the
given environment and no other, stdin from ``input`` (never a terminal), stdout
and stderr captured as bytes and decoded as ``subprocess.run(text=True)`` decodes
them, and the exit code of `tracker.cli.main.main`, the console script's own
entry point.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

from tracker.cli.main import main

#: commands that end by themselves and need neither signals nor a terminal
IN_PROCESS_COMMANDS = frozenset(
    {"add", "completion", "db", "deliveries", "forget", "list", "prune", "report", "show", "status"}
)


def runs_in_process(args: Sequence[str]) -> bool:
    return bool(args) and args[0] in IN_PROCESS_COMMANDS


def run_tracker(
    args: Sequence[str], env: Mapping[str, str], input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`tracker ARGS` in this process with exactly ``env`` as its environment."""
    stdout, stderr = _Buffer("<stdout>"), _Buffer("<stderr>")
    ours = (_text(_Buffer("<stdin>", (input or "").encode())), _text(stdout), _text(stderr))
    theirs = (sys.stdin, sys.stdout, sys.stderr)
    saved_env = dict(os.environ)
    sys.stdin, sys.stdout, sys.stderr = ours
    os.environ.clear()
    os.environ.update(env)
    try:
        code = _exit_code(list(args))
    finally:
        sys.stdin, sys.stdout, sys.stderr = theirs
        os.environ.clear()
        os.environ.update(saved_env)
    output, errors = _decoded(stdout), _decoded(stderr)
    for stream in ours:
        stream.close()
    return subprocess.CompletedProcess(
        [sys.executable, "-m", "tracker", *args], code, output, errors
    )


class _Buffer(io.BytesIO):
    """A byte stream named as a process's standard streams are."""

    def __init__(self, name: str, data: bytes = b"") -> None:
        super().__init__(data)
        self.name = name


def _exit_code(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    return 0


def _text(buffer: io.BytesIO) -> io.TextIOWrapper:
    # What a process gets for a pipe: UTF-8, no line buffering, not a terminal.
    return io.TextIOWrapper(buffer, encoding="utf-8", errors="strict", write_through=True)


def _decoded(buffer: io.BytesIO) -> str:
    # As subprocess.run(text=True): UTF-8 with universal newlines.
    return io.TextIOWrapper(io.BytesIO(buffer.getvalue()), encoding="utf-8").read()

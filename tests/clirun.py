"""Run a `tracker` command as `python -m tracker` would run it, without starting Python.

Starting a Python process costs about a second of CPU on this machine (imports of
SQLAlchemy, aiohttp, click, rich), and the suite runs hundreds of commands. So:

* run_tracker: short commands (IN_PROCESS_COMMANDS) in the test process itself.
  What a command sees is what it sees in a process of its own: the given
  environment and no other, stdin from ``input`` (never a terminal), stdout and
  stderr captured as bytes and decoded as ``subprocess.run(text=True)`` decodes
  them, and the exit code of `tracker.cli.main.main`, the console script's own
  entry point.
* ForkedTracker, fork_tracker, forked: anything else (the daemon with --once or
  --exit-when-done, or until a signal stops it; serve; commands in a terminal) in a
  process of its own that a fork server forks (as multiprocessing's forkserver
  does): its own pid, signals, file locks, exit code, environment and working
  directory, stdin/stdout/stderr on pipes, files or a terminal, started in
  milliseconds instead of a second. The fork server is a `python` started once per
  test process that imports every command and never opens a database, a socket or
  a thread; each child makes its standard streams as a new interpreter does and
  ends with ``os._exit`` (at exit it waits for its threads and flushes, as the
  interpreter would).

What needs a new interpreter (its memory measured, `python -m tracker` and the
console script themselves, the scripts) still starts one.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import json
import logging
import os
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tracker
from tracker.cli.main import COMMANDS, main

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


# -- in a process forked by the fork server -----------------------------------------------


class ForkedTracker(subprocess.Popen[str]):
    """`python -m tracker ARGS` as subprocess.Popen runs it (pipes, files or fds as
    stdin/stdout/stderr, ``env``, ``cwd``, ``start_new_session``; poll, wait,
    communicate, send_signal, kill), the child forked by this test process's fork
    server instead of a new interpreter. Text is UTF-8 both ways; stdin is empty
    unless given."""

    def __init__(self, args: Sequence[str], **kwargs: Any) -> None:
        self.tracker_args = list(args)
        self._status: int | None = None  # the pipe the fork server writes the exit code to
        self._status_lock = threading.Lock()
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.pop("text", None)
        super().__init__(
            [sys.executable, "-m", "tracker", *args], text=True, encoding="utf-8", **kwargs
        )

    def _execute_child(  # type: ignore[override]
        self,
        args: Any,
        executable: Any,
        preexec_fn: Any,
        close_fds: Any,
        pass_fds: Any,
        cwd: str | os.PathLike[str] | None,
        env: Mapping[str, str] | None,
        startupinfo: Any,
        creationflags: Any,
        shell: Any,
        p2cread: int,
        p2cwrite: int,
        c2pread: int,
        c2pwrite: int,
        errread: int,
        errwrite: int,
        restore_signals: Any,
        gid: Any,
        gids: Any,
        uid: Any,
        umask: Any,
        start_new_session: bool,
        process_group: Any,
    ) -> None:
        request = {
            "args": self.tracker_args,
            "env": dict(os.environ if env is None else env),
            "cwd": None if cwd is None else os.fspath(cwd),
            "new_session": bool(start_new_session),
        }
        # -1: the child inherits this process's stdin, stdout or stderr
        ends = zip((p2cread, c2pwrite, errwrite), (0, 1, 2), strict=True)
        fds = [fd if fd != -1 else own for fd, own in ends]
        status_read, status_write = os.pipe()
        try:
            self.pid = _fork_server().start(request, [*fds, status_write])
        except BaseException:
            os.close(status_read)
            raise
        finally:
            os.close(status_write)
            # The child's ends of the pipes Popen made (not a file given as stdout).
            self._close_pipe_fds(  # type: ignore[attr-defined]
                p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite
            )
        self._status = status_read
        self._child_created = True

    def _internal_poll(self, _deadstate: Any = None, *_args: Any, **_kwargs: Any) -> int | None:
        # As Popen's: None while another thread waits for it.
        if self.returncode is None and self._status_lock.acquire(False):
            try:
                if self._status is not None and select.select([self._status], [], [], 0)[0]:
                    self._read_status()
            finally:
                self._status_lock.release()
        return self.returncode

    def _wait(self, timeout: float | None) -> int:
        with self._status_lock:
            if self.returncode is None and self._status is not None:
                if not select.select([self._status], [], [], timeout)[0]:
                    raise subprocess.TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
                self._read_status()
        return self.returncode  # type: ignore[return-value]

    def _read_status(self) -> None:
        """The exit code the fork server wrote once it reaped the child."""
        assert self._status is not None
        chunks = []
        while chunk := os.read(self._status, 64):
            chunks.append(chunk)
        os.close(self._status)
        self._status = None
        text = b"".join(chunks).decode()
        # Nothing written: the fork server ended first (and killed the child).
        self.returncode = int(text) if text else -signal.SIGKILL


def forked(command: Sequence[str], **kwargs: Any) -> ForkedTracker:
    """subprocess.Popen(command, ...) for a command `python -m tracker ARGS`, forked
    (for tests.terminal.run_in_terminal)."""
    prefix = [sys.executable, "-m", "tracker"]
    if list(command[:3]) != prefix:
        raise ValueError(f"not {prefix}: {command}")
    return ForkedTracker(command[3:], **kwargs)


def fork_tracker(
    args: Sequence[str],
    env: Mapping[str, str],
    input: str | None = None,
    timeout: float | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """subprocess.run(`python -m tracker ARGS`, capture_output=True, text=True, ...) in a
    ForkedTracker; stdin is ``input`` or empty."""
    stdin = subprocess.DEVNULL if input is None else subprocess.PIPE
    with ForkedTracker(
        args, env=env, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        try:
            output, errors = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, output, errors)


class _ForkServerClient:
    """This process's end of its fork server. (Forking the test process itself would
    hand the child its database connections, servers, threads, monkeypatches and
    pytest's warning filters and log capture; SQLite, for one, keeps its locks and
    WAL index per process and file, so a child would share the parent's.)"""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"import {__name__} as m; m._serve({theirs.fileno()})"],
            pass_fds=[theirs.fileno()],
            cwd=Path(__file__).resolve().parents[1],
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.sock = ours
        self.lock = threading.Lock()

    def alive(self) -> bool:
        return self.process.poll() is None

    def start(self, request: dict[str, Any], fds: list[int]) -> int:
        """Fork a child for ``request`` with ``fds`` as its stdin, stdout and stderr and
        the pipe to write its exit code to; its pid."""
        with self.lock:
            socket.send_fds(self.sock, [json.dumps(request).encode()], fds)
            reply = self.sock.recv(4096).decode()
        if not reply.isdigit():
            raise OSError(f"the fork server could not start {request['args']}: {reply!r}")
        return int(reply)

    def close(self) -> None:
        self.sock.close()  # the server kills what is left of its children, and exits
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_client: _ForkServerClient | None = None
_client_lock = threading.Lock()


def _fork_server() -> _ForkServerClient:
    global _client
    with _client_lock:
        if _client is None or not _client.alive():
            _client = _ForkServerClient()
        return _client


def stop_fork_server() -> None:
    """End this process's fork server, if it started one (at pytest_unconfigure: the
    CPU time of its children counts in this process's then)."""
    global _client
    with _client_lock:
        if _client is not None:
            _client.close()
            _client = None


# -- the fork server, in an interpreter of its own ----------------------------------------

#: what a child would import anyway: the commands and both database drivers
_PRELOAD = (
    *sorted({target.partition(":")[0] for target in COMMANDS.values()}),
    "sqlalchemy.dialects.sqlite.pysqlite",
    "sqlalchemy.dialects.postgresql.psycopg",
    "tracker.store.migrate",
)


def _serve(fd: int) -> None:
    """Fork a child per request on socket ``fd`` until it closes; once a child has
    exited, write its exit code to the pipe that came with its request. When the
    socket closes (the test process ended), kill the children still running."""
    for module in _PRELOAD:
        importlib.import_module(module)
    gc.collect()
    gc.freeze()  # a child's collections do not touch (and copy) the imported objects
    sock = socket.socket(fileno=fd)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    status_pipes: dict[int, int] = {}
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is not sock:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_read, 4096):
                        pass
                continue
            message, fds, _flags, _address = socket.recv_fds(sock, 1 << 20, 4)
            if not message:  # the test process is done (or gone)
                for pid in status_pipes:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                os._exit(0)
            try:
                pid = os.fork()
            except OSError as exc:
                for each in fds:
                    os.close(each)
                sock.send(f"fork failed: {exc}".encode())
                continue
            if pid == 0:
                for other in (sock.fileno(), wake_read, wake_write, *status_pipes.values()):
                    os.close(other)
                _child(json.loads(message), fds)  # never returns
            for each in fds[:3]:
                os.close(each)
            status_pipes[pid] = fds[3]
            sock.send(str(pid).encode())
        _reap(status_pipes)


def _reap(status_pipes: dict[int, int]) -> None:
    """Tell the exit code of every child that has exited."""
    while status_pipes:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        pipe = status_pipes.pop(pid, None)
        if pipe is not None:
            with contextlib.suppress(OSError):
                os.write(pipe, str(os.waitstatus_to_exitcode(status)).encode())
            os.close(pipe)


def _child(request: dict[str, Any], fds: list[int]) -> None:
    """In a forked child: become `python -m tracker ARGS` as it starts, run, exit."""
    code = 1
    try:
        stdin, stdout, stderr, status = fds
        os.close(status)
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, target)
        for fd in {stdin, stdout, stderr} - {0, 1, 2}:
            os.close(fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if request["new_session"]:
            os.setsid()
        if request["cwd"] is not None:
            os.chdir(request["cwd"])
        env: dict[str, str] = request["env"]
        os.environ.clear()
        os.environ.update(env)
        time.tzset()
        _std_streams(unbuffered=bool(env.get("PYTHONUNBUFFERED")))
        args: list[str] = request["args"]
        sys.argv = [str(Path(tracker.__file__).with_name("__main__.py")), *args]
        code = _exit_code(args)
        with contextlib.suppress(Exception):
            threading._shutdown()  # type: ignore[attr-defined]  # as the interpreter ends
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code & 0xFF)


def _std_streams(*, unbuffered: bool) -> None:
    """New sys.stdin, stdout and stderr (and __stdin__...) on fds 0, 1 and 2, now the
    child's, as a new interpreter makes them: UTF-8, stdout line-buffered on a
    terminal only, stderr always. (The fork server's own may cache what its fds were.)"""
    streams: list[tuple[str, io.BufferedReader | io.BufferedWriter, str]] = [
        ("stdin", io.BufferedReader(io.FileIO(0, "r", closefd=False)), "strict")
    ]
    for fd, name, errors in ((1, "stdout", "strict"), (2, "stderr", "backslashreplace")):
        streams.append((name, io.BufferedWriter(io.FileIO(fd, "w", closefd=False)), errors))
    for name, buffer, errors in streams:
        stream = io.TextIOWrapper(
            buffer,
            encoding="utf-8",
            errors=errors,
            line_buffering=name == "stderr" or (name == "stdout" and buffer.isatty()),
            write_through=unbuffered and name != "stdin",
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)

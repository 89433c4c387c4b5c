"""docs/python.md stays true: its examples run, in order and as one session, against a
throwaway SQLite database, and each prints exactly what the page shows under it.

Every fenced block is tagged ``python`` (an example, run), ``text`` (what the example
just above it prints) or ``sh`` (command lines: ``tracker db upgrade`` is run, the
others are shown only). The examples under "### wait" need an upstream and a daemon,
as the page says, and so do those under "### cancel": the bundled simulator serves the
upstream for the whole page (in a thread here, ``tracker simulate`` there; the page's
session has ``TRACKER_API_BASE`` set to it, as the page says to export it), and while
those sections run ``tracker daemon`` polls it in its own process (forked:
tests/clirun.py); the daemon stops before the next section, so the rest of the page
sees a database that nothing else writes to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import os
import re
import shlex
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import docblocks
from tests.clirun import ForkedTracker, fork_tracker
from tests.docblocks import Block
from tracker import exceptions
from tracker.api import AsyncTracker, Tracker
from tracker.domain import Prediction
from tracker.simulator import SimConfig, SimulatorThread

DOC = Path(__file__).resolve().parents[2] / "docs" / "python.md"
DOC_TEXT = DOC.read_text(encoding="utf-8")
BLOCKS, HEADINGS = docblocks.parse(DOC_TEXT, DOC.name)
TAGS = {"python", "text", "sh"}
#: the headings whose examples run with a daemon (one after the other on the page)
WAITING = ("wait", "cancel")
#: what the page does not document as a method: lifecycle and configuration
NOT_METHODS = {"close", "settings", "database_url", "sync"}


def public_methods(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")} - NOT_METHODS


def table_names(heading_text: str, first_cell: str) -> list[str]:
    """The backquoted names in the first column of the table headed ``| first_cell |``
    in the section under the heading ``heading_text``."""
    names: list[str] = []
    in_section = in_table = False
    for line in DOC_TEXT.splitlines():
        if title := docblocks.HEADING.match(line):
            in_section, in_table = title[2] == heading_text, False
            continue
        if not in_section or not line.startswith("|"):
            in_table = False
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == first_cell:
            in_table = True
        elif in_table and (name := re.fullmatch(r"`(\w+)`", cells[0])):
            names.append(name[1])
    return names


# -- the page ----------------------------------------------------------------------


def test_every_block_is_tagged_and_every_output_follows_an_example() -> None:
    for i, block in enumerate(BLOCKS):
        assert block.tag in TAGS, f"line {block.line}: tag {block.tag!r}, not one of {TAGS}"
        if block.tag == "text":
            assert i > 0 and BLOCKS[i - 1].tag == "python", (
                f"line {block.line}: an output block follows the example that prints it"
            )
    for heading in WAITING:
        assert any(b.heading == heading and b.tag == "python" for b in BLOCKS), heading


def test_every_method_has_its_section_and_the_async_tracker_has_them_all() -> None:
    documented = {name for level, text, _ in HEADINGS if level == 3 for name in text.split(" and ")}
    assert public_methods(Tracker) == documented
    assert public_methods(AsyncTracker) == public_methods(Tracker)
    for name in public_methods(AsyncTracker):
        method, sync = getattr(AsyncTracker, name), getattr(Tracker, name)
        if name.startswith("iter_"):  # an iterator becomes an async iterator
            assert inspect.isasyncgenfunction(method), name
            parameters = inspect.signature(method).parameters
            assert parameters == inspect.signature(sync).parameters, name
        else:
            assert inspect.iscoroutinefunction(method), name
            assert inspect.signature(method) == inspect.signature(sync), name


def test_the_records_table_lists_every_field_of_a_prediction() -> None:
    assert table_names("Records", "field") == [f.name for f in dataclasses.fields(Prediction)]


def test_the_errors_table_names_tracker_errors() -> None:
    names = table_names("Errors", "class")
    assert {"InvalidInput", "PredictionNotFound", "WaitTimeout", "NotTracked"} <= set(names)
    for name in names:
        assert issubclass(getattr(exceptions, name), exceptions.TrackerError), name


# -- the examples --------------------------------------------------------------------


@contextlib.contextmanager
def daemon_running(env: dict[str, str], log: Path) -> Iterator[None]:
    """`tracker daemon`, as the section on waiting starts it (in a process forked for
    it: tests/clirun.py)."""
    with log.open("w") as stderr:
        daemon = ForkedTracker(
            ["daemon"],
            env={**env, "TRACKER_POLL_MIN": "0.2", "TRACKER_POLL_MAX": "1"},
            cwd=os.getcwd(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            yield
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                code = daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
                raise
        assert code == 0, f"the daemon exited {code}:\n{log.read_text()}"


def run_example(block: Block, namespace: dict[str, Any]) -> str:
    """Run the block's code in the session's namespace; what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.body, f"{DOC.name}:{block.line}", "exec"), namespace)
    return out.getvalue()


def test_the_examples_print_what_the_page_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("TRACKER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRACKER_DATABASE_URL", f"sqlite:///{tmp_path / 'tracker.db'}")
    monkeypatch.chdir(tmp_path)
    config = SimConfig(queue_seconds=0.3, run_median_seconds=1.0, log_interval_seconds=0.2)
    with SimulatorThread(config) as sim:
        monkeypatch.setenv("TRACKER_API_BASE", sim.base_url)
        run_the_page(tmp_path)


def run_the_page(tmp_path: Path) -> None:
    """Every example in order, each printing what the page shows under it."""
    env = dict(os.environ)
    upgrades = [
        line.split("#")[0].strip()
        for b in BLOCKS
        if b.tag == "sh"
        for line in b.body.splitlines()
        if line.startswith("tracker db upgrade")
    ]
    assert upgrades, "the page says how to create the schema"
    for command in upgrades:
        upgraded = fork_tracker(shlex.split(command)[1:], env, timeout=120, cwd=os.getcwd())
        assert upgraded.returncode == 0, upgraded.stderr

    namespace: dict[str, Any] = {"__name__": "docs_python"}
    waiting: contextlib.ExitStack | None = None
    try:
        for i, block in enumerate(BLOCKS):
            if block.tag != "python":
                continue
            if block.heading in WAITING and waiting is None:
                waiting = contextlib.ExitStack()
                waiting.enter_context(daemon_running(env, tmp_path / "daemon.log"))
            elif block.heading not in WAITING and waiting is not None:
                waiting.close()  # the daemon stops here
                waiting = None
            after = BLOCKS[i + 1] if i + 1 < len(BLOCKS) else None
            shown = after.body + "\n" if after is not None and after.tag == "text" else ""
            printed = run_example(block, namespace)
            assert printed == shown, f"{DOC.name}, line {block.line}: printed\n{printed}"
    finally:
        if waiting is not None:
            waiting.close()
        leftover = namespace.get("tracker")
        if isinstance(leftover, Tracker):
            leftover.close()

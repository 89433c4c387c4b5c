"""`tracker completion bash|zsh|fish` prints click's completion script, and it completes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.clirun import fork_tracker

BIN = os.path.dirname(sys.executable)  # where the `tracker` entry point is installed
MARKS = {
    "bash": "complete -o nosort -F _tracker_completion tracker",
    "zsh": "#compdef tracker",
    "fish": "complete --no-files --command tracker",
}


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "_TRACKER"))}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", **extra}


def tracker(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return fork_tracker(args, environment(**extra), timeout=60)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_shell_gets_its_script(shell: str) -> None:
    result = tracker("completion", shell)
    assert result.returncode == 0, result.stderr
    assert MARKS[shell] in result.stdout
    assert "_TRACKER_COMPLETE" in result.stdout


def test_an_unknown_shell_is_a_usage_error() -> None:
    result = tracker("completion", "tcsh")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "Error: Invalid value for 'SHELL': 'tcsh' is not one of 'bash', 'zsh', 'fish'.\n"
    )


@pytest.mark.parametrize(
    ("words", "cword", "expected"),
    [
        ("tracker rep", "1", ["report"]),
        ("tracker d", "1", ["daemon", "db", "deliveries", "demo"]),
        ("tracker deliveries ", "2", ["list", "retry"]),
        ("tracker completion ", "2", ["bash", "zsh", "fish"]),
        ("tracker deliveries retry --since y", "4", ["yesterday"]),
        ("tracker show p-1 --logs ", "4", ["tail", "all", "none"]),
    ],
)
def test_the_protocol_answers(words: str, cword: str, expected: list[str]) -> None:
    result = tracker(_TRACKER_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=cword)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"plain,{word}" for word in expected]


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completes_with_the_script() -> None:
    script = tracker("completion", "bash").stdout
    session = (
        f"{script}\n"
        "COMP_WORDS=(tracker rep); COMP_CWORD=1; _tracker_completion tracker\n"
        'echo "first: ${COMPREPLY[*]}"\n'
        "COMPREPLY=(); COMP_WORDS=(tracker status --format ''); COMP_CWORD=3\n"
        "_tracker_completion tracker\n"
        'echo "second: ${COMPREPLY[*]}"\n'
    )
    result = subprocess.run(
        ["bash", "--norc", "--noprofile"],
        input=session,
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["first: report", "second: table json"]

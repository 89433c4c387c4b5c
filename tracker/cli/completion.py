"""`tracker completion SHELL`: the shell completion script (click's machinery)."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

#: the variable click reads to answer a completion request
COMPLETE_VAR = "_TRACKER_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


@click.command("completion")
@click.argument("shell", metavar="SHELL", type=click.Choice(SHELLS))
def completion_command(shell: str) -> None:
    """Print the completion script for SHELL: commands, options, and the values
    of choices (statuses, formats, report names) complete with TAB.

    \b
    bash  eval "$(tracker completion bash)"        (in ~/.bashrc; bash 4.4 or later)
    zsh   eval "$(tracker completion zsh)"         (in ~/.zshrc, after compinit)
    fish  tracker completion fish > ~/.config/fish/completions/tracker.fish
    """
    from tracker.cli.main import cli  # the whole command tree, loaded lazily

    completion_class = get_completion_class(shell)
    assert completion_class is not None  # every name in SHELLS is click's own
    script = completion_class(cli, {}, "tracker", COMPLETE_VAR).source()
    click.echo(script, nl=not script.endswith("\n"))

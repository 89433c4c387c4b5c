"""The `tracker` command. Commands parse, call and print; the work lives elsewhere."""

from __future__ import annotations

import importlib
import os
import sys

import click

from tracker.exceptions import InvalidInput, TrackerError
from tracker.version import __version__

#: every command and where it lives: a command's module (and what it imports: the
#: daemon's HTTP clients, SQLAlchemy) is loaded only when that command runs
COMMANDS = {
    "add": "tracker.cli.predictions:add_command",
    "archive": "tracker.cli.archive:archive_command",
    "cancel": "tracker.cli.cancel:cancel_command",
    "completion": "tracker.cli.completion:completion_command",
    "daemon": "tracker.cli.daemon:daemon_command",
    "db": "tracker.cli.db:db_group",
    "deliveries": "tracker.cli.deliveries:deliveries_group",
    "demo": "tracker.cli.demo:demo_command",
    "forget": "tracker.cli.predictions:forget_command",
    "list": "tracker.cli.predictions:list_command",
    "prune": "tracker.cli.prune:prune_command",
    "report": "tracker.cli.report:report_command",
    "serve": "tracker.cli.serve:serve_command",
    "show": "tracker.cli.show:show_command",
    "simulate": "tracker.cli.simulate:simulate_command",
    "status": "tracker.cli.status:status_command",
}


class LazyGroup(click.Group):
    """A group whose commands are imported when they are used (click's documented
    pattern): `tracker add` no longer pays for importing the daemon."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="tracker")
def cli() -> None:
    """Keep watch over long-running predictions on a Replicate-compatible API.

    Register prediction IDs with `tracker add`, run `tracker daemon`, and find
    every status transition, log line and metric in the database.
    """


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: errors become one `Error:` line and an exit code, never a traceback."""
    try:
        code = cli.main(args=argv, prog_name="tracker", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.UsageError as exc:
        fail(exc.format_message(), 2)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except click.Abort:
        fail("aborted", 130)
    except InvalidInput as exc:
        fail(str(exc), 2)
    except TrackerError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:  # the promise: no tracebacks for users
        if os.environ.get("TRACKER_DEBUG"):
            raise
        fail(f"unexpected {type(exc).__name__}: {exc} (set TRACKER_DEBUG=1 for details)", 1)
    sys.exit(code if isinstance(code, int) else 0)


def fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)

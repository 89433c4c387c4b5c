"""The `tracker` command. Commands parse, call and print; the work lives elsewhere."""

from __future__ import annotations

import os
import sys

import click

from tracker import __version__
from tracker.cli.daemon import daemon_command
from tracker.cli.db import db_group
from tracker.cli.deliveries import deliveries_group
from tracker.cli.demo import demo_command
from tracker.cli.predictions import add_command, forget_command, list_command, show_command
from tracker.cli.prune import prune_command
from tracker.cli.report import report_command
from tracker.cli.simulate import simulate_command
from tracker.cli.status import status_command
from tracker.exceptions import InvalidInput, TrackerError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tracker")
def cli() -> None:
    """Keep watch over long-running predictions on a Replicate-compatible API.

    Register prediction IDs with `tracker add`, run `tracker daemon`, and find
    every status transition, log line and metric in the database.
    """


cli.add_command(db_group)
cli.add_command(add_command)
cli.add_command(list_command)
cli.add_command(show_command)
cli.add_command(forget_command)
cli.add_command(daemon_command)
cli.add_command(deliveries_group)
cli.add_command(status_command)
cli.add_command(report_command)
cli.add_command(prune_command)
cli.add_command(simulate_command)
cli.add_command(demo_command)


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

"""`tracker cancel ID...`: ask the upstream to cancel predictions."""

from __future__ import annotations

import click

from tracker.api import Tracker
from tracker.cli.common import database_option, format_option
from tracker.cli.options import setting_options
from tracker.config import Settings
from tracker.domain import CancelResult
from tracker.inputs import validate_ids
from tracker.records import cancel_record
from tracker.text.display import escape_line, json_text


@click.command("cancel")
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@format_option(("text", "json"), default="text")
@setting_options("api_base")
@database_option
def cancel_command(ids: tuple[str, ...], fmt: str, api_base: str, database_url: str) -> None:
    """Ask the upstream to cancel predictions.

    Each request is a POST to the prediction's urls.cancel when that is on the
    API's own origin (scheme, host, port of --api-base), else to
    {base}/predictions/{id}/cancel, with TRACKER_API_KEY, which goes nowhere else;
    TRACKER_MAX_RPS spaces them and a 429 pauses them, as polls. The request and
    its outcome are recorded (tracker show ID) and the prediction is polled at once:
    a running daemon stores the canceled status moments later.

    Prints one line per ID: the request was sent (the status the upstream answered),
    the prediction had already ended (nothing sent), it is not registered, or the
    upstream refused the request. Exits 1 when an ID is not registered or a request
    failed; an ended prediction needs no cancel and is not a failure.
    """
    wanted = list(dict.fromkeys(validate_ids(ids)))  # every ID checked before any request
    settings = Settings.build(database_url=database_url, api_base=api_base)
    results: list[CancelResult] = []
    with Tracker(settings=settings) as tracker:
        for prediction_id in wanted:
            result = tracker.cancel(prediction_id)
            results.append(result)
            if fmt == "text":
                click.echo(escape_line(result.message))
    if fmt == "json":
        click.echo(json_text([cancel_record(r) for r in results], indent=2))
    failed = [r.prediction_id for r in results if not r.ok]
    if failed:
        raise click.ClickException(
            f"{len(failed)} of {len(results)} not cancelled: {', '.join(failed)}"
        )

"""Registering predictions for the Python API (``Tracker.add``, ``add_batch``): the
arguments checked with the command line's rules and messages, then written one
transaction per group of entries that share callbacks, labels and deadline."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tracker import arguments as args
from tracker.config import Settings
from tracker.domain import CallbackSpec
from tracker.events import parse_events
from tracker.exceptions import InvalidInput
from tracker.inputs import parse_deadline, validate_email, validate_ids, validate_webhook_url
from tracker.store.store import AddResult, Store
from tracker.timeparse import utcnow


@dataclass(frozen=True, slots=True)
class Registration:
    """One entry of ``Tracker.add_batch``: the arguments of ``add``."""

    ids: str | Iterable[str]
    webhooks: str | Iterable[str] = ()
    emails: str | Iterable[str] = ()
    events: str | Iterable[str] | None = None
    labels: Mapping[str, str] | None = None
    deadline: str | float | None = None


@dataclass(frozen=True, slots=True)
class CheckedRegistration:
    """A Registration checked: what the store is given."""

    ids: list[str]
    callbacks: tuple[CallbackSpec, ...]
    labels: dict[str, str]
    deadline: float | None = None  #: seconds; for the new IDs (and known ones if given)
    deadline_given: bool = False  #: given by the caller, not TRACKER_DEFAULT_DEADLINE


def check_registration(entry: Registration, settings: Settings) -> CheckedRegistration:
    """``add``'s arguments checked with the command line's rules and messages."""
    wanted = validate_ids(args.strings(entry.ids))
    if not wanted:
        raise InvalidInput("give at least one prediction ID")
    deadline_given = entry.deadline is not None
    deadline = (
        parse_deadline(entry.deadline) if entry.deadline is not None else settings.default_deadline
    )
    given = entry.events
    wanted_events = parse_events("completed" if given is None else ",".join(args.strings(given)))
    hooks, addresses = args.strings(entry.webhooks), args.strings(entry.emails)
    allowed = settings.webhook_allowed_hosts if hooks else None  # literal addresses
    specs = [
        CallbackSpec("webhook", validate_webhook_url(u, allowed), wanted_events) for u in hooks
    ]
    specs += [CallbackSpec("email", validate_email(a), wanted_events) for a in addresses]
    return CheckedRegistration(
        wanted, tuple(specs), args.labels(entry.labels), deadline, deadline_given
    )


def check_registrations(
    entries: Sequence[Registration], settings: Settings
) -> list[CheckedRegistration]:
    """Every entry checked before anything is written: InvalidInput names the first
    bad one (``[3]: ...``, counted from 0) when there are several."""
    if not entries:
        raise InvalidInput("give at least one prediction ID")
    checked = []
    for position, entry in enumerate(entries):
        try:
            checked.append(check_registration(entry, settings))
        except InvalidInput as exc:
            raise InvalidInput(f"[{position}]: {exc}" if len(entries) > 1 else str(exc)) from None
    return checked


def register(store: Store, entries: Sequence[CheckedRegistration], settings: Settings) -> AddResult:
    """Write checked entries, one transaction per group with the same callbacks and
    labels (usually one in all)."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for entry in entries:
        key = (
            entry.callbacks,
            tuple(sorted(entry.labels.items())),
            entry.deadline,
            entry.deadline_given,
        )
        groups.setdefault(key, []).extend(entry.ids)
    added = known = callbacks_added = 0
    for (specs, label_items, deadline, deadline_given), ids in groups.items():
        now = utcnow()
        result = store.add_predictions(
            ids,
            now=now,
            first_poll_at=now + timedelta(seconds=settings.poll_min),
            labels=dict(label_items),
            callbacks_to_add=specs,
            deadline=deadline,
            deadline_for_known=deadline_given,
        )
        added += result.added
        known += result.already_known
        callbacks_added += result.callbacks_added
    return AddResult(added=added, already_known=known, callbacks_added=callbacks_added)

"""The audit log's domain: what happened, to whom, by whom, when. Shared by every tab."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

import attrs

__all__ = ["AuditEvent", "FieldChange", "JSONValue", "Notifier", "deliver"]

logger = logging.getLogger("enspace_profile")

#: A value that survives a JSON round trip unchanged.
JSONValue = str | int | float | bool | None | list[Any] | dict[str, Any]


@attrs.frozen(kw_only=True)
class FieldChange:
    """One field's change inside an event: its name, old and new value (JSON-ready).

    Secrets never appear here: a picture is recorded by its SHA-256, a token by its hint.
    """

    field: str
    old: JSONValue
    new: JSONValue


@attrs.frozen(kw_only=True)
class AuditEvent:
    """An append-only record of one change, written in the same transaction as the change.

    Attributes:
        id: Unique id (UUID4).
        user_id: Whose account the event belongs to.
        kind: Dotted event type, e.g. ``"profile.created"``, ``"profile.updated"``.
        at: When it happened (UTC).
        actor: Who did it, as the host names them (``None``: the user themself).
        subject: What it is about inside the account (a token id, a provider), if any.
        version: The subject's version after the change, for versioned objects.
        changes: Field changes with old and new values.
        details: Other non-secret facts (JSON-ready).
    """

    id: str
    user_id: str
    kind: str
    at: datetime
    actor: str | None = None
    subject: str | None = None
    version: int | None = None
    changes: tuple[FieldChange, ...] = ()
    details: Mapping[str, JSONValue] = attrs.field(factory=dict, hash=False)

    @property
    def changed_fields(self) -> tuple[str, ...]:
        """The names of the fields this event changed, in order."""
        return tuple(c.field for c in self.changes)


class Notifier(Protocol):
    """Receives audit events after their transaction committed (e.g. to send an email).

    Called once per event, in order, on the thread that made the change. An exception
    it raises is logged and swallowed: the change has already happened.
    """

    def __call__(self, event: AuditEvent, /) -> None:
        """Handle one committed event."""
        ...


def deliver(notifier: Notifier | None, events: Iterable[AuditEvent]) -> None:
    """Hand committed ``events`` to ``notifier``; a failing notifier never undoes anything."""
    if notifier is None:
        return
    for event in events:
        try:
            notifier(event)
        except Exception:
            logger.exception("notifier failed for event %s (%s)", event.id, event.kind)

"""One configured cattrs converter: domain objects to JSON-ready dicts and back.

Datetimes become ISO 8601 strings in UTC, enums their values, frozensets sorted
lists. Hosts use it for their HTTP APIs; adapters may use it for JSON columns.

>>> from datetime import datetime, UTC
>>> from enspace_profile import FieldChange, AuditEvent, converter
>>> event = AuditEvent(id="e1", user_id="u1", kind="profile.updated",
...                    at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
...                    changes=(FieldChange(field="first_name", old="Ana", new="Anna"),))
>>> data = converter.unstructure(event)
>>> data["at"], data["changes"][0]["new"]
('2026-01-02T03:04:05+00:00', 'Anna')
>>> converter.structure(data, AuditEvent) == event
True
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import cattrs

from enspace_profile._audit import JSONValue
from enspace_profile._clock import ensure_utc
from enspace_profile._tokens.domain import Principal

__all__ = ["converter", "make_converter"]


def _structure_datetime(value: Any, _: Any) -> datetime:
    if isinstance(value, datetime):
        return ensure_utc(value)
    if not isinstance(value, str):
        msg = f"expected an ISO 8601 string, got {type(value).__name__}"
        raise TypeError(msg)
    return ensure_utc(datetime.fromisoformat(value))


def make_converter() -> cattrs.Converter:
    """Return a new converter configured for enspace_profile's domain objects.

    Hosts can register more hooks on their own copy without touching the shared one.
    """
    conv = cattrs.Converter()
    conv.register_unstructure_hook(datetime, lambda d: ensure_utc(d).isoformat())
    conv.register_structure_hook(datetime, _structure_datetime)
    conv.register_unstructure_hook_func(
        lambda t: getattr(t, "__origin__", None) is frozenset or t is frozenset,
        lambda value: sorted(conv.unstructure(v) for v in value),
    )
    conv.register_structure_hook_func(lambda t: t == JSONValue, lambda value, _: value)
    # StrEnum members are str instances, and cattrs would pass them through as enum
    # objects (str comes before Enum in their MRO): register on StrEnum itself.
    conv.register_unstructure_hook(enum.StrEnum, lambda member: member.value)
    # Principal is a named tuple (built on every API request); at the boundary it is
    # a dict like the attrs classes, not a list.
    conv.register_unstructure_hook(
        Principal,
        lambda p: {"user_id": p.user_id, "token_id": p.token_id, "scopes": sorted(p.scopes)},
    )
    conv.register_structure_hook(
        Principal,
        lambda d, _: Principal(user_id=d["user_id"], token_id=d["token_id"], scopes=d["scopes"]),
    )
    return conv


#: The shared converter. Use ``converter.unstructure(obj)`` and ``converter.structure(data, Cls)``.
converter = make_converter()

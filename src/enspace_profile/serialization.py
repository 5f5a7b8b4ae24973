"""One configured cattrs converter: domain objects to JSON-ready dicts and back.

Datetimes become ISO 8601 strings in UTC, enums their values, frozensets sorted
lists, bytes base64url text. Hosts use it for their HTTP APIs; adapters may use it
for JSON columns.

Fields hidden from ``repr`` (secrets, digests, credentials, code verifiers) are
hidden from the converter too: they are never written out, so such objects do not
round-trip and are not meant to cross an API boundary.

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

import base64
import enum
from collections.abc import Callable
from datetime import datetime
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

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

    def omit_hidden_fields(cls: type[Any]) -> Callable[[Any], dict[str, Any]]:
        hidden = {a.name: override(omit=True) for a in attrs.fields(cls) if a.repr is False}
        return make_dict_unstructure_fn(cls, conv, **hidden)  # type: ignore[arg-type]

    conv.register_unstructure_hook_factory(attrs.has, omit_hidden_fields)
    conv.register_unstructure_hook(bytes, lambda b: base64.urlsafe_b64encode(b).decode())
    conv.register_structure_hook(bytes, lambda v, _: base64.urlsafe_b64decode(v))
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

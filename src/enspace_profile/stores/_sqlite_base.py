"""Helpers shared by the SQLite repositories: row conversion and error translation."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from enspace_profile.exceptions import StorageBusyError, StorageError

__all__ = ["Repo", "dump_json", "from_iso", "load_json", "to_iso", "translate_errors"]


def to_iso(value: datetime) -> str:
    """Store a datetime as ISO 8601 in UTC (sortable as text)."""
    return value.astimezone(UTC).isoformat()


def from_iso(value: str) -> datetime:
    """Read back a datetime written by :func:`to_iso`."""
    return datetime.fromisoformat(value)


# One encoder for every JSON column: json.dumps with options builds a new encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def dump_json(value: Any) -> str:
    """Serialise a JSON column compactly and deterministically."""
    if not value and isinstance(value, dict):
        return "{}"
    return _ENCODER.encode(value)


def load_json(value: str) -> Any:
    """Parse a JSON column."""
    return json.loads(value)


def translate(exc: sqlite3.Error) -> StorageError:
    """Turn a driver exception into ours; the original stays as ``__cause__``."""
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return StorageBusyError(
            "the database stayed locked by other writers beyond the busy timeout",
        )
    if "not a database" in text or "malformed" in text:
        return StorageError(f"not a usable SQLite database: {exc}", code="storage.not_a_database")
    return StorageError(f"SQLite error: {exc}")


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise any ``sqlite3.Error`` inside the block as our :class:`StorageError`."""
    try:
        yield
    except sqlite3.Error as exc:
        raise translate(exc) from exc


class Repo:
    """Base of the SQLite repositories: a connection inside an open transaction."""

    __slots__ = ("_conn", "_writable")

    def __init__(self, conn: sqlite3.Connection, *, writable: bool) -> None:
        self._conn = conn
        self._writable = writable

    def _check_writable(self) -> None:
        if not self._writable:
            msg = "attempt to write in a read-only transaction"
            raise StorageError(msg, code="storage.read_only")

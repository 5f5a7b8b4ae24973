"""SQLite repository for lab choices (tables ``lab_choices``, ``lab_changes``, ``lab_revision``).

``lab_revision`` holds one row: the change marker, bumped by every write. ``lab_changes``
remembers, per user, the revision of their last write, so a process holding a cache
can ask which users changed since the revision it last saw (one indexed query).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from enspace_profile._lab.domain import OptIn
from enspace_profile.stores._sqlite_base import Repo, from_iso, to_iso

__all__ = ["LAB_MIGRATION", "SQLiteLab", "opt_in_from_row"]

#: Statements of schema migration 5 (see ``_sqlite_schema``).
LAB_MIGRATION: tuple[str, ...] = (
    """
    CREATE TABLE lab_choices (
        user_id TEXT NOT NULL,
        feature_key TEXT NOT NULL,
        enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        chosen_at TEXT NOT NULL,
        terms_version TEXT,
        PRIMARY KEY (user_id, feature_key)
    ) STRICT, WITHOUT ROWID
    """,
    """
    CREATE TABLE lab_changes (
        user_id TEXT PRIMARY KEY NOT NULL,
        revision INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID
    """,
    "CREATE INDEX lab_changes_by_revision ON lab_changes (revision)",
    """
    CREATE TABLE lab_revision (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        revision INTEGER NOT NULL CHECK (revision >= 0)
    ) STRICT
    """,
    "INSERT INTO lab_revision (id, revision) VALUES (1, 0)",
)

_SELECT_FOR_USER = (
    "SELECT user_id, feature_key, enabled, chosen_at, terms_version FROM lab_choices "
    "WHERE user_id = ? ORDER BY feature_key"
)
_UPSERT = (
    "INSERT INTO lab_choices (user_id, feature_key, enabled, chosen_at, terms_version) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, feature_key) DO UPDATE SET "
    "enabled = excluded.enabled, chosen_at = excluded.chosen_at, "
    "terms_version = excluded.terms_version"
)
_BUMP = "UPDATE lab_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision"
_MARK_USER = (
    "INSERT INTO lab_changes (user_id, revision) VALUES (?, ?) "
    "ON CONFLICT (user_id) DO UPDATE SET revision = excluded.revision"
)


def opt_in_from_row(row: Sequence[Any]) -> OptIn:
    """Build an :class:`OptIn` from a ``lab_choices`` row (columns as selected above)."""
    return OptIn(
        user_id=row[0],
        key=row[1],
        enabled=bool(row[2]),
        at=from_iso(row[3]),
        terms_version_accepted=row[4],
    )


class SQLiteLab(Repo):
    """Lab choices in SQLite (implements ``LabRepository``)."""

    __slots__ = ()

    def list_for_user(self, user_id: str) -> Sequence[OptIn]:
        return [opt_in_from_row(r) for r in self._conn.execute(_SELECT_FOR_USER, (user_id,))]

    def put(self, choice: OptIn) -> None:
        self._check_writable()
        c = choice
        self._conn.execute(
            _UPSERT,
            (c.user_id, c.key, int(c.enabled), to_iso(c.at), c.terms_version_accepted),
        )
        self._bump(c.user_id)

    def delete_for_user(self, user_id: str) -> int:
        self._check_writable()
        count = self._conn.execute("DELETE FROM lab_choices WHERE user_id = ?", (user_id,)).rowcount
        if count > 0:
            self._bump(user_id)
        return int(count)

    def revision(self) -> int:
        row = self._conn.execute("SELECT revision FROM lab_revision WHERE id = 1").fetchone()
        return int(row[0])

    def changed_since(self, revision: int, *, limit: int) -> Sequence[str]:
        rows = self._conn.execute(
            "SELECT user_id FROM lab_changes WHERE revision > ? ORDER BY revision LIMIT ?",
            (revision, max(limit, 0)),
        )
        return [r[0] for r in rows]

    def _bump(self, user_id: str) -> None:
        revision = self._conn.execute(_BUMP).fetchone()[0]
        self._conn.execute(_MARK_USER, (user_id, revision))

"""PostgreSQL repository for lab choices (migration 5).

``lab_revision`` holds one row, the change marker, bumped by every write. Bumping it
locks that row until the writer commits, so revisions are handed out in commit order:
a reader that sees revision *n* also sees every change numbered below *n*, which is
what :meth:`~enspace_profile.typing.LabRepository.changed_since` relies on (a
sequence would hand numbers out in start order instead). Lab choices change rarely;
serialising their writers is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from enspace_profile._lab.domain import OptIn
from enspace_profile.stores._postgres_base import Lock, Repo

__all__ = ["LAB_MIGRATION", "UPSERT_CHOICE", "PostgresLab", "choice_values"]

LAB_MIGRATION: Final = (
    """
    CREATE TABLE lab_choices (
        user_id text COLLATE "C" NOT NULL,
        feature_key text COLLATE "C" NOT NULL,
        enabled boolean NOT NULL,
        chosen_at timestamptz NOT NULL,
        terms_version text,
        PRIMARY KEY (user_id, feature_key)
    )
    """,
    """
    CREATE TABLE lab_changes (
        user_id text COLLATE "C" PRIMARY KEY,
        revision bigint NOT NULL
    )
    """,
    "CREATE INDEX lab_changes_by_revision ON lab_changes (revision)",
    """
    CREATE TABLE lab_revision (
        id integer PRIMARY KEY CHECK (id = 1),
        revision bigint NOT NULL CHECK (revision >= 0)
    )
    """,
    "INSERT INTO lab_revision (id, revision) VALUES (1, 0)",
)
"""Schema migration 5: lab choices and their change marker."""

_SELECT_FOR_USER: Final = (
    "SELECT user_id, feature_key, enabled, chosen_at, terms_version FROM lab_choices "
    "WHERE user_id = %s ORDER BY feature_key"
)
UPSERT_CHOICE: Final = (
    "INSERT INTO lab_choices (user_id, feature_key, enabled, chosen_at, terms_version) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (user_id, feature_key) DO UPDATE SET "
    "enabled = excluded.enabled, chosen_at = excluded.chosen_at, "
    "terms_version = excluded.terms_version"
)
# One statement: bump the marker and remember it as the user's last change.
_BUMP: Final = (
    "WITH bumped AS (UPDATE lab_revision SET revision = revision + 1 WHERE id = 1 "
    "RETURNING revision) "
    "INSERT INTO lab_changes (user_id, revision) SELECT %s, revision FROM bumped "
    "ON CONFLICT (user_id) DO UPDATE SET revision = excluded.revision"
)


def choice_values(c: OptIn) -> tuple[Any, ...]:
    """The parameters of ``UPSERT_CHOICE`` for ``c``."""
    return (c.user_id, c.key, c.enabled, c.at, c.terms_version_accepted)


class PostgresLab(Repo):
    """Lab choices in PostgreSQL (implements ``LabRepository``).

    In a write transaction :meth:`list_for_user` first takes the user's lab advisory
    lock, so a decision based on the user's choices (dependencies between features)
    cannot race with another change of the same user's choices.
    """

    __slots__ = ()

    def list_for_user(self, user_id: str) -> Sequence[OptIn]:
        if self._unit.writable:
            self._unit.lock(Lock.USER_LAB, user_id)
        rows = self._unit.execute(_SELECT_FOR_USER, (user_id,)).fetchall()
        return [
            OptIn(user_id=r[0], key=r[1], enabled=r[2], at=r[3], terms_version_accepted=r[4])
            for r in rows
        ]

    def put(self, choice: OptIn) -> None:
        self._check_writable()
        # Nobody reads their results: both travel with the next statement or COMMIT.
        self._unit.queue(UPSERT_CHOICE, choice_values(choice))
        self._unit.queue(_BUMP, (choice.user_id,))

    def delete_for_user(self, user_id: str) -> int:
        self._check_writable()
        count = self._unit.execute(
            "DELETE FROM lab_choices WHERE user_id = %s", (user_id,)
        ).rowcount
        if count > 0:
            self._unit.queue(_BUMP, (user_id,))
        return count

    def revision(self) -> int:
        row = self._unit.execute("SELECT revision FROM lab_revision WHERE id = 1").fetchone()
        assert row is not None
        return int(row[0])

    def changed_since(self, revision: int, *, limit: int) -> Sequence[str]:
        rows = self._unit.execute(
            "SELECT user_id FROM lab_changes WHERE revision > %s ORDER BY revision LIMIT %s",
            (revision, max(limit, 0)),
        ).fetchall()
        return [r[0] for r in rows]

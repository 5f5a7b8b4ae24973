"""PostgreSQL repositories for profiles, the audit log and blobs (migration 1)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Final

from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from enspace_profile._audit import AuditEvent
from enspace_profile._profile.domain import Profile
from enspace_profile.exceptions import AlreadyExistsError, ConflictError, NotFoundError
from enspace_profile.stores._postgres_base import Repo
from enspace_profile.stores._rows import (
    PROFILE_COLUMNS,
    content_values,
    event_from_row,
    profile_from_row,
)
from enspace_profile.typing import Blob

__all__ = [
    "PROFILES_MIGRATION",
    "PostgresAudit",
    "PostgresBlobs",
    "PostgresProfiles",
    "audit_values",
    "profile_values",
]

PROFILES_MIGRATION: Final = (
    """
    CREATE TABLE profiles (
        user_id text COLLATE "C" PRIMARY KEY,
        first_name text NOT NULL,
        last_name text,
        language text NOT NULL,
        theme_mode text NOT NULL,
        theme_day text NOT NULL,
        theme_night text,
        picture_sha256 text,
        picture_media_type text,
        picture_width integer,
        picture_height integer,
        picture_size integer,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        version integer NOT NULL CHECK (version >= 1)
    )
    """,
    """
    CREATE TABLE audit_events (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text COLLATE "C" NOT NULL UNIQUE,
        user_id text COLLATE "C" NOT NULL,
        kind text NOT NULL,
        at timestamptz NOT NULL,
        actor text,
        subject text,
        version integer,
        changes jsonb NOT NULL,
        details jsonb NOT NULL
    )
    """,
    "CREATE INDEX audit_events_by_user ON audit_events (user_id, seq)",
    """
    CREATE TABLE blobs (
        sha256 text COLLATE "C" PRIMARY KEY,
        media_type text NOT NULL,
        data bytea NOT NULL,
        refs integer NOT NULL CHECK (refs >= 1)
    )
    """,
)
"""Schema migration 1: profiles, the audit log and blobs."""

_SELECT_PROFILE: Final = f"SELECT {PROFILE_COLUMNS} FROM profiles WHERE user_id = %s"  # noqa: S608 - constant
INSERT_PROFILE: Final = (
    f"INSERT INTO profiles ({PROFILE_COLUMNS}) VALUES ({', '.join(['%s'] * 15)})"  # noqa: S608 - constant
)
_UPDATE_PROFILE: Final = (
    "UPDATE profiles SET first_name = %s, last_name = %s, language = %s, "
    "theme_mode = %s, theme_day = %s, theme_night = %s, "
    "picture_sha256 = %s, picture_media_type = %s, picture_width = %s, picture_height = %s, "
    "picture_size = %s, updated_at = %s, version = %s WHERE user_id = %s AND version = %s"
)
AUDIT_COLUMNS: Final = "id, user_id, kind, at, actor, subject, version, changes, details"
INSERT_EVENT: Final = (
    f"INSERT INTO audit_events ({AUDIT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"  # noqa: S608 - constant
)


def profile_values(p: Profile) -> tuple[Any, ...]:
    """The values of ``PROFILE_COLUMNS`` for ``p``."""
    return (p.user_id, *content_values(p), p.created_at, p.updated_at, p.version)


class PostgresProfiles(Repo):
    """Profiles in the ``profiles`` table (implements ``ProfileRepository``).

    In a write transaction :meth:`get` locks the row (``FOR UPDATE``), so a
    read-then-update of one profile never loses a concurrent update.
    """

    __slots__ = ()

    def get(self, user_id: str) -> Profile | None:
        row = self._unit.execute(_SELECT_PROFILE + self._for_update, (user_id,)).fetchone()
        return None if row is None else profile_from_row(row, _same)

    def add(self, profile: Profile) -> None:
        self._check_writable()
        cursor = self._unit.execute(
            INSERT_PROFILE + " ON CONFLICT DO NOTHING", profile_values(profile)
        )
        if cursor.rowcount != 1:
            raise AlreadyExistsError("profile", profile.user_id)

    def update(self, profile: Profile, *, expected_version: int) -> None:
        self._check_writable()
        p = profile
        cursor = self._unit.execute(
            _UPDATE_PROFILE,
            (*content_values(p), p.updated_at, p.version, p.user_id, expected_version),
        )
        if cursor.rowcount == 1:
            return
        row = self._unit.execute(
            "SELECT version FROM profiles WHERE user_id = %s", (p.user_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError("profile", p.user_id)
        raise ConflictError(
            "profile", p.user_id, expected_version=expected_version, current_version=row[0]
        )

    def delete(self, user_id: str) -> bool:
        self._check_writable()
        cursor = self._unit.execute("DELETE FROM profiles WHERE user_id = %s", (user_id,))
        return cursor.rowcount > 0


def audit_values(e: AuditEvent) -> tuple[Any, ...]:
    """The values of ``AUDIT_COLUMNS`` for ``e``."""
    return (
        e.id,
        e.user_id,
        e.kind,
        e.at,
        e.actor,
        e.subject,
        e.version,
        Jsonb([[c.field, c.old, c.new] for c in e.changes]),
        Jsonb(dict(e.details)),
    )


class PostgresAudit(Repo):
    """The ``audit_events`` table (implements ``AuditLog``).

    An append is queued and sent with the transaction's next statement or its
    ``COMMIT``: nobody reads its result, so it costs no round trip of its own. A
    duplicate id appended twice in one transaction is refused at once; one that
    collides with a committed event is refused when the batch is sent (at the
    latest when the ``with`` block ends), and the transaction is rolled back.
    """

    __slots__ = ("_ids",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ids: set[str] = set()

    def append(self, event: AuditEvent) -> None:
        self._check_writable()
        event_id = event.id
        if event_id in self._ids:
            raise AlreadyExistsError("audit_event", event_id)
        self._ids.add(event_id)

        def duplicate(exc: pg_errors.UniqueViolation) -> AlreadyExistsError | None:
            if exc.diag.table_name != "audit_events":
                return None
            detail = exc.diag.message_detail or ""
            mine = f"=({event_id})" in detail
            return AlreadyExistsError("audit_event", event_id) if mine else None

        self._unit.queue(INSERT_EVENT, audit_values(event), on_duplicate=duplicate)

    def list_for_user(
        self,
        user_id: str,
        *,
        kinds: Collection[str] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Sequence[AuditEvent]:
        sql = f"SELECT {AUDIT_COLUMNS} FROM audit_events WHERE user_id = %s"  # noqa: S608 - constant
        params: list[Any] = [user_id]
        if kinds is not None:
            wanted = list(kinds)
            if not wanted:
                return []
            sql += " AND kind = ANY(%s)"
            params.append(wanted)
        sql += " ORDER BY seq DESC LIMIT %s" if newest_first else " ORDER BY seq LIMIT %s"
        params.append(None if limit is None else max(limit, 0))
        return [event_from_row(r, _same, _same) for r in self._unit.execute(sql, params).fetchall()]


class PostgresBlobs(Repo):
    """The ``blobs`` table: reference-counted, content-addressed (implements ``BlobRepository``)."""

    __slots__ = ()

    def acquire(self, blob: Blob) -> None:
        self._check_writable()
        self._unit.execute(
            "INSERT INTO blobs (sha256, media_type, data, refs) VALUES (%s, %s, %s, 1) "
            "ON CONFLICT (sha256) DO UPDATE SET refs = blobs.refs + 1",
            (blob.sha256, blob.media_type, blob.data),
        )

    def release(self, sha256: str) -> None:
        self._check_writable()
        refs = self.references(sha256)  # locks the row
        if refs > 1:
            self._unit.execute("UPDATE blobs SET refs = refs - 1 WHERE sha256 = %s", (sha256,))
        elif refs == 1:
            self._unit.execute("DELETE FROM blobs WHERE sha256 = %s", (sha256,))

    def get(self, sha256: str) -> Blob | None:
        row = self._unit.execute(
            "SELECT sha256, media_type, data FROM blobs WHERE sha256 = %s", (sha256,)
        ).fetchone()
        return None if row is None else Blob(sha256=row[0], media_type=row[1], data=row[2])

    def references(self, sha256: str) -> int:
        row = self._unit.execute(
            "SELECT refs FROM blobs WHERE sha256 = %s" + self._for_update,  # noqa: S608 - constant
            (sha256,),
        ).fetchone()
        return 0 if row is None else int(row[0])


def _same(value: Any) -> Any:
    """Psycopg already returns aware datetimes for ``timestamptz`` columns."""
    return value

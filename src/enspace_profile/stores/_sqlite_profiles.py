"""SQLite repositories for profiles and the audit log."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from enspace_profile._audit import AuditEvent
from enspace_profile._profile.domain import Profile
from enspace_profile.exceptions import AlreadyExistsError, ConflictError, NotFoundError
from enspace_profile.stores._rows import (
    PROFILE_COLUMNS,
    content_values,
    event_from_row,
    profile_from_row,
)
from enspace_profile.stores._sqlite_base import Repo, dump_json, from_iso, load_json, to_iso
from enspace_profile.typing import Blob

__all__ = ["SQLiteAudit", "SQLiteBlobs", "SQLiteProfiles"]

_SELECT_PROFILE = f"SELECT {PROFILE_COLUMNS} FROM profiles WHERE user_id = ?"  # noqa: S608 - constant
_INSERT_PROFILE = f"INSERT INTO profiles ({PROFILE_COLUMNS}) VALUES ({', '.join('?' * 15)})"  # noqa: S608
_UPDATE_PROFILE = (
    "UPDATE profiles SET first_name = ?, last_name = ?, language = ?, "
    "theme_mode = ?, theme_day = ?, theme_night = ?, "
    "picture_sha256 = ?, picture_media_type = ?, picture_width = ?, picture_height = ?, "
    "picture_size = ?, updated_at = ?, version = ? WHERE user_id = ? AND version = ?"
)


class SQLiteProfiles(Repo):
    """Profiles in the ``profiles`` table (implements ``ProfileRepository``)."""

    __slots__ = ()

    def get(self, user_id: str) -> Profile | None:
        row = self._conn.execute(_SELECT_PROFILE, (user_id,)).fetchone()
        return None if row is None else profile_from_row(row, from_iso)

    def add(self, profile: Profile) -> None:
        self._check_writable()
        p = profile
        try:
            self._conn.execute(
                _INSERT_PROFILE,
                (
                    p.user_id,
                    *content_values(p),
                    to_iso(p.created_at),
                    to_iso(p.updated_at),
                    p.version,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExistsError("profile", p.user_id) from exc

    def update(self, profile: Profile, *, expected_version: int) -> None:
        self._check_writable()
        p = profile
        cursor = self._conn.execute(
            _UPDATE_PROFILE,
            (*content_values(p), to_iso(p.updated_at), p.version, p.user_id, expected_version),
        )
        if cursor.rowcount == 1:
            return
        row = self._conn.execute(
            "SELECT version FROM profiles WHERE user_id = ?", (p.user_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError("profile", p.user_id)
        raise ConflictError(
            "profile", p.user_id, expected_version=expected_version, current_version=row[0]
        )

    def delete(self, user_id: str) -> bool:
        self._check_writable()
        return self._conn.execute("DELETE FROM profiles WHERE user_id = ?", (user_id,)).rowcount > 0


_AUDIT_COLUMNS = "id, user_id, kind, at, actor, subject, version, changes, details"


class SQLiteAudit(Repo):
    """The ``audit_events`` table (implements ``AuditLog``)."""

    __slots__ = ()

    def append(self, event: AuditEvent) -> None:
        self._check_writable()
        e = event
        try:
            self._conn.execute(
                f"INSERT INTO audit_events ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                (
                    e.id,
                    e.user_id,
                    e.kind,
                    to_iso(e.at),
                    e.actor,
                    e.subject,
                    e.version,
                    dump_json([[c.field, c.old, c.new] for c in e.changes]),
                    dump_json(dict(e.details)),
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExistsError("audit_event", e.id) from exc

    def list_for_user(
        self,
        user_id: str,
        *,
        kinds: Collection[str] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Sequence[AuditEvent]:
        sql = f"SELECT {_AUDIT_COLUMNS} FROM audit_events WHERE user_id = ?"  # noqa: S608
        params: list[Any] = [user_id]
        if kinds is not None:
            kinds = list(kinds)
            if not kinds:
                return []
            sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
            params.extend(kinds)
        sql += " ORDER BY seq DESC" if newest_first else " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(limit, 0))
        return [event_from_row(r, from_iso, load_json) for r in self._conn.execute(sql, params)]


class SQLiteBlobs(Repo):
    """The ``blobs`` table: reference-counted, content-addressed (implements ``BlobRepository``)."""

    __slots__ = ()

    def acquire(self, blob: Blob) -> None:
        self._check_writable()
        self._conn.execute(
            "INSERT INTO blobs (sha256, media_type, data, refs) VALUES (?, ?, ?, 1) "
            "ON CONFLICT (sha256) DO UPDATE SET refs = refs + 1",
            (blob.sha256, blob.media_type, blob.data),
        )

    def release(self, sha256: str) -> None:
        self._check_writable()
        refs = self.references(sha256)
        if refs > 1:
            self._conn.execute("UPDATE blobs SET refs = refs - 1 WHERE sha256 = ?", (sha256,))
        elif refs == 1:
            self._conn.execute("DELETE FROM blobs WHERE sha256 = ?", (sha256,))

    def get(self, sha256: str) -> Blob | None:
        row = self._conn.execute(
            "SELECT sha256, media_type, data FROM blobs WHERE sha256 = ?", (sha256,)
        ).fetchone()
        return None if row is None else Blob(sha256=row[0], media_type=row[1], data=bytes(row[2]))

    def references(self, sha256: str) -> int:
        row = self._conn.execute("SELECT refs FROM blobs WHERE sha256 = ?", (sha256,)).fetchone()
        return 0 if row is None else int(row[0])

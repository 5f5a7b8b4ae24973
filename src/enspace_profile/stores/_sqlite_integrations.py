"""SQLite repository for the Integrations tab: connections, sealed credentials, pending OAuth."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from enspace_profile._crypto.keyring import SealedBox
from enspace_profile._integrations.domain import Connection, SealedCredentials
from enspace_profile._integrations.oauth import PendingAuthorization
from enspace_profile.exceptions import AlreadyExistsError, ConflictError, NotFoundError
from enspace_profile.stores._sqlite_base import Repo, dump_json, from_iso, load_json, to_iso

__all__ = [
    "INTEGRATIONS_MIGRATION",
    "SQLiteIntegrations",
    "connection_from_row",
    "pending_from_row",
]

INTEGRATIONS_MIGRATION: Final = (
    """
    CREATE TABLE integration_connections (
        id TEXT PRIMARY KEY NOT NULL,
        user_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        external_account_id TEXT NOT NULL,
        external_account_label TEXT NOT NULL,
        status TEXT NOT NULL,
        granted_scopes TEXT NOT NULL,
        connected_at TEXT NOT NULL,
        last_sync_at TEXT,
        last_error TEXT,
        version INTEGER NOT NULL CHECK (version >= 1),
        credentials_version INTEGER NOT NULL CHECK (credentials_version >= 0),
        UNIQUE (user_id, provider, external_account_id)
    ) STRICT, WITHOUT ROWID
    """,
    """
    CREATE INDEX integration_connections_by_user
        ON integration_connections (user_id, connected_at, id)
    """,
    """
    CREATE TABLE integration_credentials (
        connection_id TEXT PRIMARY KEY NOT NULL
            REFERENCES integration_connections (id) ON DELETE CASCADE,
        key_id TEXT NOT NULL,
        sealed BLOB NOT NULL
    ) STRICT, WITHOUT ROWID
    """,
    "CREATE INDEX integration_credentials_by_key ON integration_credentials (key_id)",
    """
    CREATE TABLE integration_pending_authorizations (
        state_digest TEXT PRIMARY KEY NOT NULL,
        user_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        redirect_uri TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        code_verifier BLOB NOT NULL
    ) STRICT, WITHOUT ROWID
    """,
    """
    CREATE INDEX integration_pending_by_expiry
        ON integration_pending_authorizations (expires_at)
    """,
)
"""SQLite schema migration 4: the integrations tables (STRICT)."""

_CONNECTION_COLUMNS: Final = (
    "id, user_id, provider, external_account_id, external_account_label, status, "
    "granted_scopes, connected_at, last_sync_at, last_error, version, credentials_version"
)
_SELECT_CONNECTION: Final = f"SELECT {_CONNECTION_COLUMNS} FROM integration_connections"  # noqa: S608 - constant
_INSERT_CONNECTION: Final = (
    f"INSERT INTO integration_connections ({_CONNECTION_COLUMNS}) "  # noqa: S608 - constant
    f"VALUES ({', '.join('?' * 12)})"
)
_UPDATE_CONNECTION: Final = (
    "UPDATE integration_connections SET provider = ?, external_account_id = ?, "
    "external_account_label = ?, status = ?, granted_scopes = ?, connected_at = ?, "
    "last_sync_at = ?, last_error = ?, version = ?, credentials_version = ? "
    "WHERE id = ? AND user_id = ? AND version = ?"
)
_OWNED: Final = "SELECT 1 FROM integration_connections WHERE id = ? AND user_id = ?"
_PENDING_COLUMNS: Final = (
    "state_digest, user_id, provider, redirect_uri, scopes, created_at, expires_at, code_verifier"
)


def connection_from_row(row: Sequence[Any]) -> Connection:
    """Build a :class:`Connection` from a row (columns as ``_CONNECTION_COLUMNS``)."""
    return Connection(
        id=row[0],
        user_id=row[1],
        provider=row[2],
        external_account_id=row[3],
        external_account_label=row[4],
        status=row[5],
        granted_scopes=load_json(row[6]),
        connected_at=from_iso(row[7]),
        last_sync_at=None if row[8] is None else from_iso(row[8]),
        last_error=row[9],
        version=row[10],
        credentials_version=row[11],
    )


def _connection_values(c: Connection) -> tuple[Any, ...]:
    return (
        c.provider,
        c.external_account_id,
        c.external_account_label,
        c.status.value,
        dump_json(sorted(c.granted_scopes)),
        to_iso(c.connected_at),
        None if c.last_sync_at is None else to_iso(c.last_sync_at),
        c.last_error,
        c.version,
        c.credentials_version,
    )


def pending_from_row(row: Sequence[Any]) -> PendingAuthorization:
    """Build a :class:`PendingAuthorization` from a row (columns as ``_PENDING_COLUMNS``)."""
    return PendingAuthorization(
        state_digest=row[0],
        user_id=row[1],
        provider=row[2],
        redirect_uri=row[3],
        scopes=load_json(row[4]),
        created_at=from_iso(row[5]),
        expires_at=from_iso(row[6]),
        code_verifier=SealedBox.from_bytes(row[7]),
    )


class SQLiteIntegrations(Repo):
    """The ``integration_*`` tables (implements ``IntegrationRepository``)."""

    __slots__ = ()

    # -- connections -------------------------------------------------------------

    def add(self, connection: Connection) -> None:
        self._check_writable()
        c = connection
        try:
            self._conn.execute(_INSERT_CONNECTION, (c.id, c.user_id, *_connection_values(c)))
        except sqlite3.IntegrityError as exc:
            field = "id" if "integration_connections.id" in str(exc) else "external_account_id"
            raise AlreadyExistsError("connection", c.id, field=field) from exc

    def get(self, user_id: str, connection_id: str) -> Connection | None:
        row = self._conn.execute(
            f"{_SELECT_CONNECTION} WHERE id = ? AND user_id = ?", (connection_id, user_id)
        ).fetchone()
        return None if row is None else connection_from_row(row)

    def find_account(
        self, user_id: str, provider: str, external_account_id: str
    ) -> Connection | None:
        row = self._conn.execute(
            f"{_SELECT_CONNECTION} WHERE user_id = ? AND provider = ? AND external_account_id = ?",
            (user_id, provider, external_account_id),
        ).fetchone()
        return None if row is None else connection_from_row(row)

    def list_for_user(self, user_id: str, *, provider: str | None = None) -> Sequence[Connection]:
        sql = f"{_SELECT_CONNECTION} WHERE user_id = ?"
        params: list[Any] = [user_id]
        if provider is not None:
            sql += " AND provider = ?"
            params.append(provider)
        sql += " ORDER BY connected_at, id"
        return [connection_from_row(row) for row in self._conn.execute(sql, params)]

    def update(self, connection: Connection, *, expected_version: int) -> None:
        self._check_writable()
        c = connection
        try:
            cursor = self._conn.execute(
                _UPDATE_CONNECTION, (*_connection_values(c), c.id, c.user_id, expected_version)
            )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExistsError("connection", c.id, field="external_account_id") from exc
        if cursor.rowcount == 1:
            return
        row = self._conn.execute(
            "SELECT version FROM integration_connections WHERE id = ? AND user_id = ?",
            (c.id, c.user_id),
        ).fetchone()
        if row is None:
            raise NotFoundError("connection", c.id)
        raise ConflictError(
            "connection", c.id, expected_version=expected_version, current_version=row[0]
        )

    def delete(self, user_id: str, connection_id: str) -> bool:
        self._check_writable()
        if self._conn.execute(_OWNED, (connection_id, user_id)).fetchone() is None:
            return False
        # Explicit, so nothing depends on the foreign_keys pragma being on.
        self._conn.execute(
            "DELETE FROM integration_credentials WHERE connection_id = ?", (connection_id,)
        )
        self._conn.execute("DELETE FROM integration_connections WHERE id = ?", (connection_id,))
        return True

    # -- credentials -------------------------------------------------------------

    def get_credentials(self, user_id: str, connection_id: str) -> SealedBox | None:
        row = self._conn.execute(
            "SELECT s.sealed FROM integration_credentials AS s "
            "JOIN integration_connections AS c ON c.id = s.connection_id "
            "WHERE s.connection_id = ? AND c.user_id = ?",
            (connection_id, user_id),
        ).fetchone()
        return None if row is None else SealedBox.from_bytes(row[0])

    def put_credentials(self, user_id: str, connection_id: str, box: SealedBox) -> None:
        self._check_writable()
        if self._conn.execute(_OWNED, (connection_id, user_id)).fetchone() is None:
            raise NotFoundError("connection", connection_id)
        self._conn.execute(
            "INSERT INTO integration_credentials (connection_id, key_id, sealed) VALUES (?, ?, ?) "
            "ON CONFLICT (connection_id) DO UPDATE SET key_id = excluded.key_id, "
            "sealed = excluded.sealed",
            (connection_id, box.key_id, box.to_bytes()),
        )

    def delete_credentials(self, user_id: str, connection_id: str) -> bool:
        self._check_writable()
        if self._conn.execute(_OWNED, (connection_id, user_id)).fetchone() is None:
            return False
        cursor = self._conn.execute(
            "DELETE FROM integration_credentials WHERE connection_id = ?", (connection_id,)
        )
        return cursor.rowcount > 0

    def list_credentials(
        self,
        *,
        user_id: str | None = None,
        exclude_key_id: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> Sequence[SealedCredentials]:
        sql = (
            "SELECT s.connection_id, c.user_id, c.provider, s.sealed "
            "FROM integration_credentials AS s "
            "JOIN integration_connections AS c ON c.id = s.connection_id WHERE 1"
        )
        params: list[Any] = []
        if user_id is not None:
            sql += " AND c.user_id = ?"
            params.append(user_id)
        if exclude_key_id is not None:
            sql += " AND s.key_id != ?"
            params.append(exclude_key_id)
        if after is not None:
            sql += " AND s.connection_id > ?"
            params.append(after)
        sql += " ORDER BY s.connection_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(limit, 0))
        return [
            SealedCredentials(
                connection_id=row[0],
                user_id=row[1],
                provider=row[2],
                box=SealedBox.from_bytes(row[3]),
            )
            for row in self._conn.execute(sql, params)
        ]

    # -- pending OAuth authorizations --------------------------------------------

    def add_pending(self, pending: PendingAuthorization) -> None:
        self._check_writable()
        p = pending
        try:
            self._conn.execute(
                f"INSERT INTO integration_pending_authorizations ({_PENDING_COLUMNS}) "  # noqa: S608 - constant
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    p.state_digest,
                    p.user_id,
                    p.provider,
                    p.redirect_uri,
                    dump_json(list(p.scopes)),
                    to_iso(p.created_at),
                    to_iso(p.expires_at),
                    p.code_verifier.to_bytes(),
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExistsError("authorization", p.state_digest[:12]) from exc

    def take_pending(self, state_digest: str) -> PendingAuthorization | None:
        self._check_writable()
        row = self._conn.execute(
            "DELETE FROM integration_pending_authorizations WHERE state_digest = ? "  # noqa: S608 - constant
            f"RETURNING {_PENDING_COLUMNS}",
            (state_digest,),
        ).fetchall()  # fetch everything so the statement is finished before COMMIT
        return pending_from_row(row[0]) if row else None

    def delete_expired_pending(self, now: datetime) -> int:
        self._check_writable()
        cursor = self._conn.execute(
            "DELETE FROM integration_pending_authorizations WHERE expires_at <= ?", (to_iso(now),)
        )
        return cursor.rowcount

"""PostgreSQL repository for the Integrations tab (migration 4).

Connections, their sealed credentials (``bytea``; never plaintext) and pending OAuth
authorizations. In a write transaction reads lock what they return (``FOR UPDATE``),
and listing a user's connections first takes that user's connections advisory lock,
so a decision based on "the user's connections" (the last way to sign in) cannot be
invalidated by a concurrent change.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from psycopg import errors as pg_errors

from enspace_profile._crypto.keyring import SealedBox
from enspace_profile._integrations.domain import Connection, SealedCredentials
from enspace_profile._integrations.oauth import PendingAuthorization
from enspace_profile.exceptions import AlreadyExistsError, ConflictError, NotFoundError
from enspace_profile.stores._postgres_base import Lock, Repo

__all__ = [
    "INTEGRATIONS_MIGRATION",
    "PostgresIntegrations",
    "connection_values",
    "pending_values",
]

INTEGRATIONS_MIGRATION: Final = (
    """
    CREATE TABLE integration_connections (
        id text COLLATE "C" PRIMARY KEY,
        user_id text COLLATE "C" NOT NULL,
        provider text COLLATE "C" NOT NULL,
        external_account_id text COLLATE "C" NOT NULL,
        external_account_label text NOT NULL,
        status text NOT NULL,
        granted_scopes text[] NOT NULL,
        connected_at timestamptz NOT NULL,
        last_sync_at timestamptz,
        last_error text,
        version integer NOT NULL CHECK (version >= 1),
        credentials_version integer NOT NULL CHECK (credentials_version >= 0),
        CONSTRAINT integration_connections_account UNIQUE (user_id, provider, external_account_id)
    )
    """,
    """
    CREATE INDEX integration_connections_by_user
        ON integration_connections (user_id, connected_at, id)
    """,
    """
    CREATE TABLE integration_credentials (
        connection_id text COLLATE "C" PRIMARY KEY
            REFERENCES integration_connections (id) ON DELETE CASCADE,
        key_id text NOT NULL,
        sealed bytea NOT NULL
    )
    """,
    "CREATE INDEX integration_credentials_by_key ON integration_credentials (key_id)",
    """
    CREATE TABLE integration_pending_authorizations (
        state_digest text COLLATE "C" PRIMARY KEY,
        user_id text COLLATE "C" NOT NULL,
        provider text NOT NULL,
        redirect_uri text NOT NULL,
        scopes text[] NOT NULL,
        created_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        code_verifier bytea NOT NULL
    )
    """,
    """
    CREATE INDEX integration_pending_by_expiry
        ON integration_pending_authorizations (expires_at)
    """,
)
"""Schema migration 4: the integrations tables."""

CONNECTION_COLUMNS: Final = (
    "id, user_id, provider, external_account_id, external_account_label, status, "
    "granted_scopes, connected_at, last_sync_at, last_error, version, credentials_version"
)
_SELECT_CONNECTION: Final = f"SELECT {CONNECTION_COLUMNS} FROM integration_connections"  # noqa: S608 - constant
INSERT_CONNECTION: Final = (
    f"INSERT INTO integration_connections ({CONNECTION_COLUMNS}) "  # noqa: S608 - constant
    f"VALUES ({', '.join(['%s'] * 12)})"
)
_UPDATE_CONNECTION: Final = (
    "UPDATE integration_connections SET provider = %s, external_account_id = %s, "
    "external_account_label = %s, status = %s, granted_scopes = %s, connected_at = %s, "
    "last_sync_at = %s, last_error = %s, version = %s, credentials_version = %s "
    "WHERE id = %s AND user_id = %s AND version = %s"
)
_OWNED: Final = "SELECT 1 FROM integration_connections WHERE id = %s AND user_id = %s"
PENDING_COLUMNS: Final = (
    "state_digest, user_id, provider, redirect_uri, scopes, created_at, expires_at, code_verifier"
)
INSERT_PENDING: Final = (
    f"INSERT INTO integration_pending_authorizations ({PENDING_COLUMNS}) "  # noqa: S608 - constant
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)
UPSERT_CREDENTIALS: Final = (
    "INSERT INTO integration_credentials (connection_id, key_id, sealed) VALUES (%s, %s, %s) "
    "ON CONFLICT (connection_id) DO UPDATE SET key_id = excluded.key_id, "
    "sealed = excluded.sealed"
)


def _connection_from_row(row: Sequence[Any]) -> Connection:
    return Connection(
        id=row[0],
        user_id=row[1],
        provider=row[2],
        external_account_id=row[3],
        external_account_label=row[4],
        status=row[5],
        granted_scopes=row[6],
        connected_at=row[7],
        last_sync_at=row[8],
        last_error=row[9],
        version=row[10],
        credentials_version=row[11],
    )


def _content_values(c: Connection) -> tuple[Any, ...]:
    """The columns ``provider`` .. ``credentials_version``."""
    return (
        c.provider,
        c.external_account_id,
        c.external_account_label,
        c.status.value,
        sorted(c.granted_scopes),
        c.connected_at,
        c.last_sync_at,
        c.last_error,
        c.version,
        c.credentials_version,
    )


def connection_values(c: Connection) -> tuple[Any, ...]:
    """The values of ``CONNECTION_COLUMNS`` for ``c``."""
    return (c.id, c.user_id, *_content_values(c))


def _pending_from_row(row: Sequence[Any]) -> PendingAuthorization:
    return PendingAuthorization(
        state_digest=row[0],
        user_id=row[1],
        provider=row[2],
        redirect_uri=row[3],
        scopes=row[4],
        created_at=row[5],
        expires_at=row[6],
        code_verifier=SealedBox.from_bytes(row[7]),
    )


def pending_values(p: PendingAuthorization) -> tuple[Any, ...]:
    """The values of ``PENDING_COLUMNS`` for ``p``."""
    return (
        p.state_digest,
        p.user_id,
        p.provider,
        p.redirect_uri,
        list(p.scopes),
        p.created_at,
        p.expires_at,
        p.code_verifier.to_bytes(),
    )


class PostgresIntegrations(Repo):
    """The ``integration_*`` tables (implements ``IntegrationRepository``)."""

    __slots__ = ()

    # -- connections -------------------------------------------------------------

    def add(self, connection: Connection) -> None:
        self._check_writable()
        c = connection
        cursor = self._unit.execute(
            INSERT_CONNECTION + " ON CONFLICT DO NOTHING", connection_values(c)
        )
        if cursor.rowcount == 1:
            return
        taken = self._unit.execute(
            "SELECT 1 FROM integration_connections WHERE id = %s", (c.id,)
        ).fetchone()
        field = "id" if taken is not None else "external_account_id"
        raise AlreadyExistsError("connection", c.id, field=field)

    def get(self, user_id: str, connection_id: str) -> Connection | None:
        row = self._unit.execute(
            f"{_SELECT_CONNECTION} WHERE id = %s AND user_id = %s{self._for_update}",
            (connection_id, user_id),
        ).fetchone()
        return None if row is None else _connection_from_row(row)

    def find_account(
        self, user_id: str, provider: str, external_account_id: str
    ) -> Connection | None:
        row = self._unit.execute(
            f"{_SELECT_CONNECTION} WHERE user_id = %s AND provider = %s "
            f"AND external_account_id = %s{self._for_update}",
            (user_id, provider, external_account_id),
        ).fetchone()
        return None if row is None else _connection_from_row(row)

    def list_for_user(self, user_id: str, *, provider: str | None = None) -> Sequence[Connection]:
        if self._unit.writable:
            self._unit.lock(Lock.USER_CONNECTIONS, user_id)
        sql = f"{_SELECT_CONNECTION} WHERE user_id = %s"
        params: list[Any] = [user_id]
        if provider is not None:
            sql += " AND provider = %s"
            params.append(provider)
        sql += " ORDER BY connected_at, id" + self._for_update
        rows = self._unit.execute(sql, params).fetchall()
        return [_connection_from_row(row) for row in rows]

    def update(self, connection: Connection, *, expected_version: int) -> None:
        self._check_writable()
        c = connection
        try:
            cursor = self._unit.execute(
                _UPDATE_CONNECTION, (*_content_values(c), c.id, c.user_id, expected_version)
            )
        except AlreadyExistsError as exc:
            if isinstance(exc.__cause__, pg_errors.UniqueViolation):
                raise AlreadyExistsError(
                    "connection", c.id, field="external_account_id"
                ) from exc.__cause__
            raise
        if cursor.rowcount == 1:
            return
        row = self._unit.execute(
            "SELECT version FROM integration_connections WHERE id = %s AND user_id = %s",
            (c.id, c.user_id),
        ).fetchone()
        if row is None:
            raise NotFoundError("connection", c.id)
        raise ConflictError(
            "connection", c.id, expected_version=expected_version, current_version=row[0]
        )

    def delete(self, user_id: str, connection_id: str) -> bool:
        self._check_writable()
        # The credentials row goes with it (ON DELETE CASCADE).
        cursor = self._unit.execute(
            "DELETE FROM integration_connections WHERE id = %s AND user_id = %s",
            (connection_id, user_id),
        )
        return cursor.rowcount > 0

    # -- credentials -------------------------------------------------------------

    def get_credentials(self, user_id: str, connection_id: str) -> SealedBox | None:
        lock = " FOR UPDATE OF s" if self._unit.writable else ""
        row = self._unit.execute(
            "SELECT s.sealed FROM integration_credentials AS s "  # noqa: S608 - constant
            "JOIN integration_connections AS c ON c.id = s.connection_id "
            "WHERE s.connection_id = %s AND c.user_id = %s" + lock,
            (connection_id, user_id),
        ).fetchone()
        return None if row is None else SealedBox.from_bytes(row[0])

    def put_credentials(self, user_id: str, connection_id: str, box: SealedBox) -> None:
        self._check_writable()
        owned = self._unit.execute(_OWNED + " FOR KEY SHARE", (connection_id, user_id))
        if owned.fetchone() is None:
            raise NotFoundError("connection", connection_id)
        self._unit.execute(UPSERT_CREDENTIALS, (connection_id, box.key_id, box.to_bytes()))

    def delete_credentials(self, user_id: str, connection_id: str) -> bool:
        self._check_writable()
        cursor = self._unit.execute(
            "DELETE FROM integration_credentials AS s USING integration_connections AS c "
            "WHERE s.connection_id = %s AND c.id = s.connection_id AND c.user_id = %s",
            (connection_id, user_id),
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
            "JOIN integration_connections AS c ON c.id = s.connection_id WHERE true"
        )
        params: list[Any] = []
        if user_id is not None:
            sql += " AND c.user_id = %s"
            params.append(user_id)
        if exclude_key_id is not None:
            sql += " AND s.key_id <> %s"
            params.append(exclude_key_id)
        if after is not None:
            sql += " AND s.connection_id > %s"
            params.append(after)
        sql += " ORDER BY s.connection_id LIMIT %s"
        params.append(None if limit is None else max(limit, 0))
        if self._unit.writable:
            sql += " FOR UPDATE OF s"
        rows = self._unit.execute(sql, params).fetchall()
        return [
            SealedCredentials(
                connection_id=row[0],
                user_id=row[1],
                provider=row[2],
                box=SealedBox.from_bytes(row[3]),
            )
            for row in rows
        ]

    # -- pending OAuth authorizations --------------------------------------------

    def add_pending(self, pending: PendingAuthorization) -> None:
        self._check_writable()
        cursor = self._unit.execute(
            INSERT_PENDING + " ON CONFLICT DO NOTHING", pending_values(pending)
        )
        if cursor.rowcount != 1:
            raise AlreadyExistsError("authorization", pending.state_digest[:12])

    def take_pending(self, state_digest: str) -> PendingAuthorization | None:
        self._check_writable()
        row = self._unit.execute(
            "DELETE FROM integration_pending_authorizations WHERE state_digest = %s "  # noqa: S608 - constant
            f"RETURNING {PENDING_COLUMNS}",
            (state_digest,),
        ).fetchone()
        return None if row is None else _pending_from_row(row)

    def delete_expired_pending(self, now: datetime) -> int:
        self._check_writable()
        cursor = self._unit.execute(
            "DELETE FROM integration_pending_authorizations WHERE expires_at <= %s", (now,)
        )
        return cursor.rowcount

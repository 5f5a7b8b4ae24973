"""SQLite storage of personal access tokens, and the by-digest lookup every API call makes.

Layout (migration 2): one ``WITHOUT ROWID`` table whose primary key is the 32-byte
digest, so authenticating is a single B-tree descent that lands on the whole row (a
rowid table with a separate digest index needs two). Times are integer microseconds
since the Unix epoch (UTC): 8 bytes instead of 32 for ISO text, exact, and ordered.
A token that is its family's root stores ``family_id`` as ``NULL`` (it equals its id),
which saves 36 bytes on almost every row.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final, Protocol

from enspace_profile._tokens.domain import (
    AccessToken,
    Principal,
    TokenCredential,
    from_micros,
    to_micros,
)
from enspace_profile.exceptions import AlreadyExistsError, NotFoundError, StorageError
from enspace_profile.stores._sqlite_base import Repo, translate

__all__ = [
    "TOKEN_MIGRATION",
    "SQLiteTokens",
    "ThreadConnection",
    "token_lookup",
]

TOKEN_MIGRATION: Final = (
    """
    CREATE TABLE tokens (
        digest BLOB PRIMARY KEY NOT NULL CHECK (length(digest) = 32),
        id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        scopes TEXT NOT NULL,
        expires_at INTEGER,
        revoked_at INTEGER,
        last_used_at INTEGER,
        pepper_id TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        hint TEXT NOT NULL,
        family_id TEXT,
        rotated_to TEXT,
        revoked_reason TEXT,
        last_used_ip TEXT,
        last_used_user_agent TEXT
    ) STRICT, WITHOUT ROWID
    """,
    "CREATE UNIQUE INDEX tokens_by_id ON tokens (id)",
    "CREATE INDEX tokens_by_user ON tokens (user_id, created_at)",
    "CREATE UNIQUE INDEX tokens_live_names ON tokens (user_id, name) WHERE revoked_at IS NULL",
    (
        "CREATE INDEX tokens_by_expiry ON tokens (expires_at) "
        "WHERE revoked_at IS NULL AND expires_at IS NOT NULL"
    ),
    "CREATE INDEX tokens_by_family ON tokens (family_id) WHERE family_id IS NOT NULL",
)
"""The statements of schema migration 2 (used by ``_sqlite_schema``)."""


def _opt_micros(when: datetime | None) -> int | None:
    return None if when is None else to_micros(when)


def _opt_datetime(value: int | None) -> datetime | None:
    return None if value is None else from_micros(value)


_COLUMNS: Final = (
    "digest, id, user_id, scopes, expires_at, revoked_at, last_used_at, pepper_id, name, "
    "description, created_at, hint, family_id, rotated_to, revoked_reason, last_used_ip, "
    "last_used_user_agent"
)
_SELECT: Final = f"SELECT {_COLUMNS} FROM tokens"  # noqa: S608 - constant
_INSERT: Final = f"INSERT INTO tokens ({_COLUMNS}) VALUES ({', '.join('?' * 17)})"  # noqa: S608
_UPDATE: Final = (
    "UPDATE tokens SET digest = ?, user_id = ?, scopes = ?, expires_at = ?, revoked_at = ?, "
    "last_used_at = ?, pepper_id = ?, name = ?, description = ?, created_at = ?, hint = ?, "
    "family_id = ?, rotated_to = ?, revoked_reason = ?, last_used_ip = ?, "
    "last_used_user_agent = ? WHERE id = ?"
)
_NEWEST_FIRST: Final = " ORDER BY created_at DESC, id DESC"
_OLDEST_FIRST: Final = " ORDER BY created_at, id"
_REVOKE_FAMILY: Final = (
    "UPDATE tokens SET revoked_at = :at, revoked_reason = :reason "  # noqa: S608 - constants
    "WHERE (id = :family OR family_id = :family) AND revoked_at IS NULL "
    f"RETURNING {_COLUMNS}"
)
_STALE: Final = (
    "expires_at < :cutoff OR revoked_at < :cutoff OR coalesce(last_used_at, created_at) < :cutoff"
)
_PRUNE: Final = (
    "DELETE FROM tokens WHERE digest IN "  # noqa: S608 - constants only
    f"(SELECT digest FROM tokens WHERE {_STALE}{_OLDEST_FIRST} LIMIT :limit) "
    f"RETURNING {_COLUMNS}"
)
# The hot path: exactly the columns authenticate needs, the validity bound computed
# by SQLite (the earlier of expiry and revocation, NULL if neither).
_LOOKUP: Final = (
    "SELECT id, user_id, scopes, "
    "CASE WHEN revoked_at IS NULL OR expires_at < revoked_at THEN expires_at "
    "ELSE revoked_at END, last_used_at, pepper_id, digest FROM tokens WHERE digest = ?"
)


def _scopes_text(scopes: frozenset[str]) -> str:
    # Scope names never contain spaces (see Scope), so a space-joined list round-trips.
    return " ".join(sorted(scopes))


def token_from_row(row: Sequence[Any]) -> AccessToken:
    """Build an :class:`AccessToken` from a ``tokens`` row (columns as ``_COLUMNS``)."""
    return AccessToken(
        digest=bytes(row[0]),
        id=row[1],
        user_id=row[2],
        scopes=frozenset(row[3].split()),
        expires_at=_opt_datetime(row[4]),
        revoked_at=_opt_datetime(row[5]),
        last_used_at=_opt_datetime(row[6]),
        pepper_id=row[7],
        name=row[8],
        description=row[9],
        created_at=from_micros(row[10]),
        hint=row[11],
        family_id=row[1] if row[12] is None else row[12],
        rotated_to=row[13],
        revoked_reason=row[14],
        last_used_ip=row[15],
        last_used_user_agent=row[16],
    )


def _row(t: AccessToken) -> tuple[Any, ...]:
    """The values of ``_COLUMNS`` for ``t``."""
    return (
        t.digest,
        t.id,
        t.user_id,
        _scopes_text(t.scopes),
        _opt_micros(t.expires_at),
        _opt_micros(t.revoked_at),
        _opt_micros(t.last_used_at),
        t.pepper_id,
        t.name,
        t.description,
        to_micros(t.created_at),
        t.hint,
        None if t.family_id == t.id else t.family_id,
        t.rotated_to,
        t.revoked_reason,
        t.last_used_ip,
        t.last_used_user_agent,
    )


def _duplicate(
    exc: sqlite3.IntegrityError, token: AccessToken
) -> AlreadyExistsError | StorageError:
    text = str(exc)
    if "UNIQUE" not in text:
        return translate(exc)
    if "tokens.name" in text:
        return AlreadyExistsError("token", token.name, field="name")
    return AlreadyExistsError("token", token.id)


def _by_age(token: AccessToken) -> tuple[datetime, str]:
    return (token.created_at, token.id)


class SQLiteTokens(Repo):
    """The ``tokens`` table (implements ``TokenRepository``)."""

    __slots__ = ()

    def add(self, token: AccessToken) -> None:
        self._check_writable()
        try:
            self._conn.execute(_INSERT, _row(token))
        except sqlite3.IntegrityError as exc:
            raise _duplicate(exc, token) from exc

    def get(self, token_id: str) -> AccessToken | None:
        row = self._conn.execute(f"{_SELECT} WHERE id = ?", (token_id,)).fetchone()
        return None if row is None else token_from_row(row)

    def get_by_digest(self, digest: bytes) -> AccessToken | None:
        row = self._conn.execute(f"{_SELECT} WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else token_from_row(row)

    def list_for_user(self, user_id: str) -> Sequence[AccessToken]:
        rows = self._conn.execute(f"{_SELECT} WHERE user_id = ?{_NEWEST_FIRST}", (user_id,))
        return [token_from_row(r) for r in rows]

    def count_live(self, user_id: str) -> int:
        row = self._conn.execute(
            "SELECT count(*) FROM tokens WHERE user_id = ? AND revoked_at IS NULL", (user_id,)
        ).fetchone()
        return int(row[0])

    def update(self, token: AccessToken) -> None:
        self._check_writable()
        values = _row(token)
        try:
            cursor = self._conn.execute(_UPDATE, (values[0], *values[2:], token.id))
        except sqlite3.IntegrityError as exc:
            raise _duplicate(exc, token) from exc
        if cursor.rowcount != 1:
            raise NotFoundError("token", token.id)

    def record_use(
        self,
        token_id: str,
        *,
        at: datetime,
        ip: str | None,
        user_agent: str | None,
        if_last_used_before: datetime,
    ) -> bool:
        self._check_writable()
        cursor = self._conn.execute(
            "UPDATE tokens SET last_used_at = ?, last_used_ip = ?, last_used_user_agent = ? "
            "WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
            (to_micros(at), ip, user_agent, token_id, to_micros(if_last_used_before)),
        )
        return cursor.rowcount == 1

    def revoke_family(self, family_id: str, *, at: datetime, reason: str) -> Sequence[AccessToken]:
        self._check_writable()
        rows = self._conn.execute(
            _REVOKE_FAMILY,
            {"at": to_micros(at), "reason": reason, "family": family_id},
        ).fetchall()
        return sorted((token_from_row(r) for r in rows), key=_by_age)

    def expiring_between(
        self,
        start: datetime,
        end: datetime,
        *,
        limit: int | None = None,
    ) -> Sequence[AccessToken]:
        rows = self._conn.execute(
            f"{_SELECT} WHERE revoked_at IS NULL AND expires_at IS NOT NULL "
            "AND expires_at > ? AND expires_at <= ? ORDER BY expires_at, id LIMIT ?",
            (to_micros(start), to_micros(end), -1 if limit is None else max(limit, 0)),
        )
        return [token_from_row(r) for r in rows]

    def prune(self, cutoff: datetime, *, limit: int | None = None) -> Sequence[AccessToken]:
        self._check_writable()
        rows = self._conn.execute(
            _PRUNE,
            {"cutoff": to_micros(cutoff), "limit": -1 if limit is None else max(limit, 0)},
        ).fetchall()
        return sorted((token_from_row(r) for r in rows), key=_by_age)


class ThreadConnection(Protocol):
    """Where ``SQLiteStorage`` keeps a thread's connection (a ``threading.local``)."""

    connection: sqlite3.Connection | None
    pid: int


_MAX_SCOPE_SETS: Final = 1024


def token_lookup(
    local: ThreadConnection,
    connect: Callable[[], sqlite3.Connection],
) -> Callable[[bytes], TokenCredential | None]:
    """Return the by-digest lookup behind ``SQLiteStorage.token_lookup``: one ``SELECT``.

    Everything is inlined into one closure, since it runs on every API request: it
    takes the thread's connection (``connect()`` opens one, and refuses after fork
    or close), refuses to run inside an open transaction (it would see uncommitted
    rows), runs the statement in autocommit mode and builds the credential.

    Scope sets are shared between rows with the same scopes (a bounded map from the
    stored text): a token's scopes are one of few combinations, and building a
    ``frozenset`` per request would cost more than the rest of the conversion.

    Args:
        local: The storage's per-thread connection slot.
        connect: Returns the thread's usable connection or raises ``StorageError``.
    """
    scope_sets: dict[str, frozenset[str]] = {}
    make = tuple.__new__  # builds Principal and TokenCredential without a Python call
    getpid = os.getpid

    def lookup(digest: bytes) -> TokenCredential | None:
        conn = local.connection
        if conn is None or local.pid != getpid():
            conn = connect()
        try:
            if conn.in_transaction:
                msg = "token lookups cannot run inside a transaction on the same thread"
                raise StorageError(msg, code="storage.nested_transaction")
            row = conn.execute(_LOOKUP, (digest,)).fetchone()
        except sqlite3.Error as exc:
            connect()  # raises "storage is closed" if that is why
            raise translate(exc) from exc
        if row is None:
            return None
        token_id, user_id, scopes, until, last_used, pepper_id, stored = row
        scope_set = scope_sets.get(scopes)
        if scope_set is None:
            if len(scope_sets) >= _MAX_SCOPE_SETS:
                scope_sets.clear()
            scope_set = scope_sets[scopes] = frozenset(scopes.split())
        principal = make(Principal, (user_id, token_id, scope_set))  # build_principal, inlined
        return make(TokenCredential, (principal, until, last_used, pepper_id, stored))

    return lookup

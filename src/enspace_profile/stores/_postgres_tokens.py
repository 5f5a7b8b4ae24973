"""PostgreSQL storage of personal access tokens (migration 2), and the by-digest lookup.

The digest (32 bytes) is the primary key, so authenticating is one index probe.
Times are ``timestamptz``; the lookup has the server convert the two it returns to
integer microseconds, as :class:`~enspace_profile.TokenCredential` holds them.

Concurrency: creating a token counts the user's live tokens first; in a write
transaction :meth:`PostgresTokens.count_live` and :meth:`PostgresTokens.list_for_user`
take the user's token advisory lock, so two creators cannot both see room under the
cap. Single-token reads in a write transaction lock the row (``FOR UPDATE``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

from psycopg import errors as pg_errors

from enspace_profile._tokens.domain import (
    AccessToken,
    Principal,
    TokenCredential,
)
from enspace_profile.exceptions import AlreadyExistsError, NotFoundError
from enspace_profile.stores._postgres_base import Lock, Repo

__all__ = [
    "INSERT_TOKEN",
    "LOOKUP",
    "TOKEN_MIGRATION",
    "PostgresTokens",
    "TokenLookup",
    "credential_from_row",
    "token_from_row",
    "token_values",
]

TOKEN_MIGRATION: Final = (
    """
    CREATE TABLE tokens (
        digest bytea PRIMARY KEY CHECK (octet_length(digest) = 32),
        id text COLLATE "C" NOT NULL UNIQUE,
        user_id text COLLATE "C" NOT NULL,
        scopes text NOT NULL,
        expires_at timestamptz,
        revoked_at timestamptz,
        last_used_at timestamptz,
        pepper_id text NOT NULL,
        name text NOT NULL,
        description text NOT NULL,
        created_at timestamptz NOT NULL,
        hint text NOT NULL,
        family_id text COLLATE "C" NOT NULL,
        rotated_to text,
        revoked_reason text,
        last_used_ip text,
        last_used_user_agent text
    )
    """,
    "CREATE INDEX tokens_by_user ON tokens (user_id, created_at)",
    "CREATE UNIQUE INDEX tokens_live_names ON tokens (user_id, name) WHERE revoked_at IS NULL",
    (
        "CREATE INDEX tokens_by_expiry ON tokens (expires_at) "
        "WHERE revoked_at IS NULL AND expires_at IS NOT NULL"
    ),
    "CREATE INDEX tokens_by_family ON tokens (family_id)",
)
"""Schema migration 2: personal access tokens (Dev tab)."""

_COLUMNS: Final = (
    "digest, id, user_id, scopes, expires_at, revoked_at, last_used_at, pepper_id, name, "
    "description, created_at, hint, family_id, rotated_to, revoked_reason, last_used_ip, "
    "last_used_user_agent"
)
_SELECT: Final = f"SELECT {_COLUMNS} FROM tokens"  # noqa: S608 - constant
INSERT_TOKEN: Final = f"INSERT INTO tokens ({_COLUMNS}) VALUES ({', '.join(['%s'] * 17)})"  # noqa: S608
_UPDATE: Final = (
    "UPDATE tokens SET digest = %s, user_id = %s, scopes = %s, expires_at = %s, "
    "revoked_at = %s, last_used_at = %s, pepper_id = %s, name = %s, description = %s, "
    "created_at = %s, hint = %s, family_id = %s, rotated_to = %s, revoked_reason = %s, "
    "last_used_ip = %s, last_used_user_agent = %s WHERE id = %s"
)
_REVOKE_FAMILY: Final = (
    "UPDATE tokens SET revoked_at = %s, revoked_reason = %s "  # noqa: S608 - constants
    f"WHERE family_id = %s AND revoked_at IS NULL RETURNING {_COLUMNS}"
)
_PRUNE: Final = (
    "DELETE FROM tokens WHERE digest IN (SELECT digest FROM tokens "  # noqa: S608 - constants
    "WHERE expires_at < %(cutoff)s OR revoked_at < %(cutoff)s "
    "OR coalesce(last_used_at, created_at) < %(cutoff)s "
    "ORDER BY created_at, id LIMIT %(limit)s FOR UPDATE) "
    f"RETURNING {_COLUMNS}"
)


def _micros(column: str) -> str:
    """SQL for ``column`` as integer microseconds since the Unix epoch, exact on PostgreSQL 13+."""
    return (
        f"(EXTRACT(EPOCH FROM date_trunc('second', {column}))::bigint * 1000000 "
        f"+ EXTRACT(MICROSECONDS FROM {column})::bigint %% 1000000)"
    )


#: The hot path: what authenticate needs, times already in microseconds. LEAST ignores
#: NULL, so the validity bound is the earlier of expiry and revocation.
LOOKUP: Final = (
    f"SELECT id, user_id, scopes, {_micros('LEAST(expires_at, revoked_at)')}, "  # noqa: S608
    f"{_micros('last_used_at')}, pepper_id, digest FROM tokens WHERE digest = %s"
)
_LIVE_NAMES: Final = "tokens_live_names"


def _scopes_text(scopes: frozenset[str]) -> str:
    # Scope names never contain spaces (see Scope), so a space-joined list round-trips.
    return " ".join(sorted(scopes))


def token_from_row(row: Sequence[Any]) -> AccessToken:
    """Build an :class:`AccessToken` from a ``tokens`` row (columns as ``_COLUMNS``)."""
    return AccessToken(
        digest=row[0],
        id=row[1],
        user_id=row[2],
        scopes=frozenset(row[3].split()),
        expires_at=row[4],
        revoked_at=row[5],
        last_used_at=row[6],
        pepper_id=row[7],
        name=row[8],
        description=row[9],
        created_at=row[10],
        hint=row[11],
        family_id=row[12],
        rotated_to=row[13],
        revoked_reason=row[14],
        last_used_ip=row[15],
        last_used_user_agent=row[16],
    )


def token_values(t: AccessToken) -> tuple[Any, ...]:
    """The values of ``_COLUMNS`` for ``t``."""
    return (
        t.digest,
        t.id,
        t.user_id,
        _scopes_text(t.scopes),
        t.expires_at,
        t.revoked_at,
        t.last_used_at,
        t.pepper_id,
        t.name,
        t.description,
        t.created_at,
        t.hint,
        t.family_id,
        t.rotated_to,
        t.revoked_reason,
        t.last_used_ip,
        t.last_used_user_agent,
    )


def _by_age(token: AccessToken) -> tuple[datetime, str]:
    return (token.created_at, token.id)


class PostgresTokens(Repo):
    """The ``tokens`` table (implements ``TokenRepository``)."""

    __slots__ = ()

    def add(self, token: AccessToken) -> None:
        self._check_writable()
        cursor = self._unit.execute(INSERT_TOKEN + " ON CONFLICT DO NOTHING", token_values(token))
        if cursor.rowcount == 1:
            return
        taken = self._unit.execute(
            "SELECT 1 FROM tokens WHERE id = %s OR digest = %s", (token.id, token.digest)
        ).fetchone()
        if taken is not None:
            raise AlreadyExistsError("token", token.id)
        raise AlreadyExistsError("token", token.name, field="name")

    def get(self, token_id: str) -> AccessToken | None:
        row = self._unit.execute(f"{_SELECT} WHERE id = %s{self._for_update}", (token_id,))
        found = row.fetchone()
        return None if found is None else token_from_row(found)

    def get_by_digest(self, digest: bytes) -> AccessToken | None:
        row = self._unit.execute(f"{_SELECT} WHERE digest = %s{self._for_update}", (digest,))
        found = row.fetchone()
        return None if found is None else token_from_row(found)

    def list_for_user(self, user_id: str) -> Sequence[AccessToken]:
        if self._unit.writable:
            self._unit.lock(Lock.USER_TOKENS, user_id)
        rows = self._unit.execute(
            f"{_SELECT} WHERE user_id = %s ORDER BY created_at DESC, id DESC{self._for_update}",
            (user_id,),
        ).fetchall()
        return [token_from_row(r) for r in rows]

    def count_live(self, user_id: str) -> int:
        if self._unit.writable:
            self._unit.lock(Lock.USER_TOKENS, user_id)
        row = self._unit.execute(
            "SELECT count(*) FROM tokens WHERE user_id = %s AND revoked_at IS NULL", (user_id,)
        ).fetchone()
        assert row is not None
        return int(row[0])

    def update(self, token: AccessToken) -> None:
        self._check_writable()
        values = token_values(token)
        try:
            cursor = self._unit.execute(_UPDATE, (values[0], *values[2:], token.id))
        except AlreadyExistsError as exc:
            cause = exc.__cause__
            if isinstance(cause, pg_errors.UniqueViolation):
                if cause.diag.constraint_name == _LIVE_NAMES:
                    raise AlreadyExistsError("token", token.name, field="name") from cause
                raise AlreadyExistsError("token", token.id) from cause
            raise
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
        cursor = self._unit.execute(
            "UPDATE tokens SET last_used_at = %s, last_used_ip = %s, last_used_user_agent = %s "
            "WHERE id = %s AND (last_used_at IS NULL OR last_used_at < %s)",
            (at, ip, user_agent, token_id, if_last_used_before),
        )
        return cursor.rowcount == 1

    def revoke_family(self, family_id: str, *, at: datetime, reason: str) -> Sequence[AccessToken]:
        self._check_writable()
        rows = self._unit.execute(_REVOKE_FAMILY, (at, reason, family_id)).fetchall()
        return sorted((token_from_row(r) for r in rows), key=_by_age)

    def expiring_between(
        self,
        start: datetime,
        end: datetime,
        *,
        limit: int | None = None,
    ) -> Sequence[AccessToken]:
        rows = self._unit.execute(
            f"{_SELECT} WHERE revoked_at IS NULL AND expires_at IS NOT NULL "
            "AND expires_at > %s AND expires_at <= %s ORDER BY expires_at, id LIMIT %s",
            (start, end, None if limit is None else max(limit, 0)),
        ).fetchall()
        return [token_from_row(r) for r in rows]

    def prune(self, cutoff: datetime, *, limit: int | None = None) -> Sequence[AccessToken]:
        self._check_writable()
        rows = self._unit.execute(
            _PRUNE, {"cutoff": cutoff, "limit": None if limit is None else max(limit, 0)}
        ).fetchall()
        return sorted((token_from_row(r) for r in rows), key=_by_age)


_MAX_SCOPE_SETS: Final = 1024


def credential_from_row(
    row: Sequence[Any], scope_sets: dict[str, frozenset[str]]
) -> TokenCredential:
    """Build the :class:`TokenCredential` of a ``LOOKUP`` row.

    Args:
        row: The row.
        scope_sets: A cache of scope sets by stored text, shared by the lookups of one
            storage (bounded: cleared when it holds 1024 combinations).
    """
    token_id, user_id, scopes, until, last_used, pepper_id, stored = row
    scope_set = scope_sets.get(scopes)
    if scope_set is None:
        if len(scope_sets) >= _MAX_SCOPE_SETS:
            scope_sets.clear()
        scope_set = scope_sets[scopes] = frozenset(scopes.split())
    make = tuple.__new__  # builds Principal and TokenCredential without a Python call
    principal = make(Principal, (user_id, token_id, scope_set))
    return make(TokenCredential, (principal, until, last_used, pepper_id, stored))


#: The signature of the lookup ``PostgresStorage.token_lookup`` returns.
TokenLookup = Callable[[bytes], TokenCredential | None]

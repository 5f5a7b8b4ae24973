"""SQLite repositories for the Security tab (migration 3).

Tables:

* ``security_credentials``: one row per user: version, epoch, SSO management, the
  password hash, the enabled and the pending TOTP enrolment (sealed secrets as BLOBs)
  and the dates of the active and pending recovery code sets;
* ``security_recovery_codes``: the code hashes of those sets (``pending`` 0 or 1),
  deleted with their credentials row;
* ``security_throttle``: failure counters by user and scope;
* ``security_sessions``: the session registry, indexed by user.

Times are stored as fixed-width ISO 8601 UTC text (microseconds always present), so
text order is time order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from enspace_profile._security.accounts import AccountManagement, ManagedBy
from enspace_profile._security.domain import AccountCredentials, Session, TotpEnrolment
from enspace_profile._security.lockout import FailureState
from enspace_profile._security.recovery import RecoveryCode, RecoveryCodeSet, RecoveryCodeState
from enspace_profile.exceptions import AlreadyExistsError, ConflictError, NotFoundError
from enspace_profile.stores._sqlite_base import Repo

__all__ = [
    "SECURITY_MIGRATION",
    "SQLiteCredentials",
    "SQLiteSessions",
    "SQLiteThrottle",
    "credentials_from_rows",
    "session_from_row",
]

_CLEAN = FailureState()

SECURITY_MIGRATION: Final = (
    """
    CREATE TABLE security_credentials (
        user_id TEXT PRIMARY KEY NOT NULL,
        version INTEGER NOT NULL CHECK (version >= 1),
        epoch INTEGER NOT NULL CHECK (epoch >= 0),
        managed_provider TEXT,
        managed_url TEXT,
        password_hash TEXT,
        password_changed_at TEXT,
        totp_secret BLOB,
        totp_created_at TEXT,
        totp_enabled_at TEXT,
        totp_last_step INTEGER,
        pending_totp_secret BLOB,
        pending_totp_created_at TEXT,
        recovery_generated_at TEXT,
        recovery_confirmed_at TEXT,
        pending_recovery_generated_at TEXT
    ) STRICT, WITHOUT ROWID
    """,
    """
    CREATE TABLE security_recovery_codes (
        user_id TEXT NOT NULL
            REFERENCES security_credentials (user_id) ON DELETE CASCADE,
        pending INTEGER NOT NULL CHECK (pending IN (0, 1)),
        position INTEGER NOT NULL CHECK (position >= 0),
        digest BLOB NOT NULL,
        used_at TEXT,
        PRIMARY KEY (user_id, pending, position)
    ) STRICT, WITHOUT ROWID
    """,
    """
    CREATE TABLE security_throttle (
        user_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        consecutive_failures INTEGER NOT NULL CHECK (consecutive_failures >= 0),
        locked_until TEXT,
        window_start TEXT,
        failures_in_window INTEGER NOT NULL CHECK (failures_in_window >= 0),
        failures_in_previous_window INTEGER NOT NULL CHECK (failures_in_previous_window >= 0),
        PRIMARY KEY (user_id, scope)
    ) STRICT, WITHOUT ROWID
    """,
    """
    CREATE TABLE security_sessions (
        session_id TEXT PRIMARY KEY NOT NULL,
        user_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        ip_address TEXT,
        user_agent TEXT
    ) STRICT, WITHOUT ROWID
    """,
    "CREATE INDEX security_sessions_by_user ON security_sessions (user_id, last_seen_at)",
)
"""Schema migration 3: the Security tab's tables (STRICT)."""

_CREDENTIAL_COLUMNS = (
    "user_id, version, epoch, managed_provider, managed_url, password_hash, "
    "password_changed_at, totp_secret, totp_created_at, totp_enabled_at, totp_last_step, "
    "pending_totp_secret, pending_totp_created_at, recovery_generated_at, "
    "recovery_confirmed_at, pending_recovery_generated_at"
)
_SELECT_CREDENTIALS = f"SELECT {_CREDENTIAL_COLUMNS} FROM security_credentials WHERE user_id = ?"  # noqa: S608 - constant
_INSERT_CREDENTIALS = (
    f"INSERT INTO security_credentials ({_CREDENTIAL_COLUMNS}) "  # noqa: S608 - constant
    f"VALUES ({', '.join('?' * 16)})"
)
_UPDATE_CREDENTIALS = (
    "UPDATE security_credentials SET version = ?, epoch = ?, managed_provider = ?, "
    "managed_url = ?, password_hash = ?, password_changed_at = ?, totp_secret = ?, "
    "totp_created_at = ?, totp_enabled_at = ?, totp_last_step = ?, pending_totp_secret = ?, "
    "pending_totp_created_at = ?, recovery_generated_at = ?, recovery_confirmed_at = ?, "
    "pending_recovery_generated_at = ? WHERE user_id = ? AND version = ?"
)
_SELECT_CODES = (
    "SELECT pending, digest, used_at FROM security_recovery_codes "
    "WHERE user_id = ? ORDER BY pending, position"
)
_DELETE_CODES = "DELETE FROM security_recovery_codes WHERE user_id = ?"
_INSERT_CODE = (
    "INSERT INTO security_recovery_codes (user_id, pending, position, digest, used_at) "
    "VALUES (?, ?, ?, ?, ?)"
)
_THROTTLE_COLUMNS = (
    "consecutive_failures, locked_until, window_start, failures_in_window, "
    "failures_in_previous_window"
)
_SESSION_COLUMNS = "session_id, user_id, created_at, last_seen_at, ip_address, user_agent"


def _ts(value: datetime | None) -> str | None:
    """Store a time as fixed-width ISO 8601 UTC text (sortable)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _from_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _required_ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _totp(
    secret: bytes | None,
    created: str | None,
    enabled: str | None = None,
    last_step: int | None = None,
) -> TotpEnrolment | None:
    if secret is None or created is None:
        return None
    return TotpEnrolment(
        sealed_secret=bytes(secret),
        created_at=_required_ts(created),
        enabled_at=_from_ts(enabled),
        last_used_step=last_step,
    )


def credentials_from_rows(row: Sequence[Any], codes: Sequence[Sequence[Any]]) -> AccountCredentials:
    """Build :class:`AccountCredentials` from its ``security_credentials`` row and code rows."""
    management = AccountManagement.local()
    if row[3] is not None:
        management = AccountManagement(managed_by=ManagedBy(provider=row[3], manage_url=row[4]))
    by_set: dict[int, list[RecoveryCode]] = {0: [], 1: []}
    for pending, digest, used_at in codes:
        by_set[pending].append(RecoveryCode(digest=bytes(digest), used_at=_from_ts(used_at)))
    active = None
    if row[13] is not None:
        active = RecoveryCodeSet(
            codes=by_set[0], generated_at=_required_ts(row[13]), confirmed_at=_from_ts(row[14])
        )
    pending_set = None
    if row[15] is not None:
        pending_set = RecoveryCodeSet(codes=by_set[1], generated_at=_required_ts(row[15]))
    return AccountCredentials(
        user_id=row[0],
        version=row[1],
        epoch=row[2],
        management=management,
        password_hash=row[5],
        password_changed_at=_from_ts(row[6]),
        totp=_totp(row[7], row[8], row[9], row[10]),
        pending_totp=_totp(row[11], row[12]),
        recovery=RecoveryCodeState(active=active, pending=pending_set),
    )


def _credential_values(c: AccountCredentials) -> tuple[Any, ...]:
    """The columns after ``user_id`` in ``_CREDENTIAL_COLUMNS`` order."""
    managed = c.management.managed_by
    totp, pending = c.totp, c.pending_totp
    active_set, pending_set = c.recovery.active, c.recovery.pending
    return (
        c.version,
        c.epoch,
        None if managed is None else managed.provider,
        None if managed is None else managed.manage_url,
        c.password_hash,
        _ts(c.password_changed_at),
        None if totp is None else totp.sealed_secret,
        None if totp is None else _ts(totp.created_at),
        None if totp is None else _ts(totp.enabled_at),
        None if totp is None else totp.last_used_step,
        None if pending is None else pending.sealed_secret,
        None if pending is None else _ts(pending.created_at),
        None if active_set is None else _ts(active_set.generated_at),
        None if active_set is None else _ts(active_set.confirmed_at),
        None if pending_set is None else _ts(pending_set.generated_at),
    )


class SQLiteCredentials(Repo):
    """AccountCredentials in ``security_credentials`` and ``security_recovery_codes``.

    Implements ``CredentialRepository``.
    """

    __slots__ = ()

    def get(self, user_id: str) -> AccountCredentials | None:
        row = self._conn.execute(_SELECT_CREDENTIALS, (user_id,)).fetchone()
        if row is None:
            return None
        codes = self._conn.execute(_SELECT_CODES, (user_id,)).fetchall()
        return credentials_from_rows(row, codes)

    def add(self, credentials: AccountCredentials) -> None:
        self._check_writable()
        try:
            self._conn.execute(
                _INSERT_CREDENTIALS, (credentials.user_id, *_credential_values(credentials))
            )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExistsError("credentials", credentials.user_id) from exc
        self._write_codes(credentials)

    def update(self, credentials: AccountCredentials, *, expected_version: int) -> None:
        self._check_writable()
        user_id = credentials.user_id
        cursor = self._conn.execute(
            _UPDATE_CREDENTIALS, (*_credential_values(credentials), user_id, expected_version)
        )
        if cursor.rowcount != 1:
            row = self._conn.execute(
                "SELECT version FROM security_credentials WHERE user_id = ?", (user_id,)
            ).fetchone()
            if row is None:
                raise NotFoundError("credentials", user_id)
            raise ConflictError(
                "credentials", user_id, expected_version=expected_version, current_version=row[0]
            )
        self._conn.execute(_DELETE_CODES, (user_id,))
        self._write_codes(credentials)

    def _write_codes(self, credentials: AccountCredentials) -> None:
        rows = [
            (credentials.user_id, pending, position, code.digest, _ts(code.used_at))
            for pending, code_set in enumerate(
                (credentials.recovery.active, credentials.recovery.pending)
            )
            if code_set is not None
            for position, code in enumerate(code_set.codes)
        ]
        if rows:
            self._conn.executemany(_INSERT_CODE, rows)

    def delete(self, user_id: str) -> bool:
        self._check_writable()
        cursor = self._conn.execute(
            "DELETE FROM security_credentials WHERE user_id = ?", (user_id,)
        )
        return cursor.rowcount > 0

    def list_user_ids(self, *, after: str | None = None, limit: int = 100) -> Sequence[str]:
        if after is None:
            cursor = self._conn.execute(
                "SELECT user_id FROM security_credentials ORDER BY user_id LIMIT ?",
                (max(limit, 0),),
            )
        else:
            cursor = self._conn.execute(
                "SELECT user_id FROM security_credentials WHERE user_id > ? "
                "ORDER BY user_id LIMIT ?",
                (after, max(limit, 0)),
            )
        return [row[0] for row in cursor]


class SQLiteThrottle(Repo):
    """Failure counters in ``security_throttle`` (implements ``ThrottleRepository``)."""

    __slots__ = ()

    def get(self, user_id: str, scope: str) -> FailureState:
        row = self._conn.execute(
            f"SELECT {_THROTTLE_COLUMNS} FROM security_throttle "  # noqa: S608 - constant
            "WHERE user_id = ? AND scope = ?",
            (user_id, scope),
        ).fetchone()
        if row is None:
            return _CLEAN
        return FailureState(
            consecutive_failures=row[0],
            locked_until=_from_ts(row[1]),
            window_start=_from_ts(row[2]),
            failures_in_window=row[3],
            failures_in_previous_window=row[4],
        )

    def put(self, user_id: str, scope: str, state: FailureState) -> None:
        self._check_writable()
        if state == _CLEAN:
            self._conn.execute(
                "DELETE FROM security_throttle WHERE user_id = ? AND scope = ?", (user_id, scope)
            )
            return
        self._conn.execute(
            f"INSERT INTO security_throttle (user_id, scope, {_THROTTLE_COLUMNS}) "  # noqa: S608
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, scope) DO UPDATE SET "
            "consecutive_failures = excluded.consecutive_failures, "
            "locked_until = excluded.locked_until, window_start = excluded.window_start, "
            "failures_in_window = excluded.failures_in_window, "
            "failures_in_previous_window = excluded.failures_in_previous_window",
            (
                user_id,
                scope,
                state.consecutive_failures,
                _ts(state.locked_until),
                _ts(state.window_start),
                state.failures_in_window,
                state.failures_in_previous_window,
            ),
        )


def session_from_row(row: Sequence[Any]) -> Session:
    """Build a :class:`Session` from a ``security_sessions`` row."""
    return Session(
        session_id=row[0],
        user_id=row[1],
        created_at=_required_ts(row[2]),
        last_seen_at=_required_ts(row[3]),
        ip_address=row[4],
        user_agent=row[5],
    )


def _session_values(s: Session) -> tuple[Any, ...]:
    return (
        s.session_id,
        s.user_id,
        _ts(s.created_at),
        _ts(s.last_seen_at),
        s.ip_address,
        s.user_agent,
    )


class SQLiteSessions(Repo):
    """The session registry in ``security_sessions`` (implements ``SessionRepository``)."""

    __slots__ = ()

    def get(self, session_id: str) -> Session | None:
        row = self._conn.execute(
            f"SELECT {_SESSION_COLUMNS} FROM security_sessions WHERE session_id = ?",  # noqa: S608
            (session_id,),
        ).fetchone()
        return None if row is None else session_from_row(row)

    def add(self, session: Session) -> None:
        self._check_writable()
        try:
            self._conn.execute(
                f"INSERT INTO security_sessions ({_SESSION_COLUMNS}) "  # noqa: S608 - constant
                "VALUES (?, ?, ?, ?, ?, ?)",
                _session_values(session),
            )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExistsError("session", session.session_id) from exc

    def update(self, session: Session) -> None:
        self._check_writable()
        values = _session_values(session)
        cursor = self._conn.execute(
            "UPDATE security_sessions SET user_id = ?, created_at = ?, last_seen_at = ?, "
            "ip_address = ?, user_agent = ? WHERE session_id = ?",
            (*values[1:], values[0]),
        )
        if cursor.rowcount != 1:
            raise NotFoundError("session", session.session_id)

    def delete(self, session_id: str) -> bool:
        self._check_writable()
        cursor = self._conn.execute(
            "DELETE FROM security_sessions WHERE session_id = ?", (session_id,)
        )
        return cursor.rowcount > 0

    def list_for_user(self, user_id: str) -> Sequence[Session]:
        rows = self._conn.execute(
            f"SELECT {_SESSION_COLUMNS} FROM security_sessions WHERE user_id = ? "  # noqa: S608
            "ORDER BY last_seen_at DESC, session_id",
            (user_id,),
        )
        return [session_from_row(row) for row in rows]

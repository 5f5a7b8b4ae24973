"""PostgreSQL repositories for the Security tab (migration 3).

Tables as in SQLite: ``security_credentials`` (one row per user),
``security_recovery_codes`` (deleted with their credentials row),
``security_throttle`` (failure counters by user and scope) and ``security_sessions``.

Concurrency: in a write transaction the credentials row and a session row are read
``FOR UPDATE``; a throttle read first takes the advisory lock of its user and scope,
so two failed attempts counted at once cannot both start from the same count (the
row may not exist yet, and a row lock cannot protect a missing row).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from enspace_profile._security.accounts import AccountManagement, ManagedBy
from enspace_profile._security.domain import AccountCredentials, Session, TotpEnrolment
from enspace_profile._security.lockout import FailureState
from enspace_profile._security.recovery import RecoveryCode, RecoveryCodeSet, RecoveryCodeState
from enspace_profile.exceptions import AlreadyExistsError, ConflictError, NotFoundError
from enspace_profile.stores._postgres_base import Lock, Repo

__all__ = [
    "SECURITY_MIGRATION",
    "PostgresCredentials",
    "PostgresSessions",
    "PostgresThrottle",
    "credential_values",
    "session_values",
]

_CLEAN = FailureState()

SECURITY_MIGRATION: Final = (
    """
    CREATE TABLE security_credentials (
        user_id text COLLATE "C" PRIMARY KEY,
        version integer NOT NULL CHECK (version >= 1),
        epoch integer NOT NULL CHECK (epoch >= 0),
        managed_provider text,
        managed_url text,
        password_hash text,
        password_changed_at timestamptz,
        totp_secret bytea,
        totp_created_at timestamptz,
        totp_enabled_at timestamptz,
        totp_last_step bigint,
        pending_totp_secret bytea,
        pending_totp_created_at timestamptz,
        recovery_generated_at timestamptz,
        recovery_confirmed_at timestamptz,
        pending_recovery_generated_at timestamptz
    )
    """,
    """
    CREATE TABLE security_recovery_codes (
        user_id text COLLATE "C" NOT NULL
            REFERENCES security_credentials (user_id) ON DELETE CASCADE,
        pending boolean NOT NULL,
        position integer NOT NULL CHECK (position >= 0),
        digest bytea NOT NULL,
        used_at timestamptz,
        PRIMARY KEY (user_id, pending, position)
    )
    """,
    """
    CREATE TABLE security_throttle (
        user_id text COLLATE "C" NOT NULL,
        scope text COLLATE "C" NOT NULL,
        consecutive_failures integer NOT NULL CHECK (consecutive_failures >= 0),
        locked_until timestamptz,
        window_start timestamptz,
        failures_in_window integer NOT NULL CHECK (failures_in_window >= 0),
        failures_in_previous_window integer NOT NULL CHECK (failures_in_previous_window >= 0),
        PRIMARY KEY (user_id, scope)
    )
    """,
    """
    CREATE TABLE security_sessions (
        session_id text COLLATE "C" PRIMARY KEY,
        user_id text COLLATE "C" NOT NULL,
        created_at timestamptz NOT NULL,
        last_seen_at timestamptz NOT NULL,
        ip_address text,
        user_agent text
    )
    """,
    "CREATE INDEX security_sessions_by_user ON security_sessions (user_id, last_seen_at)",
)
"""Schema migration 3: the Security tab's tables."""

CREDENTIAL_COLUMNS: Final = (
    "user_id, version, epoch, managed_provider, managed_url, password_hash, "
    "password_changed_at, totp_secret, totp_created_at, totp_enabled_at, totp_last_step, "
    "pending_totp_secret, pending_totp_created_at, recovery_generated_at, "
    "recovery_confirmed_at, pending_recovery_generated_at"
)
# One round trip: the record and its codes (none: one row of NULL code columns).
_SELECT_CREDENTIALS: Final = (
    "SELECT c.user_id, c.version, c.epoch, c.managed_provider, c.managed_url, "
    "c.password_hash, c.password_changed_at, c.totp_secret, c.totp_created_at, "
    "c.totp_enabled_at, c.totp_last_step, c.pending_totp_secret, c.pending_totp_created_at, "
    "c.recovery_generated_at, c.recovery_confirmed_at, c.pending_recovery_generated_at, "
    "r.pending, r.digest, r.used_at "
    "FROM security_credentials AS c LEFT JOIN security_recovery_codes AS r "
    "ON r.user_id = c.user_id WHERE c.user_id = %s ORDER BY r.pending, r.position"
)
INSERT_CREDENTIALS: Final = (
    f"INSERT INTO security_credentials ({CREDENTIAL_COLUMNS}) "  # noqa: S608 - constant
    f"VALUES ({', '.join(['%s'] * 16)})"
)
_UPDATE_CREDENTIALS: Final = (
    "UPDATE security_credentials SET version = %s, epoch = %s, managed_provider = %s, "
    "managed_url = %s, password_hash = %s, password_changed_at = %s, totp_secret = %s, "
    "totp_created_at = %s, totp_enabled_at = %s, totp_last_step = %s, "
    "pending_totp_secret = %s, pending_totp_created_at = %s, recovery_generated_at = %s, "
    "recovery_confirmed_at = %s, pending_recovery_generated_at = %s "
    "WHERE user_id = %s AND version = %s"
)
INSERT_CODES: Final = (
    "INSERT INTO security_recovery_codes (user_id, pending, position, digest, used_at) "
    "SELECT %s, p, n, d, t FROM unnest(%s::boolean[], %s::integer[], %s::bytea[], "
    "%s::timestamptz[]) AS c (p, n, d, t)"
)
THROTTLE_COLUMNS: Final = (
    "consecutive_failures, locked_until, window_start, failures_in_window, "
    "failures_in_previous_window"
)
UPSERT_THROTTLE: Final = (
    f"INSERT INTO security_throttle (user_id, scope, {THROTTLE_COLUMNS}) "  # noqa: S608 - constant
    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (user_id, scope) DO UPDATE SET "
    "consecutive_failures = excluded.consecutive_failures, "
    "locked_until = excluded.locked_until, window_start = excluded.window_start, "
    "failures_in_window = excluded.failures_in_window, "
    "failures_in_previous_window = excluded.failures_in_previous_window"
)
SESSION_COLUMNS: Final = "session_id, user_id, created_at, last_seen_at, ip_address, user_agent"
INSERT_SESSION: Final = (
    f"INSERT INTO security_sessions ({SESSION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"  # noqa: S608
)


def _totp(
    secret: bytes | None,
    created: datetime | None,
    enabled: datetime | None = None,
    last_step: int | None = None,
) -> TotpEnrolment | None:
    if secret is None or created is None:
        return None
    return TotpEnrolment(
        sealed_secret=secret, created_at=created, enabled_at=enabled, last_used_step=last_step
    )


def _credentials_from_rows(rows: Sequence[Sequence[Any]]) -> AccountCredentials:
    """Build :class:`AccountCredentials` from the rows of ``_SELECT_CREDENTIALS``."""
    row = rows[0]
    management = AccountManagement.local()
    if row[3] is not None:
        management = AccountManagement(managed_by=ManagedBy(provider=row[3], manage_url=row[4]))
    by_set: dict[bool, list[RecoveryCode]] = {False: [], True: []}
    for code_row in rows:
        if code_row[17] is not None:
            by_set[code_row[16]].append(RecoveryCode(digest=code_row[17], used_at=code_row[18]))
    active = None
    if row[13] is not None:
        active = RecoveryCodeSet(codes=by_set[False], generated_at=row[13], confirmed_at=row[14])
    pending_set = None
    if row[15] is not None:
        pending_set = RecoveryCodeSet(codes=by_set[True], generated_at=row[15])
    return AccountCredentials(
        user_id=row[0],
        version=row[1],
        epoch=row[2],
        management=management,
        password_hash=row[5],
        password_changed_at=row[6],
        totp=_totp(row[7], row[8], row[9], row[10]),
        pending_totp=_totp(row[11], row[12]),
        recovery=RecoveryCodeState(active=active, pending=pending_set),
    )


def credential_values(c: AccountCredentials) -> tuple[Any, ...]:
    """The columns after ``user_id`` in ``CREDENTIAL_COLUMNS`` order."""
    managed = c.management.managed_by
    totp, pending = c.totp, c.pending_totp
    active_set, pending_set = c.recovery.active, c.recovery.pending
    return (
        c.version,
        c.epoch,
        None if managed is None else managed.provider,
        None if managed is None else managed.manage_url,
        c.password_hash,
        c.password_changed_at,
        None if totp is None else totp.sealed_secret,
        None if totp is None else totp.created_at,
        None if totp is None else totp.enabled_at,
        None if totp is None else totp.last_used_step,
        None if pending is None else pending.sealed_secret,
        None if pending is None else pending.created_at,
        None if active_set is None else active_set.generated_at,
        None if active_set is None else active_set.confirmed_at,
        None if pending_set is None else pending_set.generated_at,
    )


def code_values(c: AccountCredentials) -> tuple[Any, ...] | None:
    """The parameters of ``INSERT_CODES`` for ``c``'s recovery codes (``None``: no code)."""
    pending: list[bool] = []
    positions: list[int] = []
    digests: list[bytes] = []
    used: list[datetime | None] = []
    for is_pending, code_set in ((False, c.recovery.active), (True, c.recovery.pending)):
        if code_set is None:
            continue
        for position, code in enumerate(code_set.codes):
            pending.append(is_pending)
            positions.append(position)
            digests.append(code.digest)
            used.append(code.used_at)
    if not digests:
        return None
    return (c.user_id, pending, positions, digests, used)


class PostgresCredentials(Repo):
    """AccountCredentials in ``security_credentials`` and ``security_recovery_codes``.

    Implements ``CredentialRepository``.
    """

    __slots__ = ()

    def get(self, user_id: str) -> AccountCredentials | None:
        lock = " FOR UPDATE OF c" if self._unit.writable else ""
        rows = self._unit.execute(_SELECT_CREDENTIALS + lock, (user_id,)).fetchall()
        return _credentials_from_rows(rows) if rows else None

    def add(self, credentials: AccountCredentials) -> None:
        self._check_writable()
        cursor = self._unit.execute(
            INSERT_CREDENTIALS + " ON CONFLICT DO NOTHING",
            (credentials.user_id, *credential_values(credentials)),
        )
        if cursor.rowcount != 1:
            raise AlreadyExistsError("credentials", credentials.user_id)
        self._write_codes(credentials)

    def update(self, credentials: AccountCredentials, *, expected_version: int) -> None:
        self._check_writable()
        user_id = credentials.user_id
        cursor = self._unit.execute(
            _UPDATE_CREDENTIALS, (*credential_values(credentials), user_id, expected_version)
        )
        if cursor.rowcount != 1:
            row = self._unit.execute(
                "SELECT version FROM security_credentials WHERE user_id = %s", (user_id,)
            ).fetchone()
            if row is None:
                raise NotFoundError("credentials", user_id)
            raise ConflictError(
                "credentials", user_id, expected_version=expected_version, current_version=row[0]
            )
        self._unit.queue("DELETE FROM security_recovery_codes WHERE user_id = %s", (user_id,))
        self._write_codes(credentials)

    def _write_codes(self, credentials: AccountCredentials) -> None:
        values = code_values(credentials)
        if values is not None:
            self._unit.queue(INSERT_CODES, values)

    def delete(self, user_id: str) -> bool:
        self._check_writable()
        cursor = self._unit.execute(
            "DELETE FROM security_credentials WHERE user_id = %s", (user_id,)
        )
        return cursor.rowcount > 0

    def list_user_ids(self, *, after: str | None = None, limit: int = 100) -> Sequence[str]:
        if after is None:
            cursor = self._unit.execute(
                "SELECT user_id FROM security_credentials ORDER BY user_id LIMIT %s",
                (max(limit, 0),),
            )
        else:
            cursor = self._unit.execute(
                "SELECT user_id FROM security_credentials WHERE user_id > %s "
                "ORDER BY user_id LIMIT %s",
                (after, max(limit, 0)),
            )
        rows = cursor.fetchall()
        return [row[0] for row in rows]


class PostgresThrottle(Repo):
    """Failure counters in ``security_throttle`` (implements ``ThrottleRepository``)."""

    __slots__ = ()

    def get(self, user_id: str, scope: str) -> FailureState:
        if self._unit.writable:
            self._unit.lock(Lock.THROTTLE, f"{user_id}\x1f{scope}")
        row = self._unit.execute(
            f"SELECT {THROTTLE_COLUMNS} FROM security_throttle "  # noqa: S608 - constant
            "WHERE user_id = %s AND scope = %s",
            (user_id, scope),
        ).fetchone()
        if row is None:
            return _CLEAN
        return FailureState(
            consecutive_failures=row[0],
            locked_until=row[1],
            window_start=row[2],
            failures_in_window=row[3],
            failures_in_previous_window=row[4],
        )

    def put(self, user_id: str, scope: str, state: FailureState) -> None:
        self._check_writable()
        if state == _CLEAN:
            self._unit.execute(
                "DELETE FROM security_throttle WHERE user_id = %s AND scope = %s",
                (user_id, scope),
            )
            return
        self._unit.execute(UPSERT_THROTTLE, (user_id, scope, *throttle_values(state)))


def throttle_values(state: FailureState) -> tuple[Any, ...]:
    """The values of ``THROTTLE_COLUMNS`` for ``state``."""
    return (
        state.consecutive_failures,
        state.locked_until,
        state.window_start,
        state.failures_in_window,
        state.failures_in_previous_window,
    )


def _session_from_row(row: Sequence[Any]) -> Session:
    return Session(
        session_id=row[0],
        user_id=row[1],
        created_at=row[2],
        last_seen_at=row[3],
        ip_address=row[4],
        user_agent=row[5],
    )


def session_values(s: Session) -> tuple[Any, ...]:
    """The values of ``SESSION_COLUMNS`` for ``s``."""
    return (s.session_id, s.user_id, s.created_at, s.last_seen_at, s.ip_address, s.user_agent)


class PostgresSessions(Repo):
    """The session registry in ``security_sessions`` (implements ``SessionRepository``)."""

    __slots__ = ()

    def get(self, session_id: str) -> Session | None:
        row = self._unit.execute(
            f"SELECT {SESSION_COLUMNS} FROM security_sessions WHERE session_id = %s"  # noqa: S608
            + self._for_update,
            (session_id,),
        ).fetchone()
        return None if row is None else _session_from_row(row)

    def add(self, session: Session) -> None:
        self._check_writable()
        cursor = self._unit.execute(
            INSERT_SESSION + " ON CONFLICT DO NOTHING", session_values(session)
        )
        if cursor.rowcount != 1:
            raise AlreadyExistsError("session", session.session_id)

    def update(self, session: Session) -> None:
        self._check_writable()
        values = session_values(session)
        cursor = self._unit.execute(
            "UPDATE security_sessions SET user_id = %s, created_at = %s, last_seen_at = %s, "
            "ip_address = %s, user_agent = %s WHERE session_id = %s",
            (*values[1:], values[0]),
        )
        if cursor.rowcount != 1:
            raise NotFoundError("session", session.session_id)

    def delete(self, session_id: str) -> bool:
        self._check_writable()
        cursor = self._unit.execute(
            "DELETE FROM security_sessions WHERE session_id = %s", (session_id,)
        )
        return cursor.rowcount > 0

    def list_for_user(self, user_id: str) -> Sequence[Session]:
        if self._unit.writable:
            self._unit.lock(Lock.USER_SESSIONS, user_id)
        rows = self._unit.execute(
            f"SELECT {SESSION_COLUMNS} FROM security_sessions WHERE user_id = %s "  # noqa: S608
            "ORDER BY last_seen_at DESC, session_id" + self._for_update,
            (user_id,),
        ).fetchall()
        return [_session_from_row(row) for row in rows]

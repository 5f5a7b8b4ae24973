"""In-memory Security tab repositories (part of :class:`~enspace_profile.MemoryStorage`).

AccountCredentials, failure counters and sessions are frozen objects, so the tables simply
hold them; every write goes through the transaction's journal to be undone on rollback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from enspace_profile._security.domain import AccountCredentials, Session
from enspace_profile._security.lockout import FailureState
from enspace_profile.exceptions import AlreadyExistsError, ConflictError, NotFoundError

if TYPE_CHECKING:
    from enspace_profile.stores.memory import Journal

__all__ = ["MemoryCredentials", "MemorySessions", "MemoryThrottle", "SecurityTables"]

_CLEAN = FailureState()


@attrs.define
class SecurityTables:
    """The Security tab's state inside one MemoryStorage.

    Attributes:
        credentials: AccountCredentials by user id.
        throttle: Failure counters by ``(user_id, scope)``.
        sessions: Sessions by session id.
    """

    credentials: dict[str, AccountCredentials] = attrs.Factory(dict)
    throttle: dict[tuple[str, str], FailureState] = attrs.Factory(dict)
    sessions: dict[str, Session] = attrs.Factory(dict)


class MemoryCredentials:
    """AccountCredentials in memory (implements ``CredentialRepository``)."""

    __slots__ = ("_j", "_t")

    def __init__(self, tables: SecurityTables, journal: Journal) -> None:
        self._t = tables
        self._j = journal

    def get(self, user_id: str) -> AccountCredentials | None:
        return self._t.credentials.get(user_id)

    def add(self, credentials: AccountCredentials) -> None:
        if credentials.user_id in self._t.credentials:
            raise AlreadyExistsError("credentials", credentials.user_id)
        self._j.put(self._t.credentials, credentials.user_id, credentials)

    def update(self, credentials: AccountCredentials, *, expected_version: int) -> None:
        current = self._t.credentials.get(credentials.user_id)
        if current is None:
            raise NotFoundError("credentials", credentials.user_id)
        if current.version != expected_version:
            raise ConflictError(
                "credentials",
                credentials.user_id,
                expected_version=expected_version,
                current_version=current.version,
            )
        self._j.put(self._t.credentials, credentials.user_id, credentials)

    def delete(self, user_id: str) -> bool:
        return isinstance(self._j.pop(self._t.credentials, user_id), AccountCredentials)

    def list_user_ids(self, *, after: str | None = None, limit: int = 100) -> Sequence[str]:
        ids = sorted(uid for uid in self._t.credentials if after is None or uid > after)
        return ids[: max(limit, 0)]


class MemoryThrottle:
    """Failure counters in memory (implements ``ThrottleRepository``)."""

    __slots__ = ("_j", "_t")

    def __init__(self, tables: SecurityTables, journal: Journal) -> None:
        self._t = tables
        self._j = journal

    def get(self, user_id: str, scope: str) -> FailureState:
        return self._t.throttle.get((user_id, scope), _CLEAN)

    def put(self, user_id: str, scope: str, state: FailureState) -> None:
        if state == _CLEAN:
            self._j.pop(self._t.throttle, (user_id, scope))
        else:
            self._j.put(self._t.throttle, (user_id, scope), state)


class MemorySessions:
    """The session registry in memory (implements ``SessionRepository``)."""

    __slots__ = ("_j", "_t")

    def __init__(self, tables: SecurityTables, journal: Journal) -> None:
        self._t = tables
        self._j = journal

    def get(self, session_id: str) -> Session | None:
        return self._t.sessions.get(session_id)

    def add(self, session: Session) -> None:
        if session.session_id in self._t.sessions:
            raise AlreadyExistsError("session", session.session_id)
        self._j.put(self._t.sessions, session.session_id, session)

    def update(self, session: Session) -> None:
        if session.session_id not in self._t.sessions:
            raise NotFoundError("session", session.session_id)
        self._j.put(self._t.sessions, session.session_id, session)

    def delete(self, session_id: str) -> bool:
        return isinstance(self._j.pop(self._t.sessions, session_id), Session)

    def list_for_user(self, user_id: str) -> Sequence[Session]:
        mine = sorted(
            (s for s in self._t.sessions.values() if s.user_id == user_id),
            key=lambda s: s.session_id,
        )
        mine.sort(key=lambda s: s.last_seen_at, reverse=True)  # stable: ties stay by id
        return mine

"""The in-memory storage adapter: real, thread-safe, and shipped for hosts' own tests.

It behaves like the SQLite adapter: transactions commit or roll back as a whole,
write transactions are serialised, duplicates and stale versions raise the same
errors, and lists come back in the same order. It keeps nothing after the process
ends.

Implementation: one re-entrant-free lock serialises transactions (readers included,
so nobody ever sees uncommitted data), and every write records its inverse in a
journal that is replayed backwards on rollback.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import attrs

from enspace_profile._audit import AuditEvent
from enspace_profile._profile.domain import Profile
from enspace_profile._tokens.domain import TokenCredential
from enspace_profile.exceptions import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    StorageError,
)
from enspace_profile.stores._memory_integrations import IntegrationTables, MemoryIntegrations
from enspace_profile.stores._memory_lab import LabTables, MemoryLab
from enspace_profile.stores._memory_security import (
    MemoryCredentials,
    MemorySessions,
    MemoryThrottle,
    SecurityTables,
)
from enspace_profile.stores._memory_tokens import MemoryTokens, TokenTables
from enspace_profile.typing import Blob

__all__ = ["MemoryStorage", "MemoryTransaction"]

_MISSING: Any = object()


class Journal:
    """Undo log of one transaction: each mutation registers how to reverse it."""

    __slots__ = ("_commit", "_undo", "writable")

    def __init__(self, *, writable: bool) -> None:
        self._undo: list[Callable[[], None]] = []
        self._commit: list[Callable[[], None]] = []
        self.writable = writable

    def _check(self) -> None:
        if not self.writable:
            msg = "attempt to write in a read-only transaction"
            raise StorageError(msg, code="storage.read_only")

    def put(self, table: MutableMapping[Any, Any], key: Any, value: Any) -> None:
        """Set ``table[key] = value``, remembering the previous state."""
        self._check()
        old = table.get(key, _MISSING)
        self._undo.append(lambda: _restore(table, key, old))
        table[key] = value

    def pop(self, table: MutableMapping[Any, Any], key: Any) -> Any:
        """Remove and return ``table[key]`` (or ``_MISSING``), remembering it."""
        self._check()
        old = table.pop(key, _MISSING)
        if old is not _MISSING:
            self._undo.append(lambda: _restore(table, key, old))
        return old

    def append(self, items: list[Any], item: Any) -> None:
        """Append to a list, remembering to remove it."""
        self._check()
        items.append(item)
        self._undo.append(items.pop)

    def on_undo(self, action: Callable[[], None]) -> None:
        """Register a custom undo action (for structures other than dicts and lists)."""
        self._check()
        self._undo.append(action)

    def on_commit(self, action: Callable[[], None]) -> None:
        """Register an action to run once the transaction commits (still under the lock)."""
        self._check()
        self._commit.append(action)

    def commit(self) -> None:
        """Run the registered commit actions, in order."""
        actions, self._commit = self._commit, []
        for action in actions:
            action()

    def rollback(self) -> None:
        """Undo every mutation, newest first."""
        while self._undo:
            self._undo.pop()()


def _restore(table: MutableMapping[Any, Any], key: Any, old: Any) -> None:
    if old is _MISSING:
        table.pop(key, None)
    else:
        table[key] = old


@attrs.define
class _Tables:
    """All state of one MemoryStorage."""

    profiles: dict[str, Profile] = attrs.Factory(dict)
    audit: list[AuditEvent] = attrs.Factory(list)
    audit_ids: set[str] = attrs.Factory(set)
    blobs: dict[str, tuple[Blob, int]] = attrs.Factory(dict)
    tokens: TokenTables = attrs.Factory(TokenTables)
    lab: LabTables = attrs.Factory(LabTables)
    security: SecurityTables = attrs.Factory(SecurityTables)
    integrations: IntegrationTables = attrs.Factory(IntegrationTables)


class _Profiles:
    __slots__ = ("_j", "_t")

    def __init__(self, tables: _Tables, journal: Journal) -> None:
        self._t = tables
        self._j = journal

    def get(self, user_id: str) -> Profile | None:
        return self._t.profiles.get(user_id)

    def add(self, profile: Profile) -> None:
        if profile.user_id in self._t.profiles:
            raise AlreadyExistsError("profile", profile.user_id)
        self._j.put(self._t.profiles, profile.user_id, profile)

    def update(self, profile: Profile, *, expected_version: int) -> None:
        current = self._t.profiles.get(profile.user_id)
        if current is None:
            raise NotFoundError("profile", profile.user_id)
        if current.version != expected_version:
            raise ConflictError(
                "profile",
                profile.user_id,
                expected_version=expected_version,
                current_version=current.version,
            )
        self._j.put(self._t.profiles, profile.user_id, profile)

    def delete(self, user_id: str) -> bool:
        return self._j.pop(self._t.profiles, user_id) is not _MISSING


class _Audit:
    __slots__ = ("_j", "_t")

    def __init__(self, tables: _Tables, journal: Journal) -> None:
        self._t = tables
        self._j = journal

    def append(self, event: AuditEvent) -> None:
        if event.id in self._t.audit_ids:
            raise AlreadyExistsError("audit_event", event.id)
        self._j.append(self._t.audit, event)
        ids = self._t.audit_ids
        ids.add(event.id)
        self._j.on_undo(lambda: ids.discard(event.id))

    def list_for_user(
        self,
        user_id: str,
        *,
        kinds: Collection[str] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Sequence[AuditEvent]:
        events = [
            e for e in self._t.audit if e.user_id == user_id and (kinds is None or e.kind in kinds)
        ]
        if newest_first:
            events.reverse()
        return events if limit is None else events[: max(limit, 0)]


class _Blobs:
    __slots__ = ("_j", "_t")

    def __init__(self, tables: _Tables, journal: Journal) -> None:
        self._t = tables
        self._j = journal

    def acquire(self, blob: Blob) -> None:
        held = self._t.blobs.get(blob.sha256)
        count = 0 if held is None else held[1]
        self._j.put(self._t.blobs, blob.sha256, (blob if held is None else held[0], count + 1))

    def release(self, sha256: str) -> None:
        held = self._t.blobs.get(sha256)
        if held is None:
            return
        if held[1] <= 1:
            self._j.pop(self._t.blobs, sha256)
        else:
            self._j.put(self._t.blobs, sha256, (held[0], held[1] - 1))

    def get(self, sha256: str) -> Blob | None:
        held = self._t.blobs.get(sha256)
        return None if held is None else held[0]

    def references(self, sha256: str) -> int:
        held = self._t.blobs.get(sha256)
        return 0 if held is None else held[1]


class MemoryTransaction:
    """A unit of work over a :class:`MemoryStorage` (a ``Transaction``).

    Repositories are created on first use: most transactions touch one or two of them.
    """

    profiles: _Profiles
    audit: _Audit
    blobs: _Blobs
    lab: MemoryLab
    credentials: MemoryCredentials
    throttle: MemoryThrottle
    sessions: MemorySessions
    integrations: MemoryIntegrations
    tokens: MemoryTokens

    _REPOSITORIES: ClassVar[dict[str, Callable[[_Tables, Journal], object]]] = {
        "profiles": _Profiles,
        "audit": _Audit,
        "blobs": _Blobs,
        "lab": lambda t, j: MemoryLab(t.lab, j),
        "credentials": lambda t, j: MemoryCredentials(t.security, j),
        "throttle": lambda t, j: MemoryThrottle(t.security, j),
        "sessions": lambda t, j: MemorySessions(t.security, j),
        "integrations": lambda t, j: MemoryIntegrations(t.integrations, j),
        "tokens": lambda t, j: MemoryTokens(t.tokens, j),
    }

    def __init__(self, tables: _Tables, journal: Journal) -> None:
        self.tables = tables
        self.journal = journal

    def __getattr__(self, name: str) -> object:
        # Only called for attributes not set yet: build the repository once, keep it.
        factory = MemoryTransaction._REPOSITORIES.get(name)
        if factory is None:
            raise AttributeError(name)
        repo = factory(self.tables, self.journal)
        setattr(self, name, repo)
        return repo


class MemoryStorage:
    """Thread-safe in-memory storage with the same semantics as :class:`SQLiteStorage`.

    >>> from enspace_profile import MemoryStorage
    >>> storage = MemoryStorage()
    >>> with storage.transaction() as tx:
    ...     tx.profiles.get("nobody") is None
    True
    """

    def __init__(self) -> None:
        self._tables = _Tables()
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[MemoryTransaction]:
        """Open a unit of work: commit on normal exit, roll back on any exception."""
        if self._closed:
            msg = "storage is closed"
            raise StorageError(msg, code="storage.closed")
        with self._lock:
            journal = Journal(writable=write)
            try:
                yield MemoryTransaction(self._tables, journal)
            except BaseException:
                journal.rollback()
                raise
            journal.commit()

    def token_lookup(self) -> Callable[[bytes], TokenCredential | None]:
        """Return the lock-free ``digest -> credential`` lookup (see ``SupportsTokenLookup``).

        It reads a map that only changes when a transaction commits, with a single
        (atomic) ``dict.get``: no lock, nothing uncommitted.
        """
        get = self._tables.tokens.credentials.get

        def lookup(digest: bytes) -> TokenCredential | None:
            if self._closed:
                msg = "storage is closed"
                raise StorageError(msg, code="storage.closed")
            return get(digest)

        return lookup

    def close(self) -> None:
        """Mark the storage closed (further transactions raise ``StorageError``)."""
        self._closed = True

    def __repr__(self) -> str:
        return f"<MemoryStorage profiles={len(self._tables.profiles)}>"

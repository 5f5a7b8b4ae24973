"""The embedded default: storage in one SQLite file, safe across threads and processes.

Every connection is set up the same way, right after connecting and outside any
transaction (where some pragmas are silently ignored):

* ``foreign_keys = ON``;
* a busy timeout, so a writer waits for another instead of failing at once;
* WAL journal (readers never block the writer) with ``synchronous = NORMAL``.

Transactions are managed explicitly (the driver's implicit transactions do not cover
a read before a write in Python 3.11): ``BEGIN IMMEDIATE`` for writes, so the write
lock is taken up front and a read-then-write never fails with "database is locked"
on upgrade; plain ``BEGIN`` for reads, which then see one consistent snapshot.

Each thread (and each process, after a fork) gets its own connection to a file
database. ``":memory:"`` uses a single connection guarded by a lock, since every
connection to ``":memory:"`` would otherwise be a different, empty database.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import ClassVar, Self

from enspace_profile._tokens.domain import TokenCredential
from enspace_profile.exceptions import SchemaVersionError, StorageError
from enspace_profile.stores._sqlite_base import Repo, translate
from enspace_profile.stores._sqlite_integrations import SQLiteIntegrations
from enspace_profile.stores._sqlite_lab import SQLiteLab
from enspace_profile.stores._sqlite_profiles import SQLiteAudit, SQLiteBlobs, SQLiteProfiles
from enspace_profile.stores._sqlite_schema import latest_version, ordered
from enspace_profile.stores._sqlite_security import (
    SQLiteCredentials,
    SQLiteSessions,
    SQLiteThrottle,
)
from enspace_profile.stores._sqlite_tokens import SQLiteTokens, token_lookup

__all__ = ["MINIMUM_SQLITE_VERSION", "SQLiteStorage", "SQLiteTransaction"]

#: STRICT tables need SQLite 3.37.0 (2021-11-27).
MINIMUM_SQLITE_VERSION = (3, 37, 0)


class SQLiteTransaction:
    """A unit of work on one connection (see :class:`enspace_profile.typing.Transaction`).

    Repositories are created on first use: most transactions touch one or two of them.
    """

    profiles: SQLiteProfiles
    audit: SQLiteAudit
    blobs: SQLiteBlobs
    credentials: SQLiteCredentials
    throttle: SQLiteThrottle
    sessions: SQLiteSessions
    lab: SQLiteLab
    integrations: SQLiteIntegrations
    tokens: SQLiteTokens

    _REPOSITORIES: ClassVar[dict[str, type[Repo]]] = {
        "profiles": SQLiteProfiles,
        "audit": SQLiteAudit,
        "blobs": SQLiteBlobs,
        "credentials": SQLiteCredentials,
        "throttle": SQLiteThrottle,
        "sessions": SQLiteSessions,
        "lab": SQLiteLab,
        "integrations": SQLiteIntegrations,
        "tokens": SQLiteTokens,
    }

    def __init__(self, connection: sqlite3.Connection, *, writable: bool) -> None:
        self.connection = connection
        self.writable = writable

    def __getattr__(self, name: str) -> Repo:
        # Only called for attributes not set yet: build the repository once, keep it.
        factory = SQLiteTransaction._REPOSITORIES.get(name)
        if factory is None:
            raise AttributeError(name)
        repo = factory(self.connection, writable=self.writable)
        setattr(self, name, repo)
        return repo


class _Local(threading.local):
    pid: int = -1
    connection: sqlite3.Connection | None = None


class SQLiteStorage:
    """Storage in a SQLite file (or ``":memory:"``), created and migrated on open.

    Args:
        path: The database file, or ``":memory:"`` for a private in-memory database.
        busy_timeout: Seconds a writer waits for another writer before giving up
            with :class:`~enspace_profile.exceptions.StorageBusyError`.

    Raises:
        StorageError: if the SQLite library is too old or the file is unusable.
        SchemaVersionError: if the file was written by a newer version of this library.

    >>> from enspace_profile import SQLiteStorage
    >>> storage = SQLiteStorage(":memory:")
    >>> storage.schema_version == storage.latest_schema_version
    True
    >>> storage.close()
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0) -> None:
        if sqlite3.sqlite_version_info < MINIMUM_SQLITE_VERSION:
            need = ".".join(map(str, MINIMUM_SQLITE_VERSION))
            msg = (
                f"SQLiteStorage needs SQLite {need} or newer (STRICT tables); this Python "
                f"is linked against {sqlite3.sqlite_version}"
            )
            raise StorageError(msg, code="storage.sqlite_too_old")
        self._path = str(path)
        self._memory = self._path == ":memory:" or self._path.startswith("file::memory:")
        self._busy_timeout = busy_timeout
        self._local = _Local()
        self._all: list[sqlite3.Connection] = []
        self._registry_lock = threading.Lock()
        # Serialises ":memory:" use of one connection. Re-entrant, so that nesting on one
        # thread reaches the "nested transaction" error instead of deadlocking.
        self._shared_lock = threading.RLock()
        self._shared: sqlite3.Connection | None = None
        self._closed = False
        if not self._memory:
            Path(self._path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.schema_version = self._migrate()

    @property
    def path(self) -> str:
        """The database path as given."""
        return self._path

    @property
    def latest_schema_version(self) -> int:
        """The schema version this library writes."""
        return latest_version()

    # -- connections ---------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=not self._memory,
                cached_statements=256,
                uri=self._path.startswith("file:"),
            )
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            if not self._memory:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        with self._registry_lock:
            self._all.append(conn)
        return conn

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            msg = "storage is closed"
            raise StorageError(msg, code="storage.closed")
        if self._memory:
            if self._shared is None:
                self._shared = self._connect()
            return self._shared
        local = self._local
        pid = os.getpid()
        conn = local.connection
        if conn is None or local.pid != pid:
            # A connection inherited through fork() must never be used by the child.
            conn = self._connect()
            local.connection, local.pid = conn, pid
        return conn

    # -- transactions ----------------------------------------------------------------

    def transaction(self, *, write: bool = True) -> _Unit:
        """Open a unit of work: commit on normal exit, roll back on any exception.

        Args:
            write: Take the write lock up front (``BEGIN IMMEDIATE``). With ``False``
                the transaction reads a consistent snapshot and refuses writes.

        Raises:
            StorageBusyError: if the write lock could not be had within the busy timeout.
            StorageError: for nested transactions on one thread and other driver failures.
        """
        return _Unit(self, write=write, lock=self._shared_lock if self._memory else None)

    def token_lookup(self) -> Callable[[bytes], TokenCredential | None]:
        """Return the ``digest -> credential`` lookup (see ``SupportsTokenLookup``).

        The hot path of ``panel.tokens.authenticate``: a single ``SELECT`` needs no
        ``BEGIN``/``COMMIT`` (it reads one consistent snapshot on its own), so it runs
        directly on the thread's connection.
        """
        if self._memory:  # one shared connection, used under the lock
            shared = SimpleNamespace(connection=self._connection(), pid=os.getpid())
            lookup = token_lookup(shared, self._connection)

            def locked(digest: bytes) -> TokenCredential | None:
                with self._shared_lock:
                    return lookup(digest)

            return locked
        return token_lookup(self._local, self._connection)

    # -- schema ----------------------------------------------------------------------

    def _migrate(self) -> int:
        """Create or upgrade the schema in one write transaction; return the version."""
        with self.transaction() as tx:
            found = tx.connection.execute("PRAGMA user_version").fetchone()[0]
            _refuse_newer_schema(self._path, found)
            for migration in ordered():
                if migration.version > found:
                    for statement in migration.statements:
                        tx.connection.execute(statement)
                    tx.connection.execute(f"PRAGMA user_version = {migration.version}")
        return latest_version()

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection this storage opened (all threads). Idempotent."""
        self._closed = True
        with self._registry_lock:
            connections, self._all = self._all, []
        for conn in connections:
            with suppress(sqlite3.Error):
                conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SQLiteStorage path={self._path!r}>"


def _refuse_newer_schema(path: str, found: int) -> None:
    latest = latest_version()
    if found > latest:
        msg = (
            f"{path} has schema version {found}, but this version of "
            f"enspace_profile only knows up to {latest}: upgrade enspace_profile"
        )
        raise SchemaVersionError(msg, found=found, supported=latest)


class _Unit:
    """The context manager behind :meth:`SQLiteStorage.transaction`.

    A plain class rather than a generator-based ``@contextmanager``: it runs on every
    storage call, and this shape costs a fraction of a generator's set-up.
    """

    __slots__ = ("_conn", "_lock", "_storage", "_write")

    def __init__(
        self, storage: SQLiteStorage, *, write: bool, lock: threading.RLock | None
    ) -> None:
        self._storage = storage
        self._write = write
        self._lock = lock
        self._conn: sqlite3.Connection | None = None

    def __enter__(self) -> SQLiteTransaction:
        if self._lock is not None:
            self._lock.acquire()
        try:
            conn = _begin(self._storage._connection(), write=self._write)  # noqa: SLF001
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise
        self._conn = conn
        return SQLiteTransaction(conn, writable=self._write)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self._conn
        assert conn is not None
        try:
            if exc is None:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as error:
                    _rollback(conn)
                    raise translate(error) from error
                return
            _rollback(conn)
            if isinstance(exc, sqlite3.Error):
                raise translate(exc) from exc
        finally:
            if self._lock is not None:
                self._lock.release()


def _begin(conn: sqlite3.Connection, *, write: bool) -> sqlite3.Connection:
    if conn.in_transaction:
        msg = "a transaction is already open on this thread; nesting is not supported"
        raise StorageError(msg, code="storage.nested_transaction")
    try:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    except sqlite3.Error as exc:
        raise translate(exc) from exc
    return conn


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with suppress(sqlite3.Error):  # a broken connection has nothing to roll back
            conn.execute("ROLLBACK")

"""Storage in PostgreSQL, for hosts that run many application servers on one database.

Needs the ``postgres`` extra (``pip install 'enspace-profile[postgres]'``: psycopg 3
and psycopg_pool); importing this module without it raises
:class:`~enspace_profile.exceptions.MissingExtraError`.

How it keeps the contract (see ``docs/postgres.md`` for the long version):

* **Transactions.** Write transactions run at ``READ COMMITTED`` and *lock what they
  read*: a single row read in a write transaction is read ``FOR UPDATE``; a read of a
  user's *set* of rows that a decision depends on (count of live tokens before
  creating one, the throttle counters before counting a failure, a user's lab
  choices, connections or sessions) first takes a transaction-scoped advisory lock
  for that user. So a read-modify-write of one user's data never loses an update and
  never fails with a serialization error, while writers for different users run in
  parallel. Read-only transactions are ``REPEATABLE READ READ ONLY`` snapshots and
  take no locks.
* **Round trips.** ``BEGIN`` travels with the first statement and audit appends with
  ``COMMIT``; with pipelining (the default for a server on another machine) each
  batch is one round trip, so a profile Save costs three.
* **Errors.** Only our exceptions leave: a dead pooled connection, a deadlock or a
  serialization failure on the first batch of a transaction is retried on another
  connection; later, a deadlock or lock timeout raises
  :class:`~enspace_profile.exceptions.StorageBusyError` (retry the operation), a lost
  connection :class:`~enspace_profile.exceptions.StorageError`.
* **Schema.** Versioned migrations are applied on open, in one transaction under an
  advisory lock, so several processes may start at once; a schema written by a newer
  version of this library is refused with
  :class:`~enspace_profile.exceptions.SchemaVersionError`.
"""

from __future__ import annotations

try:
    import psycopg
    import psycopg_pool
except ImportError as _missing:
    from enspace_profile.exceptions import MissingExtraError

    raise MissingExtraError(
        "postgres", "enspace_profile.stores.postgres (PostgreSQL storage)"
    ) from _missing

import ipaddress
import os
import threading
from contextlib import suppress
from os import getpid
from types import TracebackType
from typing import Any, Final, Self

from psycopg.conninfo import conninfo_to_dict

from enspace_profile._tokens.domain import TokenCredential
from enspace_profile.exceptions import (
    StorageBusyError,
    StorageError,
    ValidationError,
)
from enspace_profile.stores._postgres_base import PIPELINE_SUPPORTED, Unit, translate
from enspace_profile.stores._postgres_import import ImportReport, copy_sqlite
from enspace_profile.stores._postgres_integrations import PostgresIntegrations
from enspace_profile.stores._postgres_lab import PostgresLab
from enspace_profile.stores._postgres_profiles import (
    PostgresAudit,
    PostgresBlobs,
    PostgresProfiles,
)
from enspace_profile.stores._postgres_schema import apply_migrations, latest_version
from enspace_profile.stores._postgres_security import (
    PostgresCredentials,
    PostgresSessions,
    PostgresThrottle,
)
from enspace_profile.stores._postgres_tokens import (
    LOOKUP,
    PostgresTokens,
    TokenLookup,
    credential_from_row,
)

__all__ = ["ImportReport", "PostgresStorage", "PostgresTransaction", "import_sqlite"]

_MAX_IDENTIFIER: Final = 63


class PostgresTransaction:
    """A unit of work on one pooled connection (see :class:`enspace_profile.typing.Transaction`).

    Repositories are created on first use; the connection is taken from the pool
    only when the first statement runs.
    """

    __slots__ = (
        "_audit",
        "_blobs",
        "_credentials",
        "_integrations",
        "_lab",
        "_profiles",
        "_sessions",
        "_throttle",
        "_tokens",
        "unit",
    )

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self._profiles: PostgresProfiles | None = None
        self._audit: PostgresAudit | None = None
        self._blobs: PostgresBlobs | None = None
        self._tokens: PostgresTokens | None = None
        self._credentials: PostgresCredentials | None = None
        self._throttle: PostgresThrottle | None = None
        self._sessions: PostgresSessions | None = None
        self._lab: PostgresLab | None = None
        self._integrations: PostgresIntegrations | None = None

    @property
    def writable(self) -> bool:
        """Whether this is a write transaction."""
        return self.unit.writable

    @property
    def profiles(self) -> PostgresProfiles:
        """The profiles repository."""
        repo = self._profiles
        if repo is None:
            repo = self._profiles = PostgresProfiles(self.unit)
        return repo

    @property
    def audit(self) -> PostgresAudit:
        """The audit log."""
        repo = self._audit
        if repo is None:
            repo = self._audit = PostgresAudit(self.unit)
        return repo

    @property
    def blobs(self) -> PostgresBlobs:
        """The blob repository."""
        repo = self._blobs
        if repo is None:
            repo = self._blobs = PostgresBlobs(self.unit)
        return repo

    @property
    def tokens(self) -> PostgresTokens:
        """The personal access token repository."""
        repo = self._tokens
        if repo is None:
            repo = self._tokens = PostgresTokens(self.unit)
        return repo

    @property
    def credentials(self) -> PostgresCredentials:
        """The credential repository (Security tab)."""
        repo = self._credentials
        if repo is None:
            repo = self._credentials = PostgresCredentials(self.unit)
        return repo

    @property
    def throttle(self) -> PostgresThrottle:
        """The failure counter repository (Security tab)."""
        repo = self._throttle
        if repo is None:
            repo = self._throttle = PostgresThrottle(self.unit)
        return repo

    @property
    def sessions(self) -> PostgresSessions:
        """The session registry (Security tab)."""
        repo = self._sessions
        if repo is None:
            repo = self._sessions = PostgresSessions(self.unit)
        return repo

    @property
    def lab(self) -> PostgresLab:
        """The lab choices repository."""
        repo = self._lab
        if repo is None:
            repo = self._lab = PostgresLab(self.unit)
        return repo

    @property
    def integrations(self) -> PostgresIntegrations:
        """The integrations repository."""
        repo = self._integrations
        if repo is None:
            repo = self._integrations = PostgresIntegrations(self.unit)
        return repo


class _Local(threading.local):
    depth: int = 0


class _Scope:
    """The context manager behind :meth:`PostgresStorage.transaction`.

    A plain class rather than a generator-based ``@contextmanager``: it runs on every
    storage call, and this shape costs a fraction of a generator's set-up.
    """

    __slots__ = ("_local", "_storage", "_unit", "_write")

    def __init__(self, storage: PostgresStorage, local: _Local, *, write: bool) -> None:
        self._storage = storage
        self._local = local
        self._write = write
        self._unit: Unit | None = None

    def __enter__(self) -> PostgresTransaction:
        if self._storage.closed:
            msg = "storage is closed"
            raise StorageError(msg, code="storage.closed")
        local = self._local
        if local.depth:
            msg = "a transaction is already open on this thread; nesting is not supported"
            raise StorageError(msg, code="storage.nested_transaction")
        local.depth = 1
        unit = self._unit = Unit(self._storage, writable=self._write)
        return PostgresTransaction(unit)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        unit = self._unit
        assert unit is not None
        try:
            if exc is None:
                unit.commit()
                return
            unit.rollback()
            if isinstance(exc, psycopg.Error):
                raise translate(exc) from exc
        finally:
            self._local.depth = 0


class PostgresStorage:
    """Storage in a PostgreSQL database, with a connection pool; migrated on open.

    Args:
        dsn: A libpq connection string or URI (``"postgresql://app@db/panel"``).
        schema: The schema holding this library's tables (created if missing). Keep
            it dedicated: table names such as ``profiles`` or ``tokens`` are common.
        pool_min: Connections kept open even when idle.
        pool_max: The most connections this storage opens: the most transactions
            (plus token lookups) running at once in this process.
        pool_timeout: Seconds to wait for a free connection (or for the server)
            before raising :class:`~enspace_profile.exceptions.StorageBusyError`.
        lock_timeout: Seconds a statement waits for a row or advisory lock before
            failing with ``StorageBusyError`` (``None``: the server's setting).
        retries: How often the first batch of a transaction is re-sent after a dead
            connection, a deadlock or a serialization failure.
        prepare_threshold: Executions after which a statement is prepared on its
            connection (psycopg's option); ``None`` never prepares (for PgBouncer in
            transaction mode before 1.21).
        migrate: Apply pending migrations on open. ``False`` only checks the version
            (for hosts that migrate in a deployment step).
        pipeline: Send ``BEGIN`` with the first statement and queued statements
            (audit appends) with the next one or with ``COMMIT``, one network round
            trip per batch (libpq pipeline mode). ``None``: on unless the server is on
            loopback or a Unix socket, where a round trip costs less than psycopg's
            pipeline bookkeeping.
        application_name: Reported in ``pg_stat_activity`` unless the DSN sets one.

    Raises:
        StorageError: the server cannot be reached (``storage.connect_failed``), is
            older than PostgreSQL 13, or the database is not UTF8.
        SchemaVersionError: the schema was written by a newer version of this library
            (or is older and ``migrate=False``).
        ValidationError: an option is out of range.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "enspace_profile",
        pool_min: int = 1,
        pool_max: int = 10,
        pool_timeout: float = 30.0,
        lock_timeout: float | None = 10.0,
        retries: int = 2,
        prepare_threshold: int | None = 5,
        migrate: bool = True,
        pipeline: bool | None = None,
        application_name: str = "enspace_profile",
    ) -> None:
        _check_options(
            schema=schema,
            pool_min=pool_min,
            pool_max=pool_max,
            pool_timeout=pool_timeout,
            lock_timeout=lock_timeout,
            retries=retries,
        )
        self._dsn = dsn
        self._schema = schema
        self._pool_min, self._pool_max, self._pool_timeout = pool_min, pool_max, pool_timeout
        self._lock_ms = None if lock_timeout is None else max(1, round(lock_timeout * 1000))
        self.retries = retries
        self._kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": prepare_threshold}
        try:
            given = conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            msg = "the PostgreSQL connection string is not valid"
            raise StorageError(msg, code="storage.connect_failed") from exc
        if "application_name" not in given:
            self._kwargs["application_name"] = application_name
        self._local = _Local()
        self._lock = threading.Lock()
        self._closed = False
        self.pipeline = False
        self.schema_version = self._open_schema(migrate=migrate, pipeline=pipeline)
        self._pid = os.getpid()
        self._cursors: dict[int, tuple[psycopg.Connection[Any], psycopg.Cursor[Any]]] = {}
        self._pool = self._new_pool()

    @property
    def schema(self) -> str:
        """The schema holding the tables."""
        return self._schema

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def latest_schema_version(self) -> int:
        """The schema version this library writes."""
        return latest_version()

    # -- connections -------------------------------------------------------------------

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        """Set up a new connection: our schema, UTC, the lock timeout."""
        if self._lock_ms is None:
            conn.execute(
                "SELECT set_config('search_path', quote_ident(%s), false), "
                "set_config('TimeZone', 'UTC', false)",
                (self._schema,),
            )
        else:
            conn.execute(
                "SELECT set_config('search_path', quote_ident(%s), false), "
                "set_config('TimeZone', 'UTC', false), set_config('lock_timeout', %s, false)",
                (self._schema, f"{self._lock_ms}ms"),
            )
        conn.prepared_max = 256

    def _open_schema(self, *, migrate: bool, pipeline: bool | None) -> int:
        try:
            with psycopg.connect(self._dsn, **self._kwargs) as conn:
                self._configure(conn)
                if pipeline is None:
                    pipeline = not _is_local(conn)
                self.pipeline = pipeline and PIPELINE_SUPPORTED
                return apply_migrations(conn, self._schema, apply=migrate)
        except psycopg.OperationalError as exc:
            if exc.sqlstate is None or exc.sqlstate.startswith("08"):
                primary = (str(exc).strip().splitlines() or ["unknown error"])[-1]
                msg = f"could not connect to PostgreSQL: {primary}"
                raise StorageError(msg, code="storage.connect_failed") from exc
            raise translate(exc) from exc
        except psycopg.Error as exc:
            raise translate(exc) from exc

    def _new_pool(self) -> psycopg_pool.ConnectionPool[Any]:
        pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
            self._dsn,
            min_size=self._pool_min,
            max_size=self._pool_max,
            kwargs=self._kwargs,
            configure=self._configure,
            timeout=self._pool_timeout,
            name=f"enspace_profile:{self._schema}",
            open=False,
        )
        pool.open(wait=False)
        return pool

    def _current_pool(self) -> psycopg_pool.ConnectionPool[Any]:
        if self._closed:
            msg = "storage is closed"
            raise StorageError(msg, code="storage.closed")
        if self._pid != os.getpid():
            # A forked child must never touch the parent's connections: open its own
            # pool (psycopg leaves inherited connections alone when collected).
            with self._lock:
                if self._pid != os.getpid():
                    self._cursors = {}
                    self._pool = self._new_pool()
                    self._pid = os.getpid()
        return self._pool

    def acquire(self) -> psycopg.Connection[Any]:
        """Take a connection from the pool (used by transactions and lookups).

        Raises:
            StorageBusyError: none became free within ``pool_timeout``
                (``storage.unavailable``).
            StorageError: the storage is closed.
        """
        pool = self._current_pool()
        try:
            conn: psycopg.Connection[Any] = pool.getconn()
        except psycopg.Error as exc:
            raise self._pool_error(exc) from exc
        return conn

    def _pool_error(self, exc: psycopg.Error) -> StorageError:
        if isinstance(exc, psycopg_pool.PoolTimeout):
            msg = (
                f"no PostgreSQL connection became available within {self._pool_timeout:g} s "
                "(pool exhausted or server unreachable)"
            )
            return StorageBusyError(msg, code="storage.unavailable")
        if isinstance(exc, psycopg_pool.PoolClosed) or self._closed:
            return StorageError("storage is closed", code="storage.closed")
        error = translate(exc)
        return error if isinstance(error, StorageError) else StorageError(str(error))

    def release(self, conn: psycopg.Connection[Any]) -> None:
        """Return a connection to the pool; a broken one is replaced."""
        pool = self._pool
        with suppress(psycopg.Error):
            pool.putconn(conn)

    def cursor_for(self, conn: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
        """Return the binary cursor kept for ``conn``: one per pooled connection.

        A connection is used by one thread at a time, and so is its cursor.
        """
        cursors = self._cursors
        entry = cursors.get(id(conn))
        if entry is not None and entry[0] is conn:
            return entry[1]
        if len(cursors) > 2 * self._pool_max + 8:  # forget replaced connections
            for key, (old, _) in list(cursors.items()):
                if old.closed:
                    cursors.pop(key, None)
        cursor = conn.cursor(binary=True)
        cursors[id(conn)] = (conn, cursor)
        return cursor

    def purge(self) -> None:
        """Check the idle connections and replace those that stopped working."""
        with suppress(psycopg.Error):
            self._pool.check()

    # -- transactions ------------------------------------------------------------------

    def transaction(self, *, write: bool = True) -> _Scope:
        """Open a unit of work: commit on normal exit, roll back on any exception.

        Args:
            write: ``READ COMMITTED`` read-write, locking what it reads. With ``False``
                a ``REPEATABLE READ`` read-only snapshot that refuses writes.

        Raises:
            StorageBusyError: a lock or connection was not granted in time, or a
                deadlock chose this transaction (retry the whole operation).
            StorageError: the storage is closed, a transaction is already open on this
                thread, or the database failed.
        """
        return _Scope(self, self._local, write=write)

    def token_lookup(self) -> TokenLookup:
        """Return the ``digest -> credential`` lookup (see ``SupportsTokenLookup``).

        The hot path of ``panel.tokens.authenticate``: one ``SELECT`` in autocommit
        mode on a pooled connection (no ``BEGIN``/``COMMIT``). A connection found dead
        is replaced and the read retried.
        """
        scope_sets: dict[str, frozenset[str]] = {}
        local = self._local
        cursor_for = self.cursor_for

        def lookup(digest: bytes) -> TokenCredential | None:
            if local.depth:
                msg = "token lookups cannot run inside a transaction on the same thread"
                raise StorageError(msg, code="storage.nested_transaction")
            attempt = 0
            while True:
                pool = self._pool if self._pid == getpid() else self._current_pool()
                try:
                    conn = pool.getconn()
                except psycopg.Error as exc:
                    raise self._pool_error(exc) from exc
                try:
                    row = cursor_for(conn).execute(LOOKUP, (digest,)).fetchone()
                except psycopg.Error as exc:
                    error = translate(exc, conn=conn)
                    self.release(conn)
                    if error.code == "storage.connection_lost" and attempt < self.retries:
                        attempt += 1
                        self.purge()
                        continue
                    raise error from exc
                pool.putconn(conn)
                return None if row is None else credential_from_row(row, scope_sets)

        return lookup

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Close the pool and every connection. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._pid == os.getpid():
            with suppress(psycopg.Error):
                self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PostgresStorage schema={self._schema!r}>"


def _is_local(conn: psycopg.Connection[Any]) -> bool:
    """Whether ``conn`` reaches its server over a Unix socket or the loopback interface."""
    info = conn.info
    host = info.host
    if not host or host.startswith(("/", "@")):  # Unix socket (or Linux abstract socket)
        return True
    try:
        address = info.hostaddr or host
    except psycopg.NotSupportedError:  # libpq before 12
        address = host
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return host == "localhost"


def _check_options(
    *,
    schema: str,
    pool_min: int,
    pool_max: int,
    pool_timeout: float,
    lock_timeout: float | None,
    retries: int,
) -> None:
    problems = []
    if not schema or len(schema.encode()) > _MAX_IDENTIFIER or "\x00" in schema:
        problems.append(("schema", "invalid", "must be 1 to 63 bytes"))
    if pool_min < 0 or pool_max < 1 or pool_min > pool_max:
        problems.append(("pool_max", "out_of_range", "need 0 <= pool_min <= pool_max, 1 <= max"))
    if pool_timeout <= 0:
        problems.append(("pool_timeout", "out_of_range", "must be positive"))
    if lock_timeout is not None and lock_timeout <= 0:
        problems.append(("lock_timeout", "out_of_range", "must be positive or None"))
    if retries < 0:
        problems.append(("retries", "out_of_range", "must be 0 or more"))
    if problems:
        raise ValidationError(
            [
                ValidationError.single(field, problem, message).errors[0]
                for field, problem, message in problems
            ]
        )


def import_sqlite(
    source: str | os.PathLike[str],
    target: PostgresStorage | str,
    *,
    batch_size: int = 1000,
    **options: Any,
) -> ImportReport:
    """Copy everything from a SQLite file into an empty PostgreSQL storage.

    The supported way to move a host from :class:`~enspace_profile.SQLiteStorage` to
    PostgreSQL. It reads the SQLite file in one read transaction (a consistent
    snapshot), turns each row into its domain object with the SQLite adapter's own
    row readers, and writes every aggregate with the PostgreSQL adapter's row writers
    in **one** PostgreSQL transaction: either everything is copied or nothing.

    Args:
        source: The SQLite database file (opened read-only; it is not changed).
        target: A :class:`PostgresStorage`, or a DSN to open one with ``options``.
        batch_size: Rows sent per ``executemany`` call.
        **options: Passed to :class:`PostgresStorage` when ``target`` is a DSN.

    Returns:
        How many rows of each kind were copied.

    Raises:
        StorageError: the target already holds data (``storage.not_empty``), or either
            database failed.
        SchemaVersionError: the SQLite file is newer than this library.
    """
    if isinstance(target, PostgresStorage):
        return copy_sqlite(source, target, batch_size=batch_size)
    with PostgresStorage(target, **options) as storage:
        return copy_sqlite(source, storage, batch_size=batch_size)

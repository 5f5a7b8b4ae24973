"""The PostgreSQL unit of work, row locks, advisory locks and error translation.

A :class:`Unit` is the database side of one transaction. It takes a pooled
connection only when the first statement runs. ``BEGIN`` is sent with that first
statement, and statements whose result nobody reads (audit appends, advisory locks,
lab bookkeeping) are *queued* to go with the next statement or with ``COMMIT``. With
pipelining on (libpq pipeline mode; the default when the server is on another
machine) each such batch is one network round trip, so a profile Save costs three:
``BEGIN`` + the locked read, the ``UPDATE``, the audit ``INSERT`` + ``COMMIT``.
Without it (the default for a server on loopback or a Unix socket, where psycopg's
pipeline bookkeeping costs more than the round trips it saves) the same statements
are sent one after the other.

Because the body of a ``with storage.transaction()`` block cannot be re-run, a
failure is retried only while nothing of the transaction has reached the server
before: the first batch (``BEGIN`` and what came with it) is re-sent on another
connection when the connection turned out dead, or when the server aborted it for a
deadlock or a serialization failure. Every other failure becomes our
:class:`~enspace_profile.exceptions.StorageError` (``StorageBusyError`` when retrying
the whole operation later may succeed).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from typing import Any, Final, Protocol

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import TupleRow

from enspace_profile.exceptions import (
    AlreadyExistsError,
    EnspaceProfileError,
    StorageBusyError,
    StorageError,
)

__all__ = [
    "LOCK_NAMESPACE",
    "PIPELINE_SUPPORTED",
    "Connector",
    "Lock",
    "Repo",
    "Unit",
    "translate",
]

#: First key of every advisory lock this library takes (``pg_locks.classid``): "EP".
LOCK_NAMESPACE: Final = 0x4550_0000

_Cursor = psycopg.Cursor[TupleRow]
#: Statement parameters: positional (``%s``) or named (``%(name)s``).
Params = Sequence[Any] | Mapping[str, Any] | None
#: Turns a unique violation of a queued statement into the precise error (or ``None``).
DuplicateHandler = Callable[[pg_errors.UniqueViolation], EnspaceProfileError | None]


class Lock(enum.IntEnum):
    """What a transaction-scoped advisory lock protects (added to :data:`LOCK_NAMESPACE`).

    The second key is ``hashtext()`` of the user id (or of the schema name): two users
    whose ids hash alike merely wait for each other.
    """

    MIGRATIONS = 0
    USER_TOKENS = 1
    USER_SESSIONS = 2
    USER_LAB = 3
    USER_CONNECTIONS = 4
    THROTTLE = 5


_LOCK_SQL: Final = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"

# SQLSTATEs after which running the same work again may succeed.
_BUSY: Final = {
    "40001": "the transaction could not be serialised with a concurrent one",
    "40P01": "the transaction was chosen as the victim of a deadlock",
    "55P03": "a lock was not granted within lock_timeout",
    "57014": "a statement was cancelled (statement_timeout)",
    "53300": "the server has no connection slot free",
}
_RETRY_FIRST: Final = frozenset({"40001", "40P01"})
#: libpq 14+ can send several statements per round trip (pipeline mode).
PIPELINE_SUPPORTED: Final = psycopg.Pipeline.is_supported()
_IDLE: Final = psycopg.pq.TransactionStatus.IDLE


def _broken(exc: psycopg.Error, conn: psycopg.Connection[Any] | None) -> bool:
    """Whether ``exc`` means the connection itself is gone."""
    if conn is not None and (conn.broken or conn.closed):
        return True
    state = exc.sqlstate or ""
    return state.startswith("08") or state in {"57P01", "57P02", "57P03"}


_FIXED: Final = {
    "25006": ("attempt to write in a read-only transaction", "storage.read_only"),
    "25P02": (
        (
            "an earlier statement of this transaction failed, so PostgreSQL aborted it: "
            "let the first error leave the `with` block"
        ),
        "storage.transaction_aborted",
    ),
}


def _lost(*, committing: bool) -> StorageError:
    if committing:
        return StorageError(
            "the connection to PostgreSQL was lost during COMMIT: the transaction "
            "may or may not have been applied",
            code="storage.commit_unknown",
        )
    return StorageError(
        "the connection to PostgreSQL was lost; the transaction was rolled back",
        code="storage.connection_lost",
    )


def _describe(exc: psycopg.Error, state: str) -> tuple[str, str]:
    """Message and code for an error without a dedicated translation."""
    if state.startswith("22") or isinstance(exc, psycopg.DataError):
        # Data exceptions quote the offending value: leave it out.
        return f"PostgreSQL {state} ({type(exc).__name__}): a value was refused", "storage.data"
    primary = exc.diag.message_primary or type(exc).__name__
    if not state:  # raised by psycopg itself, not by the server
        return f"PostgreSQL driver error: {primary}", "storage.driver"
    return f"PostgreSQL {state}: {primary}", StorageError.code


def translate(
    exc: psycopg.Error,
    *,
    conn: psycopg.Connection[Any] | None = None,
    committing: bool = False,
) -> EnspaceProfileError:
    """Turn a driver exception into ours; the original stays as ``__cause__``.

    Messages carry the SQLSTATE and PostgreSQL's primary message, never the
    statement's parameters or the error's DETAIL line (which may quote values).

    Args:
        exc: What psycopg raised.
        conn: The connection it came from (to tell whether it is broken).
        committing: The failure happened while ``COMMIT`` was in flight.
    """
    state = exc.sqlstate or ""
    if _broken(exc, conn):
        return _lost(committing=committing)
    if state in _BUSY:
        return StorageBusyError(f"PostgreSQL {state}: {_BUSY[state]}; try again")
    if isinstance(exc, pg_errors.UniqueViolation):
        constraint = exc.diag.constraint_name or "unique"
        return AlreadyExistsError(exc.diag.table_name or "row", constraint)
    message, code = _FIXED.get(state) or _describe(exc, state)
    return StorageError(message, code=code)


class Connector(Protocol):
    """What a :class:`Unit` needs from the storage: pooled connections."""

    retries: int
    #: Send batches in one round trip (libpq pipeline mode).
    pipeline: bool

    def acquire(self) -> psycopg.Connection[Any]:
        """Return a connection in autocommit mode (raises our ``StorageError``)."""
        ...

    def release(self, conn: psycopg.Connection[Any]) -> None:
        """Give a connection back (a broken one is discarded)."""
        ...

    def purge(self) -> None:
        """Drop idle connections that no longer work (after one turned out dead)."""
        ...

    def cursor_for(self, conn: psycopg.Connection[Any]) -> psycopg.Cursor[TupleRow]:
        """Return the binary cursor kept for ``conn`` (creating a cursor costs microseconds)."""
        ...


class _Queued:
    __slots__ = ("on_duplicate", "params", "query")

    def __init__(
        self, query: str, params: Sequence[Any] | None, on_duplicate: DuplicateHandler | None
    ) -> None:
        self.query = query
        self.params = params
        self.on_duplicate = on_duplicate


_BEGIN_WRITE: Final = "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE"
_BEGIN_READ: Final = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"


class Unit:
    """The database side of one transaction (one thread uses it at a time).

    Args:
        connector: Hands out pooled connections.
        writable: ``READ COMMITTED`` read-write when true; else a ``REPEATABLE READ``
            read-only snapshot.
    """

    __slots__ = ("_conn", "_connector", "_cur", "_locked", "_queue", "writable")

    def __init__(self, connector: Connector, *, writable: bool) -> None:
        self._connector = connector
        self._conn: psycopg.Connection[Any] | None = None
        self._cur: _Cursor | None = None
        self._queue: list[_Queued] = []
        self._locked: set[tuple[int, str]] = set()
        self.writable = writable

    # -- statements ----------------------------------------------------------------

    def execute(self, query: str, params: Params = None) -> _Cursor:
        """Run one statement (after anything queued) and return the cursor holding its rows.

        Fetch what you need before the next call: the cursor is reused.

        Raises:
            StorageError: translated driver errors (``StorageBusyError`` if retryable).
            AlreadyExistsError: for a unique violation (callers refine it).
        """
        cur = self._cur
        if cur is None or self._queue:
            return self._batch(query, params, committing=False)
        try:
            return cur.execute(query, params)
        except psycopg.Error as exc:
            raise translate(exc, conn=self._conn) from exc

    def executemany(self, query: str, params_seq: Sequence[Sequence[Any]]) -> None:
        """Run ``query`` once per parameter tuple (pipelined by psycopg; for bulk copies).

        Raises:
            StorageError: translated driver errors.
        """
        if not params_seq:
            return
        cur = self._cur
        if cur is None or self._queue:
            cur = self._batch(None, None, committing=False)
        try:
            cur.executemany(query, params_seq)
        except psycopg.Error as exc:
            raise translate(exc, conn=self._conn) from exc

    def queue(
        self,
        query: str,
        params: Sequence[Any] | None = None,
        *,
        on_duplicate: DuplicateHandler | None = None,
    ) -> None:
        """Send ``query`` with the next statement or with ``COMMIT``; its rows are discarded.

        Its errors surface from that later call (or from the end of the ``with`` block).

        Args:
            query: The statement.
            params: Its parameters.
            on_duplicate: Builds the precise error for a unique violation it causes.
        """
        self._queue.append(_Queued(query, params, on_duplicate))

    def lock(self, kind: Lock, key: str) -> None:
        """Take a transaction-scoped advisory lock before the next statement reads.

        Read committed gives each statement a fresh snapshot, so the statement sent
        after the lock sees everything committed by the previous holder.
        """
        token = (int(kind), key)
        if token not in self._locked:
            self._locked.add(token)
            self.queue(_LOCK_SQL, (LOCK_NAMESPACE + int(kind), key))

    def _batch(self, query: str | None, params: Params, *, committing: bool) -> _Cursor:
        """Send the queue (and ``BEGIN`` first if the transaction has not started) + ``query``."""
        first = self._cur is None
        attempts = 0
        while True:
            if self._cur is None:
                self._connect()
            conn, cur = self._conn, self._cur
            assert conn is not None
            assert cur is not None
            statements: list[tuple[str, Params]] = []
            if first:
                statements.append((_BEGIN_WRITE if self.writable else _BEGIN_READ, None))
            statements.extend((q.query, q.params) for q in self._queue)
            if query is not None:
                statements.append((query, params))
            try:
                _send(conn, cur, statements, pipeline=self._connector.pipeline)
            except psycopg.Error as exc:
                broken = _broken(exc, conn)
                retry = first and attempts < self._connector.retries
                if retry and committing:
                    retry = not broken  # a lost COMMIT may have been applied
                if retry and (broken or exc.sqlstate in _RETRY_FIRST):
                    attempts += 1
                    self._drop(purge=broken)
                    continue
                raise self._queued_error(exc, committing=committing) from exc
            self._queue.clear()
            return cur

    def _queued_error(self, exc: psycopg.Error, *, committing: bool) -> EnspaceProfileError:
        if isinstance(exc, pg_errors.UniqueViolation):
            for queued in self._queue:
                if queued.on_duplicate is not None:
                    error = queued.on_duplicate(exc)
                    if error is not None:
                        return error
        return translate(exc, conn=self._conn, committing=committing)

    def _connect(self) -> None:
        conn = self._connector.acquire()
        self._conn = conn
        self._cur = self._connector.cursor_for(conn)

    def _drop(self, *, purge: bool) -> None:
        """Give the connection back after a failed first batch (rolled back or dead)."""
        conn = self._conn
        self._conn = self._cur = None
        if conn is None:
            return
        if not (conn.broken or conn.closed):
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                purge = True
        self._connector.release(conn)
        if purge:
            self._connector.purge()

    # -- end -------------------------------------------------------------------------

    def commit(self) -> None:
        """Commit (sending anything still queued with the ``COMMIT``) and free the connection.

        Raises:
            StorageError: the commit failed; the transaction was rolled back (unless the
                code is ``storage.commit_unknown``: the connection died during COMMIT).
        """
        if self._cur is None and not self._queue:
            return  # nothing ever reached the server
        try:
            if self._queue:
                self._batch("COMMIT", None, committing=True)
            else:
                assert self._cur is not None
                try:
                    self._cur.execute("COMMIT")
                except psycopg.Error as exc:
                    raise translate(exc, conn=self._conn, committing=True) from exc
        except BaseException:
            self.rollback()
            raise
        self._release()

    def rollback(self) -> None:
        """Roll back (if anything started) and free the connection. Never raises a driver error."""
        self._queue.clear()
        conn = self._conn
        if conn is None:
            return
        if not (conn.broken or conn.closed) and conn.info.transaction_status != _IDLE:
            with suppress(psycopg.Error):  # the pool discards a connection it cannot reset
                conn.execute("ROLLBACK")
        self._release()

    def _release(self) -> None:
        conn = self._conn
        self._conn = self._cur = None
        if conn is not None:
            self._connector.release(conn)


def _send(
    conn: psycopg.Connection[Any],
    cur: _Cursor,
    statements: Sequence[tuple[str, Params]],
    *,
    pipeline: bool,
) -> None:
    """Run ``statements`` in order on ``cur``; in one round trip if ``pipeline`` is set."""
    if len(statements) == 1 or not pipeline:
        for query, params in statements:
            cur.execute(query, params)
        return
    with conn.pipeline():
        for query, params in statements:
            cur.execute(query, params)


class Repo:
    """Base of the PostgreSQL repositories: they run statements through a :class:`Unit`."""

    __slots__ = ("_unit",)

    def __init__(self, unit: Unit) -> None:
        self._unit = unit

    def _check_writable(self) -> None:
        if not self._unit.writable:
            msg = "attempt to write in a read-only transaction"
            raise StorageError(msg, code="storage.read_only")

    @property
    def _for_update(self) -> str:
        """`` FOR UPDATE`` in write transactions: what a writer reads, it locks."""
        return " FOR UPDATE" if self._unit.writable else ""

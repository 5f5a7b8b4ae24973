"""Copy a SQLite database into an empty PostgreSQL storage (``import_sqlite``).

Each aggregate is read through the SQLite adapter (its repositories, or its row
readers where no repository method lists everything) into domain objects, and
written with the PostgreSQL adapter's row writers in batches, all in one PostgreSQL
transaction. Only the keys to visit are enumerated with SQL.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Final, Protocol

import attrs

from enspace_profile.exceptions import StorageError
from enspace_profile.stores._postgres_base import Unit
from enspace_profile.stores._postgres_integrations import (
    INSERT_CONNECTION,
    INSERT_PENDING,
    UPSERT_CREDENTIALS,
    connection_values,
    pending_values,
)
from enspace_profile.stores._postgres_lab import UPSERT_CHOICE, choice_values
from enspace_profile.stores._postgres_profiles import (
    INSERT_EVENT,
    INSERT_PROFILE,
    audit_values,
    profile_values,
)
from enspace_profile.stores._postgres_security import (
    INSERT_CODES,
    INSERT_CREDENTIALS,
    INSERT_SESSION,
    THROTTLE_COLUMNS,
    code_values,
    credential_values,
    session_values,
    throttle_values,
)
from enspace_profile.stores._postgres_tokens import INSERT_TOKEN, token_values
from enspace_profile.stores._rows import event_from_row
from enspace_profile.stores._sqlite_base import from_iso, load_json
from enspace_profile.stores._sqlite_integrations import pending_from_row
from enspace_profile.stores.sqlite import SQLiteStorage, SQLiteTransaction

__all__ = ["ImportReport", "copy_sqlite"]

#: Tables whose rows make a storage "not empty" (``lab_revision`` always has its row).
_DATA_TABLES: Final = (
    "profiles",
    "audit_events",
    "blobs",
    "tokens",
    "security_credentials",
    "security_throttle",
    "security_sessions",
    "integration_connections",
    "integration_pending_authorizations",
    "lab_choices",
    "lab_changes",
)
_NOT_EMPTY: Final = " OR ".join(f"EXISTS (SELECT 1 FROM {t})" for t in _DATA_TABLES)  # noqa: S608 - constant
_INSERT_BLOB: Final = "INSERT INTO blobs (sha256, media_type, data, refs) VALUES (%s, %s, %s, %s)"
_INSERT_THROTTLE: Final = (
    f"INSERT INTO security_throttle (user_id, scope, {THROTTLE_COLUMNS}) "  # noqa: S608 - constant
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


@attrs.frozen(kw_only=True)
class ImportReport:
    """What :func:`~enspace_profile.stores.postgres.import_sqlite` copied.

    Attributes:
        counts: Rows copied per kind (``"profiles"``, ``"audit_events"``, ...).
    """

    counts: Mapping[str, int]

    @property
    def total(self) -> int:
        """All rows copied."""
        return sum(self.counts.values())


class _Tx(Protocol):
    unit: Unit


class _Target(Protocol):
    def transaction(self, *, write: bool = True) -> AbstractContextManager[_Tx]: ...


def _keys(tx: SQLiteTransaction, query: str) -> Iterator[Any]:
    for row in tx.connection.execute(query).fetchall():
        yield row[0] if len(row) == 1 else row


def _batched(rows: Iterable[Sequence[Any]], size: int) -> Iterator[list[Sequence[Any]]]:
    batch: list[Sequence[Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _profiles(tx: SQLiteTransaction) -> Iterator[tuple[Any, ...]]:
    for user_id in _keys(tx, "SELECT user_id FROM profiles ORDER BY user_id"):
        profile = tx.profiles.get(user_id)
        assert profile is not None
        yield profile_values(profile)


def _events(tx: SQLiteTransaction) -> Iterator[tuple[Any, ...]]:
    # No repository method lists every user's events in append order: read the rows.
    cursor = tx.connection.execute(
        "SELECT id, user_id, kind, at, actor, subject, version, changes, details "
        "FROM audit_events ORDER BY seq"
    )
    for row in cursor:
        yield audit_values(event_from_row(row, from_iso, load_json))


def _blobs(tx: SQLiteTransaction) -> Iterator[tuple[Any, ...]]:
    for sha256 in _keys(tx, "SELECT sha256 FROM blobs ORDER BY sha256"):
        blob = tx.blobs.get(sha256)
        assert blob is not None
        yield (blob.sha256, blob.media_type, blob.data, tx.blobs.references(sha256))


def _tokens(tx: SQLiteTransaction) -> Iterator[tuple[Any, ...]]:
    for token_id in _keys(tx, "SELECT id FROM tokens ORDER BY id"):
        token = tx.tokens.get(token_id)
        assert token is not None
        yield token_values(token)


def _credentials(tx: SQLiteTransaction, codes: list[Sequence[Any]]) -> Iterator[tuple[Any, ...]]:
    after = None
    while page := tx.credentials.list_user_ids(after=after, limit=500):
        for user_id in page:
            record = tx.credentials.get(user_id)
            assert record is not None
            values = code_values(record)
            if values is not None:
                codes.append(values)
            yield (user_id, *credential_values(record))
        after = page[-1]


def _throttle(tx: SQLiteTransaction) -> Iterator[tuple[Any, ...]]:
    query = "SELECT user_id, scope FROM security_throttle ORDER BY user_id, scope"
    for user_id, scope in _keys(tx, query):
        yield (user_id, scope, *throttle_values(tx.throttle.get(user_id, scope)))


def _sessions(tx: SQLiteTransaction) -> Iterator[tuple[Any, ...]]:
    for user_id in _keys(tx, "SELECT DISTINCT user_id FROM security_sessions ORDER BY 1"):
        for session in tx.sessions.list_for_user(user_id):
            yield session_values(session)


def _connections(tx: SQLiteTransaction, sealed: list[Sequence[Any]]) -> Iterator[tuple[Any, ...]]:
    query = "SELECT DISTINCT user_id FROM integration_connections ORDER BY 1"
    for user_id in _keys(tx, query):
        for connection in tx.integrations.list_for_user(user_id):
            box = tx.integrations.get_credentials(user_id, connection.id)
            if box is not None:
                sealed.append((connection.id, box.key_id, box.to_bytes()))
            yield connection_values(connection)


def _pending(tx: SQLiteTransaction) -> Iterator[tuple[Any, ...]]:
    cursor = tx.connection.execute(
        "SELECT state_digest, user_id, provider, redirect_uri, scopes, created_at, expires_at, "
        "code_verifier FROM integration_pending_authorizations ORDER BY state_digest"
    )
    for row in cursor:
        yield pending_values(pending_from_row(row))


def _lab(tx: SQLiteTransaction) -> Iterator[tuple[Any, ...]]:
    for user_id in _keys(tx, "SELECT DISTINCT user_id FROM lab_choices ORDER BY 1"):
        for choice in tx.lab.list_for_user(user_id):
            yield choice_values(choice)


def _lab_changes(tx: SQLiteTransaction) -> Iterator[tuple[Any, ...]]:
    yield from tx.connection.execute(
        "SELECT user_id, revision FROM lab_changes ORDER BY revision"
    ).fetchall()


def copy_sqlite(
    source: str | os.PathLike[str], target: _Target, *, batch_size: int = 1000
) -> ImportReport:
    """Copy every row of the SQLite file ``source`` into the empty storage ``target``.

    See :func:`enspace_profile.stores.postgres.import_sqlite`.
    """
    path = Path(source)
    if not path.is_file():
        msg = f"{path} is not a file"
        raise StorageError(msg, code="storage.not_found")
    size = max(1, batch_size)
    counts: dict[str, int] = {}
    # Opening migrates an older file to the current SQLite schema, as any upgrade would.
    with (
        SQLiteStorage(path) as sqlite,
        sqlite.transaction(write=False) as src,
        target.transaction() as dst,
    ):
        unit = dst.unit
        if unit.execute(f"SELECT {_NOT_EMPTY}").fetchone() != (False,):
            msg = "the PostgreSQL storage already holds data; import into an empty one"
            raise StorageError(msg, code="storage.not_empty")

        def copy(kind: str, query: str, rows: Iterable[Sequence[Any]]) -> None:
            counts[kind] = 0
            for batch in _batched(rows, size):
                unit.executemany(query, batch)
                counts[kind] += len(batch)

        codes: list[Sequence[Any]] = []
        sealed: list[Sequence[Any]] = []
        steps: list[tuple[str, str, Callable[[], Iterable[Sequence[Any]]]]] = [
            ("profiles", INSERT_PROFILE, lambda: _profiles(src)),
            ("audit_events", INSERT_EVENT, lambda: _events(src)),
            ("blobs", _INSERT_BLOB, lambda: _blobs(src)),
            ("tokens", INSERT_TOKEN, lambda: _tokens(src)),
            ("credentials", INSERT_CREDENTIALS, lambda: _credentials(src, codes)),
            ("recovery_code_sets", INSERT_CODES, lambda: codes),
            ("throttle", _INSERT_THROTTLE, lambda: _throttle(src)),
            ("sessions", INSERT_SESSION, lambda: _sessions(src)),
            ("connections", INSERT_CONNECTION, lambda: _connections(src, sealed)),
            ("connection_credentials", UPSERT_CREDENTIALS, lambda: sealed),
            ("pending_authorizations", INSERT_PENDING, lambda: _pending(src)),
            ("lab_choices", UPSERT_CHOICE, lambda: _lab(src)),
            (
                "lab_changes",
                "INSERT INTO lab_changes (user_id, revision) VALUES (%s, %s)",
                lambda: _lab_changes(src),
            ),
        ]
        for kind, query, rows in steps:
            copy(kind, query, rows())
        revision = src.lab.revision()
        unit.execute("UPDATE lab_revision SET revision = %s WHERE id = 1", (revision,))
    return ImportReport(counts=counts)

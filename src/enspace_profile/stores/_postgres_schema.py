"""The PostgreSQL schema, as an ordered list of migrations, and the code that applies them.

Never edit a migration that has been released: append a new one. The numbering
follows the SQLite schema (one migration per tab), so a tab that adds SQLite
migration *N* adds PostgreSQL migration *N* too.

Applying runs in **one** transaction on one connection, under a transaction-scoped
advisory lock keyed by the schema name: when several processes start at once, one
migrates while the others wait, then find the schema current and do nothing. DDL is
transactional in PostgreSQL, so a failure leaves the previous version intact.
"""

from __future__ import annotations

from typing import Any, Final

import attrs
import psycopg
from psycopg import sql

from enspace_profile.exceptions import SchemaVersionError, StorageError
from enspace_profile.stores._postgres_base import LOCK_NAMESPACE, Lock
from enspace_profile.stores._postgres_integrations import INTEGRATIONS_MIGRATION
from enspace_profile.stores._postgres_lab import LAB_MIGRATION
from enspace_profile.stores._postgres_profiles import PROFILES_MIGRATION
from enspace_profile.stores._postgres_security import SECURITY_MIGRATION
from enspace_profile.stores._postgres_tokens import TOKEN_MIGRATION

__all__ = [
    "MIGRATIONS",
    "MINIMUM_SERVER_VERSION",
    "VERSION_TABLE",
    "Migration",
    "apply_migrations",
    "latest_version",
]

#: The table (in the storage's schema) recording each applied migration.
VERSION_TABLE: Final = "enspace_schema_version"
#: PostgreSQL 13 or newer (``server_version_num``).
MINIMUM_SERVER_VERSION: Final = 130000


@attrs.frozen
class Migration:
    """One schema step: the version it produces and the statements that get there."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: Final = (
    Migration(1, "profiles, the audit log and blobs", PROFILES_MIGRATION),
    Migration(2, "personal access tokens (Dev tab)", TOKEN_MIGRATION),
    Migration(3, "credentials, failure counters and sessions (Security tab)", SECURITY_MIGRATION),
    Migration(
        4,
        "connections, sealed credentials, pending OAuth requests (Integrations tab)",
        INTEGRATIONS_MIGRATION,
    ),
    Migration(5, "lab choices and their change marker (Lab tab)", LAB_MIGRATION),
)


def latest_version() -> int:
    """Return the schema version this library writes."""
    return MIGRATIONS[-1].version


def _ordered() -> tuple[Migration, ...]:
    result = tuple(sorted(MIGRATIONS, key=lambda m: m.version))
    versions = [m.version for m in result]
    if versions != list(range(1, len(result) + 1)):
        msg = f"migration versions must be 1..N without gaps or duplicates, got {versions}"
        raise RuntimeError(msg)
    return result


def _check_server(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(
        "SELECT current_setting('server_version_num')::integer, current_setting('server_encoding')"
    ).fetchone()
    assert row is not None
    number, encoding = row
    if number < MINIMUM_SERVER_VERSION:
        msg = f"PostgresStorage needs PostgreSQL 13 or newer; the server is {number}"
        raise StorageError(msg, code="storage.server_too_old")
    if encoding != "UTF8":
        msg = f"PostgresStorage needs a UTF8 database; this one is encoded {encoding}"
        raise StorageError(msg, code="storage.encoding")


def _found_version(conn: psycopg.Connection[Any], schema: str) -> int | None:
    """The version recorded in ``schema`` (``None``: no version table there)."""
    table = conn.execute(
        "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))", (schema, VERSION_TABLE)
    ).fetchone()
    if table is None or table[0] is None:
        return None
    row = conn.execute(
        sql.SQL("SELECT coalesce(max(version), 0) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(VERSION_TABLE)
        )
    ).fetchone()
    assert row is not None
    return int(row[0])


def _refuse_newer(schema: str, found: int) -> None:
    latest = latest_version()
    if found > latest:
        msg = (
            f"schema {schema!r} has version {found}, but this version of enspace_profile "
            f"only knows up to {latest}: upgrade enspace_profile"
        )
        raise SchemaVersionError(msg, found=found, supported=latest)


def apply_migrations(conn: psycopg.Connection[Any], schema: str, *, apply: bool = True) -> int:
    """Bring ``schema`` to the latest version in one transaction; return that version.

    Args:
        conn: A connection in autocommit mode, not inside a transaction.
        schema: The schema holding the tables (created if missing).
        apply: ``False`` only checks: an older schema raises instead of being migrated.

    Raises:
        SchemaVersionError: the schema is newer than this library (or older, with
            ``apply=False``).
        StorageError: the server is too old or not UTF8.
        psycopg.Error: any database failure (the caller translates it).
    """
    migrations = _ordered()
    latest = latest_version()
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
            (LOCK_NAMESPACE + int(Lock.MIGRATIONS), schema),
        )
        _check_server(conn)
        found = _found_version(conn, schema)
        _refuse_newer(schema, found or 0)
        if (found or 0) == latest:
            return latest
        if not apply:
            msg = (
                f"schema {schema!r} has version {found or 0} but this library needs {latest}: "
                "open it once with migrate=True (for example in a deployment step)"
            )
            raise SchemaVersionError(msg, found=found or 0, supported=latest)
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        if exists.fetchone() is None:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute("SELECT set_config('search_path', quote_ident(%s), true)", (schema,))
        if found is None:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (version integer PRIMARY KEY, description text NOT NULL, "
                    "applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(sql.Identifier(VERSION_TABLE))
            )
        record = sql.SQL("INSERT INTO {} (version, description) VALUES (%s, %s)").format(
            sql.Identifier(VERSION_TABLE)
        )
        for migration in migrations:
            if migration.version > (found or 0):
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(record, (migration.version, migration.description))
    return latest

"""The SQLite schema, as an ordered list of migrations (``PRAGMA user_version``).

Never edit a migration that has been released: append a new one. Each migration runs
inside the opening write transaction, so a crash leaves the previous version intact.
"""

from __future__ import annotations

import attrs

from enspace_profile.stores._sqlite_integrations import INTEGRATIONS_MIGRATION
from enspace_profile.stores._sqlite_lab import LAB_MIGRATION
from enspace_profile.stores._sqlite_security import SECURITY_MIGRATION
from enspace_profile.stores._sqlite_tokens import TOKEN_MIGRATION

__all__ = ["MIGRATIONS", "Migration", "latest_version", "ordered"]


@attrs.frozen
class Migration:
    """One schema step: the version it produces and the statements that get there."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "profiles, the audit log and blobs",
        (
            """
            CREATE TABLE profiles (
                user_id TEXT PRIMARY KEY NOT NULL,
                first_name TEXT NOT NULL,
                last_name TEXT,
                language TEXT NOT NULL,
                theme_mode TEXT NOT NULL,
                theme_day TEXT NOT NULL,
                theme_night TEXT,
                picture_sha256 TEXT,
                picture_media_type TEXT,
                picture_width INTEGER,
                picture_height INTEGER,
                picture_size INTEGER,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                version INTEGER NOT NULL CHECK (version >= 1)
            ) STRICT, WITHOUT ROWID
            """,
            """
            CREATE TABLE audit_events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                user_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                at TEXT NOT NULL,
                actor TEXT,
                subject TEXT,
                version INTEGER,
                changes TEXT NOT NULL,
                details TEXT NOT NULL
            ) STRICT
            """,
            "CREATE INDEX audit_events_by_user ON audit_events (user_id, seq)",
            """
            CREATE TABLE blobs (
                sha256 TEXT PRIMARY KEY NOT NULL,
                media_type TEXT NOT NULL,
                data BLOB NOT NULL,
                refs INTEGER NOT NULL CHECK (refs >= 1)
            ) STRICT, WITHOUT ROWID
            """,
        ),
    ),
    Migration(2, "personal access tokens (Dev tab)", TOKEN_MIGRATION),
    Migration(3, "credentials, failure counters and sessions (Security tab)", SECURITY_MIGRATION),
    Migration(
        4,
        "connections, sealed credentials, pending OAuth requests (Integrations tab)",
        INTEGRATIONS_MIGRATION,
    ),
    Migration(5, "lab choices and their change marker (Lab tab)", LAB_MIGRATION),
)


def ordered() -> tuple[Migration, ...]:
    """Return the migrations sorted by version, refusing duplicates or gaps."""
    result = tuple(sorted(MIGRATIONS, key=lambda m: m.version))
    versions = [m.version for m in result]
    if versions != list(range(1, len(result) + 1)):
        msg = f"migration versions must be 1..N without gaps or duplicates, got {versions}"
        raise RuntimeError(msg)
    return result


def latest_version() -> int:
    """Return the schema version this library writes."""
    return len(MIGRATIONS)

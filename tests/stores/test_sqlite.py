import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from enspace_profile.exceptions import SchemaVersionError, StorageBusyError, StorageError
from enspace_profile.stores._sqlite_schema import latest_version
from enspace_profile.stores.sqlite import SQLiteStorage
from enspace_profile.testing import StorageContract, make_profile


class TestSQLiteFileStorage(StorageContract):
    """SQLite on a file passes the whole contract suite."""

    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[SQLiteStorage]:
        s = SQLiteStorage(tmp_path / "panel.db")
        yield s
        s.close()


class TestSQLiteMemoryStorage(StorageContract):
    """SQLite on ":memory:" passes the whole contract suite too."""

    @pytest.fixture
    def storage(self) -> Iterator[SQLiteStorage]:
        s = SQLiteStorage(":memory:")
        yield s
        s.close()


class TestSchema:
    def test_new_file_is_created_and_migrated(self, tmp_path: Path) -> None:
        """Opening a new path creates the file and migrates it to the latest schema."""
        path = tmp_path / "nested" / "dir" / "panel.db"
        with SQLiteStorage(path) as s:
            assert s.schema_version == s.latest_schema_version
        assert path.exists()
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == s.latest_schema_version
        tables = conn.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'table'").fetchall()
        strict = {name for name, sql in tables if "STRICT" in sql}
        assert {"profiles", "audit_events", "blobs"} <= strict
        conn.close()

    def test_reopening_keeps_data(self, tmp_path: Path) -> None:
        """Reopening an existing file neither re-migrates nor loses data."""
        path = tmp_path / "panel.db"
        with SQLiteStorage(path) as s, s.transaction() as tx:
            tx.profiles.add(make_profile())
        with SQLiteStorage(path) as s, s.transaction(write=False) as tx:
            assert tx.profiles.get("user-1") == make_profile()

    def test_newer_schema_is_refused_clearly(self, tmp_path: Path) -> None:
        """A database from a newer library version raises SchemaVersionError, untouched."""
        path = tmp_path / "panel.db"
        SQLiteStorage(path).close()
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA user_version = 999")
        conn.close()
        with pytest.raises(SchemaVersionError) as info:
            SQLiteStorage(path)
        assert (info.value.found, info.value.supported) == (999, latest_version())
        assert "upgrade enspace_profile" in str(info.value)
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 999
        conn.close()

    def test_garbage_file_is_a_storage_error(self, tmp_path: Path) -> None:
        """A file that is not a database raises StorageError, not sqlite3.DatabaseError."""
        path = tmp_path / "junk.db"
        path.write_bytes(b"this is not a database" * 100)
        with pytest.raises(StorageError) as info:
            SQLiteStorage(path)
        assert info.value.code == "storage.not_a_database"


class TestConnections:
    def test_every_connection_has_the_pragmas(self, tmp_path: Path) -> None:
        """Connections in every thread use WAL, synchronous=NORMAL, foreign keys, busy timeout."""
        s = SQLiteStorage(tmp_path / "p.db", busy_timeout=2.5)
        seen: list[tuple[object, ...]] = []

        def probe() -> None:
            with s.transaction(write=False) as tx:
                c = tx.connection
                seen.append(
                    (
                        c.execute("PRAGMA journal_mode").fetchone()[0],
                        c.execute("PRAGMA synchronous").fetchone()[0],
                        c.execute("PRAGMA foreign_keys").fetchone()[0],
                        c.execute("PRAGMA busy_timeout").fetchone()[0],
                    ),
                )

        threads = [threading.Thread(target=probe) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        probe()
        s.close()
        assert seen == [("wal", 1, 1, 2500)] * 4

    def test_nested_transaction_is_refused(self, tmp_path: Path) -> None:
        """Opening a transaction inside another on the same thread is a clear StorageError."""
        with SQLiteStorage(tmp_path / "p.db") as s, s.transaction():
            with pytest.raises(StorageError) as info, s.transaction():
                pass
            assert info.value.code == "storage.nested_transaction"

    def test_lock_held_too_long_is_storage_busy(self, tmp_path: Path) -> None:
        """A writer that cannot get the lock within the timeout gets StorageBusyError."""
        path = tmp_path / "p.db"
        s = SQLiteStorage(path, busy_timeout=0.05)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StorageBusyError), s.transaction() as tx:
                tx.profiles.add(make_profile())
        finally:
            other.execute("ROLLBACK")
            other.close()
        with s.transaction() as tx:
            tx.profiles.add(make_profile())
        s.close()

    def test_closed_storage_refuses_work(self, tmp_path: Path) -> None:
        """After close(), opening a transaction raises StorageError."""
        s = SQLiteStorage(tmp_path / "p.db")
        s.close()
        s.close()  # idempotent
        with pytest.raises(StorageError), s.transaction():
            pass

import contextlib
import importlib
import inspect
import os
import sqlite3
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest

import enspace_profile.typing as ports
from enspace_profile.exceptions import (
    AlreadyExistsError,
    MissingExtraError,
    SchemaVersionError,
    StorageBusyError,
    StorageError,
    ValidationError,
)
from enspace_profile.stores.sqlite import SQLiteStorage
from enspace_profile.testing import (
    StorageContract,
    make_connection,
    make_credentials,
    make_event,
    make_opt_in,
    make_pending,
    make_profile,
    make_sealed_box,
    make_session,
    make_token,
)
from enspace_profile.typing import Blob

try:
    import psycopg
except ImportError:  # without the extra: skip, unless CI requires these tests
    if os.environ.get("ENSPACE_REQUIRE_POSTGRES") == "1":
        raise
    pytest.skip("needs the postgres extra (psycopg)", allow_module_level=True)

from psycopg import sql
from psycopg.conninfo import make_conninfo

from enspace_profile._security.lockout import FailureState
from enspace_profile._tokens.domain import to_micros
from enspace_profile.stores._postgres_schema import VERSION_TABLE, latest_version
from enspace_profile.stores.postgres import (
    PostgresStorage,
    PostgresTransaction,
    import_sqlite,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _admin(dsn: str):
    return psycopg.connect(dsn, autocommit=True)


class TestPostgresStorage(StorageContract):
    """PostgreSQL passes the whole contract suite against a real server, in both send modes."""

    @pytest.fixture(params=[False, True], ids=["one-by-one", "pipelined"])
    def storage(
        self, request: pytest.FixtureRequest, pg_dsn: str, pg_schema: str
    ) -> Iterator[PostgresStorage]:
        s = PostgresStorage(pg_dsn, schema=pg_schema, pool_max=12, pipeline=request.param)
        assert s.pipeline is request.param
        yield s
        s.close()


class TestMissingExtra:
    def test_import_without_psycopg_names_the_extra(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Importing the module without psycopg raises MissingExtraError naming "postgres"."""
        for name in list(sys.modules):
            if name.startswith("enspace_profile.stores.") and "postgres" in name:
                monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, "psycopg", None)
        with pytest.raises(MissingExtraError) as info:
            importlib.import_module("enspace_profile.stores.postgres")
        assert info.value.extra == "postgres"
        assert "enspace-profile[postgres]" in str(info.value)
        assert isinstance(info.value, ImportError)


class TestCapabilities:
    @pytest.mark.parametrize(
        "protocol",
        [
            p
            for name, p in vars(ports).items()
            if name.startswith("Supports") and name != "SupportsTokenLookup"
        ],
    )
    def test_transactions_offer_every_repository_port(self, protocol: type) -> None:
        """PostgresTransaction has every capability Protocol the library defines."""
        members = [m for m in vars(protocol) if not m.startswith("_")]
        assert members
        assert all(hasattr(PostgresTransaction, m) for m in members)

    def test_storage_offers_the_token_lookup(self) -> None:
        """PostgresStorage offers the transaction-free token lookup and the Storage methods."""
        for member in ("transaction", "close", "token_lookup"):
            assert inspect.isfunction(getattr(PostgresStorage, member))


class TestOptions:
    @pytest.mark.parametrize(
        ("options", "field"),
        [
            ({"schema": ""}, "schema"),
            ({"schema": "x" * 64}, "schema"),
            ({"pool_min": 5, "pool_max": 2}, "pool_max"),
            ({"pool_timeout": 0}, "pool_timeout"),
            ({"lock_timeout": -1.0}, "lock_timeout"),
            ({"retries": -1}, "retries"),
        ],
    )
    def test_bad_options_are_refused_before_connecting(
        self, options: dict[str, object], field: str
    ) -> None:
        """Out-of-range options raise ValidationError naming the option, without a server."""
        with pytest.raises(ValidationError) as info:
            PostgresStorage("postgresql://nobody@127.0.0.1:1/none", **options)  # type: ignore[arg-type]
        assert info.value.fields == (field,)

    def test_unreachable_server_is_a_storage_error(self) -> None:
        """A server that refuses connections raises StorageError, not a psycopg error."""
        with pytest.raises(StorageError) as info:
            PostgresStorage("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
        assert info.value.code == "storage.connect_failed"
        assert not isinstance(info.value, psycopg.Error)

    def test_malformed_dsn_is_a_storage_error(self) -> None:
        """A connection string libpq cannot parse raises StorageError."""
        with pytest.raises(StorageError) as info:
            PostgresStorage("host=")
        assert info.value.code == "storage.connect_failed"


class TestSchema:
    def test_new_schema_is_created_and_every_migration_recorded(
        self, pg_dsn: str, pg_schema: str
    ) -> None:
        """Opening creates the schema with its tables and records versions 1..latest."""
        with PostgresStorage(pg_dsn, schema=pg_schema) as s:
            assert s.schema_version == s.latest_schema_version == latest_version()
        with _admin(pg_dsn) as conn:
            versions = conn.execute(
                sql.SQL("SELECT version FROM {}.{} ORDER BY version").format(
                    sql.Identifier(pg_schema), sql.Identifier(VERSION_TABLE)
                )
            ).fetchall()
            tables = {
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                    (pg_schema,),
                )
            }
        assert [v for (v,) in versions] == list(range(1, latest_version() + 1))
        assert {"profiles", "audit_events", "blobs", "tokens", "lab_choices"} <= tables

    def test_reopening_keeps_data_and_does_not_migrate_again(
        self, pg_dsn: str, pg_schema: str
    ) -> None:
        """Reopening an existing schema neither re-migrates nor loses data."""
        with PostgresStorage(pg_dsn, schema=pg_schema) as s, s.transaction() as tx:
            tx.profiles.add(make_profile())
        reopened = PostgresStorage(pg_dsn, schema=pg_schema, migrate=False)
        with reopened as s, s.transaction(write=False) as tx:
            assert tx.profiles.get("user-1") == make_profile()

    def test_newer_schema_is_refused_and_left_untouched(self, pg_dsn: str, pg_schema: str) -> None:
        """A schema written by a newer library raises SchemaVersionError and is not changed."""
        PostgresStorage(pg_dsn, schema=pg_schema).close()
        table = sql.SQL("{}.{}").format(sql.Identifier(pg_schema), sql.Identifier(VERSION_TABLE))
        with _admin(pg_dsn) as conn:
            conn.execute(
                sql.SQL("INSERT INTO {} (version, description) VALUES (999, 'future')").format(
                    table
                )
            )
        with pytest.raises(SchemaVersionError) as info:
            PostgresStorage(pg_dsn, schema=pg_schema)
        assert (info.value.found, info.value.supported) == (999, latest_version())
        assert "upgrade enspace_profile" in str(info.value)
        with _admin(pg_dsn) as conn:
            row = conn.execute(sql.SQL("SELECT max(version) FROM {}").format(table)).fetchone()
        assert row == (999,)

    def test_migrate_false_refuses_an_unmigrated_schema(self, pg_dsn: str, pg_schema: str) -> None:
        """With migrate=False an empty database raises SchemaVersionError and creates nothing."""
        with pytest.raises(SchemaVersionError) as info:
            PostgresStorage(pg_dsn, schema=pg_schema, migrate=False)
        assert info.value.found == 0
        with _admin(pg_dsn) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (pg_schema,)
            ).fetchone()
        assert found is None

    def test_values_come_back_in_utc(self, pg_dsn: str, pg_schema: str) -> None:
        """Times read back are UTC datetimes whatever time zone the connection starts in."""
        tokyo = make_conninfo(pg_dsn, options="-c TimeZone=Asia/Tokyo")
        with PostgresStorage(tokyo, schema=pg_schema) as s:
            with s.transaction() as tx:
                tx.profiles.add(make_profile())
            with s.transaction(write=False) as tx:
                stored = tx.profiles.get("user-1")
        assert stored is not None
        assert stored.created_at.tzinfo is UTC
        assert stored.created_at == T0


@pytest.fixture(params=[False, True], ids=["one-by-one", "pipelined"])
def pg(request: pytest.FixtureRequest, pg_dsn: str, pg_schema: str) -> Iterator[PostgresStorage]:
    s = PostgresStorage(
        pg_dsn,
        schema=pg_schema,
        pool_min=1,
        pool_max=4,
        lock_timeout=0.2,
        pipeline=request.param,
    )
    yield s
    s.close()


def _backend_pid(storage: PostgresStorage) -> int:
    with storage.transaction(write=False) as tx:
        row = tx.unit.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def _terminate(dsn: str, pid: int) -> None:
    with _admin(dsn) as conn:
        conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))


class TestTransactions:
    def test_nested_transaction_is_refused(self, pg: PostgresStorage) -> None:
        """Opening a transaction inside another on the same thread is a clear StorageError."""
        with pg.transaction():
            with pytest.raises(StorageError) as info, pg.transaction():
                pass
            assert info.value.code == "storage.nested_transaction"

    def test_closed_storage_refuses_work(self, pg: PostgresStorage) -> None:
        """After close(), transactions and token lookups raise StorageError."""
        lookup = pg.token_lookup()
        pg.close()
        pg.close()  # idempotent
        with pytest.raises(StorageError) as info, pg.transaction():
            pass
        assert info.value.code == "storage.closed"
        with pytest.raises(StorageError):
            lookup(b"\0" * 32)

    def test_server_refuses_writes_in_read_only_transactions(self, pg: PostgresStorage) -> None:
        """Even SQL that bypasses the repositories cannot write in a read-only transaction."""
        with pytest.raises(StorageError) as info, pg.transaction(write=False) as tx:
            tx.unit.execute("DELETE FROM profiles")
        assert info.value.code == "storage.read_only"

    def test_transaction_without_statements_takes_no_connection(self, pg: PostgresStorage) -> None:
        """A transaction that runs nothing never touches the pool (capability checks are free)."""
        before = pg._pool.get_stats().get("requests_num", 0)
        with pg.transaction() as tx:
            assert tx.writable
        with pg.transaction(write=False) as tx:
            assert not tx.writable
        assert pg._pool.get_stats().get("requests_num", 0) == before

    def test_lock_held_too_long_is_storage_busy(self, pg: PostgresStorage) -> None:
        """A writer that cannot get a row lock within lock_timeout gets StorageBusyError."""
        with pg.transaction() as tx:
            tx.profiles.add(make_profile())
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            with pg.transaction() as tx:
                tx.profiles.get("user-1")  # FOR UPDATE
                holding.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert holding.wait(10)
            with pytest.raises(StorageBusyError), pg.transaction() as tx:
                tx.profiles.get("user-1")
        finally:
            release.set()
            holder.join()
        with pg.transaction() as tx:
            assert tx.profiles.get("user-1") is not None

    def test_deadlock_victim_gets_storage_busy(self, pg_dsn: str, pg_schema: str) -> None:
        """Of two transactions locking two rows in opposite order, one gets StorageBusyError."""
        s = PostgresStorage(pg_dsn, schema=pg_schema, lock_timeout=None, retries=0)
        with s.transaction() as tx:
            tx.profiles.add(make_profile("a"))
            tx.profiles.add(make_profile("b"))
        both = threading.Barrier(2)
        outcomes: list[object] = []

        def cross(first: str, second: str) -> None:
            try:
                with s.transaction() as tx:
                    tx.profiles.get(first)
                    both.wait(10)
                    tx.profiles.get(second)
                outcomes.append("ok")
            except Exception as exc:
                outcomes.append(exc)

        threads = [
            threading.Thread(target=cross, args=("a", "b")),
            threading.Thread(target=cross, args=("b", "a")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        s.close()
        assert sorted(map(type, outcomes), key=str) == sorted([str, StorageBusyError], key=str)

    def test_dead_pooled_connection_is_replaced_transparently(
        self, pg: PostgresStorage, pg_dsn: str
    ) -> None:
        """A pooled connection killed by the server is replaced before the transaction starts."""
        _terminate(pg_dsn, _backend_pid(pg))
        with pg.transaction() as tx:
            tx.profiles.add(make_profile())
        with pg.transaction(write=False) as tx:
            assert tx.profiles.get("user-1") == make_profile()

    def test_dead_connection_in_lookup_is_replaced_transparently(
        self, pg: PostgresStorage, pg_dsn: str
    ) -> None:
        """The token lookup retries on a fresh connection when its pooled one was killed."""
        token = make_token(1)
        with pg.transaction() as tx:
            tx.tokens.add(token)
        lookup = pg.token_lookup()
        assert lookup(token.digest) is not None
        _terminate(pg_dsn, _backend_pid(pg))
        credential = lookup(token.digest)
        assert credential is not None
        assert credential.principal.token_id == token.id

    def test_connection_lost_mid_transaction_is_a_storage_error(
        self, pg: PostgresStorage, pg_dsn: str
    ) -> None:
        """A connection dying after the first statement raises StorageError and commits nothing."""
        with pytest.raises(StorageError) as info, pg.transaction() as tx:
            row = tx.unit.execute("SELECT pg_backend_pid()").fetchone()
            assert row is not None
            _terminate(pg_dsn, row[0])
            tx.profiles.add(make_profile())
        assert info.value.code == "storage.connection_lost"
        assert not isinstance(info.value, psycopg.Error)
        with pg.transaction(write=False) as tx:
            assert tx.profiles.get("user-1") is None

    def test_duplicate_audit_id_against_committed_event_fails_the_commit(
        self, pg: PostgresStorage
    ) -> None:
        """Appending an event whose id is stored raises AlreadyExistsError; nothing commits."""
        with pg.transaction() as tx:
            tx.audit.append(make_event(1))
        with pytest.raises(AlreadyExistsError) as info, pg.transaction() as tx:
            tx.profiles.add(make_profile())
            tx.audit.append(make_event(1))
        assert info.value.key == make_event(1).id
        with pg.transaction(write=False) as tx:
            assert tx.profiles.get("user-1") is None
            assert len(tx.audit.list_for_user("user-1")) == 1

    def test_statement_after_a_failed_one_explains_the_abort(self, pg: PostgresStorage) -> None:
        """Continuing after a refused update raises a StorageError telling to leave the block."""
        a, b = make_token(1, name="A"), make_token(2, name="B")
        with pg.transaction() as tx:
            tx.tokens.add(a)
            tx.tokens.add(b)
        with pytest.raises(StorageError) as info, pg.transaction() as tx:
            with pytest.raises(AlreadyExistsError):
                tx.tokens.update(attrs.evolve(a, name="B"))
            tx.tokens.get(a.id)
        assert info.value.code == "storage.transaction_aborted"

    @pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
    def test_forked_child_opens_its_own_connections(self, pg: PostgresStorage) -> None:
        """A child process forked after use gets new connections; the parent's keep working."""
        with pg.transaction() as tx:
            tx.profiles.add(make_profile("parent"))
        pid = os.fork()
        if pid == 0:  # the child: must not touch the parent's connections
            code = 1
            try:
                with pg.transaction() as tx:
                    tx.profiles.add(make_profile("child"))
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        with pg.transaction(write=False) as tx:
            assert tx.profiles.get("child") is not None
            assert tx.profiles.get("parent") is not None

    def test_insert_conflicts_leave_the_transaction_usable(self, pg: PostgresStorage) -> None:
        """A refused insert (duplicate) does not abort the transaction, as in SQLite."""
        with pg.transaction() as tx:
            tx.profiles.add(make_profile())
            with pytest.raises(AlreadyExistsError):
                tx.profiles.add(make_profile())
            tx.profiles.add(make_profile("user-2"))
        with pg.transaction(write=False) as tx:
            assert tx.profiles.get("user-2") is not None


class TestTokenLookup:
    @pytest.mark.parametrize(
        "when",
        [
            datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC),
            datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(2038, 1, 19, 3, 14, 8, 999999, tzinfo=UTC),
            datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        ],
    )
    def test_times_are_exact_microseconds(self, pg: PostgresStorage, when: datetime) -> None:
        """The server's conversion to microseconds is exact, before 1970 and up to 9999."""
        token = make_token(1, expires_at=when, last_used_at=when, created_at=when)
        with pg.transaction() as tx:
            tx.tokens.add(token)
        credential = pg.token_lookup()(token.digest)
        assert credential is not None
        assert credential.valid_until_us == credential.last_used_us == to_micros(when)

    def test_revocation_before_expiry_bounds_validity(self, pg: PostgresStorage) -> None:
        """The validity bound is the earlier of expiry and revocation; neither means None."""
        revoked = make_token(1, revoked_at=T0, expires_at=T0 + timedelta(days=1))
        forever = make_token(2, expires_at=None)
        with pg.transaction() as tx:
            tx.tokens.add(revoked)
            tx.tokens.add(forever)
        lookup = pg.token_lookup()
        first, second = lookup(revoked.digest), lookup(forever.digest)
        assert first is not None
        assert second is not None
        assert first.valid_until_us == to_micros(T0)
        assert (second.valid_until_us, second.last_used_us) == (None, None)


def _populate_sqlite(path: Path) -> None:
    """Write one of everything into a SQLite file through its repositories."""
    with SQLiteStorage(path) as s, s.transaction() as tx:
        for n, user in enumerate(["user-1", "ユーザー", "a'b"]):
            tx.profiles.add(make_profile(user, first_name=f"F{n}"))
            for k in range(3):
                tx.audit.append(make_event(k, user))
            tx.tokens.add(make_token(1, user))
            tx.tokens.add(make_token(2, user, revoked_at=T0, revoked_reason="user"))
            tx.credentials.add(make_credentials(user))
            tx.throttle.put(user, "credentials", FailureState(consecutive_failures=n + 1))
            tx.sessions.add(make_session(f"s-{n}", user))
            tx.integrations.add(make_connection(f"conn-{n}", user))
            tx.integrations.put_credentials(user, f"conn-{n}", make_sealed_box(n + 1))
            tx.integrations.add_pending(make_pending(n + 1, user))
            tx.lab.put(make_opt_in("new-editor", user))
            tx.lab.put(make_opt_in("dark-mode", user, enabled=False))
        blob = Blob(sha256="ab" * 32, media_type="image/png", data=b"\x89PNG\0bytes")
        tx.blobs.acquire(blob)
        tx.blobs.acquire(blob)
        tx.integrations.add(make_connection("conn-bare", "user-1", provider="gitlab"))


def _snapshot(storage: object) -> dict[str, object]:
    """Everything readable through the repositories for the users _populate_sqlite wrote."""
    out: dict[str, object] = {}
    with storage.transaction(write=False) as tx:  # type: ignore[attr-defined]
        for user in ["user-1", "ユーザー", "a'b"]:
            out[f"profile {user}"] = tx.profiles.get(user)
            out[f"audit {user}"] = list(tx.audit.list_for_user(user))
            out[f"tokens {user}"] = list(tx.tokens.list_for_user(user))
            out[f"credentials {user}"] = tx.credentials.get(user)
            out[f"throttle {user}"] = tx.throttle.get(user, "credentials")
            out[f"sessions {user}"] = list(tx.sessions.list_for_user(user))
            connections = list(tx.integrations.list_for_user(user))
            out[f"connections {user}"] = connections
            out[f"sealed {user}"] = [
                tx.integrations.get_credentials(user, c.id) for c in connections
            ]
            out[f"lab {user}"] = list(tx.lab.list_for_user(user))
        out["credentials list"] = list(tx.integrations.list_credentials())
        out["lab revision"] = tx.lab.revision()
        out["lab changes"] = list(tx.lab.changed_since(0, limit=100))
        out["blob"] = (tx.blobs.get("ab" * 32), tx.blobs.references("ab" * 32))
        out["user ids"] = list(tx.credentials.list_user_ids())
    with contextlib.suppress(_Undo), storage.transaction() as tx:  # type: ignore[attr-defined]
        out["pending"] = [
            tx.integrations.take_pending(make_pending(n, user).state_digest)
            for n, user in enumerate(["user-1", "ユーザー", "a'b"], start=1)
        ]
        raise _Undo  # taking deletes: roll back
    return out


class _Undo(Exception):
    pass


class TestImportSQLite:
    def test_every_aggregate_survives_the_copy(self, tmp_path: Path, pg: PostgresStorage) -> None:
        """Importing a SQLite file yields a PostgreSQL storage that reads back the same."""
        path = tmp_path / "panel.db"
        _populate_sqlite(path)
        with SQLiteStorage(path) as source:
            expected = _snapshot(source)
        report = import_sqlite(path, pg)
        assert report.counts["profiles"] == 3
        assert report.counts["audit_events"] == 9
        assert report.counts["tokens"] == 6
        assert report.counts["connection_credentials"] == 3
        assert report.total == sum(report.counts.values())
        assert _snapshot(pg) == expected
        assert all(v not in (None, []) for v in expected.values())

    def test_import_by_dsn_opens_and_closes_the_target(
        self, tmp_path: Path, pg_dsn: str, pg_schema: str
    ) -> None:
        """A DSN target is opened (and migrated) with the given options, then closed."""
        path = tmp_path / "panel.db"
        _populate_sqlite(path)
        report = import_sqlite(path, pg_dsn, schema=pg_schema)
        assert report.counts["profiles"] == 3
        with PostgresStorage(pg_dsn, schema=pg_schema) as s, s.transaction(write=False) as tx:
            assert tx.profiles.get("ユーザー") is not None

    def test_non_empty_target_is_refused(self, tmp_path: Path, pg: PostgresStorage) -> None:
        """Importing into a storage that holds data raises StorageError and changes nothing."""
        path = tmp_path / "panel.db"
        _populate_sqlite(path)
        with pg.transaction() as tx:
            tx.profiles.add(make_profile("existing"))
        with pytest.raises(StorageError) as info:
            import_sqlite(path, pg)
        assert info.value.code == "storage.not_empty"
        with pg.transaction(write=False) as tx:
            assert tx.profiles.get("user-1") is None

    def test_failed_import_copies_nothing(self, tmp_path: Path, pg: PostgresStorage) -> None:
        """An import that fails midway leaves the target empty (one transaction)."""
        path = tmp_path / "panel.db"
        _populate_sqlite(path)
        conn = sqlite3.connect(path)
        # SQLite text may hold NUL, PostgreSQL text may not: the copy fails at the sessions.
        conn.execute("UPDATE security_sessions SET user_agent = 'bad' || char(0) || 'agent'")
        conn.commit()
        conn.close()
        with pytest.raises(StorageError) as info:
            import_sqlite(path, pg)
        assert info.value.code == "storage.data"
        with pg.transaction(write=False) as tx:
            assert tx.profiles.get("user-1") is None

    def test_missing_file_is_refused_without_creating_it(
        self, tmp_path: Path, pg: PostgresStorage
    ) -> None:
        """A path that does not exist raises StorageError and is not created."""
        with pytest.raises(StorageError) as info:
            import_sqlite(tmp_path / "nope.db", pg)
        assert info.value.code == "storage.not_found"
        assert not (tmp_path / "nope.db").exists()

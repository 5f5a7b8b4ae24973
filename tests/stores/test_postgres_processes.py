"""Several processes and threads on one PostgreSQL database: nothing lost, only our errors."""

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence

import pytest

try:
    import psycopg
except ImportError:  # without the extra: skip, unless CI requires these tests
    if os.environ.get("ENSPACE_REQUIRE_POSTGRES") == "1":
        raise
    pytest.skip("needs the postgres extra (psycopg)", allow_module_level=True)

from psycopg import sql

from enspace_profile.stores._postgres_schema import VERSION_TABLE, latest_version
from enspace_profile.stores.postgres import PostgresStorage

pytestmark = pytest.mark.slow

PROCESSES = 4
THREADS = 4
CAP = 30

# Each thread: Saves the shared profile (retrying on ConflictError), creates tokens for
# the shared user until the cap refuses (and one of its own), authenticates every
# token it created with "last used" written on each call, and counts failed attempts
# on a shared throttle key. Anything but our expected errors is reported back.
WORKER = textwrap.dedent(
    """
    import json, sys, threading, hashlib
    from datetime import UTC, datetime, timedelta
    from enspace_profile import AuthContext, Pepper, UserPanel
    from enspace_profile.exceptions import ConflictError, EnspaceProfileError, LimitExceededError
    from enspace_profile._security.lockout import FailureState
    from enspace_profile.stores.postgres import PostgresStorage

    dsn, schema, worker = sys.argv[1], sys.argv[2], sys.argv[3]
    threads, saves, cap = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    storage = PostgresStorage(dsn, schema=schema, pool_max=threads + 1)
    panel = UserPanel(
        storage=storage,
        token_peppers=[Pepper(id="p", secret=hashlib.sha256(b"pepper").digest())],
        max_tokens_per_user=cap,
        token_last_used_interval=timedelta(0),
    )
    sys.stdin.readline()  # start together: the parent writes a line to every worker
    lock = threading.Lock()
    out = {"saved": [], "conflicts": 0, "tokens": [], "refused": 0,
           "authenticated": 0, "failures": 0, "errors": []}

    def note(key, value=1):
        with lock:
            if isinstance(out[key], list):
                out[key].append(value)
            else:
                out[key] += value

    def save(t, n):
        value = f"{worker}-{t}-{n}"
        while True:
            current = panel.profile.get("shared")
            try:
                panel.profile.save("shared", {"first_name": value}, version=current.version)
            except ConflictError:
                note("conflicts")
                continue
            note("saved", value)
            return

    def create(t, n):
        auth = AuthContext(user_id="cap-user", authenticated_at=datetime.now(UTC),
                           factors={"password"})
        try:
            created = panel.tokens.create("cap-user", auth=auth, name=f"{worker}-{t}-{n}",
                                          scopes=["api:read"])
        except LimitExceededError:
            note("refused")
            return None
        note("tokens", created.token.id)
        return created

    def fail_once():
        with storage.transaction() as tx:
            state = tx.throttle.get("shared", "credentials")
            tx.throttle.put("shared", "credentials", FailureState(
                consecutive_failures=state.consecutive_failures + 1))
        note("failures")

    def run(t):
        mine = []
        try:
            for n in range(saves):
                save(t, n)
                created = create(t, n)
                if created is not None:
                    mine.append(created)
                fail_once()
                for item in mine:
                    principal = panel.tokens.authenticate(item.secret, ip="127.0.0.1",
                                                          user_agent=worker)
                    assert principal.token_id == item.token.id
                    note("authenticated")
        except EnspaceProfileError as exc:
            note("errors", f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            note("errors", f"UNEXPECTED {type(exc).__module__}.{type(exc).__name__}: {exc}")

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    storage.close()
    print(json.dumps(out))
    """
)

OPENER = textwrap.dedent(
    """
    import json, sys
    from enspace_profile.stores.postgres import PostgresStorage
    sys.stdin.readline()
    try:
        storage = PostgresStorage(sys.argv[1], schema=sys.argv[2], pool_min=0, pool_max=1)
        with storage.transaction() as tx:
            tx.lab.revision()
        storage.close()
        print(json.dumps({"version": storage.schema_version}))
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__module__}.{type(exc).__name__}: {exc}"}))
    """
)


def _run_together(script: str, argv: Sequence[Sequence[str]]) -> list[dict[str, object]]:
    """Start one process per argv, release them at once, return their JSON outputs."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for args in argv
    ]
    try:
        for proc in procs:  # every interpreter has started; now let them all go
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    return [json.loads(out) for out, _ in outputs]


class TestManyProcesses:
    def test_processes_and_threads_lose_nothing(self, pg_dsn: str, pg_schema: str) -> None:
        """4 processes x 4 threads saving, creating and verifying tokens: nothing lost."""
        with PostgresStorage(pg_dsn, schema=pg_schema) as storage:
            from enspace_profile import UserPanel

            UserPanel(storage=storage).profile.create("shared", first_name="start")
        saves = 6
        results = _run_together(
            WORKER,
            [
                [pg_dsn, pg_schema, f"w{i}", str(THREADS), str(saves), str(CAP)]
                for i in range(PROCESSES)
            ],
        )
        assert [r["errors"] for r in results] == [[]] * PROCESSES
        saved = [v for r in results for v in r["saved"]]  # type: ignore[union-attr]
        tokens = [t for r in results for t in r["tokens"]]  # type: ignore[union-attr]
        attempts = PROCESSES * THREADS * saves
        assert len(saved) == attempts
        assert len(tokens) == CAP
        assert sum(r["refused"] for r in results) == attempts - CAP  # type: ignore[misc]
        assert sum(r["failures"] for r in results) == attempts  # type: ignore[misc]
        assert sum(r["authenticated"] for r in results) > 0  # type: ignore[misc]
        with PostgresStorage(pg_dsn, schema=pg_schema) as storage:
            from enspace_profile import UserPanel

            panel = UserPanel(storage=storage)
            final = panel.profile.get("shared")
            history = panel.profile.history("shared")
            with storage.transaction(write=False) as tx:
                live = tx.tokens.count_live("cap-user")
                stored = {t.id for t in tx.tokens.list_for_user("cap-user")}
                throttle = tx.throttle.get("shared", "credentials")
                used = [t for t in tx.tokens.list_for_user("cap-user") if t.last_used_at]
        # Every successful Save is one version and one audit event; none is lost.
        assert final.version == 1 + attempts
        updates = [e for e in history if e.kind == "profile.updated"]
        assert sorted(e.changes[0].new for e in updates) == sorted(saved)  # type: ignore[type-var]
        # The cap held under concurrent creators; every created token is stored.
        assert live == CAP
        assert stored == set(tokens)
        assert len(used) == CAP
        # No lost failure count under concurrent attempts.
        assert throttle.consecutive_failures == attempts


class TestMigrationsAtOnce:
    def test_processes_opening_a_new_schema_together_all_succeed(
        self, pg_dsn: str, pg_schema: str
    ) -> None:
        """Six processes migrating one new schema at the same moment: one migrates, all open."""
        results = _run_together(OPENER, [[pg_dsn, pg_schema]] * 6)
        assert results == [{"version": latest_version()}] * 6
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            rows = conn.execute(
                sql.SQL("SELECT version FROM {}.{} ORDER BY version").format(
                    sql.Identifier(pg_schema), sql.Identifier(VERSION_TABLE)
                )
            ).fetchall()
        assert [v for (v,) in rows] == list(range(1, latest_version() + 1))

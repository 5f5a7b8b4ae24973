"""PostgreSQL: token authenticate and profile Save, next to raw psycopg running the same statements.

Run (needs a server; a throwaway schema is created and dropped)::

    ENSPACE_PG_DSN='postgresql://postgres@127.0.0.1:5432/postgres' \\
        python benchmarks/postgres.py [--tokens N] [--profiles N] [--batches N]

or let ``bash .ci/with-postgres.sh .venv/bin/python benchmarks/postgres.py`` start one.

Medians per call (each sample is the mean of a batch of calls; ours and raw batches
alternate, so both see the same machine load). The storage has a pool of one
connection and the raw statements run on that same connection (see ``Lease``), so
both talk to the same server process with the same prepared statements.

* authenticate (a valid, recently used token: no last-used write): ours is
  ``panel.tokens.authenticate``; raw is ``TokenFormat.check`` + the same HMAC + the same
  ``SELECT`` by digest (autocommit, binary).
* Save: ours is ``panel.profile.save`` (validation, audit event, the adapter); raw runs
  the statements our adapter runs: ``BEGIN``, ``SELECT ... FOR UPDATE``, ``UPDATE ...
  WHERE version = %s``, the audit ``INSERT``, ``COMMIT``.
* load: ``panel.profile.get`` against ``BEGIN`` read-only, ``SELECT``, ``COMMIT``.

Save and load are measured in both of the adapter's modes, each against raw psycopg
sending the statements the same way: one round trip per statement (the default for a
server on loopback or a Unix socket) and pipelined (the default for a server on
another machine: ``BEGIN`` goes with the first statement, the audit ``INSERT`` with
``COMMIT``; three round trips per Save instead of five).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from enspace_profile import AccessToken, Pepper, SeededRandom, TokenFormat, TokenHasher, UserPanel
from enspace_profile.testing import make_profile

try:
    import psycopg
    from psycopg import sql
    from psycopg.types.json import Jsonb

    from enspace_profile.stores._postgres_profiles import (
        INSERT_EVENT,
        INSERT_PROFILE,
        PROFILE_COLUMNS,
        profile_values,
    )
    from enspace_profile.stores._postgres_tokens import INSERT_TOKEN, LOOKUP, token_values
    from enspace_profile.stores.postgres import PostgresStorage
except ImportError:
    print("needs the postgres extra: pip install -e '.[postgres]'", file=sys.stderr)
    raise SystemExit(2) from None

HOW_TO_RUN = """\
benchmarks/postgres.py needs a PostgreSQL server: set ENSPACE_PG_DSN, e.g.

    ENSPACE_PG_DSN='postgresql://postgres@127.0.0.1:5432/postgres' python benchmarks/postgres.py

or start a throwaway server around it:

    bash .ci/with-postgres.sh .venv/bin/python benchmarks/postgres.py
"""

PEPPER = Pepper(id="bench", secret=hashlib.sha256(b"benchmark pepper").digest())
FORMAT = TokenFormat()
HASHER = TokenHasher([PEPPER])
NOW = datetime.now(UTC).replace(microsecond=0)
BATCH = 20

_BEGIN_WRITE = "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE"
_BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
_SELECT_PROFILE = f"SELECT {PROFILE_COLUMNS} FROM profiles WHERE user_id = %s"
_UPDATE_PROFILE = (
    "UPDATE profiles SET first_name = %s, last_name = %s, language = %s, "
    "theme_mode = %s, theme_day = %s, theme_night = %s, "
    "picture_sha256 = %s, picture_media_type = %s, picture_width = %s, picture_height = %s, "
    "picture_size = %s, updated_at = %s, version = %s WHERE user_id = %s AND version = %s"
)


class Lease:
    """Lends the storage's only pooled connection to the raw variants, one batch at a time.

    Ours and raw then talk to the same server process: on a small machine the core a
    backend happens to run on changes a round trip's latency several times over, and
    that must not be mistaken for overhead.
    """

    def __init__(self, storage: PostgresStorage) -> None:
        self.storage = storage
        self.conn: psycopg.Connection[Any] | None = None
        self.cur: psycopg.Cursor[Any] | None = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        self.conn = self.storage.acquire()
        self.cur = self.conn.cursor(binary=True)
        try:
            yield
        finally:
            self.storage.release(self.conn)
            self.conn = self.cur = None


def paired_medians(
    ours: Callable[[], object],
    raws: Sequence[Callable[[], object]],
    lease: Lease,
    batches: int,
) -> list[float]:
    """Median µs per call of ``ours`` and each raw variant, batches interleaved."""
    variants = [(ours, contextlib.nullcontext), *((fn, lease) for fn in raws)]
    samples: list[list[float]] = [[] for _ in variants]
    for _ in range(batches):
        for i, (fn, context) in enumerate(variants):
            with context():
                start = time.perf_counter_ns()
                for _ in range(BATCH):
                    fn()
                samples[i].append((time.perf_counter_ns() - start) / BATCH / 1000)
    return [statistics.median(s) for s in samples]


def populate(dsn: str, schema: str, tokens: int, profiles: int) -> list[str]:
    """Bulk-load tokens and profiles with the adapter's own row writers; return secrets."""
    rng = SeededRandom(1)
    secrets: list[str] = []
    token_rows = []
    for i in range(tokens):
        secret = FORMAT.generate(rng)
        token_id = str(uuid.UUID(bytes=rng.token_bytes(16), version=4))
        token = AccessToken(
            id=token_id,
            user_id=f"user-{i // 10}",
            name=f"token {i % 10}",
            scopes=frozenset({"api:read"}),
            created_at=NOW - timedelta(days=10),
            expires_at=NOW + timedelta(days=20),
            last_used_at=NOW,
            family_id=token_id,
            pepper_id=PEPPER.id,
            digest=HASHER.current_digest(secret),
            hint=FORMAT.hint(secret),
        )
        token_rows.append(token_values(token))
        if i % 4 == 0:
            secrets.append(secret)
    profile_rows = [
        profile_values(make_profile(f"user-{i}", created_at=NOW, updated_at=NOW))
        for i in range(profiles)
    ]
    with raw_connection(dsn, schema) as conn, conn.cursor() as cur:
        with conn.transaction():
            cur.executemany(INSERT_TOKEN, token_rows)
            cur.executemany(INSERT_PROFILE, profile_rows)
        conn.execute("ANALYZE")
    return secrets


def raw_connection(dsn: str, schema: str) -> psycopg.Connection[Any]:
    """A plain connection set up like the adapter's (schema, UTC), autocommit."""
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(
        "SELECT set_config('search_path', quote_ident(%s), false), "
        "set_config('TimeZone', 'UTC', false)",
        (schema,),
    )
    return conn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--batches", type=int, default=150)
    args = parser.parse_args()
    dsn = os.environ.get("ENSPACE_PG_DSN", "")
    if not dsn:
        print(HOW_TO_RUN, file=sys.stderr)
        raise SystemExit(2)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        PostgresStorage(dsn, schema=schema).close()
        start = time.perf_counter()
        secrets = populate(dsn, schema, args.tokens, args.profiles)
        print(
            f"populated {args.tokens:,} tokens and {args.profiles:,} profiles "
            f"in {time.perf_counter() - start:.1f} s"
        )
        results: list[tuple[str, float, float]] = []
        versions: dict[str, int] = {}  # profile versions, kept across both runs
        for pipeline in (False, True):
            with PostgresStorage(
                dsn, schema=schema, pool_min=1, pool_max=1, pipeline=pipeline
            ) as storage:
                run = Run(storage, versions, args, pipelined=pipeline)
                if not pipeline:  # no transaction: the same in both modes
                    run.authenticate(secrets)
                run.save()
                run.load()
                results += run.results
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    print(f"{'operation':<24} {'ours µs':>9} {'raw µs':>9} {'ratio':>6}")
    for name, ours, base in results:
        print(f"{name:<24} {ours:>9.1f} {base:>9.1f} {ours / base:>5.2f}x")
    print(
        "one round trip per statement: what PostgresStorage does by default on loopback; "
        "pipelined: its default for a server on another machine (BEGIN with the first "
        "statement, the audit INSERT with COMMIT), against raw psycopg batching the same way."
    )


class Run:
    """One measuring run on a storage in one send mode (pipelined or one by one)."""

    def __init__(
        self,
        storage: PostgresStorage,
        versions: dict[str, int],
        args: argparse.Namespace,
        *,
        pipelined: bool,
    ) -> None:
        self.panel = UserPanel(storage=storage, token_peppers=[PEPPER])
        self.lease = Lease(storage)
        self.versions = versions  # profile versions, kept across runs
        self.args = args
        self.pipelined = pipelined
        self.mode = "pipelined" if pipelined else "one round trip each"
        self.users = [f"user-{i}" for i in range(args.profiles)]
        self.counter = iter(range(10**9))
        self.results: list[tuple[str, float, float]] = []

    def measure(self, name: str, ours: Callable[[], object], raw: Callable[[], object]) -> None:
        paired_medians(ours, [raw], self.lease, 10)  # warm up: prepared statements, caches
        ours_us, raw_us = paired_medians(ours, [raw], self.lease, self.args.batches)
        self.results.append((name, ours_us, raw_us))

    def cursor(self) -> psycopg.Cursor[Any]:
        assert self.lease.cur is not None
        return self.lease.cur

    def batch(self, *statements: tuple[str, Any]) -> psycopg.Cursor[Any]:
        """Run statements on the lent connection: pipelined or one by one, as the storage."""
        cur = self.cursor()
        if not self.pipelined:
            for query, params in statements:
                cur.execute(query, params)
            return cur
        assert self.lease.conn is not None
        with self.lease.conn.pipeline():
            for query, params in statements:
                cur.execute(query, params)
        return cur

    def next_user(self) -> tuple[int, str]:
        n = next(self.counter)
        return n, self.users[n % len(self.users)]

    def authenticate(self, secrets: list[str]) -> None:
        authenticate = self.panel.tokens.authenticate
        check, digest = FORMAT.check, HASHER.current_digest
        ours_tokens, raw_tokens = iter(secrets * 1000), iter(secrets * 1000)

        def ours() -> object:
            return authenticate(next(ours_tokens))

        def raw() -> object:
            token = next(raw_tokens)
            return self.cursor().execute(LOOKUP, (digest(check(token)),)).fetchone()

        self.measure("authenticate", ours, raw)

    def save(self) -> None:
        tag = self.mode[0]

        def ours() -> object:
            n, uid = self.next_user()
            profile = self.panel.profile.save(
                uid, {"first_name": f"Name{n}{tag}"}, version=self.versions.get(uid, 1)
            )
            self.versions[uid] = profile.version
            return profile

        def raw() -> object:
            n, uid = self.next_user()
            read = (_SELECT_PROFILE + " FOR UPDATE", (uid,))
            row = self.batch((_BEGIN_WRITE, None), read).fetchone()
            assert row is not None
            new, version = f"Raw{n}{tag}", row[14] + 1
            self.cursor().execute(
                _UPDATE_PROFILE, (new, *row[2:12], datetime.now(UTC), version, uid, row[14])
            )
            event = (
                str(uuid.uuid4()),
                uid,
                "profile.updated",
                datetime.now(UTC),
                None,
                None,
                version,
                Jsonb([["first_name", row[1], new]]),
                Jsonb({}),
            )
            self.batch((INSERT_EVENT, event), ("COMMIT", None))
            self.versions[uid] = version
            return row

        self.measure(f"Save ({self.mode})", ours, raw)

    def load(self) -> None:
        def ours() -> object:
            return self.panel.profile.get(self.next_user()[1])

        def raw() -> object:
            read = (_SELECT_PROFILE, (self.next_user()[1],))
            row = self.batch((_BEGIN_READ, None), read).fetchone()
            self.cursor().execute("COMMIT")
            return row

        self.measure(f"load ({self.mode})", ours, raw)


if __name__ == "__main__":
    main()

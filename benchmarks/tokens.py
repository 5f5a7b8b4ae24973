"""Personal access tokens: authenticate and create, next to the raw floor, at 10k and 1M tokens.

Run: ``python benchmarks/tokens.py [--tokens N] [--small N] [--rounds N]``

For each storage (SQLite file, memory) and each size it prints the median cost per
call of ``panel.tokens.authenticate`` for a valid token, a malformed string, a
well-formed but unknown token, and of ``panel.tokens.create``; next to each, the raw
floor measured in the same run, and the ratio:

* authenticate floor (SQLite): ``TokenFormat.check`` + HMAC-SHA256 (the same prepared
  states the library uses, the fastest way we know) + one ``SELECT`` of the same
  columns by digest on a plain ``sqlite3`` connection with the same pragmas (autocommit);
* authenticate floor (memory): check + HMAC + ``dict.get`` on a plain dict;
* malformed floor: ``TokenFormat.check`` alone (it is all the work there is);
* create floor (SQLite): generate + HMAC + ``BEGIN IMMEDIATE``, the cap's ``count``,
  the token ``INSERT``, the audit event ``INSERT``, ``COMMIT`` (the statements our
  adapter runs); memory: generate + HMAC + a locked ``dict`` insert.

Valid tokens are sampled uniformly across the whole table and were "used recently",
so the measured path is the common one (no last-used write; that write happens at most
once per token per 10 minutes). Each sample times a batch of calls; medians over
batches. It also checks that malformed input causes zero storage calls, and reports
the SQLite bytes per token row (file size after a checkpoint, and per table/index).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from enspace_profile import (
    AccessToken,
    AuthContext,
    MemoryStorage,
    Pepper,
    SeededRandom,
    SQLiteStorage,
    TokenError,
    TokenFormat,
    TokenHasher,
    UserPanel,
)
from enspace_profile._tokens.service import TokenService
from enspace_profile.stores._sqlite_tokens import _INSERT, _LOOKUP, _row

PEPPER = Pepper(id="bench", secret=hashlib.sha256(b"benchmark pepper").digest())
FORMAT = TokenFormat()
HASHER = TokenHasher([PEPPER])
NOW = datetime.now(UTC).replace(microsecond=0)
SCOPES = frozenset({"api:read"})
BATCH = 50


def median_us(fn: Callable[[Any], object], inputs: Sequence[Any], batches: int) -> float:
    """Median over ``batches`` of the mean cost of ``BATCH`` calls, in µs per call."""
    samples = []
    n = len(inputs)
    pos = 0
    for _ in range(batches):
        chunk = [inputs[(pos + k) % n] for k in range(BATCH)]
        pos += BATCH
        start = time.perf_counter_ns()
        for item in chunk:
            fn(item)
        samples.append((time.perf_counter_ns() - start) / BATCH)
    return statistics.median(samples) / 1000


def swallow(fn: Callable[[Any], object]) -> Callable[[Any], object]:
    def call(item: Any) -> object:
        try:
            return fn(item)
        except TokenError:
            return None

    return call


def make_tokens(
    count: int, *, seed: int, sample_every: int
) -> Iterator[tuple[AccessToken, str | None]]:
    """Yield ``count`` stored tokens (and the secret of every ``sample_every``-th)."""
    rng = SeededRandom(seed)
    digest = HASHER.current_digest
    created = NOW - timedelta(days=10)
    expires = NOW + timedelta(days=20)
    for i in range(count):
        secret = FORMAT.generate(rng)
        token_id = str(uuid.UUID(bytes=rng.token_bytes(16), version=4))
        token = AccessToken(
            id=token_id,
            user_id=f"user-{i // 10}",
            name=f"token {i % 10}",
            scopes=SCOPES,
            created_at=created,
            expires_at=expires,
            last_used_at=NOW,
            last_used_ip="203.0.113.7",
            last_used_user_agent="bench-client/1.0",
            family_id=token_id,
            pepper_id=PEPPER.id,
            digest=digest(secret),
            hint=FORMAT.hint(secret),
        )
        yield token, (secret if i % sample_every == 0 else None)


def unknown_tokens(count: int) -> list[str]:
    rng = SeededRandom(999)
    return [FORMAT.generate(rng) for _ in range(count)]


def malformed_inputs() -> list[object]:
    good = FORMAT.generate(SeededRandom(5))
    return [
        "",
        "Bearer",
        "esp_short",
        "xyz_" + good[4:],
        good[:-1] + "!",
        good + "a",
        "esp_" + "é" * 36,
        "x" * 300,
        None,
        b"esp_bytes",
    ]


def bad_checksums(count: int) -> list[str]:
    rng = SeededRandom(6)
    out = []
    for _ in range(count):
        good = FORMAT.generate(rng)
        out.append(good[:-1] + ("A" if good[-1] != "A" else "B"))
    return out


# ----------------------------------------------------------------------------- SQLite


def populate_sqlite(path: Path, count: int) -> tuple[list[str], float]:
    """Create the schema with the library, then bulk-load ``count`` tokens.

    As a data migration would: drop the token indexes, insert in primary-key order,
    recreate the indexes from the schema's own SQL.
    """
    SQLiteStorage(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'tokens' "
        "AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    sample: list[str] = []
    rows = []
    for token, secret in make_tokens(count, seed=1, sample_every=max(1, count // 20_000)):
        rows.append(_row(token))
        if secret is not None:
            sample.append(secret)
    rows.sort(key=lambda r: r[0])
    conn.execute("BEGIN")
    conn.executemany(_INSERT, rows)
    conn.execute("COMMIT")
    del rows
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()
    return sample, path.stat().st_size / count


def sqlite_breakdown(path: Path, count: int) -> str:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT name, sum(pgsize) FROM dbstat WHERE name LIKE 'tokens%' GROUP BY name "
            "ORDER BY 2 DESC"
        ).fetchall()
    except sqlite3.Error:
        return "(dbstat not available)"
    finally:
        conn.close()
    return ", ".join(f"{name} {size / count:.0f}" for name, size in rows)


def raw_connection(path: Path) -> sqlite3.Connection:
    """A plain connection set up exactly like SQLiteStorage's (its pragmas)."""
    conn = sqlite3.connect(path, isolation_level=None, cached_statements=256)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def bench_sqlite(count: int, tmp: Path, batches: int) -> dict[str, float]:
    path = tmp / f"tokens-{count}.db"
    start = time.perf_counter()
    sample, per_row = populate_sqlite(path, count)
    print(f"  populated {count:,} tokens in {time.perf_counter() - start:.1f} s")
    print(f"  bytes per token row: {per_row:.0f} (file / rows); {sqlite_breakdown(path, count)}")
    storage = SQLiteStorage(path)
    panel = UserPanel(storage=storage, token_peppers=[PEPPER])
    authenticate = panel.tokens.authenticate
    raw = raw_connection(path)
    check, digest = FORMAT.check, HASHER.current_digest

    def floor(secret: str) -> object:
        return raw.execute(_LOOKUP, (digest(check(secret)),)).fetchone()

    random.Random(3).shuffle(sample)
    for secret in sample[:2000]:  # warm both paths equally
        authenticate(secret)
        floor(secret)
    results = measure_pairs(
        [
            ("authenticate (valid)", authenticate, floor, sample),
            ("reject unknown", swallow(authenticate), floor, unknown_tokens(5000)),
            ("reject malformed", swallow(authenticate), swallow(check), malformed_inputs()),
            ("reject bad checksum", swallow(authenticate), swallow(check), bad_checksums(5000)),
        ],
        batches,
    )
    results["create"] = bench_sqlite_create(panel, raw, batches)
    raw.close()
    panel.close()
    return results


def bench_sqlite_create(panel: UserPanel, raw: sqlite3.Connection, batches: int) -> float:
    rounds = max(200, batches // 10) * 4
    users = [f"creator-{i}" for i in range(rounds)]
    contexts = iter(
        [AuthContext(user_id=u, authenticated_at=NOW, factors={"password"}) for u in users]
    )
    create = panel.tokens.create
    rng = SeededRandom(11)

    def ours(_: object) -> object:
        ctx = next(contexts)
        return create(ctx.user_id, auth=ctx, name="bench", scopes=["api:read"])

    raw_users = iter(f"raw-{u}" for u in users)

    def floor(_: object) -> object:
        user = next(raw_users)
        secret = FORMAT.generate(rng)
        token = AccessToken(
            id=f"raw-{user}",
            user_id=user,
            name="bench",
            scopes=SCOPES,
            created_at=NOW,
            expires_at=NOW + timedelta(days=30),
            family_id=f"raw-{user}",
            pepper_id=PEPPER.id,
            digest=HASHER.current_digest(secret),
            hint=FORMAT.hint(secret),
        )
        raw.execute("BEGIN IMMEDIATE")
        raw.execute(
            "SELECT count(*) FROM tokens WHERE user_id = ? AND revoked_at IS NULL", (user,)
        ).fetchone()
        raw.execute(_INSERT, _row(token))
        raw.execute(
            "INSERT INTO audit_events (id, user_id, kind, at, actor, subject, version, changes, "
            "details) VALUES (?, ?, 'token.created', ?, NULL, ?, NULL, '[]', '{}')",
            (token.id, user, NOW.isoformat(), token.id),
        )
        raw.execute("COMMIT")
        return token

    half = rounds // 2 // 4
    ours_us = median_single(ours, rounds // 2, half)
    floor_us = median_single(floor, rounds // 2, half)
    return report("create", ours_us, floor_us)


def median_single(fn: Callable[[Any], object], calls: int, batches: int) -> float:
    """Median of per-batch means for a stateful ``fn`` (each call consumes an input)."""
    size = max(1, calls // max(1, batches))
    samples = []
    for _ in range(calls // size):
        start = time.perf_counter_ns()
        for _ in range(size):
            fn(None)
        samples.append((time.perf_counter_ns() - start) / size)
    return statistics.median(samples) / 1000


# ----------------------------------------------------------------------------- memory


def populate_memory(count: int) -> tuple[MemoryStorage, list[str], dict[bytes, str]]:
    storage = MemoryStorage()
    sample: list[str] = []
    plain: dict[bytes, str] = {}
    tokens = make_tokens(count, seed=1, sample_every=max(1, count // 20_000))
    while True:
        chunk = [t for _, t in zip(range(20_000), tokens, strict=False)]
        if not chunk:
            break
        with storage.transaction() as tx:
            for token, secret in chunk:
                tx.tokens.add(token)  # type: ignore[attr-defined]
                plain[token.digest] = token.id
                if secret is not None:
                    sample.append(secret)
    return storage, sample, plain


def bench_memory(count: int, batches: int) -> dict[str, float]:
    start = time.perf_counter()
    storage, sample, plain = populate_memory(count)
    print(f"  populated {count:,} tokens in {time.perf_counter() - start:.1f} s")
    panel = UserPanel(storage=storage, token_peppers=[PEPPER])
    authenticate = panel.tokens.authenticate
    check, digest, get = FORMAT.check, HASHER.current_digest, plain.get

    def floor(secret: str) -> object:
        return get(digest(check(secret)))

    random.Random(3).shuffle(sample)
    results = measure_pairs(
        [
            ("authenticate (valid)", authenticate, floor, sample),
            ("reject unknown", swallow(authenticate), floor, unknown_tokens(5000)),
            ("reject malformed", swallow(authenticate), swallow(check), malformed_inputs()),
            ("reject bad checksum", swallow(authenticate), swallow(check), bad_checksums(5000)),
        ],
        batches,
    )
    rounds = max(200, batches // 10) * 4
    contexts = iter(
        [
            AuthContext(user_id=f"c{i}", authenticated_at=NOW, factors={"password"})
            for i in range(rounds)
        ]
    )
    create = panel.tokens.create
    rng = SeededRandom(11)
    lock = threading.Lock()
    raw_table: dict[bytes, str] = {}
    counter = iter(range(10**9))

    def ours(_: object) -> object:
        ctx = next(contexts)
        return create(ctx.user_id, auth=ctx, name="bench", scopes=["api:read"])

    def floor_create(_: object) -> object:
        secret = FORMAT.generate(rng)
        d = digest(secret)
        with lock:
            raw_table[d] = f"raw-{next(counter)}"
        return secret

    half = rounds // 2 // 4
    results["create"] = report(
        "create",
        median_single(ours, rounds // 2, half),
        median_single(floor_create, rounds // 2, half),
    )
    return results


# ----------------------------------------------------------------------------- shared


def measure_pairs(
    cases: Sequence[tuple[str, Callable[[Any], object], Callable[[Any], object], Sequence[Any]]],
    batches: int,
) -> dict[str, float]:
    results: dict[str, float] = {}
    for label, ours, floor, inputs in cases:
        # Interleave ours and the floor in three rounds so drift affects both alike.
        ours_runs, floor_runs = [], []
        for _ in range(3):
            ours_runs.append(median_us(ours, inputs, batches // 3))
            floor_runs.append(median_us(floor, inputs, batches // 3))
        results[label] = report(label, statistics.median(ours_runs), statistics.median(floor_runs))
    return results


def report(label: str, ours: float, floor: float) -> float:
    print(f"  {label:22s} {ours:8.2f} µs   floor {floor:8.2f} µs   ratio {ours / floor:5.2f}x")
    return ours


class _CountingStorage:
    """A storage proxy counting every call that reaches the storage."""

    def __init__(self, inner: MemoryStorage) -> None:
        self.inner = inner
        self.calls = 0

    def transaction(self, *, write: bool = True) -> contextlib.AbstractContextManager[Any]:
        self.calls += 1
        return self.inner.transaction(write=write)

    def token_lookup(self) -> Callable[[bytes], object]:
        lookup = self.inner.token_lookup()

        def counted(digest: bytes) -> object:
            self.calls += 1
            return lookup(digest)

        return counted

    def close(self) -> None:
        self.inner.close()


def storage_calls_for_malformed() -> int:
    counting = _CountingStorage(MemoryStorage())
    from enspace_profile import FixedClock, ScopeCatalog

    service = TokenService(
        storage=counting,  # type: ignore[arg-type]
        hasher=HASHER,
        scopes=ScopeCatalog(scopes=[]),
        clock=FixedClock(NOW),
        rng=SeededRandom(1),
    )
    for item in [*malformed_inputs(), *bad_checksums(100)]:
        with contextlib.suppress(TokenError):
            service.authenticate(item)
    return counting.calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=1_000_000, help="large size (default 1M)")
    parser.add_argument("--small", type=int, default=10_000, help="small size (default 10k)")
    parser.add_argument("--batches", type=int, default=600, help="timed batches per case")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}")
    print(f"storage calls caused by malformed/bad-checksum input: {storage_calls_for_malformed()}")
    begin = time.perf_counter()
    sizes = [args.small, args.tokens] if args.small < args.tokens else [args.tokens]
    with tempfile.TemporaryDirectory() as tmp:
        found: dict[tuple[str, int], dict[str, float]] = {}
        for size in sizes:
            print(f"SQLite, {size:,} tokens")
            found["sqlite", size] = bench_sqlite(size, Path(tmp), args.batches)
            (Path(tmp) / f"tokens-{size}.db").unlink()
            print(f"memory, {size:,} tokens")
            found["memory", size] = bench_memory(size, args.batches)
    if len(sizes) == 2:
        small, large = sizes
        print(f"growth from {small:,} to {large:,} tokens (authenticate, valid):")
        for kind in ("sqlite", "memory"):
            ratio = (
                found[kind, large]["authenticate (valid)"]
                / found[kind, small]["authenticate (valid)"]
            )
            print(f"  {kind:7s} {ratio:5.2f}x")
    print(f"total {time.perf_counter() - begin:.0f} s")


if __name__ == "__main__":
    main()

"""Fixtures for the PostgreSQL tests: a server from ENSPACE_PG_DSN and a fresh schema per test.

Without ENSPACE_PG_DSN the PostgreSQL tests skip, saying how to run them; with
ENSPACE_REQUIRE_POSTGRES=1 (set by .ci/run) they fail instead, so CI cannot pass
without having run them.
"""

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

DSN_VARIABLE = "ENSPACE_PG_DSN"
REQUIRE_VARIABLE = "ENSPACE_REQUIRE_POSTGRES"
HOW_TO_RUN = (
    "To run them, point ENSPACE_PG_DSN at a database you may create schemas in "
    "(e.g. ENSPACE_PG_DSN='postgresql://postgres@127.0.0.1:5432/postgres'), or let "
    "`bash .ci/with-postgres.sh .venv/bin/python -m pytest tests/stores` start a "
    "throwaway server (needs the PostgreSQL server package)."
)


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{reason}, but {REQUIRE_VARIABLE}=1 requires the PostgreSQL tests to run")
    pytest.skip(f"PostgreSQL tests skipped: {reason}. {HOW_TO_RUN}")


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The DSN of a reachable PostgreSQL server (or a skip / failure saying why not)."""
    try:
        import psycopg
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'enspace-profile[postgres]')")
    dsn = os.environ.get(DSN_VARIABLE, "")
    if not dsn:
        _unavailable(f"{DSN_VARIABLE} is not set")
    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.Error as exc:
        _unavailable(f"cannot connect to {DSN_VARIABLE}: {str(exc).strip()}")
    return dsn


@pytest.fixture
def pg_schemas(pg_dsn: str) -> Iterator[Callable[[], str]]:
    """Return a factory of unique schema names; every schema it named is dropped afterwards."""
    import psycopg
    from psycopg import sql

    names: list[str] = []

    def new() -> str:
        names.append(f"test_{uuid.uuid4().hex[:16]}")
        return names[-1]

    yield new
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def pg_schema(pg_schemas: Callable[[], str]) -> str:
    """A unique schema name for this test (dropped afterwards)."""
    return pg_schemas()

"""The benchmark scripts keep running as the API changes (tiny sizes; timings not checked)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"

SMALL_RUNS = [
    ("profile_save.py", ["--profiles", "200", "--rounds", "50"], "save"),
    ("tokens.py", ["--tokens", "2000", "--small", "500", "--batches", "5"], "authenticate"),
    ("lab.py", ["--users", "50", "--features", "5", "--rounds", "50"], "warm"),
    ("locale_negotiate.py", [], "negotiate"),
    ("security.py", ["--quick", "totp", "policy"], "Totp.verify"),
]


@pytest.mark.parametrize(("script", "args", "expected"), SMALL_RUNS)
def test_benchmark_script_runs(script: str, args: list[str], expected: str) -> None:
    """Each benchmark script runs to completion and prints its measurements."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


@pytest.mark.skipif(not os.environ.get("ENSPACE_PG_DSN"), reason="needs ENSPACE_PG_DSN")
def test_postgres_benchmark_runs() -> None:
    """The PostgreSQL benchmark runs against the test server."""
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "postgres.py"),
            "--tokens",
            "200",
            "--profiles",
            "200",
            "--batches",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "authenticate" in result.stdout

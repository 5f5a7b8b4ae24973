"""Several processes on one SQLite file: failures are counted exactly, codes used once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from enspace_profile import (
    Argon2idHasher,
    AuthContext,
    FixedClock,
    PasswordHash,
    SecurityEventKind,
    SeededRandom,
    UserPanel,
)
from enspace_profile._crypto.keyring import EncryptionKey, KeyRing
from enspace_profile._security.service import THROTTLE_SCOPE
from enspace_profile._security.totp import Totp, TotpSecret
from enspace_profile.typing import SupportsThrottle

pytestmark = pytest.mark.slow

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
KEY = b"k" * 32

# Every worker uses the same fixed time, so all attempts fall in one lockout window.
WORKER = textwrap.dedent(
    """
    import json, sys
    from datetime import datetime
    from enspace_profile import (
        Argon2idHasher, FixedClock, InvalidCredentialsError, LockoutPolicy, PasswordHash,
        RateLimitedError, SeededRandom, UserPanel,
    )
    from enspace_profile._crypto.keyring import EncryptionKey, KeyRing

    path, mode, attempts, threshold, seed, secret = sys.argv[1:7]
    threshold = int(threshold)
    panel = UserPanel.open(
        path,
        clock=FixedClock(datetime.fromisoformat("2026-03-01T09:00:00+00:00")),
        rng=SeededRandom(int(seed)),
        password_hash=PasswordHash([Argon2idHasher(memory_cost=64, iterations=1)]),
        lockout_policy=LockoutPolicy(threshold=threshold, hourly_cap=max(100, threshold)),
        key_ring=KeyRing([EncryptionKey(id="k1", key=b"k" * 32)]),
    )
    outcomes = []
    for _ in range(int(attempts)):
        try:
            if mode == "password":
                panel.security.verify_password("u1", "definitely not it")
            else:
                panel.security.verify_totp("u1", secret)
            outcomes.append("ok")
        except InvalidCredentialsError:
            outcomes.append("invalid")
        except RateLimitedError:
            outcomes.append("limited")
        except Exception as exc:
            outcomes.append(f"UNEXPECTED {type(exc).__name__}: {exc}")
    panel.close()
    print(json.dumps(outcomes))
    """
)


def settings(**extra: Any) -> dict[str, Any]:
    return {
        "clock": FixedClock(T0),
        "rng": SeededRandom(1),
        "password_hash": PasswordHash([Argon2idHasher(memory_cost=64, iterations=1)]),
        "key_ring": KeyRing([EncryptionKey(id="k1", key=KEY)]),
        **extra,
    }


def run_workers(
    path: Path, mode: str, *, workers: int, attempts: int, threshold: int, code: str = "-"
) -> Counter[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(path),
                mode,
                str(attempts),
                str(threshold),
                str(100 + n),
                code,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in range(workers)
    ]
    outcomes: Counter[str] = Counter()
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        outcomes.update(json.loads(out))
    return outcomes


def context() -> AuthContext:
    return AuthContext(user_id="u1", authenticated_at=T0, factors={"password"})


def stored_failures(panel: UserPanel) -> Any:
    with panel.storage.transaction(write=False) as tx:
        assert isinstance(tx, SupportsThrottle)
        return tx.throttle.get("u1", THROTTLE_SCOPE)


class TestLockoutAcrossProcesses:
    def test_processes_get_exactly_threshold_guesses(self, tmp_path: Path) -> None:
        """4 processes x 10 wrong guesses: exactly 10 are verified, 30 refused, one lockout."""
        path = tmp_path / "shared.db"
        with UserPanel.open(path, **settings()) as panel:
            panel.security.set_password("u1", PASSWORD, auth=context())
        outcomes = run_workers(path, "password", workers=4, attempts=10, threshold=10)
        assert outcomes == Counter({"invalid": 10, "limited": 30})
        with UserPanel.open(path, **settings()) as panel:
            assert stored_failures(panel).consecutive_failures == 10
            kinds = [e.kind for e in panel.security.overview("u1", recent_events=100).recent_events]
        assert kinds.count(SecurityEventKind.LOCKOUT) == 1

    def test_no_failure_is_lost(self, tmp_path: Path) -> None:
        """4 processes x 25 failures under a high threshold: the counter reaches exactly 100."""
        path = tmp_path / "shared.db"
        with UserPanel.open(path, **settings()) as panel:
            panel.security.set_password("u1", PASSWORD, auth=context())
        outcomes = run_workers(path, "password", workers=4, attempts=25, threshold=1000)
        assert outcomes == Counter({"invalid": 100})
        with UserPanel.open(path, **settings()) as panel:
            state = stored_failures(panel)
        assert (state.consecutive_failures, state.failures_in_window) == (100, 100)


class TestTotpAcrossProcesses:
    def test_a_code_works_once_across_processes(self, tmp_path: Path) -> None:
        """4 processes presenting the same code at once: exactly one is accepted."""
        path = tmp_path / "shared.db"
        with UserPanel.open(path, **settings()) as panel:
            setup = panel.security.start_totp("u1", auth=context(), account_name="ada")
            secret = TotpSecret.from_base32(setup.secret)
            totp = Totp()
            first = totp.code_for_step(secret, totp.time_step(T0) - 1)
            panel.security.confirm_totp("u1", first, auth=context())
        current = totp.code_at(secret, T0)
        outcomes = run_workers(path, "totp", workers=4, attempts=1, threshold=10, code=current)
        assert outcomes == Counter({"ok": 1, "invalid": 3})

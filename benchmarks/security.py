"""Benchmarks for the Security tab (standalone script).

Run from the repository root::

    .venv/bin/python benchmarks/security.py            # full run
    .venv/bin/python benchmarks/security.py --quick    # fewer repetitions
    .venv/bin/python benchmarks/security.py passwords  # only some sections

Each section prints medians. For password hashing, our front object is timed
next to the bare ``cryptography`` KDF call with the same parameters, measured
in the same run with the calls interleaved (so machine load hits both alike),
and the overhead is printed against the goal of at most 5 %.

To add a section, write ``def bench_<name>(repeat: int) -> None`` and list it
in ``SECTIONS``.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import os
import statistics
import sys
import time
from collections.abc import Callable

OVERHEAD_GOAL = 0.05
PASSWORD = "correct horse battery staple"


# --------------------------------------------------------------------------- helpers


def median_ns(fn: Callable[[], object], repeat: int, *, warmup: int = 1) -> int:
    """Return the median wall time of ``fn()`` in nanoseconds over ``repeat`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return int(statistics.median(samples))


def interleaved_medians_ns(fns: list[Callable[[], object]], repeat: int) -> list[int]:
    """Return the median time of each function, calling them in turn so load hits all alike.

    The order rotates every round, so no function always runs first (or right after
    another one warmed the caches).
    """
    for fn in fns:
        fn()  # warm up
    samples: list[list[int]] = [[] for _ in fns]
    for round_ in range(repeat):
        for offset in range(len(fns)):
            index = (round_ + offset) % len(fns)
            samples[index].append(median_ns(fns[index], 1, warmup=0))
    return [int(statistics.median(bucket)) for bucket in samples]


def human(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} us"
    return f"{ns:.0f} ns"


def row(label: str, ns: float) -> None:
    print(f"  {label:<52} {human(ns):>12}")


def overhead(label: str, ours: int, raw: int) -> None:
    ratio = ours / raw - 1
    verdict = "ok" if ratio <= OVERHEAD_GOAL else "ABOVE GOAL"
    print(f"  {label:<52} {ratio:>+11.1%}  (goal <= {OVERHEAD_GOAL:.0%}: {verdict})")


def compare_kdf(
    name: str,
    ours_hash: Callable[[], object],
    ours_verify: Callable[[], object],
    raw: Callable[[], object],
    repeat: int,
) -> None:
    raw_ns, hash_ns, verify_ns = interleaved_medians_ns([raw, ours_hash, ours_verify], repeat)
    row(f"raw cryptography {name} derive", raw_ns)
    row("PasswordHash.hash", hash_ns)
    row("PasswordHash.verify", verify_ns)
    overhead("overhead of hash over raw", hash_ns, raw_ns)
    overhead("overhead of verify over raw", verify_ns, raw_ns)


# -------------------------------------------------------------------------- sections


def bench_argon2id(repeat: int) -> None:
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    from enspace_profile._security.passwords import (
        Argon2idHasher,
        PasswordHash,
        argon2id_available,
    )

    print("Passwords: Argon2id (m=19456 KiB, t=2, p=1, 16-byte salt, 32-byte hash)")
    if not argon2id_available():
        print("  skipped: this cryptography has no Argon2id")
        return
    front = PasswordHash([Argon2idHasher()])
    stored = front.hash(PASSWORD)
    salt = os.urandom(16)
    secret = PASSWORD.encode()

    def raw() -> bool:
        kdf = Argon2id(salt=salt, length=32, iterations=2, lanes=1, memory_cost=19456)
        return hmac.compare_digest(kdf.derive(secret), bytes(32))

    compare_kdf(
        "Argon2id",
        lambda: front.hash(PASSWORD),
        lambda: front.verify(PASSWORD, stored),
        raw,
        repeat,
    )
    peppered = PasswordHash([Argon2idHasher()], pepper=os.urandom(32))
    peppered_stored = peppered.hash(PASSWORD)
    row(
        "PasswordHash.verify with pepper",
        median_ns(lambda: peppered.verify(PASSWORD, peppered_stored), max(3, repeat // 3)),
    )


def bench_scrypt(repeat: int) -> None:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    from enspace_profile._security.passwords import PasswordHash, ScryptHasher

    print("Passwords: scrypt (N=2**17, r=8, p=1, 16-byte salt, 32-byte hash)")
    front = PasswordHash([ScryptHasher()])
    stored = front.hash(PASSWORD)
    salt = os.urandom(16)
    secret = PASSWORD.encode()

    def raw() -> bool:
        kdf = Scrypt(salt=salt, length=32, n=2**17, r=8, p=1)
        return hmac.compare_digest(kdf.derive(secret), bytes(32))

    compare_kdf(
        "scrypt",
        lambda: front.hash(PASSWORD),
        lambda: front.verify(PASSWORD, stored),
        raw,
        max(3, repeat // 4),
    )


def bench_password_policy(repeat: int) -> None:
    from enspace_profile._security import password_policy
    from enspace_profile._security.password_policy import PasswordPolicy

    print("Password policy")
    load_ns = median_ns(password_policy.common_passwords.__wrapped__, 5)
    row("load bundled blocklist (once per process)", load_ns)
    policy = PasswordPolicy()
    names = ["Ada", "Lovelace"]
    row(
        "PasswordPolicy.check (accepted passphrase)",
        median_ns(lambda: policy.check(PASSWORD, user_id="u-1815", names=names), repeat * 200),
    )
    row(
        "PasswordPolicy.check (accepted, non-ASCII)",
        median_ns(
            lambda: policy.check(
                "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e au lait", user_id="u-1815", names=names
            ),
            repeat * 200,
        ),
    )

    def refused() -> None:
        with contextlib.suppress(ValueError):
            policy.check("password", user_id="u-1815", names=names)

    row("PasswordPolicy.check (refused, common and short)", median_ns(refused, repeat * 200))


def per_call_ns(fn: Callable[[], object], repeat: int, *, batch: int = 2000) -> float:
    """Return the median time of one ``fn()`` call, timing batches (calls are sub-microsecond)."""
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter_ns() - start) / batch)
    return statistics.median(samples)


def interleaved_per_call_ns(
    fns: list[Callable[[], object]], repeat: int, *, batch: int = 2000
) -> list[float]:
    """Like :func:`per_call_ns` for several functions, batches interleaved (load hits all)."""
    for fn in fns:
        fn()
    samples: list[list[float]] = [[] for _ in fns]
    for round_ in range(repeat * 3):
        for offset in range(len(fns)):
            index = (round_ + offset) % len(fns)
            fn = fns[index]
            start = time.perf_counter_ns()
            for _ in range(batch):
                fn()
            samples[index].append((time.perf_counter_ns() - start) / batch)
    return [statistics.median(bucket) for bucket in samples]


def bench_totp(repeat: int) -> None:
    import hashlib
    from datetime import UTC, datetime

    from enspace_profile._security.totp import Totp, TotpSecret

    print("TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30 s, one step of drift either side)")
    secret = TotpSecret(os.urandom(20))
    totp = Totp()
    now = datetime(2026, 3, 1, 9, 0, 10, tzinfo=UTC)
    step = totp.time_step(now)
    good = totp.code_at(secret, now)
    wrong = str((int(good) + 1) % 10**6).zfill(6)
    key = secret.value

    def raw_code(counter: int) -> str:
        digest = hmac.digest(key, counter.to_bytes(8, "big"), hashlib.sha1)
        offset = digest[-1] & 0x0F
        number = int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFF_FFFF
        return str(number % 1_000_000).zfill(6)

    def raw_verify(code: str) -> bool:
        # The same work a correct verifier must do: three steps, each compared in constant time.
        matched = False
        for counter in (step - 1, step, step + 1):
            matched |= hmac.compare_digest(raw_code(counter), code)
        return matched

    raw_one, raw_ns, ours_ns = interleaved_per_call_ns(
        [
            lambda: raw_code(step),
            lambda: raw_verify(good),
            lambda: totp.verify(secret, good, now=now, last_used_step=step - 2),
        ],
        repeat,
    )
    row("raw HMAC-SHA1 code for one step (hmac.digest)", raw_one)
    row("raw verify: 3 steps + compare_digest", raw_ns)
    row("Totp.verify (valid code)", ours_ns)
    row(
        "Totp.verify (wrong code)",
        per_call_ns(lambda: totp.verify(secret, wrong, now=now, last_used_step=None), repeat),
    )
    row(
        "Totp.verify (malformed input, refused early)",
        per_call_ns(lambda: totp.verify(secret, "12a456", now=now, last_used_step=None), repeat),
    )
    ratio = ours_ns / raw_ns - 1
    print(f"  {'overhead of Totp.verify over raw verify':<52} {ratio:>+11.1%}")

    # End to end through the service: one write transaction with replay guard and counter.
    import tempfile
    from pathlib import Path

    from enspace_profile import MemoryStorage, SQLiteStorage

    service_totp("memory", MemoryStorage(), now, repeat)
    with tempfile.TemporaryDirectory() as directory:
        service_totp("SQLite file", SQLiteStorage(Path(directory) / "bench.db"), now, repeat)


def service_totp(label: str, storage: object, now: object, repeat: int) -> None:
    from datetime import timedelta

    from enspace_profile import (
        Argon2idHasher,
        AuthContext,
        FixedClock,
        PasswordHash,
        SystemRandom,
        UserPanel,
    )
    from enspace_profile._crypto.keyring import KeyRing
    from enspace_profile._security.totp import Totp, TotpSecret

    clock = FixedClock(now)
    totp = Totp()
    panel = UserPanel(
        storage=storage,
        clock=clock,
        password_hash=PasswordHash([Argon2idHasher(memory_cost=64, iterations=1)]),
        key_ring=KeyRing.generate(SystemRandom(), "k1"),
    )
    context = AuthContext(user_id="u1", authenticated_at=clock.now(), factors={"password"})
    setup = panel.security.start_totp("u1", auth=context, account_name="bench")
    secret = TotpSecret.from_base32(setup.secret)
    panel.security.confirm_totp("u1", totp.code_at(secret, clock.now()), auth=context)

    def verify_next() -> None:
        clock.advance(timedelta(seconds=30))  # a fresh step each time: replays are refused
        panel.security.verify_totp("u1", totp.code_at(secret, clock.now()))

    row(
        f"panel.security.verify_totp ({label}, one transaction)", median_ns(verify_next, repeat * 5)
    )
    panel.close()


def bench_passwords(repeat: int) -> None:
    bench_argon2id(repeat)
    print()
    bench_scrypt(repeat)


SECTIONS: dict[str, Callable[[int], None]] = {
    "passwords": bench_passwords,
    "argon2id": bench_argon2id,
    "scrypt": bench_scrypt,
    "policy": bench_password_policy,
    "totp": bench_totp,
}
DEFAULT_SECTIONS = ("argon2id", "scrypt", "policy", "totp")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", help=f"any of {', '.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}")
    repeat = 7 if args.quick else 31
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, repeat={repeat}")
    for name in args.sections or DEFAULT_SECTIONS:
        print()
        SECTIONS[name](repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

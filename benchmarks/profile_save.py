"""Profile load and Save on SQLite with 100 000 profiles, next to raw sqlite3.

Run: ``python benchmarks/profile_save.py [--profiles N] [--rounds N]``

The raw baseline executes the same statements our adapter does, in one
transaction, with plain ``sqlite3`` (no validation, no objects):

* load: ``BEGIN; SELECT profile; COMMIT``
* Save: ``BEGIN IMMEDIATE; SELECT profile; UPDATE ... WHERE version = ?;
  INSERT audit event; COMMIT``

It also reports the import time of ``enspace_profile`` next to
``import attrs, cattrs, babel, cryptography`` (fresh interpreters, best of 5).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from enspace_profile import UserPanel
from enspace_profile.stores._sqlite_base import to_iso


def median_us(fn: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def populate(path: Path, count: int) -> None:
    """Fill the file quickly with ``count`` profiles (via SQL, as a migration would)."""
    UserPanel.open(path).close()
    conn = sqlite3.connect(path)
    now = to_iso(datetime(2026, 1, 1, tzinfo=UTC))
    conn.executemany(
        "INSERT INTO profiles (user_id, first_name, last_name, language, theme_mode, theme_day, "
        "created_at, updated_at, version) VALUES (?, ?, ?, 'en', 'single', 'light', ?, ?, 1)",
        ((f"user-{i}", f"First{i}", f"Last{i}", now, now) for i in range(count)),
    )
    conn.commit()
    conn.close()


def import_time(statement: str) -> float:
    best = float("inf")
    for _ in range(5):
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import time; t=time.perf_counter(); {statement}; print(time.perf_counter()-t)",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        best = min(best, float(out))
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        t = time.perf_counter()
        populate(path, args.profiles)
        print(f"populated {args.profiles} profiles in {time.perf_counter() - t:.1f} s")
        panel = UserPanel.open(path)
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("PRAGMA synchronous = NORMAL")

        ids = [f"user-{i}" for i in range(0, args.profiles, max(1, args.profiles // args.rounds))]
        it = iter(ids * 4)
        ours_load = median_us(lambda: panel.profile.get(next(it)), args.rounds)

        select = (
            "SELECT user_id, first_name, last_name, language, theme_mode, theme_day, "
            "theme_night, picture_sha256, picture_media_type, picture_width, picture_height, "
            "picture_size, created_at, updated_at, version FROM profiles WHERE user_id = ?"
        )

        def raw_load() -> None:
            raw.execute("BEGIN")
            raw.execute(select, (next(it),)).fetchone()
            raw.execute("COMMIT")

        it = iter(ids * 4)
        raw_load_us = median_us(raw_load, args.rounds)

        # Save: alternate a first name so every Save really changes something.
        counter = iter(range(10**9))
        versions: dict[str, int] = {}

        def ours_save() -> None:
            n = next(counter)
            uid = ids[n % len(ids)]
            version = versions.get(uid, 1)
            panel.profile.save(uid, {"first_name": f"Name{n}"}, version=version)
            versions[uid] = version + 1

        ours_save_us = median_us(ours_save, args.rounds)

        update = (
            "UPDATE profiles SET first_name = ?, last_name = ?, language = ?, "
            "theme_mode = ?, theme_day = ?, theme_night = ?, "
            "picture_sha256 = ?, picture_media_type = ?, picture_width = ?, picture_height = ?, "
            "picture_size = ?, updated_at = ?, version = ? WHERE user_id = ? AND version = ?"
        )
        insert = (
            "INSERT INTO audit_events (id, user_id, kind, at, actor, subject, version, changes, "
            "details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )

        def raw_save() -> None:
            n = next(counter)
            uid = ids[n % len(ids)]
            raw.execute("BEGIN IMMEDIATE")
            row = raw.execute(select, (uid,)).fetchone()
            now = to_iso(datetime.now(UTC))
            raw.execute(
                update,
                (f"Raw{n}", *row[2:12], now, row[14] + 1, uid, row[14]),
            )
            raw.execute(
                insert,
                (
                    str(uuid.uuid4()),
                    uid,
                    "profile.updated",
                    now,
                    None,
                    None,
                    row[14] + 1,
                    json.dumps([["first_name", row[1], f"Raw{n}"]]),
                    "{}",
                ),
            )
            raw.execute("COMMIT")

        raw_save_us = median_us(raw_save, args.rounds)
        panel.close()
        raw.close()

    print(f"{'operation':<10} {'ours (us)':>10} {'raw (us)':>10} {'ratio':>7}")
    for name, ours, base in (("load", ours_load, raw_load_us), ("save", ours_save_us, raw_save_us)):
        print(f"{name:<10} {ours:>10.1f} {base:>10.1f} {ours / base:>6.2f}x")

    ours_import = import_time("import enspace_profile")
    deps_import = import_time("import attrs, cattrs, babel, cryptography")
    print(
        f"import enspace_profile: {ours_import:.1f} ms; "
        f"import attrs, cattrs, babel, cryptography: {deps_import:.1f} ms"
    )
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, enspace_profile; "
            "print(sorted(m for m in sys.modules if m.startswith(('babel.localedata', 'PIL'))))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"locale data / Pillow modules loaded by the import: {loaded}")


if __name__ == "__main__":
    main()

"""``panel.lab.is_enabled`` warm and cold, next to a plain dict lookup.

Run: ``python benchmarks/lab.py [--users N] [--features N] [--rounds N]``

Setup: a SQLite file (and, for comparison, ``MemoryStorage``) with ``--users`` users
who each made a few choices, and a registry of ``--features`` features mixing the
three audiences, a dependency, terms and a start/end window (so the warm path does
read the clock, as it does in production).

* warm, one user: the same user and key again and again (cache hit);
* warm, round robin: every user in turn (cache hit, LRU bookkeeping included);
* cold: every call misses the cache (the cache holds fewer users than are cycled
  through), so it reads the user's choices from storage and evaluates them;
* dict: ``flags[user_id][key]`` on a plain ``dict`` of dicts, called through a
  function like ``is_enabled`` is.

Warm numbers are medians over batches of 1000 calls (per-call timing would mostly
measure the timer); cold numbers are medians of single calls.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from enspace_profile import (
    Audience,
    LabCachePolicy,
    LabFeature,
    LabRegistry,
    MemoryStorage,
    SQLiteStorage,
    Stage,
    Terms,
    UserPanel,
)
from enspace_profile.typing import Storage

BATCH = 1000


def registry(count: int, now: datetime) -> LabRegistry:
    features = [
        LabFeature(key="base", title="Base", default_on=True),
        LabFeature(key="on-top", title="On top", depends_on=("base",)),
        LabFeature(
            key="with-terms",
            title="With terms",
            stage=Stage.ALPHA,
            terms=Terms(version="2026-01", url="https://example.com/terms"),
        ),
        LabFeature(
            key="windowed",
            title="Windowed",
            starts_at=now - timedelta(days=1),
            ends_at=now + timedelta(days=30),
        ),
    ]
    for n in range(len(features), count):
        audience = (
            Audience.rollout(25)
            if n % 3 == 0
            else Audience.allow_list([f"user-{i}" for i in range(50)])
            if n % 3 == 1
            else Audience.everyone()
        )
        features.append(LabFeature(key=f"feature-{n}", title=f"Feature {n}", audience=audience))
    return LabRegistry.of(features)


def populate(panel: UserPanel, users: int) -> None:
    for i in range(users):
        user = f"user-{i}"
        panel.lab.opt_in(user, "on-top")
        if i % 2:
            panel.lab.opt_in(user, "with-terms", accept_terms_version="2026-01")
        if i % 5 == 0:
            panel.lab.opt_out(user, "base")


def batch_median_ns(call: Callable[[str, str], object], pairs: list[tuple[str, str]]) -> float:
    """Median cost of one call, from batches of BATCH calls cycling through ``pairs``."""
    samples = []
    count = len(pairs)
    for start in range(0, max(count, BATCH * 200), BATCH):
        chunk = [pairs[(start + i) % count] for i in range(BATCH)]
        t0 = time.perf_counter_ns()
        for user, key in chunk:
            call(user, key)
        samples.append((time.perf_counter_ns() - t0) / BATCH)
    return statistics.median(samples)


def single_median_ns(call: Callable[[str, str], object], pairs: list[tuple[str, str]]) -> float:
    samples = []
    for user, key in pairs:
        t0 = time.perf_counter_ns()
        call(user, key)
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples)


def measure(name: str, storage: Storage, args: argparse.Namespace) -> dict[str, float]:
    now = datetime.now(UTC)
    lab = registry(args.features, now)
    panel = UserPanel(storage=storage, lab=lab)
    populate(panel, args.users)
    users = [f"user-{i}" for i in range(args.users)]
    keys = [f.key for f in lab]

    flags = {u: {k: panel.lab.is_enabled(u, k) for k in keys} for u in users}

    def dict_lookup(user_id: str, key: str) -> bool:
        return flags[user_id][key]

    one = [("user-1", "windowed")]
    round_robin = [(u, keys[i % len(keys)]) for i, u in enumerate(users)]
    results = {
        "dict": batch_median_ns(dict_lookup, round_robin),
        "warm, one user": batch_median_ns(panel.lab.is_enabled, one),
        "warm, round robin": batch_median_ns(panel.lab.is_enabled, round_robin),
    }
    cold_panel = UserPanel(
        storage=storage, lab=lab, lab_cache=LabCachePolicy(max_users=args.users // 10)
    )
    cold_pairs = round_robin * max(1, args.rounds // len(round_robin))
    results["cold"] = single_median_ns(cold_panel.lab.is_enabled, cold_pairs[: args.rounds])
    storage.close()
    print(f"\n{name} ({args.users} users, {args.features} features)")
    print(f"  {'call':<22} {'median':>10} {'vs dict':>9}")
    base = results["dict"]
    for label, value in results.items():
        shown = f"{value:.0f} ns" if value < 10_000 else f"{value / 1000:.1f} us"
        print(f"  {label:<22} {shown:>10} {value / base:>8.1f}x")
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = measure("SQLite file", SQLiteStorage(Path(tmp) / "lab.db"), args)
    memory = measure("MemoryStorage", MemoryStorage(), args)
    warm = max(sqlite["warm, one user"], memory["warm, one user"])
    print(f"\nwarm median <= 1 us: {'yes' if warm <= 1000 else 'NO'} ({warm:.0f} ns)")


if __name__ == "__main__":
    main()

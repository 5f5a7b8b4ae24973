"""Several processes and threads on one SQLite file: nothing lost, nothing half-written."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from enspace_profile import UserPanel

pytestmark = pytest.mark.slow

SAVER = textwrap.dedent(
    """
    import json, sys, threading
    from enspace_profile import UserPanel, ConflictError
    from enspace_profile.exceptions import EnspaceProfileError

    path, worker, threads, saves = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    panel = UserPanel.open(path)
    done, conflicts, errors = [], [], []

    def run(t):
        n = 0
        while n < saves:
            current = panel.profile.get("shared")
            value = f"{worker}-{t}-{n}"
            try:
                panel.profile.save("shared", {"first_name": value, "last_name": value},
                                   version=current.version)
            except ConflictError:
                conflicts.append(1)
                continue
            except EnspaceProfileError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            except Exception as exc:
                errors.append(f"UNEXPECTED {type(exc).__name__}: {exc}")
                return
            done.append(value)
            n += 1

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    print(json.dumps({"done": done, "conflicts": len(conflicts), "errors": errors}))
    """
)

KILLED = textwrap.dedent(
    """
    import sys
    from enspace_profile import UserPanel
    panel = UserPanel.open(sys.argv[1])
    n = 0
    while True:
        current = panel.profile.get("victim")
        n += 1
        panel.profile.save("victim", {"first_name": f"n{n}", "last_name": f"n{n}"},
                           version=current.version)
    """
)


def _run_workers(script: str, args: list[list[str]]) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return [
        subprocess.Popen(
            [sys.executable, "-c", script, *a],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for a in args
    ]


class TestManyWriters:
    def test_processes_and_threads_lose_no_update(self, tmp_path: Path) -> None:
        """4 processes x 4 threads saving one profile: every successful Save is in the history."""
        path = str(tmp_path / "shared.db")
        with UserPanel.open(path) as panel:
            panel.profile.create("shared", first_name="start")
        procs = _run_workers(SAVER, [[path, f"w{i}", "4", "15"] for i in range(4)])
        results = []
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
            results.append(json.loads(out))
        assert [r["errors"] for r in results] == [[], [], [], []]
        done = [v for r in results for v in r["done"]]
        assert len(done) == 4 * 4 * 15
        with UserPanel.open(path) as panel:
            final = panel.profile.get("shared")
            history = panel.profile.history("shared")
        # Every Save that reported success is a distinct version in the history.
        assert final.version == 1 + len(done)
        updates = [e for e in history if e.kind == "profile.updated"]
        assert sorted(e.changes[0].new for e in updates) == sorted(done)  # type: ignore[type-var]
        assert [e.version for e in updates] == list(range(2, final.version + 1))


class TestCrash:
    def test_sigkill_mid_save_leaves_a_consistent_file(self, tmp_path: Path) -> None:
        """A writer killed with SIGKILL leaves an intact file where every Save is all-or-nothing."""
        path = str(tmp_path / "crash.db")
        with UserPanel.open(path) as panel:
            panel.profile.create("victim", first_name="n0", last_name="n0")
        (proc,) = _run_workers(KILLED, [[path]])
        try:
            deadline = time.monotonic() + 60
            version = 1
            while version < 200 and time.monotonic() < deadline:
                conn = sqlite3.connect(path, timeout=10)
                row = conn.execute("SELECT version FROM profiles WHERE user_id='victim'").fetchone()
                conn.close()
                version = row[0]
        finally:
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate()
        assert version >= 200, err
        assert proc.returncode == -signal.SIGKILL
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
        with UserPanel.open(path) as panel:
            victim = panel.profile.get("victim")
            updates = [e for e in panel.profile.history("victim") if e.kind == "profile.updated"]
            # All-or-nothing: both names changed together, and the history has every version.
            assert victim.first_name == victim.last_name
            assert len(updates) == victim.version - 1
            assert updates[-1].changes[0].new == victim.first_name
            # The file is still writable after the crash.
            panel.profile.save("victim", {"first_name": "after"}, version=victim.version)

"""A custom storage adapter: the whole state in one JSON file.

It implements the core ports (profiles and the audit log) and nothing else, and it
passes the shipped contract suite (blob tests are skipped because it has no blob
store). See docs/storage-adapters.md for the walk-through, and
tests/examples/test_json_file_storage.py for the three lines that test it.

Design: a transaction takes a lock (a thread lock plus an advisory file lock, so
several processes can share the file), loads the JSON document, works on that
copy, and on commit writes a new file and atomically renames it over the old one.
A rollback simply drops the copy. Domain objects are turned into JSON with the
library's public cattrs converter.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from enspace_profile import AuditEvent, Profile, converter
from enspace_profile.exceptions import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    StorageError,
)


class _Profiles:
    def __init__(self, doc: dict[str, Any], writable: bool) -> None:
        self._doc, self._writable = doc, writable

    def _check(self) -> None:
        if not self._writable:
            raise StorageError("read-only transaction", code="storage.read_only")

    def get(self, user_id: str) -> Profile | None:
        raw = self._doc["profiles"].get(user_id)
        return None if raw is None else converter.structure(raw, Profile)

    def add(self, profile: Profile) -> None:
        self._check()
        if profile.user_id in self._doc["profiles"]:
            raise AlreadyExistsError("profile", profile.user_id)
        self._doc["profiles"][profile.user_id] = converter.unstructure(profile)

    def update(self, profile: Profile, *, expected_version: int) -> None:
        self._check()
        current = self._doc["profiles"].get(profile.user_id)
        if current is None:
            raise NotFoundError("profile", profile.user_id)
        if current["version"] != expected_version:
            raise ConflictError(
                "profile",
                profile.user_id,
                expected_version=expected_version,
                current_version=current["version"],
            )
        self._doc["profiles"][profile.user_id] = converter.unstructure(profile)

    def delete(self, user_id: str) -> bool:
        self._check()
        return self._doc["profiles"].pop(user_id, None) is not None


class _Audit:
    def __init__(self, doc: dict[str, Any], writable: bool) -> None:
        self._doc, self._writable = doc, writable

    def append(self, event: AuditEvent) -> None:
        if not self._writable:
            raise StorageError("read-only transaction", code="storage.read_only")
        if any(e["id"] == event.id for e in self._doc["audit"]):
            raise AlreadyExistsError("audit_event", event.id)
        self._doc["audit"].append(converter.unstructure(event))

    def list_for_user(
        self,
        user_id: str,
        *,
        kinds: Collection[str] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Sequence[AuditEvent]:
        rows = [
            e
            for e in self._doc["audit"]
            if e["user_id"] == user_id and (kinds is None or e["kind"] in kinds)
        ]
        if newest_first:
            rows.reverse()
        if limit is not None:
            rows = rows[: max(limit, 0)]
        return [converter.structure(e, AuditEvent) for e in rows]


class JsonTransaction:
    """One unit of work over a loaded copy of the document."""

    def __init__(self, doc: dict[str, Any], writable: bool) -> None:
        self.profiles = _Profiles(doc, writable)
        self.audit = _Audit(doc, writable)


class JsonFileStorage:
    """Storage in one JSON file; implements ``enspace_profile.typing.Storage``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._lockfile = self._path.with_suffix(self._path.suffix + ".lock")
        self._closed = False

    def _load(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads(self._path.read_text("utf-8"))
        except FileNotFoundError:
            return {"profiles": {}, "audit": []}
        except (OSError, ValueError) as exc:
            raise StorageError(f"cannot read {self._path}: {exc}") from exc
        return doc

    def _save(self, doc: dict[str, Any]) -> None:
        tmp = self._path.with_suffix(self._path.suffix + ".tmp")
        try:
            tmp.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
            os.replace(tmp, self._path)  # atomic: readers see the old or the new file
        except OSError as exc:
            raise StorageError(f"cannot write {self._path}: {exc}") from exc

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[JsonTransaction]:
        """Lock, load, yield a working copy; write it back only on success."""
        if self._closed:
            raise StorageError("storage is closed", code="storage.closed")
        with self._lock, self._lockfile.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                doc = self._load()
                yield JsonTransaction(doc, write)
                if write:
                    self._save(doc)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def close(self) -> None:
        """Nothing stays open between transactions; just refuse further use."""
        self._closed = True


if __name__ == "__main__":
    import tempfile

    from enspace_profile import UserPanel

    with tempfile.TemporaryDirectory() as tmp:
        panel = UserPanel(storage=JsonFileStorage(Path(tmp) / "panel.json"))
        p = panel.profile.create("u1", first_name="Grace", last_name="Hopper")
        panel.profile.save("u1", {"language": "fr"}, version=p.version)
        print(panel.profile.get("u1"))
        print((Path(tmp) / "panel.json").read_text()[:200], "...")

"""The storage contract suite: pytest classes every storage adapter must pass.

Subclass :class:`StorageContract` in your own test module and provide one fixture,
``storage``, that returns a new, empty storage (and closes it afterwards)::

    import pytest
    from enspace_profile.testing import StorageContract
    from myapp.storage import MyStorage

    class TestMyStorage(StorageContract):
        @pytest.fixture
        def storage(self, tmp_path):
            s = MyStorage(tmp_path / "db")
            yield s
            s.close()

Our own memory and SQLite adapters are tested only this way. Capabilities an adapter
does not offer (for example a blob store) are skipped, not failed. Needs pytest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from enspace_profile._audit import AuditEvent, FieldChange
from enspace_profile._profile.domain import PictureRef, Profile
from enspace_profile._profile.themes import ThemePreference
from enspace_profile.exceptions import (
    AlreadyExistsError,
    ConflictError,
    EnspaceProfileError,
    NotFoundError,
    StorageError,
)
from enspace_profile.testing._integrations import (
    IntegrationRepositoryContract,
    make_connection,
    make_pending,
    make_sealed_box,
)
from enspace_profile.testing._lab import LabRepositoryContract, make_opt_in
from enspace_profile.testing._security import (
    CredentialRepositoryContract,
    SessionRepositoryContract,
    ThrottleRepositoryContract,
    make_credentials,
    make_session,
)
from enspace_profile.testing._tokens import TokenRepositoryContract, make_token
from enspace_profile.typing import Blob, Storage, SupportsBlobs

__all__ = [
    "AuditLogContract",
    "BlobRepositoryContract",
    "ConcurrencyContract",
    "CredentialRepositoryContract",
    "IntegrationRepositoryContract",
    "LabRepositoryContract",
    "ProfileRepositoryContract",
    "SessionRepositoryContract",
    "StorageContract",
    "ThrottleRepositoryContract",
    "TokenRepositoryContract",
    "TransactionContract",
    "make_connection",
    "make_credentials",
    "make_event",
    "make_opt_in",
    "make_pending",
    "make_profile",
    "make_sealed_box",
    "make_session",
    "make_token",
]

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def make_profile(user_id: str = "user-1", **overrides: Any) -> Profile:
    """Return a valid profile for contract tests; ``overrides`` replace fields."""
    profile = Profile(
        user_id=user_id,
        first_name="Ada",
        last_name="Lovelace",
        language="en",
        theme=ThemePreference.single("light"),
        created_at=T0,
        updated_at=T0,
        version=1,
    )
    return attrs.evolve(profile, **overrides)


def make_event(n: int, user_id: str = "user-1", **overrides: Any) -> AuditEvent:
    """Return the ``n``-th audit event of a user for contract tests."""
    event = AuditEvent(
        id=f"{user_id}-event-{n}",
        user_id=user_id,
        kind="profile.updated",
        at=T0 + timedelta(seconds=n),
        actor=None,
        version=n + 1,
        changes=(FieldChange(field="first_name", old=f"v{n}", new=f"v{n + 1}"),),
        details={"n": n, "nested": {"ok": True}},
    )
    return attrs.evolve(event, **overrides)


class _Base:
    """Declares the one fixture an adapter author provides."""

    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        """Override: yield a new, empty storage and close it afterwards."""
        pytest.fail("subclass the contract and provide a `storage` fixture")


class ProfileRepositoryContract(_Base):
    """Profiles: create, get, not found, duplicates, versioned updates, isolation."""

    def test_get_missing_returns_none(self, storage: Storage) -> None:
        """A user without a profile reads back as None."""
        with storage.transaction(write=False) as tx:
            assert tx.profiles.get("nobody") is None

    def test_add_then_get_round_trips_every_field(self, storage: Storage) -> None:
        """A stored profile reads back equal, field for field."""
        picture = PictureRef(
            sha256="ab" * 32, media_type="image/png", width=64, height=48, size=999
        )
        profile = make_profile(
            first_name="Zoë",
            last_name=None,
            language="pt_BR",
            theme=ThemePreference.sync(day="light", night="dark"),
            picture=picture,
            updated_at=T0 + timedelta(microseconds=123456),
        )
        with storage.transaction() as tx:
            tx.profiles.add(profile)
        with storage.transaction(write=False) as tx:
            assert tx.profiles.get(profile.user_id) == profile

    def test_add_duplicate_raises_already_exists(self, storage: Storage) -> None:
        """Adding a second profile for the same user raises AlreadyExistsError."""
        with storage.transaction() as tx:
            tx.profiles.add(make_profile())
        with pytest.raises(AlreadyExistsError), storage.transaction() as tx:
            tx.profiles.add(make_profile(first_name="Other"))
        with storage.transaction(write=False) as tx:
            stored = tx.profiles.get("user-1")
        assert stored is not None
        assert stored.first_name == "Ada"

    def test_update_with_current_version_replaces(self, storage: Storage) -> None:
        """An update based on the stored version is applied."""
        with storage.transaction() as tx:
            tx.profiles.add(make_profile())
        new = make_profile(first_name="Augusta", version=2, updated_at=T0 + timedelta(hours=1))
        with storage.transaction() as tx:
            tx.profiles.update(new, expected_version=1)
        with storage.transaction(write=False) as tx:
            assert tx.profiles.get("user-1") == new

    def test_update_with_stale_version_raises_conflict(self, storage: Storage) -> None:
        """An update based on an old version raises ConflictError naming the current one."""
        with storage.transaction() as tx:
            tx.profiles.add(make_profile())
            tx.profiles.update(make_profile(first_name="B", version=2), expected_version=1)
        with pytest.raises(ConflictError) as info, storage.transaction() as tx:
            tx.profiles.update(make_profile(first_name="C", version=2), expected_version=1)
        assert info.value.current_version == 2
        assert info.value.expected_version == 1
        with storage.transaction(write=False) as tx:
            stored = tx.profiles.get("user-1")
        assert stored is not None
        assert stored.first_name == "B"

    def test_update_missing_raises_not_found(self, storage: Storage) -> None:
        """Updating a profile that does not exist raises NotFoundError."""
        with pytest.raises(NotFoundError), storage.transaction() as tx:
            tx.profiles.update(make_profile(version=2), expected_version=1)

    def test_delete(self, storage: Storage) -> None:
        """Delete removes the profile and reports whether one existed."""
        with storage.transaction() as tx:
            tx.profiles.add(make_profile())
        with storage.transaction() as tx:
            assert tx.profiles.delete("user-1") is True
            assert tx.profiles.delete("user-1") is False
        with storage.transaction(write=False) as tx:
            assert tx.profiles.get("user-1") is None

    def test_users_are_isolated(self, storage: Storage) -> None:
        """Writing one user's profile never changes another's."""
        with storage.transaction() as tx:
            tx.profiles.add(make_profile("a", first_name="Ann"))
            tx.profiles.add(make_profile("b", first_name="Bob"))
            tx.profiles.update(make_profile("a", first_name="Anna", version=2), expected_version=1)
        with storage.transaction(write=False) as tx:
            b = tx.profiles.get("b")
        assert b is not None
        assert (b.first_name, b.version) == ("Bob", 1)

    @pytest.mark.parametrize("user_id", ["x" * 255, "ユーザー", "a'b\"c;--", "with space"])
    def test_unusual_user_ids_round_trip(self, storage: Storage, user_id: str) -> None:
        """Any printable host id (quotes, long, non-ASCII) is stored verbatim."""
        with storage.transaction() as tx:
            tx.profiles.add(make_profile(user_id))
        with storage.transaction(write=False) as tx:
            stored = tx.profiles.get(user_id)
        assert stored is not None
        assert stored.user_id == user_id


class AuditLogContract(_Base):
    """The audit log: append-only, ordered, filterable, per user."""

    def test_events_come_back_in_append_order(self, storage: Storage) -> None:
        """Events are listed in the order they were appended, equal to what was written."""
        events = [make_event(n) for n in range(5)]
        with storage.transaction() as tx:
            for event in events[:3]:
                tx.audit.append(event)
        with storage.transaction() as tx:
            for event in events[3:]:
                tx.audit.append(event)
        with storage.transaction(write=False) as tx:
            assert list(tx.audit.list_for_user("user-1")) == events
            assert list(tx.audit.list_for_user("user-1", newest_first=True)) == events[::-1]
            assert list(tx.audit.list_for_user("user-1", limit=2)) == events[:2]
            assert list(tx.audit.list_for_user("user-1", limit=2, newest_first=True)) == [
                events[4],
                events[3],
            ]

    def test_order_is_append_order_not_timestamp_order(self, storage: Storage) -> None:
        """A later append with an earlier timestamp still comes later."""
        first = make_event(1, at=T0 + timedelta(days=1))
        second = make_event(2, at=T0)
        with storage.transaction() as tx:
            tx.audit.append(first)
            tx.audit.append(second)
        with storage.transaction(write=False) as tx:
            assert list(tx.audit.list_for_user("user-1")) == [first, second]

    def test_filter_by_kind_and_user(self, storage: Storage) -> None:
        """Listing filters by user and by kind."""
        created = make_event(0, kind="profile.created")
        updated = make_event(1)
        other = make_event(2, user_id="someone-else")
        with storage.transaction() as tx:
            for event in (created, updated, other):
                tx.audit.append(event)
        with storage.transaction(write=False) as tx:
            assert list(tx.audit.list_for_user("user-1", kinds=["profile.created"])) == [created]
            assert list(tx.audit.list_for_user("user-1", kinds=[])) == []
            assert list(tx.audit.list_for_user("someone-else")) == [other]
            assert list(tx.audit.list_for_user("nobody")) == []

    def test_duplicate_event_id_is_refused(self, storage: Storage) -> None:
        """Event ids are unique."""
        with pytest.raises(AlreadyExistsError), storage.transaction() as tx:
            tx.audit.append(make_event(1))
            tx.audit.append(make_event(1))
        with storage.transaction(write=False) as tx:
            assert list(tx.audit.list_for_user("user-1")) == []


class TransactionContract(_Base):
    """Units of work: all-or-nothing, read-only means read-only."""

    def test_exception_rolls_back_everything(self, storage: Storage) -> None:
        """An error inside a transaction undoes every write made in it."""
        with storage.transaction() as tx:
            tx.profiles.add(make_profile("keep"))

        class Boom(Exception):
            pass

        with pytest.raises(Boom), storage.transaction() as tx:
            tx.profiles.add(make_profile("new"))
            tx.profiles.update(
                make_profile("keep", first_name="Changed", version=2), expected_version=1
            )
            tx.profiles.delete("keep")
            tx.audit.append(make_event(1))
            raise Boom
        with storage.transaction(write=False) as tx:
            assert tx.profiles.get("new") is None
            kept = tx.profiles.get("keep")
            assert kept is not None
            assert kept.first_name == "Ada"
            assert list(tx.audit.list_for_user("user-1")) == []

    def test_our_errors_roll_back_too(self, storage: Storage) -> None:
        """A ConflictError raised mid-transaction undoes the writes before it."""
        with storage.transaction() as tx:
            tx.profiles.add(make_profile())
        with pytest.raises(ConflictError), storage.transaction() as tx:
            tx.audit.append(make_event(1))
            tx.profiles.update(make_profile(version=9), expected_version=7)
        with storage.transaction(write=False) as tx:
            assert list(tx.audit.list_for_user("user-1")) == []

    def test_read_only_transaction_refuses_writes(self, storage: Storage) -> None:
        """Writing in a read-only transaction raises StorageError and changes nothing."""
        with pytest.raises(StorageError), storage.transaction(write=False) as tx:
            tx.profiles.add(make_profile())
        with storage.transaction(write=False) as tx:
            assert tx.profiles.get("user-1") is None

    def test_commit_is_visible_to_later_transactions(self, storage: Storage) -> None:
        """What one transaction commits, the next one sees."""
        with storage.transaction() as tx:
            tx.profiles.add(make_profile())
        with storage.transaction(write=False) as tx:
            assert tx.profiles.get("user-1") is not None

    def test_errors_are_ours(self, storage: Storage) -> None:
        """Every error the storage raises on misuse derives from EnspaceProfileError."""
        with storage.transaction() as tx:
            tx.profiles.add(make_profile())
        with pytest.raises(EnspaceProfileError), storage.transaction() as tx:
            tx.profiles.add(make_profile())


class BlobRepositoryContract(_Base):
    """Blobs: content-addressed and reference-counted (skipped if unsupported)."""

    @pytest.fixture
    def blob(self) -> Blob:
        """A small blob."""
        return Blob(sha256="0f" * 32, media_type="image/png", data=b"\x89PNG fake bytes")

    def _skip_unless_blobs(self, storage: Storage) -> None:
        with storage.transaction(write=False) as tx:
            if not isinstance(tx, SupportsBlobs):
                pytest.skip("storage has no blob repository")

    def test_acquire_get_release(self, storage: Storage, blob: Blob) -> None:
        """A blob is stored once, counted per owner, and deleted with its last reference."""
        self._skip_unless_blobs(storage)
        with storage.transaction() as tx:
            assert isinstance(tx, SupportsBlobs)
            tx.blobs.acquire(blob)
            tx.blobs.acquire(blob)
        with storage.transaction() as tx:
            assert isinstance(tx, SupportsBlobs)
            assert tx.blobs.get(blob.sha256) == blob
            assert tx.blobs.references(blob.sha256) == 2
            tx.blobs.release(blob.sha256)
            assert tx.blobs.references(blob.sha256) == 1
            tx.blobs.release(blob.sha256)
            assert tx.blobs.get(blob.sha256) is None
            assert tx.blobs.references(blob.sha256) == 0
            tx.blobs.release(blob.sha256)  # unknown: ignored

    def test_blob_writes_roll_back(self, storage: Storage, blob: Blob) -> None:
        """A rolled-back transaction leaves no blob behind."""
        self._skip_unless_blobs(storage)
        with pytest.raises(RuntimeError), storage.transaction() as tx:
            assert isinstance(tx, SupportsBlobs)
            tx.blobs.acquire(blob)
            raise RuntimeError
        with storage.transaction(write=False) as tx:
            assert isinstance(tx, SupportsBlobs)
            assert tx.blobs.get(blob.sha256) is None


class ConcurrencyContract(_Base):
    """Several threads at once: no lost update, no driver error."""

    threads = 8
    increments = 25

    def test_concurrent_read_modify_write_loses_nothing(self, storage: Storage) -> None:
        """Threads bumping one profile's version in write transactions lose no update."""
        with storage.transaction() as tx:
            tx.profiles.add(make_profile())
        errors: list[BaseException] = []
        start = threading.Barrier(self.threads)

        def work() -> None:
            try:
                start.wait()
                for _ in range(self.increments):
                    with storage.transaction() as tx:
                        current = tx.profiles.get("user-1")
                        assert current is not None
                        tx.profiles.update(
                            attrs.evolve(current, version=current.version + 1),
                            expected_version=current.version,
                        )
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        workers = [threading.Thread(target=work) for _ in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        with storage.transaction(write=False) as tx:
            final = tx.profiles.get("user-1")
        assert final is not None
        assert final.version == 1 + self.threads * self.increments

    def test_readers_never_see_uncommitted_writes(self, storage: Storage) -> None:
        """A reader running beside a writer only ever sees committed states."""
        with storage.transaction() as tx:
            tx.profiles.add(make_profile(first_name="committed"))
        stop = threading.Event()
        seen: set[str] = set()

        def read() -> None:
            while not stop.is_set():
                with storage.transaction(write=False) as tx:
                    p = tx.profiles.get("user-1")
                    if p is not None:
                        seen.add(p.first_name)
                time.sleep(0)  # yield the GIL so the writer is not starved

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for n in range(30):
                with pytest.raises(RuntimeError), storage.transaction() as tx:
                    tx.profiles.update(
                        make_profile(first_name="uncommitted", version=n + 2),
                        expected_version=n + 1,
                    )
                    raise RuntimeError
                with storage.transaction() as tx:
                    tx.profiles.update(
                        make_profile(first_name="committed", version=n + 2),
                        expected_version=n + 1,
                    )
        finally:
            stop.set()
            reader.join()
        assert "uncommitted" not in seen


class StorageContract(
    ProfileRepositoryContract,
    AuditLogContract,
    TransactionContract,
    BlobRepositoryContract,
    ConcurrencyContract,
    IntegrationRepositoryContract,
    LabRepositoryContract,
    CredentialRepositoryContract,
    ThrottleRepositoryContract,
    SessionRepositoryContract,
    TokenRepositoryContract,
):
    """Every contract in one class: subclass this and provide the ``storage`` fixture."""

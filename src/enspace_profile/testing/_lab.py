"""Contract tests for the lab choices repository (``SupportsLab`` / ``LabRepository``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from enspace_profile._lab.domain import OptIn
from enspace_profile.exceptions import StorageError
from enspace_profile.typing import LabRepository, Storage, SupportsLab, Transaction

__all__ = ["LabRepositoryContract", "make_opt_in"]

_T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def make_opt_in(key: str = "new-editor", user_id: str = "user-1", **overrides: Any) -> OptIn:
    """Return a valid lab choice for contract tests; ``overrides`` replace fields."""
    choice = OptIn(user_id=user_id, key=key, enabled=True, at=_T0, terms_version_accepted=None)
    return attrs.evolve(choice, **overrides)


def _lab(tx: Transaction) -> LabRepository:
    assert isinstance(tx, SupportsLab)
    return tx.lab


class LabRepositoryContract:
    """Lab choices: one per user and key, ordered, isolated, with a change marker."""

    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        """Override: yield a new, empty storage and close it afterwards."""
        pytest.fail("subclass the contract and provide a `storage` fixture")

    @pytest.fixture
    def lab_storage(self, storage: Storage) -> Storage:
        """The storage, or a skip if it keeps no lab choices."""
        with storage.transaction(write=False) as tx:
            if not isinstance(tx, SupportsLab):
                pytest.skip("storage has no lab repository")
        return storage

    def test_lab_user_without_choices_has_none(self, lab_storage: Storage) -> None:
        """A user who never chose anything has an empty list."""
        with lab_storage.transaction(write=False) as tx:
            assert list(_lab(tx).list_for_user("nobody")) == []

    def test_lab_put_round_trips_every_field(self, lab_storage: Storage) -> None:
        """A stored choice reads back equal, time (to the microsecond) and terms included."""
        choice = make_opt_in(
            at=_T0 + timedelta(microseconds=654321), terms_version_accepted="2026-01"
        )
        off = make_opt_in("dark-sidebar", enabled=False)
        with lab_storage.transaction() as tx:
            _lab(tx).put(choice)
            _lab(tx).put(off)
        with lab_storage.transaction(write=False) as tx:
            assert list(_lab(tx).list_for_user("user-1")) == [off, choice]

    def test_lab_put_replaces_the_previous_choice_for_the_key(self, lab_storage: Storage) -> None:
        """A new choice for the same user and key replaces the old one."""
        with lab_storage.transaction() as tx:
            _lab(tx).put(make_opt_in(terms_version_accepted="v1"))
        later = make_opt_in(enabled=False, at=_T0 + timedelta(hours=1))
        with lab_storage.transaction() as tx:
            _lab(tx).put(later)
        with lab_storage.transaction(write=False) as tx:
            assert list(_lab(tx).list_for_user("user-1")) == [later]

    def test_lab_choices_are_ordered_by_key(self, lab_storage: Storage) -> None:
        """Choices come back ordered by feature key, whatever the write order."""
        keys = ["zeta", "alpha", "mid.v2", "beta-1"]
        with lab_storage.transaction() as tx:
            for key in keys:
                _lab(tx).put(make_opt_in(key))
        with lab_storage.transaction(write=False) as tx:
            assert [c.key for c in _lab(tx).list_for_user("user-1")] == sorted(keys)

    def test_lab_users_are_isolated(self, lab_storage: Storage) -> None:
        """One user's choices never show up for, or change, another user's."""
        with lab_storage.transaction() as tx:
            _lab(tx).put(make_opt_in(user_id="a"))
            _lab(tx).put(make_opt_in(user_id="b", enabled=False))
            assert _lab(tx).delete_for_user("a") == 1
        with lab_storage.transaction(write=False) as tx:
            assert list(_lab(tx).list_for_user("a")) == []
            assert list(_lab(tx).list_for_user("b")) == [make_opt_in(user_id="b", enabled=False)]

    def test_lab_delete_for_user_removes_every_choice(self, lab_storage: Storage) -> None:
        """Deleting a user's choices removes all of them and reports how many there were."""
        with lab_storage.transaction() as tx:
            _lab(tx).put(make_opt_in("one"))
            _lab(tx).put(make_opt_in("two"))
        with lab_storage.transaction() as tx:
            assert _lab(tx).delete_for_user("user-1") == 2
            assert _lab(tx).delete_for_user("user-1") == 0
        with lab_storage.transaction(write=False) as tx:
            assert list(_lab(tx).list_for_user("user-1")) == []

    def test_lab_every_write_increases_the_revision(self, lab_storage: Storage) -> None:
        """Each put, and each delete_for_user that deletes, increases the change marker."""
        seen: list[int] = []
        with lab_storage.transaction(write=False) as tx:
            seen.append(_lab(tx).revision())
            _lab(tx).list_for_user("user-1")
            seen.append(_lab(tx).revision())
        with lab_storage.transaction() as tx:
            _lab(tx).put(make_opt_in())
            seen.append(_lab(tx).revision())
            _lab(tx).put(make_opt_in(enabled=False))
            seen.append(_lab(tx).revision())
        with lab_storage.transaction() as tx:
            _lab(tx).delete_for_user("user-1")
            seen.append(_lab(tx).revision())
            _lab(tx).delete_for_user("user-1")  # nothing deleted: nothing changed
        with lab_storage.transaction(write=False) as tx:
            seen.append(_lab(tx).revision())
        assert seen[0] == seen[1]
        assert seen[1] < seen[2] < seen[3] < seen[4]
        assert seen[5] == seen[4]

    def test_lab_changed_since_lists_users_written_after_a_revision(
        self, lab_storage: Storage
    ) -> None:
        """changed_since names each user written after the revision once, oldest write first."""
        with lab_storage.transaction() as tx:
            origin = _lab(tx).revision()
            _lab(tx).put(make_opt_in(user_id="early"))
            start = _lab(tx).revision()
        with lab_storage.transaction() as tx:
            _lab(tx).put(make_opt_in(user_id="b"))
            _lab(tx).put(make_opt_in(user_id="a"))
            _lab(tx).put(make_opt_in("other", user_id="b"))
            _lab(tx).put(make_opt_in(user_id="c"))
            _lab(tx).delete_for_user("c")
        with lab_storage.transaction(write=False) as tx:
            lab = _lab(tx)
            assert list(lab.changed_since(start, limit=10)) == ["a", "b", "c"]
            assert list(lab.changed_since(start, limit=2)) == ["a", "b"]
            assert list(lab.changed_since(start, limit=0)) == []
            assert list(lab.changed_since(lab.revision(), limit=10)) == []
            assert list(lab.changed_since(origin, limit=10)) == ["early", "a", "b", "c"]

    def test_lab_rolled_back_writes_leave_no_trace(self, lab_storage: Storage) -> None:
        """A rolled-back transaction changes neither the choices nor the revision."""
        with lab_storage.transaction() as tx:
            _lab(tx).put(make_opt_in("kept"))
            before = _lab(tx).revision()
        with pytest.raises(RuntimeError), lab_storage.transaction() as tx:
            _lab(tx).put(make_opt_in("new"))
            _lab(tx).put(make_opt_in("kept", enabled=False))
            _lab(tx).delete_for_user("user-2")
            raise RuntimeError
        with pytest.raises(RuntimeError), lab_storage.transaction() as tx:
            _lab(tx).delete_for_user("user-1")
            raise RuntimeError
        with lab_storage.transaction(write=False) as tx:
            assert list(_lab(tx).list_for_user("user-1")) == [make_opt_in("kept")]
            assert _lab(tx).revision() == before
            assert list(_lab(tx).changed_since(before, limit=10)) == []

    def test_lab_read_only_transaction_refuses_writes(self, lab_storage: Storage) -> None:
        """Writing lab choices in a read-only transaction raises StorageError."""
        with pytest.raises(StorageError), lab_storage.transaction(write=False) as tx:
            _lab(tx).put(make_opt_in())
        with pytest.raises(StorageError), lab_storage.transaction(write=False) as tx:
            _lab(tx).delete_for_user("user-1")

    @pytest.mark.parametrize("user_id", ["x" * 255, "ユーザー", "a'b\"c;--", "with space"])
    def test_lab_unusual_user_ids_round_trip(self, lab_storage: Storage, user_id: str) -> None:
        """Any printable host id is stored and found verbatim."""
        with lab_storage.transaction() as tx:
            origin = _lab(tx).revision()
            _lab(tx).put(make_opt_in(user_id=user_id))
        with lab_storage.transaction(write=False) as tx:
            assert [c.user_id for c in _lab(tx).list_for_user(user_id)] == [user_id]
            assert list(_lab(tx).changed_since(origin, limit=5)) == [user_id]

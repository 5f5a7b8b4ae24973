"""Contract tests for the integrations repository (``SupportsIntegrations``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from enspace_profile._crypto.keyring import SealedBox
from enspace_profile._integrations.domain import Connection, ConnectionStatus
from enspace_profile._integrations.oauth import PendingAuthorization, state_digest
from enspace_profile.exceptions import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    StorageError,
)
from enspace_profile.typing import (
    IntegrationRepository,
    Storage,
    SupportsIntegrations,
    Transaction,
)

__all__ = [
    "IntegrationRepositoryContract",
    "make_connection",
    "make_pending",
    "make_sealed_box",
]

_T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def make_connection(
    connection_id: str = "conn-1",
    user_id: str = "user-1",
    **overrides: Any,
) -> Connection:
    """Return a valid connection for contract tests; ``overrides`` replace fields."""
    connection = Connection(
        id=connection_id,
        user_id=user_id,
        provider="github",
        external_account_id=f"ext-{connection_id}",
        external_account_label="@ada",
        granted_scopes=("read:user", "repo"),
        connected_at=_T0,
    )
    return attrs.evolve(connection, **overrides)


def make_sealed_box(n: int = 1, *, key_id: str = "key-1") -> SealedBox:
    """Return an opaque sealed box (repositories never decrypt, so any bytes will do)."""
    return SealedBox(
        key_id=key_id, nonce=bytes([n]) * 12, ciphertext=bytes([n, 255 - n]) * 16 + b"\x00x"
    )


def make_pending(n: int = 1, user_id: str = "user-1", **overrides: Any) -> PendingAuthorization:
    """Return the ``n``-th pending OAuth authorization for contract tests."""
    pending = PendingAuthorization(
        state_digest=state_digest(f"state-{n}"),
        user_id=user_id,
        provider="github",
        redirect_uri="https://app.example/integrations/callback",
        scopes=("repo", "read:user"),
        created_at=_T0,
        expires_at=_T0 + timedelta(minutes=10),
        code_verifier=make_sealed_box(n),
    )
    return attrs.evolve(pending, **overrides)


def _repo(tx: Transaction) -> IntegrationRepository:
    assert isinstance(tx, SupportsIntegrations)
    return tx.integrations


def _run_together(workers: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run ``work(i)`` on ``workers`` threads started at once; return what they raised."""
    start = threading.Barrier(workers)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


class IntegrationRepositoryContract:
    """Integrations: connections, sealed credentials and single-use pending OAuth requests."""

    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        """Override: yield a new, empty storage and close it afterwards."""
        pytest.fail("subclass the contract and provide a `storage` fixture")

    @pytest.fixture
    def integration_storage(self, storage: Storage) -> Storage:
        """The storage, or a skip if it keeps no integrations."""
        with storage.transaction(write=False) as tx:
            if not isinstance(tx, SupportsIntegrations):
                pytest.skip("storage has no integrations repository")
        return storage

    # -- connections -------------------------------------------------------------

    def test_integrations_missing_connection_reads_as_none(
        self, integration_storage: Storage
    ) -> None:
        """An unknown connection is None, and a user without connections lists none."""
        with integration_storage.transaction(write=False) as tx:
            repo = _repo(tx)
            assert repo.get("user-1", "nope") is None
            assert repo.find_account("user-1", "github", "ext") is None
            assert list(repo.list_for_user("user-1")) == []
            assert repo.get_credentials("user-1", "nope") is None

    def test_integrations_add_then_get_round_trips_every_field(
        self, integration_storage: Storage
    ) -> None:
        """A stored connection reads back equal, field for field."""
        connection = make_connection(
            external_account_label="Ada Lovelace (ユーザー)",
            status=ConnectionStatus.NEEDS_REAUTHORIZATION,
            granted_scopes=("repo", "user:email", "read:org"),
            connected_at=_T0 + timedelta(microseconds=123456),
            last_sync_at=_T0 + timedelta(hours=1),
            last_error="401: token expired",
            version=3,
            credentials_version=2,
        )
        with integration_storage.transaction() as tx:
            _repo(tx).add(connection)
        with integration_storage.transaction(write=False) as tx:
            repo = _repo(tx)
            assert repo.get("user-1", "conn-1") == connection
            assert repo.find_account("user-1", "github", "ext-conn-1") == connection

    def test_integrations_duplicate_id_or_account_is_refused(
        self, integration_storage: Storage
    ) -> None:
        """The id is unique, and so is (user, provider, external account)."""
        with integration_storage.transaction() as tx:
            _repo(tx).add(make_connection())
        with pytest.raises(AlreadyExistsError), integration_storage.transaction() as tx:
            _repo(tx).add(make_connection(external_account_id="other"))
        with pytest.raises(AlreadyExistsError), integration_storage.transaction() as tx:
            _repo(tx).add(make_connection("conn-2", external_account_id="ext-conn-1"))
        with integration_storage.transaction() as tx:
            repo = _repo(tx)
            repo.add(make_connection("conn-3", "user-2", external_account_id="ext-conn-1"))
            repo.add(make_connection("conn-4", provider="gitlab", external_account_id="ext-conn-1"))
        with integration_storage.transaction(write=False) as tx:
            assert len(_repo(tx).list_for_user("user-1")) == 2

    def test_integrations_list_is_ordered_by_connection_time_then_id(
        self, integration_storage: Storage
    ) -> None:
        """Connections list oldest first (ties by id), filtered by user and provider."""
        later = make_connection("a-later", connected_at=_T0 + timedelta(minutes=5))
        first = make_connection("z-first", connected_at=_T0 - timedelta(days=1))
        tie_b = make_connection("tie-b", provider="slack")
        tie_a = make_connection("tie-a")
        other = make_connection("other-user", "user-2")
        with integration_storage.transaction() as tx:
            for connection in (later, first, tie_b, tie_a, other):
                _repo(tx).add(connection)
        with integration_storage.transaction(write=False) as tx:
            repo = _repo(tx)
            assert list(repo.list_for_user("user-1")) == [first, tie_a, tie_b, later]
            assert list(repo.list_for_user("user-1", provider="slack")) == [tie_b]
            assert list(repo.list_for_user("user-2")) == [other]

    def test_integrations_update_with_current_version_replaces(
        self, integration_storage: Storage
    ) -> None:
        """An update based on the stored version is applied."""
        with integration_storage.transaction() as tx:
            _repo(tx).add(make_connection())
        new = make_connection(
            status=ConnectionStatus.ERROR,
            last_error="boom",
            last_sync_at=_T0 + timedelta(minutes=1),
            granted_scopes=(),
            version=2,
            credentials_version=1,
        )
        with integration_storage.transaction() as tx:
            _repo(tx).update(new, expected_version=1)
        with integration_storage.transaction(write=False) as tx:
            assert _repo(tx).get("user-1", "conn-1") == new

    def test_integrations_update_with_stale_version_raises_conflict(
        self, integration_storage: Storage
    ) -> None:
        """Two workers that read the same version: the second write is a ConflictError."""
        with integration_storage.transaction() as tx:
            _repo(tx).add(make_connection())
        with integration_storage.transaction(write=False) as tx:
            read_a = _repo(tx).get("user-1", "conn-1")
        with integration_storage.transaction(write=False) as tx:
            read_b = _repo(tx).get("user-1", "conn-1")
        assert read_a is not None
        assert read_b is not None
        with integration_storage.transaction() as tx:
            _repo(tx).update(
                attrs.evolve(read_a, credentials_version=1, version=2),
                expected_version=read_a.version,
            )
            _repo(tx).put_credentials("user-1", "conn-1", make_sealed_box(1))
        with pytest.raises(ConflictError) as info, integration_storage.transaction() as tx:
            _repo(tx).update(
                attrs.evolve(read_b, credentials_version=1, version=2),
                expected_version=read_b.version,
            )
            _repo(tx).put_credentials("user-1", "conn-1", make_sealed_box(2))
        assert (info.value.expected_version, info.value.current_version) == (1, 2)
        with integration_storage.transaction(write=False) as tx:
            assert _repo(tx).get_credentials("user-1", "conn-1") == make_sealed_box(1)

    def test_integrations_concurrent_refreshes_one_wins(self, integration_storage: Storage) -> None:
        """Threads updating from the same read version: exactly one wins, the rest conflict."""
        workers = 4
        with integration_storage.transaction() as tx:
            _repo(tx).add(make_connection())

        def refresh(i: int) -> None:
            with integration_storage.transaction() as tx:
                repo = _repo(tx)
                repo.update(
                    make_connection(credentials_version=1, version=2, last_error=f"w{i}"),
                    expected_version=1,
                )
                repo.put_credentials("user-1", "conn-1", make_sealed_box(i + 1))

        errors = _run_together(workers, refresh)
        assert len(errors) == workers - 1
        assert all(isinstance(e, ConflictError) for e in errors)
        with integration_storage.transaction(write=False) as tx:
            stored = _repo(tx).get("user-1", "conn-1")
            box = _repo(tx).get_credentials("user-1", "conn-1")
        assert stored is not None
        assert stored.version == 2
        assert stored.last_error is not None
        winner = int(stored.last_error[1:])
        assert box == make_sealed_box(winner + 1)

    def test_integrations_update_missing_raises_not_found(
        self, integration_storage: Storage
    ) -> None:
        """Updating a connection that does not exist (for that user) raises NotFoundError."""
        with integration_storage.transaction() as tx:
            _repo(tx).add(make_connection())
        with pytest.raises(NotFoundError), integration_storage.transaction() as tx:
            _repo(tx).update(make_connection("ghost", version=2), expected_version=1)
        with pytest.raises(NotFoundError), integration_storage.transaction() as tx:
            _repo(tx).update(make_connection(user_id="user-2", version=2), expected_version=1)

    def test_integrations_users_are_isolated(self, integration_storage: Storage) -> None:
        """Another user's id never reads, writes or deletes a connection or its credentials."""
        with integration_storage.transaction() as tx:
            repo = _repo(tx)
            repo.add(make_connection())
            repo.put_credentials("user-1", "conn-1", make_sealed_box(1))
        with integration_storage.transaction() as tx:
            repo = _repo(tx)
            assert repo.get("intruder", "conn-1") is None
            assert repo.find_account("intruder", "github", "ext-conn-1") is None
            assert repo.get_credentials("intruder", "conn-1") is None
            assert list(repo.list_credentials(user_id="intruder")) == []
            assert repo.delete_credentials("intruder", "conn-1") is False
            assert repo.delete("intruder", "conn-1") is False
            with pytest.raises(NotFoundError):
                repo.put_credentials("intruder", "conn-1", make_sealed_box(9))
        with integration_storage.transaction(write=False) as tx:
            repo = _repo(tx)
            assert repo.get("user-1", "conn-1") == make_connection()
            assert repo.get_credentials("user-1", "conn-1") == make_sealed_box(1)

    def test_integrations_delete_removes_connection_and_credentials(
        self, integration_storage: Storage
    ) -> None:
        """Deleting a connection deletes its credentials and frees its account for reuse."""
        with integration_storage.transaction() as tx:
            repo = _repo(tx)
            repo.add(make_connection())
            repo.put_credentials("user-1", "conn-1", make_sealed_box(1))
        with integration_storage.transaction() as tx:
            assert _repo(tx).delete("user-1", "conn-1") is True
            assert _repo(tx).delete("user-1", "conn-1") is False
        with integration_storage.transaction() as tx:
            repo = _repo(tx)
            assert repo.get("user-1", "conn-1") is None
            assert repo.get_credentials("user-1", "conn-1") is None
            assert list(repo.list_credentials()) == []
            repo.add(make_connection("conn-2", external_account_id="ext-conn-1"))

    # -- credentials -------------------------------------------------------------

    def test_integrations_credentials_put_replace_delete(
        self, integration_storage: Storage
    ) -> None:
        """Credentials are stored as given, replaced by the next put, and deleted on request."""
        with integration_storage.transaction() as tx:
            repo = _repo(tx)
            repo.add(make_connection())
            repo.put_credentials("user-1", "conn-1", make_sealed_box(1))
        with integration_storage.transaction() as tx:
            repo = _repo(tx)
            assert repo.get_credentials("user-1", "conn-1") == make_sealed_box(1)
            repo.put_credentials("user-1", "conn-1", make_sealed_box(2, key_id="key-2"))
        with integration_storage.transaction() as tx:
            repo = _repo(tx)
            assert repo.get_credentials("user-1", "conn-1") == make_sealed_box(2, key_id="key-2")
            assert repo.delete_credentials("user-1", "conn-1") is True
            assert repo.delete_credentials("user-1", "conn-1") is False
            assert repo.get_credentials("user-1", "conn-1") is None
            assert repo.get("user-1", "conn-1") == make_connection()

    def test_integrations_put_credentials_needs_the_connection(
        self, integration_storage: Storage
    ) -> None:
        """Credentials cannot exist without their connection."""
        with pytest.raises(NotFoundError), integration_storage.transaction() as tx:
            _repo(tx).put_credentials("user-1", "ghost", make_sealed_box(1))

    def test_integrations_list_credentials_filters_and_pages(
        self, integration_storage: Storage
    ) -> None:
        """Credentials list by connection id, filtered by user and key, with keyset paging."""
        with integration_storage.transaction() as tx:
            repo = _repo(tx)
            for n, (cid, user, key) in enumerate(
                [
                    ("c3", "user-1", "old"),
                    ("c1", "user-1", "old"),
                    ("c2", "user-2", "old"),
                    ("c4", "user-1", "new"),
                ],
                start=1,
            ):
                repo.add(make_connection(cid, user, provider=f"p-{cid}"))
                repo.put_credentials(user, cid, make_sealed_box(n, key_id=key))
            repo.add(make_connection("c0"))  # no credentials: never listed
        with integration_storage.transaction(write=False) as tx:
            repo = _repo(tx)
            every = list(repo.list_credentials())
            assert [c.connection_id for c in every] == ["c1", "c2", "c3", "c4"]
            assert [(c.user_id, c.provider) for c in every[:2]] == [
                ("user-1", "p-c1"),
                ("user-2", "p-c2"),
            ]
            assert every[0].box == make_sealed_box(2, key_id="old")
            ids = [c.connection_id for c in repo.list_credentials(exclude_key_id="new")]
            assert ids == ["c1", "c2", "c3"]
            ids = [c.connection_id for c in repo.list_credentials(user_id="user-1")]
            assert ids == ["c1", "c3", "c4"]
            ids = [c.connection_id for c in repo.list_credentials(after="c1", limit=2)]
            assert ids == ["c2", "c3"]
            assert list(repo.list_credentials(limit=0)) == []

    # -- pending OAuth authorizations --------------------------------------------

    def test_integrations_pending_is_taken_once(self, integration_storage: Storage) -> None:
        """A pending authorization reads back equal once; a second take finds nothing."""
        pending = make_pending(1, created_at=_T0 + timedelta(microseconds=7))
        with integration_storage.transaction() as tx:
            _repo(tx).add_pending(pending)
            _repo(tx).add_pending(make_pending(2))
        with integration_storage.transaction() as tx:
            assert _repo(tx).take_pending(pending.state_digest) == pending
        with integration_storage.transaction() as tx:
            assert _repo(tx).take_pending(pending.state_digest) is None
            assert _repo(tx).take_pending(make_pending(2).state_digest) == make_pending(2)

    def test_integrations_duplicate_pending_is_refused(self, integration_storage: Storage) -> None:
        """Two pending authorizations cannot share a state digest."""
        with integration_storage.transaction() as tx:
            _repo(tx).add_pending(make_pending(1))
        with pytest.raises(AlreadyExistsError), integration_storage.transaction() as tx:
            _repo(tx).add_pending(make_pending(1, user_id="user-2"))

    def test_integrations_concurrent_takes_get_it_once(self, integration_storage: Storage) -> None:
        """Of several threads taking the same pending authorization, exactly one gets it."""
        with integration_storage.transaction() as tx:
            _repo(tx).add_pending(make_pending(1))
        taken: list[PendingAuthorization | None] = [None] * 4

        def take(i: int) -> None:
            with integration_storage.transaction() as tx:
                taken[i] = _repo(tx).take_pending(make_pending(1).state_digest)

        assert _run_together(4, take) == []
        assert [t for t in taken if t is not None] == [make_pending(1)]

    def test_integrations_expired_pending_is_purged(self, integration_storage: Storage) -> None:
        """Purging deletes exactly the authorizations that expired at or before ``now``."""
        with integration_storage.transaction() as tx:
            repo = _repo(tx)
            for n, minutes in ((1, 5), (2, 10), (3, 11)):
                repo.add_pending(make_pending(n, expires_at=_T0 + timedelta(minutes=minutes)))
        with integration_storage.transaction() as tx:
            assert _repo(tx).delete_expired_pending(_T0 + timedelta(minutes=10)) == 2
        with integration_storage.transaction() as tx:
            repo = _repo(tx)
            assert repo.take_pending(make_pending(1).state_digest) is None
            assert repo.take_pending(make_pending(2).state_digest) is None
            assert repo.take_pending(make_pending(3).state_digest) is not None

    # -- transactions --------------------------------------------------------------

    def test_integrations_exception_rolls_back_everything(
        self, integration_storage: Storage
    ) -> None:
        """An error inside a transaction undoes connections, credentials and pending writes."""
        with integration_storage.transaction() as tx:
            repo = _repo(tx)
            repo.add(make_connection("keep"))
            repo.put_credentials("user-1", "keep", make_sealed_box(1))
            repo.add_pending(make_pending(1))

        class Boom(Exception):
            pass

        with pytest.raises(Boom), integration_storage.transaction() as tx:
            repo = _repo(tx)
            repo.add(make_connection("new"))
            repo.put_credentials("user-1", "new", make_sealed_box(2))
            repo.put_credentials("user-1", "keep", make_sealed_box(3))
            repo.update(make_connection("keep", last_error="x", version=2), expected_version=1)
            assert repo.take_pending(make_pending(1).state_digest) is not None
            repo.add_pending(make_pending(2))
            repo.delete("user-1", "keep")
            raise Boom
        with integration_storage.transaction(write=False) as tx:
            repo = _repo(tx)
            assert repo.get("user-1", "new") is None
            assert repo.get("user-1", "keep") == make_connection("keep")
            assert repo.get_credentials("user-1", "keep") == make_sealed_box(1)
            assert [c.connection_id for c in repo.list_credentials()] == ["keep"]
        with integration_storage.transaction() as tx:
            repo = _repo(tx)
            assert repo.take_pending(make_pending(1).state_digest) == make_pending(1)
            assert repo.take_pending(make_pending(2).state_digest) is None

    def test_integrations_read_only_transaction_refuses_writes(
        self, integration_storage: Storage
    ) -> None:
        """Every write in a read-only transaction raises StorageError and changes nothing."""
        with integration_storage.transaction() as tx:
            _repo(tx).add(make_connection())
            _repo(tx).add_pending(make_pending(1))
        writes: list[Callable[[IntegrationRepository], object]] = [
            lambda r: r.add(make_connection("c2", external_account_id="e2")),
            lambda r: r.update(make_connection(version=2), expected_version=1),
            lambda r: r.delete("user-1", "conn-1"),
            lambda r: r.put_credentials("user-1", "conn-1", make_sealed_box(1)),
            lambda r: r.delete_credentials("user-1", "conn-1"),
            lambda r: r.add_pending(make_pending(2)),
            lambda r: r.take_pending(make_pending(1).state_digest),
            lambda r: r.delete_expired_pending(_T0 + timedelta(days=1)),
        ]
        for write in writes:
            with pytest.raises(StorageError), integration_storage.transaction(write=False) as tx:
                write(_repo(tx))
        with integration_storage.transaction() as tx:
            repo = _repo(tx)
            assert list(repo.list_for_user("user-1")) == [make_connection()]
            assert repo.get_credentials("user-1", "conn-1") is None
            assert repo.take_pending(make_pending(1).state_digest) == make_pending(1)

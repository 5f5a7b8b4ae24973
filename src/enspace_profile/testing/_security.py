"""Contract tests for the Security tab's ports: credentials, failure counters, sessions.

Each class skips itself when the storage's transactions lack the capability
(``SupportsCredentials``, ``SupportsThrottle``, ``SupportsSessions``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from enspace_profile._security.accounts import AccountManagement
from enspace_profile._security.domain import AccountCredentials, Session, TotpEnrolment
from enspace_profile._security.lockout import FailureState
from enspace_profile._security.recovery import RecoveryCode, RecoveryCodeSet, RecoveryCodeState
from enspace_profile.exceptions import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    StorageError,
)
from enspace_profile.typing import (
    CredentialRepository,
    SessionRepository,
    Storage,
    SupportsCredentials,
    SupportsSessions,
    SupportsThrottle,
    ThrottleRepository,
    Transaction,
)

__all__ = [
    "CredentialRepositoryContract",
    "SessionRepositoryContract",
    "ThrottleRepositoryContract",
    "make_credentials",
    "make_session",
]

_T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_ARGON2_SAMPLE = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA"
_SCRYPT_SAMPLE = "$scrypt$ln=17,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"


def _code(n: int, *, used: bool = False) -> RecoveryCode:
    return RecoveryCode(
        digest=bytes([1]) + bytes([n]) * 48, used_at=_T0 + timedelta(minutes=n) if used else None
    )


def make_credentials(user_id: str = "user-1", **overrides: Any) -> AccountCredentials:
    """Return a fully populated local :class:`AccountCredentials` (version 1); ``overrides`` win."""
    active = RecoveryCodeSet(
        codes=[_code(1, used=True), _code(2), _code(3)],
        generated_at=_T0,
        confirmed_at=_T0 + timedelta(seconds=30),
    )
    pending = RecoveryCodeSet(codes=[_code(7), _code(8)], generated_at=_T0 + timedelta(days=1))
    credentials = AccountCredentials(
        user_id=user_id,
        version=1,
        epoch=3,
        password_hash=_ARGON2_SAMPLE,
        password_changed_at=_T0 + timedelta(microseconds=123456),
        totp=TotpEnrolment(
            sealed_secret=b"\x01\x02k1" + bytes(range(60)),
            created_at=_T0,
            enabled_at=_T0 + timedelta(minutes=1),
            last_used_step=59_000_000,
        ),
        pending_totp=TotpEnrolment(sealed_secret=b"\x01\x02k1" + bytes(40), created_at=_T0),
        recovery=RecoveryCodeState(active=active, pending=pending),
    )
    return attrs.evolve(credentials, **overrides)


def make_session(session_id: str = "s-1", user_id: str = "user-1", **overrides: Any) -> Session:
    """Return a valid :class:`Session`; ``overrides`` replace fields."""
    session = Session(
        session_id=session_id,
        user_id=user_id,
        created_at=_T0,
        last_seen_at=_T0 + timedelta(minutes=5, microseconds=42),
        ip_address="203.0.113.9",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
    )
    return attrs.evolve(session, **overrides)


def _credentials(tx: Transaction) -> CredentialRepository:
    assert isinstance(tx, SupportsCredentials)
    return tx.credentials


def _throttle(tx: Transaction) -> ThrottleRepository:
    assert isinstance(tx, SupportsThrottle)
    return tx.throttle


def _sessions(tx: Transaction) -> SessionRepository:
    assert isinstance(tx, SupportsSessions)
    return tx.sessions


class _Fixture:
    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        """Override: yield a new, empty storage and close it afterwards."""
        pytest.fail("subclass the contract and provide a `storage` fixture")


class CredentialRepositoryContract(_Fixture):
    """AccountCredentials: one versioned record per user, with its recovery codes."""

    @pytest.fixture
    def credential_storage(self, storage: Storage) -> Storage:
        """The storage, or a skip if it stores no credentials."""
        with storage.transaction(write=False) as tx:
            if not isinstance(tx, SupportsCredentials):
                pytest.skip("storage has no credential repository")
        return storage

    def test_credentials_get_missing_returns_none(self, credential_storage: Storage) -> None:
        """A user without credentials reads back as None."""
        with credential_storage.transaction(write=False) as tx:
            assert _credentials(tx).get("nobody") is None

    @pytest.mark.parametrize(
        "overrides",
        [
            {},
            {
                "password_hash": None,
                "password_changed_at": None,
                "totp": None,
                "pending_totp": None,
                "recovery": RecoveryCodeState(),
                "management": AccountManagement.managed(
                    "Okta", manage_url="https://acme.okta.com/enduser/settings"
                ),
            },
            {"management": AccountManagement.managed("Entra ID"), "recovery": RecoveryCodeState()},
        ],
        ids=["local-full", "managed", "managed-no-url"],
    )
    def test_credentials_add_then_get_round_trips_every_field(
        self, credential_storage: Storage, overrides: dict[str, Any]
    ) -> None:
        """A stored record reads back equal: hash, sealed secrets, steps, code sets, SSO."""
        credentials = make_credentials(**overrides)
        with credential_storage.transaction() as tx:
            _credentials(tx).add(credentials)
        with credential_storage.transaction(write=False) as tx:
            assert _credentials(tx).get("user-1") == credentials

    def test_credentials_add_duplicate_raises_already_exists(
        self, credential_storage: Storage
    ) -> None:
        """A second record for the same user raises AlreadyExistsError."""
        with credential_storage.transaction() as tx:
            _credentials(tx).add(make_credentials())
        with pytest.raises(AlreadyExistsError), credential_storage.transaction() as tx:
            _credentials(tx).add(make_credentials(epoch=9))

    def test_credentials_update_replaces_record_and_code_sets(
        self, credential_storage: Storage
    ) -> None:
        """An update at the stored version replaces everything, recovery codes included."""
        with credential_storage.transaction() as tx:
            _credentials(tx).add(make_credentials())
        confirmed = RecoveryCodeSet(
            codes=[_code(20)], generated_at=_T0, confirmed_at=_T0 + timedelta(hours=1)
        )
        new = make_credentials(
            version=2,
            epoch=4,
            password_hash=_SCRYPT_SAMPLE,
            totp=None,
            recovery=RecoveryCodeState(active=confirmed),
        )
        with credential_storage.transaction() as tx:
            _credentials(tx).update(new, expected_version=1)
        with credential_storage.transaction(write=False) as tx:
            assert _credentials(tx).get("user-1") == new

    def test_credentials_update_with_stale_version_raises_conflict(
        self, credential_storage: Storage
    ) -> None:
        """An update based on an old version raises ConflictError and changes nothing."""
        with credential_storage.transaction() as tx:
            _credentials(tx).add(make_credentials())
            _credentials(tx).update(make_credentials(version=2), expected_version=1)
        with pytest.raises(ConflictError) as info, credential_storage.transaction() as tx:
            _credentials(tx).update(make_credentials(version=2, epoch=99), expected_version=1)
        assert info.value.current_version == 2
        with credential_storage.transaction(write=False) as tx:
            stored = _credentials(tx).get("user-1")
        assert stored is not None
        assert stored.epoch == 3

    def test_credentials_update_missing_raises_not_found(self, credential_storage: Storage) -> None:
        """Updating a user without a record raises NotFoundError."""
        with pytest.raises(NotFoundError), credential_storage.transaction() as tx:
            _credentials(tx).update(make_credentials(version=2), expected_version=1)

    def test_credentials_delete_removes_record_and_codes(self, credential_storage: Storage) -> None:
        """Delete reports whether a record existed; a new record starts without old codes."""
        with credential_storage.transaction() as tx:
            _credentials(tx).add(make_credentials())
        with credential_storage.transaction() as tx:
            assert _credentials(tx).delete("user-1") is True
            assert _credentials(tx).delete("user-1") is False
            _credentials(tx).add(make_credentials(recovery=RecoveryCodeState()))
        with credential_storage.transaction(write=False) as tx:
            stored = _credentials(tx).get("user-1")
        assert stored is not None
        assert stored.recovery == RecoveryCodeState()

    def test_credentials_users_are_isolated(self, credential_storage: Storage) -> None:
        """Writing one user's credentials never changes another's."""
        with credential_storage.transaction() as tx:
            _credentials(tx).add(make_credentials("a"))
            _credentials(tx).add(make_credentials("b", epoch=7))
            _credentials(tx).update(make_credentials("a", version=2, totp=None), expected_version=1)
        with credential_storage.transaction(write=False) as tx:
            assert _credentials(tx).get("b") == make_credentials("b", epoch=7)

    def test_credentials_list_user_ids_pages_in_order(self, credential_storage: Storage) -> None:
        """User ids come back in ascending order, a page at a time."""
        ids = ["m", "a", "z", "b", "é"]
        with credential_storage.transaction() as tx:
            for user_id in ids:
                _credentials(tx).add(make_credentials(user_id))
        with credential_storage.transaction(write=False) as tx:
            repo = _credentials(tx)
            assert list(repo.list_user_ids()) == sorted(ids)
            assert list(repo.list_user_ids(limit=2)) == ["a", "b"]
            assert list(repo.list_user_ids(after="b", limit=2)) == ["m", "z"]
            assert list(repo.list_user_ids(after="z")) == ["é"]

    def test_credentials_writes_roll_back(self, credential_storage: Storage) -> None:
        """A rolled-back transaction leaves no credentials behind."""
        with pytest.raises(RuntimeError), credential_storage.transaction() as tx:
            _credentials(tx).add(make_credentials())
            raise RuntimeError
        with credential_storage.transaction(write=False) as tx:
            assert _credentials(tx).get("user-1") is None

    def test_credentials_read_only_transaction_refuses_writes(
        self, credential_storage: Storage
    ) -> None:
        """Adding credentials in a read-only transaction raises StorageError."""
        with pytest.raises(StorageError), credential_storage.transaction(write=False) as tx:
            _credentials(tx).add(make_credentials())


class ThrottleRepositoryContract(_Fixture):
    """Failure counters: per user and scope, atomic inside write transactions."""

    threads = 6
    increments = 20

    @pytest.fixture
    def throttle_storage(self, storage: Storage) -> Storage:
        """The storage, or a skip if it keeps no failure counters."""
        with storage.transaction(write=False) as tx:
            if not isinstance(tx, SupportsThrottle):
                pytest.skip("storage has no throttle repository")
        return storage

    def test_throttle_unknown_key_is_a_clean_state(self, throttle_storage: Storage) -> None:
        """A user never throttled reads back as a clean FailureState."""
        with throttle_storage.transaction(write=False) as tx:
            assert _throttle(tx).get("nobody", "credentials") == FailureState()

    def test_throttle_put_round_trips_every_field(self, throttle_storage: Storage) -> None:
        """A stored state reads back equal, to the microsecond."""
        state = FailureState(
            consecutive_failures=12,
            locked_until=_T0 + timedelta(minutes=4, microseconds=7),
            window_start=_T0,
            failures_in_window=40,
            failures_in_previous_window=55,
        )
        with throttle_storage.transaction() as tx:
            _throttle(tx).put("user-1", "credentials", state)
        with throttle_storage.transaction(write=False) as tx:
            assert _throttle(tx).get("user-1", "credentials") == state

    def test_throttle_users_and_scopes_are_isolated(self, throttle_storage: Storage) -> None:
        """Counters are kept per user and per scope."""
        one = FailureState(consecutive_failures=1, window_start=_T0, failures_in_window=1)
        two = FailureState(consecutive_failures=2, window_start=_T0, failures_in_window=2)
        with throttle_storage.transaction() as tx:
            _throttle(tx).put("user-1", "credentials", one)
            _throttle(tx).put("user-1", "other", two)
        with throttle_storage.transaction(write=False) as tx:
            assert _throttle(tx).get("user-1", "credentials") == one
            assert _throttle(tx).get("user-1", "other") == two
            assert _throttle(tx).get("user-2", "credentials") == FailureState()

    def test_throttle_clean_state_replaces_stored_one(self, throttle_storage: Storage) -> None:
        """Putting a clean state resets the counter."""
        with throttle_storage.transaction() as tx:
            _throttle(tx).put("user-1", "credentials", FailureState(consecutive_failures=3))
            _throttle(tx).put("user-1", "credentials", FailureState())
        with throttle_storage.transaction(write=False) as tx:
            assert _throttle(tx).get("user-1", "credentials") == FailureState()

    def test_throttle_writes_roll_back(self, throttle_storage: Storage) -> None:
        """A rolled-back transaction leaves the counter as it was."""
        with pytest.raises(RuntimeError), throttle_storage.transaction() as tx:
            _throttle(tx).put("user-1", "credentials", FailureState(consecutive_failures=5))
            raise RuntimeError
        with throttle_storage.transaction(write=False) as tx:
            assert _throttle(tx).get("user-1", "credentials") == FailureState()

    def test_throttle_concurrent_increments_lose_nothing(self, throttle_storage: Storage) -> None:
        """Threads counting failures in write transactions never lose a count."""
        start = threading.Barrier(self.threads)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                start.wait()
                for _ in range(self.increments):
                    with throttle_storage.transaction() as tx:
                        repo = _throttle(tx)
                        state = repo.get("user-1", "credentials")
                        repo.put(
                            "user-1",
                            "credentials",
                            attrs.evolve(
                                state, consecutive_failures=state.consecutive_failures + 1
                            ),
                        )
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        workers = [threading.Thread(target=work) for _ in range(self.threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        with throttle_storage.transaction(write=False) as tx:
            final = _throttle(tx).get("user-1", "credentials")
        assert final.consecutive_failures == self.threads * self.increments


class SessionRepositoryContract(_Fixture):
    """The session registry: add, update, delete, and per-user listing by recency."""

    @pytest.fixture
    def session_storage(self, storage: Storage) -> Storage:
        """The storage, or a skip if it keeps no session registry."""
        with storage.transaction(write=False) as tx:
            if not isinstance(tx, SupportsSessions):
                pytest.skip("storage has no session repository")
        return storage

    def test_sessions_get_missing_returns_none(self, session_storage: Storage) -> None:
        """An unknown session id reads back as None."""
        with session_storage.transaction(write=False) as tx:
            assert _sessions(tx).get("nope") is None

    @pytest.mark.parametrize(
        "overrides",
        [{}, {"ip_address": None, "user_agent": None}, {"ip_address": "2001:db8::1"}],
        ids=["full", "bare", "ipv6"],
    )
    def test_sessions_add_then_get_round_trips(
        self, session_storage: Storage, overrides: dict[str, Any]
    ) -> None:
        """A registered session reads back equal, field for field."""
        session = make_session(**overrides)
        with session_storage.transaction() as tx:
            _sessions(tx).add(session)
        with session_storage.transaction(write=False) as tx:
            assert _sessions(tx).get("s-1") == session

    def test_sessions_add_duplicate_raises_already_exists(self, session_storage: Storage) -> None:
        """Registering a session id twice raises AlreadyExistsError."""
        with session_storage.transaction() as tx:
            _sessions(tx).add(make_session())
        with pytest.raises(AlreadyExistsError), session_storage.transaction() as tx:
            _sessions(tx).add(make_session(user_id="other"))

    def test_sessions_update_replaces(self, session_storage: Storage) -> None:
        """Updating a session stores its new last-seen time, address and agent."""
        with session_storage.transaction() as tx:
            _sessions(tx).add(make_session())
        later = make_session(
            last_seen_at=_T0 + timedelta(hours=2), ip_address="198.51.100.1", user_agent="curl/8"
        )
        with session_storage.transaction() as tx:
            _sessions(tx).update(later)
        with session_storage.transaction(write=False) as tx:
            assert _sessions(tx).get("s-1") == later

    def test_sessions_update_missing_raises_not_found(self, session_storage: Storage) -> None:
        """Updating an unregistered session raises NotFoundError."""
        with pytest.raises(NotFoundError), session_storage.transaction() as tx:
            _sessions(tx).update(make_session())

    def test_sessions_delete_reports_whether_it_existed(self, session_storage: Storage) -> None:
        """Delete removes the session once and then reports False."""
        with session_storage.transaction() as tx:
            _sessions(tx).add(make_session())
        with session_storage.transaction() as tx:
            assert _sessions(tx).delete("s-1") is True
            assert _sessions(tx).delete("s-1") is False
            assert _sessions(tx).get("s-1") is None

    def test_sessions_list_for_user_is_most_recent_first(self, session_storage: Storage) -> None:
        """A user's sessions are listed by last use, newest first, ties by id; others hidden."""
        old = make_session("c", last_seen_at=_T0)
        new = make_session("a", last_seen_at=_T0 + timedelta(hours=1))
        tie_b = make_session("b", last_seen_at=_T0 + timedelta(minutes=30))
        tie_a = make_session("a2", last_seen_at=_T0 + timedelta(minutes=30))
        theirs = make_session("z", user_id="user-2", last_seen_at=_T0 + timedelta(days=1))
        with session_storage.transaction() as tx:
            for session in (old, theirs, tie_b, new, tie_a):
                _sessions(tx).add(session)
        with session_storage.transaction(write=False) as tx:
            assert list(_sessions(tx).list_for_user("user-1")) == [new, tie_a, tie_b, old]
            assert list(_sessions(tx).list_for_user("user-2")) == [theirs]
            assert list(_sessions(tx).list_for_user("nobody")) == []

    def test_sessions_writes_roll_back(self, session_storage: Storage) -> None:
        """A rolled-back transaction registers nothing."""
        with pytest.raises(RuntimeError), session_storage.transaction() as tx:
            _sessions(tx).add(make_session())
            raise RuntimeError
        with session_storage.transaction(write=False) as tx:
            assert _sessions(tx).get("s-1") is None

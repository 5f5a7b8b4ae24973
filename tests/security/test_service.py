from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

from enspace_profile import (
    AccountManagement,
    Argon2idHasher,
    AuditEvent,
    AuthContext,
    DjangoPbkdf2Hasher,
    FixedClock,
    InvalidCredentialsError,
    LockoutPolicy,
    ManagedExternallyError,
    MemoryStorage,
    PasswordHash,
    RateLimitedError,
    ReauthenticationRequired,
    ReauthPolicy,
    ReauthRule,
    SecurityEventKind,
    SecurityFeature,
    SeededRandom,
    SensitiveAction,
    SQLiteStorage,
    UserPanel,
    ValidationError,
)
from enspace_profile._crypto.keyring import EncryptionKey, KeyRing, SealedBox
from enspace_profile._security.service import THROTTLE_SCOPE
from enspace_profile._security.totp import Totp, TotpSecret
from enspace_profile.exceptions import (
    CapabilityError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PolicyError,
    StorageError,
)
from enspace_profile.typing import Storage, SupportsCredentials, SupportsThrottle

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "purple elephants juggle quietly"
PEPPER = b"recovery-pepper-" * 2
TOTP = Totp()


def cheap_hash(seed: int = 1, **argon: int) -> PasswordHash:
    return PasswordHash(
        [
            Argon2idHasher(
                random=SeededRandom(seed), **{"memory_cost": 64, "iterations": 1, **argon}
            )
        ],
        imported=[DjangoPbkdf2Hasher(iterations=1000)],
    )


def ring(*key_ids: str) -> KeyRing:
    keys = [EncryptionKey(id=key_id, key=key_id.encode().ljust(32, b"-")) for key_id in key_ids]
    return KeyRing(keys, rng=SeededRandom(11))


class Recorder:
    """A notifier that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def __call__(self, event: AuditEvent) -> None:
        self.events.append(event)

    @property
    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    s: Storage = MemoryStorage() if request.param == "memory" else SQLiteStorage(tmp_path / "s.db")
    yield s
    s.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def notes() -> Recorder:
    return Recorder()


def make_panel(storage: Storage, clock: FixedClock, notes: Recorder, **options: Any) -> UserPanel:
    settings: dict[str, Any] = {
        "storage": storage,
        "clock": clock,
        "rng": SeededRandom(7),
        "password_hash": cheap_hash(),
        "key_ring": ring("k1"),
        "recovery_pepper": PEPPER,
        "notifier": notes,
        **options,
    }
    return UserPanel(**settings)


@pytest.fixture
def panel(storage: Storage, clock: FixedClock, notes: Recorder) -> UserPanel:
    return make_panel(storage, clock, notes)


def ctx(
    clock: FixedClock,
    user_id: str = "u1",
    *,
    session_id: str | None = "s-here",
    age: timedelta = timedelta(0),
    factors: tuple[str, ...] = ("password",),
) -> AuthContext:
    return AuthContext(
        user_id=user_id,
        authenticated_at=clock.now() - age,
        factors=frozenset(factors),
        session_id=session_id,
    )


def code(secret_base32: str, when: datetime, offset: int = 0) -> str:
    secret = TotpSecret.from_base32(secret_base32)
    return TOTP.code_for_step(secret, TOTP.time_step(when) + offset)


def enable_totp(panel: UserPanel, clock: FixedClock, user_id: str = "u1") -> str:
    """Enable two-factor for the user; return the base32 secret."""
    setup = panel.security.start_totp(
        user_id, auth=ctx(clock, user_id), account_name="ada@example.com"
    )
    panel.security.confirm_totp(user_id, code(setup.secret, clock.now()), auth=ctx(clock, user_id))
    clock.advance(seconds=30)  # the next code is a new time step
    return setup.secret


def with_codes(panel: UserPanel, clock: FixedClock, user_id: str = "u1") -> tuple[str, ...]:
    """Enable two-factor and confirmed recovery codes; return the codes."""
    enable_totp(panel, clock, user_id)
    codes = panel.security.regenerate_recovery_codes(user_id, auth=ctx(clock, user_id)).codes
    panel.security.confirm_recovery_codes(user_id, auth=ctx(clock, user_id))
    return codes


def stored_credentials(storage: Storage, user_id: str = "u1") -> Any:
    with storage.transaction(write=False) as tx:
        assert isinstance(tx, SupportsCredentials)
        return tx.credentials.get(user_id)


def failures(storage: Storage, user_id: str = "u1") -> int:
    with storage.transaction(write=False) as tx:
        assert isinstance(tx, SupportsThrottle)
        return tx.throttle.get(user_id, THROTTLE_SCOPE).consecutive_failures


class TestAccountManagement:
    def test_managed_account_reports_provider_and_what_is_managed_where(
        self, panel: UserPanel
    ) -> None:
        """The overview of an SSO account names the provider, its URL and who manages what."""
        panel.security.set_managed(
            "u1", provider="Okta", manage_url="https://acme.okta.com/enduser/settings"
        )
        view = panel.security.overview("u1")
        assert view.managed_externally
        assert view.managed_by is not None
        assert (view.managed_by.provider, view.managed_by.manage_url) == (
            "Okta",
            "https://acme.okta.com/enduser/settings",
        )
        assert view.managed_at_provider == {
            SecurityFeature.PASSWORD,
            SecurityFeature.TWO_FACTOR,
            SecurityFeature.RECOVERY_CODES,
        }
        assert view.managed_here == {SecurityFeature.SESSIONS}

    def test_local_account_manages_everything_here(self, panel: UserPanel) -> None:
        """A local account (the default) manages every security feature on the page."""
        view = panel.security.overview("u1")
        assert view.managed_by is None
        assert view.managed_at_provider == frozenset()
        assert view.managed_here == set(SecurityFeature)

    def test_becoming_managed_removes_local_credentials(
        self, panel: UserPanel, clock: FixedClock, notes: Recorder
    ) -> None:
        """Local password, 2FA and codes are deleted, sessions end, the epoch moves on."""
        panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        with_codes(panel, clock)
        panel.security.register_session("u1", "s-1")
        before = panel.security.credentials_epoch("u1")
        change = panel.security.set_managed("u1", provider="Okta", actor="admin-1")
        assert change.sign_out_other_sessions
        assert change.credentials_epoch == before + 1
        assert change.revoked_sessions == ("s-1",)
        view = panel.security.overview("u1")
        assert not view.password.is_set
        assert not view.two_factor.enabled
        assert view.recovery_codes.remaining == 0
        event = next(e for e in notes.events if e.kind == SecurityEventKind.MANAGED_EXTERNALLY)
        assert event.actor == "admin-1"
        assert event.details["removed"] == ["password", "two_factor", "recovery_codes"]

    @pytest.mark.parametrize(
        "operation",
        [
            "set_password",
            "change_password",
            "start_totp",
            "confirm_totp",
            "disable_totp",
            "regenerate_recovery_codes",
            "confirm_recovery_codes",
        ],
    )
    def test_every_credential_change_is_refused_and_audited(
        self, panel: UserPanel, clock: FixedClock, notes: Recorder, operation: str
    ) -> None:
        """Each credential change on an SSO account raises ManagedExternallyError, audited."""
        url = "https://login.example.org/account"
        panel.security.set_managed("u1", provider="Entra ID", manage_url=url)
        security = panel.security
        calls = {
            "set_password": lambda: security.set_password("u1", PASSWORD, auth=ctx(clock)),
            "change_password": lambda: security.change_password(
                "u1", PASSWORD, NEW_PASSWORD, auth=ctx(clock)
            ),
            "start_totp": lambda: security.start_totp("u1", auth=ctx(clock), account_name="ada"),
            "confirm_totp": lambda: security.confirm_totp("u1", "123456", auth=ctx(clock)),
            "disable_totp": lambda: security.disable_totp("u1", auth=ctx(clock)),
            "regenerate_recovery_codes": lambda: security.regenerate_recovery_codes(
                "u1", auth=ctx(clock)
            ),
            "confirm_recovery_codes": lambda: security.confirm_recovery_codes(
                "u1", auth=ctx(clock)
            ),
        }
        with pytest.raises(ManagedExternallyError) as info:
            calls[operation]()
        assert (info.value.provider, info.value.manage_url) == ("Entra ID", url)
        assert info.value.code == "managed_externally"
        refused = panel.security.overview("u1").recent_events[0]
        assert refused.kind == SecurityEventKind.CHANGE_REFUSED_MANAGED
        assert refused.details["action"] == info.value.action
        assert notes.events[-1] == refused

    def test_refusal_comes_before_reauthentication(
        self, panel: UserPanel, clock: FixedClock
    ) -> None:
        """A stale session still learns that the change belongs at the provider."""
        panel.security.set_managed("u1", provider="Okta")
        with pytest.raises(ManagedExternallyError):
            panel.security.disable_totp("u1", auth=ctx(clock, age=timedelta(days=1)))

    @pytest.mark.parametrize("check", ["verify_password", "verify_totp", "use_recovery_code"])
    def test_local_credentials_do_not_sign_in_to_managed_accounts(
        self, panel: UserPanel, check: str
    ) -> None:
        """Verifying a local credential of an SSO account raises ManagedExternallyError."""
        panel.security.set_managed("u1", provider="Okta")
        with pytest.raises(ManagedExternallyError) as info:
            getattr(panel.security, check)("u1", "whatever-123")
        assert info.value.action == "security.sign_in"

    def test_same_management_again_changes_nothing(self, panel: UserPanel, notes: Recorder) -> None:
        """Setting the management an account already has writes no event."""
        panel.security.set_local("u1")
        panel.security.set_managed("u1", provider="Okta")
        count = len(notes.events)
        again = panel.security.set_managed("u1", provider="Okta")
        assert len(notes.events) == count
        assert not again.sign_out_other_sessions

    def test_switching_provider_keeps_sessions(self, panel: UserPanel) -> None:
        """Moving from one provider (or URL) to another signs nobody out."""
        panel.security.set_managed("u1", provider="Okta")
        panel.security.register_session("u1", "s-1")
        change = panel.security.set_managed("u1", provider="Okta", manage_url="https://o.example")
        assert change.revoked_sessions == ()
        assert [s.session_id for s in panel.security.sessions("u1")] == ["s-1"]

    def test_back_to_local_starts_without_a_password(
        self, panel: UserPanel, clock: FixedClock
    ) -> None:
        """After SSO is removed the user sets a first password again."""
        panel.security.set_managed("u1", provider="Okta")
        panel.security.set_local("u1")
        assert not panel.security.overview("u1").password.is_set
        panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        assert panel.security.verify_password("u1", PASSWORD).user_id == "u1"

    @pytest.mark.parametrize(
        ("url", "problem"),
        [
            ("http://okta.example", "manage_url.insecure"),
            ("https://a:b@x.example", "manage_url.credentials"),
        ],
    )
    def test_unsafe_manage_url_is_refused(self, panel: UserPanel, url: str, problem: str) -> None:
        """The provider's URL must be https and carry no credentials."""
        with pytest.raises(ValidationError) as info:
            panel.security.set_managed("u1", provider="Okta", manage_url=url)
        assert info.value.codes == (problem,)

    def test_tabs_show_a_notice_on_managed_accounts(self, panel: UserPanel) -> None:
        """The Security tab of an SSO account carries a notice naming the provider."""
        assert panel.tabs.get_for_user("u1", "security").notice is None
        panel.security.set_managed("u1", provider="Okta", manage_url="https://o.example/me")
        notice = panel.tabs.get_for_user("u1", "security").notice
        assert notice is not None
        assert "Okta" in notice.text


class TestSetPassword:
    def test_first_password_needs_no_current_one(
        self, panel: UserPanel, clock: FixedClock, notes: Recorder
    ) -> None:
        """Setting a first password works without a current one and starts epoch 1."""
        change = panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        assert (change.credentials_epoch, change.sign_out_other_sessions) == (1, False)
        view = panel.security.overview("u1")
        assert view.password.is_set
        assert view.password.changed_at == T0
        assert notes.kinds == [SecurityEventKind.PASSWORD_SET]
        assert panel.security.verify_password("u1", PASSWORD).credentials_epoch == 1

    def test_second_first_password_is_refused(self, panel: UserPanel, clock: FixedClock) -> None:
        """An account with a password must change it instead."""
        panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        with pytest.raises(PolicyError) as info:
            panel.security.set_password("u1", NEW_PASSWORD, auth=ctx(clock))
        assert info.value.code == "password.already_set"

    def test_policy_problems_are_reported_together(
        self, panel: UserPanel, clock: FixedClock
    ) -> None:
        """Too short and containing the profile's name are both reported at once."""
        panel.profile.create("u1", first_name="Augusta", last_name="Lovelace")
        with pytest.raises(ValidationError) as info:
            panel.security.set_password("u1", "Lovelace1815", auth=ctx(clock))
        assert info.value.codes == ("password.too_short", "password.contains_personal_info")

    def test_extra_names_are_refused_inside_the_password(
        self, panel: UserPanel, clock: FixedClock
    ) -> None:
        """Words the host passes (an e-mail address) may not appear in the password."""
        with pytest.raises(ValidationError) as info:
            panel.security.set_password(
                "u1",
                "ada.byron rules the analytical engine",
                auth=ctx(clock),
                names=["ada.byron@example.com"],
            )
        assert "password.contains_personal_info" in info.value.codes

    @pytest.mark.parametrize(
        "password", ["passwordpassword", "aaaaaaaaaaaaaaaaaaaa", "1234567890123456"]
    )
    def test_common_passwords_are_refused(
        self, panel: UserPanel, clock: FixedClock, password: str
    ) -> None:
        """Blocklisted and trivially repetitive passwords are refused as common."""
        with pytest.raises(ValidationError) as info:
            panel.security.set_password("u1", password, auth=ctx(clock))
        assert "password.common" in info.value.codes

    def test_stale_session_must_reauthenticate(self, panel: UserPanel, clock: FixedClock) -> None:
        """Setting a password needs an authentication from the last ten minutes."""
        with pytest.raises(ReauthenticationRequired) as info:
            panel.security.set_password("u1", PASSWORD, auth=ctx(clock, age=timedelta(minutes=11)))
        assert info.value.action == SensitiveAction.CHANGE_PASSWORD
        assert info.value.max_age == timedelta(minutes=10)
        assert not panel.security.overview("u1").password.is_set

    def test_another_users_session_cannot_set_it(self, panel: UserPanel, clock: FixedClock) -> None:
        """A session of user A never changes user B's password."""
        with pytest.raises(ReauthenticationRequired):
            panel.security.set_password("u2", PASSWORD, auth=ctx(clock, "u1"))


class TestChangePassword:
    @pytest.fixture
    def with_password(self, panel: UserPanel, clock: FixedClock) -> UserPanel:
        panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        return panel

    def test_change_needs_the_current_password(
        self, with_password: UserPanel, clock: FixedClock, storage: Storage
    ) -> None:
        """A wrong current password changes nothing and counts as a failure."""
        with pytest.raises(InvalidCredentialsError) as info:
            with_password.security.change_password(
                "u1", "not it at all", NEW_PASSWORD, auth=ctx(clock)
            )
        assert info.value.code == "credentials.invalid"
        assert failures(storage) == 1
        with_password.security.verify_password("u1", PASSWORD)

    def test_change_replaces_password_and_bumps_epoch(
        self, with_password: UserPanel, clock: FixedClock, notes: Recorder
    ) -> None:
        """After a change only the new password verifies, under a new epoch."""
        clock.advance(days=3)
        change = with_password.security.change_password(
            "u1", PASSWORD, NEW_PASSWORD, auth=ctx(clock)
        )
        assert change.credentials_epoch == 2
        assert change.sign_out_other_sessions
        assert with_password.security.verify_password("u1", NEW_PASSWORD).credentials_epoch == 2
        with pytest.raises(InvalidCredentialsError):
            with_password.security.verify_password("u1", PASSWORD)
        assert with_password.security.overview("u1").password.changed_at == T0 + timedelta(days=3)
        assert SecurityEventKind.PASSWORD_CHANGED in notes.kinds

    def test_other_sessions_are_signed_out(
        self, with_password: UserPanel, clock: FixedClock, notes: Recorder
    ) -> None:
        """Changing the password signs out the other registered sessions, not this one."""
        for session_id in ("s-here", "s-phone", "s-laptop"):
            with_password.security.register_session("u1", session_id)
        change = with_password.security.change_password(
            "u1", PASSWORD, NEW_PASSWORD, auth=ctx(clock, session_id="s-here")
        )
        assert sorted(change.revoked_sessions) == ["s-laptop", "s-phone"]
        assert [s.session_id for s in with_password.security.sessions("u1")] == ["s-here"]
        revoked = [e for e in notes.events if e.kind == SecurityEventKind.SESSION_REVOKED]
        assert sorted(e.subject or "" for e in revoked) == ["s-laptop", "s-phone"]
        assert {e.details["reason"] for e in revoked} == {"password_changed"}

    def test_keeping_other_sessions_is_possible(
        self, with_password: UserPanel, clock: FixedClock
    ) -> None:
        """With sign_out_other_sessions=False the other sessions stay registered."""
        with_password.security.register_session("u1", "s-phone")
        change = with_password.security.change_password(
            "u1", PASSWORD, NEW_PASSWORD, auth=ctx(clock), sign_out_other_sessions=False
        )
        assert (change.sign_out_other_sessions, change.revoked_sessions) == (False, ())
        assert len(with_password.security.sessions("u1")) == 1

    @pytest.mark.parametrize(
        "new", [PASSWORD, "correct horse battery staple".replace("c", "\uff43", 1)]
    )
    def test_reusing_the_current_password_is_refused(
        self, with_password: UserPanel, clock: FixedClock, new: str
    ) -> None:
        """The new password must differ from the current one, also after NFKC."""
        with pytest.raises(ValidationError) as info:
            with_password.security.change_password("u1", PASSWORD, new, auth=ctx(clock))
        assert info.value.codes == ("new_password.reused",)

    def test_reuse_is_reported_with_policy_problems(
        self, with_password: UserPanel, clock: FixedClock
    ) -> None:
        """Reuse and policy problems come in one ValidationError."""
        panel = with_password
        panel.security.change_password("u1", PASSWORD, "pass-1815-lovelace", auth=ctx(clock))
        panel.profile.create("u1", first_name="Ada", last_name="Lovelace")
        with pytest.raises(ValidationError) as info:
            panel.security.change_password(
                "u1", "pass-1815-lovelace", "pass-1815-lovelace", auth=ctx(clock)
            )
        assert set(info.value.codes) == {
            "new_password.contains_personal_info",
            "new_password.reused",
        }

    @pytest.mark.parametrize(
        ("two_factor", "length", "accepted"),
        [(False, 14, False), (False, 15, True), (True, 7, False), (True, 8, True)],
    )
    def test_minimum_length_depends_on_two_factor(
        self,
        with_password: UserPanel,
        clock: FixedClock,
        two_factor: bool,
        length: int,
        accepted: bool,
    ) -> None:
        """Without 2FA a password needs 15 characters; with 2FA, 8."""
        if two_factor:
            enable_totp(with_password, clock)
        new = "zq7#Wv9!kL2@xR4$mN6%"[:length]
        change = lambda: with_password.security.change_password(  # noqa: E731
            "u1", PASSWORD, new, auth=ctx(clock)
        )
        if accepted:
            change()
        else:
            with pytest.raises(ValidationError) as info:
                change()
            assert info.value.codes == ("new_password.too_short",)

    def test_account_without_password_must_set_one(
        self, panel: UserPanel, clock: FixedClock
    ) -> None:
        """Changing needs an existing password."""
        with pytest.raises(PolicyError) as info:
            panel.security.change_password("u1", PASSWORD, NEW_PASSWORD, auth=ctx(clock))
        assert info.value.code == "password.not_set"

    def test_stale_session_must_reauthenticate(
        self, with_password: UserPanel, clock: FixedClock
    ) -> None:
        """Changing the password needs a recent authentication, even with the current one."""
        with pytest.raises(ReauthenticationRequired):
            with_password.security.change_password(
                "u1", PASSWORD, NEW_PASSWORD, auth=ctx(clock, age=timedelta(hours=1))
            )


class TestVerifyPassword:
    def test_right_password_verifies(self, panel: UserPanel, clock: FixedClock) -> None:
        """The right password returns the epoch and whether a second factor follows."""
        panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        result = panel.security.verify_password("u1", PASSWORD)
        assert (result.user_id, result.two_factor_required, result.credentials_epoch) == (
            "u1",
            False,
            1,
        )
        enable_totp(panel, clock)
        assert panel.security.verify_password("u1", PASSWORD).two_factor_required

    @pytest.mark.parametrize("user_id", ["u1", "nobody"])
    def test_wrong_password_and_unknown_user_look_alike(
        self, panel: UserPanel, clock: FixedClock, user_id: str
    ) -> None:
        """A wrong password and an account without one raise the same error."""
        panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        with pytest.raises(InvalidCredentialsError) as info:
            panel.security.verify_password(user_id, "wrong password here")
        assert (info.value.code, str(info.value)) == (
            "credentials.invalid",
            "the password is incorrect",
        )

    @pytest.mark.parametrize(
        ("value", "problem"), [(None, "password.invalid"), ("x" * 5000, "password.too_long")]
    )
    def test_unusable_input_is_refused_before_hashing(
        self, panel: UserPanel, value: object, problem: str
    ) -> None:
        """Non-text or absurdly long input is a ValidationError, never hashed."""
        with pytest.raises(ValidationError) as info:
            panel.security.verify_password("u1", value)  # type: ignore[arg-type]
        assert info.value.codes == (problem,)

    def test_imported_django_hash_is_upgraded(
        self, panel: UserPanel, storage: Storage, clock: FixedClock
    ) -> None:
        """A Django hash verifies once and is replaced by the current Argon2id hash."""
        django = DjangoPbkdf2Hasher(iterations=1000, random=SeededRandom(3)).hash(PASSWORD)
        with storage.transaction() as tx:
            assert isinstance(tx, SupportsCredentials)
            from enspace_profile import AccountCredentials

            tx.credentials.add(AccountCredentials(user_id="u1", version=1, password_hash=django))
        panel.security.verify_password("u1", PASSWORD)
        upgraded = stored_credentials(storage)
        assert upgraded.password_hash.startswith("$argon2id$")
        assert upgraded.epoch == 0
        assert panel.security.verify_password("u1", PASSWORD).credentials_epoch == 0

    def test_outdated_parameters_are_upgraded(
        self, storage: Storage, clock: FixedClock, notes: Recorder
    ) -> None:
        """A hash made with older parameters is rehashed with the current ones on success."""
        old = make_panel(storage, clock, notes, password_hash=cheap_hash(memory_cost=32))
        old.security.set_password("u1", PASSWORD, auth=ctx(clock))
        assert "m=32," in stored_credentials(storage).password_hash
        new = make_panel(storage, clock, notes, password_hash=cheap_hash(memory_cost=64))
        new.security.verify_password("u1", PASSWORD)
        assert "m=64," in stored_credentials(storage).password_hash

    def test_hashing_runs_outside_transactions(
        self, storage: Storage, clock: FixedClock, notes: Recorder
    ) -> None:
        """No hash or verification is ever computed while a storage transaction is open."""
        tracked = TrackingStorage(storage)
        hasher = GuardedHasher(tracked, Argon2idHasher(memory_cost=64, iterations=1))
        imported = GuardedHasher(tracked, DjangoPbkdf2Hasher(iterations=1000))
        panel = make_panel(
            tracked,  # type: ignore[arg-type]
            clock,
            notes,
            password_hash=PasswordHash([hasher], imported=[imported]),
        )
        panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        panel.security.change_password("u1", PASSWORD, NEW_PASSWORD, auth=ctx(clock))
        panel.security.verify_password("u1", NEW_PASSWORD)
        with pytest.raises(InvalidCredentialsError):
            panel.security.verify_password("nobody", NEW_PASSWORD)
        with pytest.raises(InvalidCredentialsError):
            panel.security.change_password("u1", "wrong password", PASSWORD, auth=ctx(clock))
        assert hasher.calls >= 5
        assert hasher.inside == 0


class TrackingStorage:
    """Wraps a storage and knows whether a transaction is open (on any thread)."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.open = 0

    @contextmanager
    def _tx(self, write: bool) -> Iterator[Any]:
        with self.inner.transaction(write=write) as tx:
            self.open += 1
            try:
                yield tx
            finally:
                self.open -= 1

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Any]:
        return self._tx(write)

    def close(self) -> None:
        self.inner.close()


@attrs.define
class GuardedHasher:
    """A hasher that notes every call made while a transaction is open."""

    storage: TrackingStorage
    inner: Any
    calls: int = 0
    inside: int = 0

    def _note(self) -> None:
        self.calls += 1
        self.inside += self.storage.open > 0

    def identify(self, hashed: str, /) -> bool:
        return bool(self.inner.identify(hashed))

    def hash(self, password: str, /) -> str:
        self._note()
        return str(self.inner.hash(password))

    def verify(self, password: str, hashed: str, /) -> bool:
        self._note()
        return bool(self.inner.verify(password, hashed))

    def needs_rehash(self, hashed: str, /) -> bool:
        return bool(self.inner.needs_rehash(hashed))


class TestThrottling:
    @pytest.fixture
    def with_password(self, panel: UserPanel, clock: FixedClock) -> UserPanel:
        panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        return panel

    def fail(self, panel: UserPanel, times: int) -> None:
        for _ in range(times):
            with pytest.raises(InvalidCredentialsError):
                panel.security.verify_password("u1", "not the password")

    def test_ten_failures_lock_for_a_minute(
        self, with_password: UserPanel, clock: FixedClock
    ) -> None:
        """After 10 failures even the right password is refused for a minute, then accepted."""
        self.fail(with_password, 10)
        with pytest.raises(RateLimitedError) as info:
            with_password.security.verify_password("u1", PASSWORD)
        assert info.value.retry_after == timedelta(minutes=1)
        assert with_password.security.overview("u1").locked_until == T0 + timedelta(minutes=1)
        clock.advance(minutes=1)
        with_password.security.verify_password("u1", PASSWORD)

    def test_success_resets_the_count(self, with_password: UserPanel, storage: Storage) -> None:
        """Nine failures, a success, nine failures: never locked."""
        self.fail(with_password, 9)
        with_password.security.verify_password("u1", PASSWORD)
        assert failures(storage) == 0
        self.fail(with_password, 9)
        with_password.security.verify_password("u1", PASSWORD)

    def test_window_grows_with_each_further_failure(
        self, with_password: UserPanel, clock: FixedClock
    ) -> None:
        """Each failure after a lock doubles the next lock."""
        self.fail(with_password, 10)
        clock.advance(minutes=1)
        self.fail(with_password, 1)
        with pytest.raises(RateLimitedError) as info:
            with_password.security.verify_password("u1", PASSWORD)
        assert info.value.retry_after == timedelta(minutes=2)

    def test_hourly_cap_holds_even_with_successes(
        self, storage: Storage, clock: FixedClock, notes: Recorder
    ) -> None:
        """Interleaved successes cannot push failures past the hourly cap."""
        panel = make_panel(
            storage, clock, notes, lockout_policy=LockoutPolicy(threshold=5, hourly_cap=12)
        )
        panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        for _ in range(2):
            self.fail(panel, 4)
            panel.security.verify_password("u1", PASSWORD)
        self.fail(panel, 4)
        with pytest.raises(RateLimitedError) as info:
            panel.security.verify_password("u1", PASSWORD)
        # The cap holds for every hour-long interval, so a full window waits two.
        assert info.value.retry_after == timedelta(hours=2)

    def test_successes_do_not_use_up_the_hourly_cap(
        self, storage: Storage, clock: FixedClock, notes: Recorder
    ) -> None:
        """A verification counted in advance is given back when it succeeds."""
        panel = make_panel(storage, clock, notes, lockout_policy=LockoutPolicy(hourly_cap=5))
        panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        for _ in range(20):
            panel.security.verify_password("u1", PASSWORD)
        self.fail(panel, 4)
        panel.security.verify_password("u1", PASSWORD)

    def test_all_factors_share_one_counter(
        self, with_password: UserPanel, clock: FixedClock, storage: Storage, notes: Recorder
    ) -> None:
        """Password, TOTP and recovery-code failures count towards the same lock."""
        with_codes(with_password, clock)
        self.fail(with_password, 4)
        for _ in range(3):
            with pytest.raises(InvalidCredentialsError):
                with_password.security.verify_totp("u1", "000000")
        for _ in range(3):
            with pytest.raises(InvalidCredentialsError):
                with_password.security.use_recovery_code("u1", "2222-2222-2222")
        assert failures(storage) == 10
        with pytest.raises(RateLimitedError):
            with_password.security.use_recovery_code("u1", "2222-2222-2222")
        (lockout,) = [e for e in notes.events if e.kind == SecurityEventKind.LOCKOUT]
        assert lockout.details["factor"] == "recovery_code"
        assert lockout.details["retry_after_seconds"] == 60

    def test_lockout_is_audited_once_per_lock(
        self, with_password: UserPanel, notes: Recorder
    ) -> None:
        """The failure that starts a lock writes one lockout event; refused tries write none."""
        self.fail(with_password, 10)
        for _ in range(3):
            with pytest.raises(RateLimitedError):
                with_password.security.verify_password("u1", "not the password")
        lockouts = [e for e in notes.events if e.kind == SecurityEventKind.LOCKOUT]
        assert len(lockouts) == 1
        assert lockouts[0].details["factor"] == "password"
        assert lockouts[0].details["consecutive_failures"] == 10

    def test_concurrent_attempts_never_exceed_the_threshold(
        self, with_password: UserPanel, storage: Storage
    ) -> None:
        """Threads guessing at once get exactly 10 verifications; the rest are refused."""
        outcomes: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(6)

        def guess() -> None:
            start.wait()
            for _ in range(5):
                try:
                    with_password.security.verify_password("u1", "not the password")
                except InvalidCredentialsError:
                    result = "invalid"
                except RateLimitedError:
                    result = "limited"
                with lock:
                    outcomes.append(result)

        threads = [threading.Thread(target=guess) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes.count("invalid") == 10
        assert outcomes.count("limited") == 20
        assert failures(storage) == 10


class TestTotp:
    def test_enrolment_gives_secret_and_uri(self, panel: UserPanel, clock: FixedClock) -> None:
        """Starting enrolment returns a 160-bit secret and an otpauth URI; 2FA is not on yet."""
        setup = panel.security.start_totp("u1", auth=ctx(clock), account_name="ada@example.com")
        assert len(TotpSecret.from_base32(setup.secret).value) == 20
        assert setup.uri.startswith("otpauth://totp/ENSPACE:ada%40example.com?secret=")
        assert f"secret={setup.secret}&issuer=ENSPACE" in setup.uri
        assert (setup.digits, setup.period) == (6, 30)
        view = panel.security.overview("u1")
        assert (view.two_factor.enabled, view.two_factor.setup_pending) == (False, True)

    def test_issuer_is_configurable(
        self, storage: Storage, clock: FixedClock, notes: Recorder
    ) -> None:
        """The issuer the app shows is the panel's ``issuer`` option."""
        panel = make_panel(storage, clock, notes, issuer="Acme Cloud")
        setup = panel.security.start_totp("u1", auth=ctx(clock), account_name="ada")
        assert setup.uri.startswith("otpauth://totp/Acme%20Cloud:ada?")

    def test_confirming_a_valid_code_enables(
        self, panel: UserPanel, clock: FixedClock, notes: Recorder
    ) -> None:
        """Two-factor is enabled only once a code from the app is confirmed."""
        setup = panel.security.start_totp("u1", auth=ctx(clock), account_name="ada")
        change = panel.security.confirm_totp("u1", code(setup.secret, T0), auth=ctx(clock))
        assert change.credentials_epoch == 1
        view = panel.security.overview("u1")
        assert (view.two_factor.enabled, view.two_factor.enabled_at) == (True, T0)
        assert not view.two_factor.setup_pending
        assert notes.kinds == [SecurityEventKind.TWO_FACTOR_ENABLED]

    def test_wrong_confirmation_code_enables_nothing(
        self, panel: UserPanel, clock: FixedClock, storage: Storage
    ) -> None:
        """A wrong code leaves 2FA off and counts as a failure."""
        setup = panel.security.start_totp("u1", auth=ctx(clock), account_name="ada")
        wrong = code(setup.secret, T0, offset=5)
        with pytest.raises(InvalidCredentialsError):
            panel.security.confirm_totp("u1", wrong, auth=ctx(clock))
        assert not panel.security.overview("u1").two_factor.enabled
        assert failures(storage) == 1

    def test_confirm_without_enrolment_is_refused(
        self, panel: UserPanel, clock: FixedClock
    ) -> None:
        """Confirming needs a started enrolment."""
        with pytest.raises(PolicyError) as info:
            panel.security.confirm_totp("u1", "123456", auth=ctx(clock))
        assert info.value.code == "two_factor.nothing_pending"

    @pytest.mark.parametrize(
        ("offset", "accepted"), [(-2, False), (-1, True), (0, True), (1, True), (2, False)]
    )
    def test_one_step_of_drift_is_accepted(
        self, panel: UserPanel, clock: FixedClock, offset: int, accepted: bool
    ) -> None:
        """Codes of the neighbouring time steps work; further ones do not."""
        secret = enable_totp(panel, clock)
        clock.advance(minutes=5)
        typed = code(secret, clock.now(), offset)
        if accepted:
            panel.security.verify_totp("u1", typed)
        else:
            with pytest.raises(InvalidCredentialsError):
                panel.security.verify_totp("u1", typed)

    def test_a_code_is_never_accepted_twice(self, panel: UserPanel, clock: FixedClock) -> None:
        """Replaying a used code, or an older one, fails."""
        secret = enable_totp(panel, clock)
        now = code(secret, clock.now())
        earlier = code(secret, clock.now(), -1)
        panel.security.verify_totp("u1", now)
        with pytest.raises(InvalidCredentialsError):
            panel.security.verify_totp("u1", now)
        with pytest.raises(InvalidCredentialsError):
            panel.security.verify_totp("u1", earlier)
        clock.advance(seconds=30)
        panel.security.verify_totp("u1", code(secret, clock.now()))

    def test_confirmation_code_cannot_be_replayed(
        self, panel: UserPanel, clock: FixedClock
    ) -> None:
        """The code used to confirm enrolment does not work again at sign-in."""
        setup = panel.security.start_totp("u1", auth=ctx(clock), account_name="ada")
        typed = code(setup.secret, T0)
        panel.security.confirm_totp("u1", typed, auth=ctx(clock))
        with pytest.raises(InvalidCredentialsError):
            panel.security.verify_totp("u1", typed)

    def test_verify_without_two_factor_is_a_policy_error(self, panel: UserPanel) -> None:
        """Verifying a code for an account without 2FA is refused as such."""
        with pytest.raises(PolicyError) as info:
            panel.security.verify_totp("u1", "123456")
        assert info.value.code == "two_factor.not_enabled"

    def test_re_enrolment_keeps_the_old_app_until_confirmed(
        self, panel: UserPanel, clock: FixedClock
    ) -> None:
        """A new enrolment replaces the old secret only once confirmed."""
        old = enable_totp(panel, clock)
        new = panel.security.start_totp("u1", auth=ctx(clock), account_name="ada")
        panel.security.verify_totp("u1", code(old, clock.now()))
        clock.advance(seconds=30)
        panel.security.confirm_totp("u1", code(new.secret, clock.now()), auth=ctx(clock))
        clock.advance(seconds=30)
        with pytest.raises(InvalidCredentialsError):
            panel.security.verify_totp("u1", code(old, clock.now()))
        panel.security.verify_totp("u1", code(new.secret, clock.now()))

    def test_disabling_needs_reauthentication(
        self, panel: UserPanel, clock: FixedClock, notes: Recorder
    ) -> None:
        """Disabling 2FA needs a recent authentication and removes its recovery codes."""
        with_codes(panel, clock)
        with pytest.raises(ReauthenticationRequired) as info:
            panel.security.disable_totp("u1", auth=ctx(clock, age=timedelta(minutes=30)))
        assert info.value.action == SensitiveAction.DISABLE_TWO_FACTOR
        assert panel.security.overview("u1").two_factor.enabled
        panel.security.disable_totp("u1", auth=ctx(clock))
        view = panel.security.overview("u1")
        assert not view.two_factor.enabled
        assert view.recovery_codes.remaining == 0
        assert notes.events[-1].kind == SecurityEventKind.TWO_FACTOR_DISABLED
        assert notes.events[-1].details["recovery_codes_removed"] is True

    def test_disabling_when_off_is_refused(self, panel: UserPanel, clock: FixedClock) -> None:
        """There is nothing to disable on an account without 2FA."""
        with pytest.raises(PolicyError) as info:
            panel.security.disable_totp("u1", auth=ctx(clock))
        assert info.value.code == "two_factor.not_enabled"


class TestTotpEncryption:
    def test_missing_key_ring_is_a_clear_error(
        self, storage: Storage, clock: FixedClock, notes: Recorder
    ) -> None:
        """Without a key ring the panel works, but 2FA raises ConfigurationError."""
        panel = make_panel(storage, clock, notes, key_ring=None)
        panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        for call in (
            lambda: panel.security.start_totp("u1", auth=ctx(clock), account_name="ada"),
            lambda: panel.security.confirm_totp("u1", "123456", auth=ctx(clock)),
            lambda: panel.security.verify_totp("u1", "123456"),
            panel.security.reencrypt_secrets,
        ):
            with pytest.raises(ConfigurationError) as info:
                call()
            assert info.value.option == "key_ring"

    def test_secret_is_sealed_and_bound_to_the_user(
        self, panel: UserPanel, clock: FixedClock, storage: Storage
    ) -> None:
        """The stored secret is ciphertext; copied to another user it does not open."""
        secret = enable_totp(panel, clock)
        enable_totp(panel, clock, "u2")
        raw = TotpSecret.from_base32(secret).value
        stolen = stored_credentials(storage).totp
        assert raw not in stolen.sealed_secret
        victim = stored_credentials(storage, "u2")
        with storage.transaction() as tx:
            assert isinstance(tx, SupportsCredentials)
            tx.credentials.update(
                attrs.evolve(victim, version=victim.version + 1, totp=stolen),
                expected_version=victim.version,
            )
        with pytest.raises(StorageError) as info:
            panel.security.verify_totp("u2", code(secret, clock.now()))
        assert info.value.code == "security.secret_undecryptable"

    def test_rotation_re_encrypts_every_secret(
        self, storage: Storage, clock: FixedClock, notes: Recorder
    ) -> None:
        """After a new key is put first, reencrypt_secrets moves every secret to it."""
        old = make_panel(storage, clock, notes, key_ring=ring("k1"))
        secrets = {user: enable_totp(old, clock, user) for user in ("u1", "u2", "u3")}
        old.security.start_totp("u3", auth=ctx(clock, "u3"), account_name="ada")
        rotated = make_panel(storage, clock, notes, key_ring=ring("k2", "k1"))
        assert rotated.security.reencrypt_secrets(batch_size=2) == 3
        assert rotated.security.reencrypt_secrets() == 0
        for user in secrets:
            credentials = stored_credentials(storage, user)
            assert SealedBox.from_bytes(credentials.totp.sealed_secret).key_id == "k2"
        pending = stored_credentials(storage, "u3").pending_totp
        assert SealedBox.from_bytes(pending.sealed_secret).key_id == "k2"
        new_only = make_panel(storage, clock, notes, key_ring=ring("k2"))
        for user, secret in secrets.items():
            new_only.security.verify_totp(user, code(secret, clock.now()))
        assert SecurityEventKind.SECRETS_REENCRYPTED in notes.kinds

    def test_verification_rotates_lazily(
        self, storage: Storage, clock: FixedClock, notes: Recorder
    ) -> None:
        """A successful verification re-seals an old-key secret under the current key."""
        secret = enable_totp(make_panel(storage, clock, notes, key_ring=ring("k1")), clock)
        make_panel(storage, clock, notes, key_ring=ring("k2", "k1")).security.verify_totp(
            "u1", code(secret, clock.now())
        )
        sealed = stored_credentials(storage).totp.sealed_secret
        assert SealedBox.from_bytes(sealed).key_id == "k2"

    def test_dropped_key_is_a_configuration_error(
        self, storage: Storage, clock: FixedClock, notes: Recorder
    ) -> None:
        """A secret whose key left the ring raises ConfigurationError, not a crash."""
        secret = enable_totp(make_panel(storage, clock, notes, key_ring=ring("k1")), clock)
        with pytest.raises(ConfigurationError) as info:
            make_panel(storage, clock, notes, key_ring=ring("k2")).security.verify_totp(
                "u1", code(secret, clock.now())
            )
        assert info.value.option == "key_ring"


class TestRecoveryCodes:
    def test_codes_need_two_factor(self, panel: UserPanel, clock: FixedClock) -> None:
        """Recovery codes stand in for the second factor, so they need one."""
        with pytest.raises(PolicyError) as info:
            panel.security.regenerate_recovery_codes("u1", auth=ctx(clock))
        assert info.value.code == "two_factor.not_enabled"

    def test_new_codes_replace_old_only_after_confirmation(
        self, panel: UserPanel, clock: FixedClock, notes: Recorder
    ) -> None:
        """Old codes work until the new set is confirmed; then only new ones do."""
        old = with_codes(panel, clock)
        new = panel.security.regenerate_recovery_codes("u1", auth=ctx(clock)).codes
        assert len(new) == 10
        assert panel.security.overview("u1").recovery_codes.pending
        with pytest.raises(InvalidCredentialsError):
            panel.security.use_recovery_code("u1", new[0])
        panel.security.use_recovery_code("u1", old[0])
        panel.security.confirm_recovery_codes("u1", auth=ctx(clock))
        with pytest.raises(InvalidCredentialsError):
            panel.security.use_recovery_code("u1", old[1])
        assert panel.security.use_recovery_code("u1", new[0]).remaining == 9
        regenerated = [
            e for e in notes.events if e.kind == SecurityEventKind.RECOVERY_CODES_REGENERATED
        ]
        assert [e.details["replaced"] for e in regenerated] == [False, True]

    def test_each_code_works_once_and_is_recorded(
        self, panel: UserPanel, clock: FixedClock, notes: Recorder
    ) -> None:
        """A used code is refused afterwards; each use is an event with what remains."""
        codes = with_codes(panel, clock)
        used = panel.security.use_recovery_code("u1", codes[3].upper().replace("-", " "))
        assert (used.remaining, used.low) == (9, False)
        with pytest.raises(InvalidCredentialsError):
            panel.security.use_recovery_code("u1", codes[3])
        event = notes.events[-1]
        assert (event.kind, event.details) == (
            SecurityEventKind.RECOVERY_CODE_USED,
            {"remaining": 9},
        )

    def test_overview_warns_when_three_or_fewer_remain(
        self, panel: UserPanel, clock: FixedClock
    ) -> None:
        """The overview counts unused codes and warns from three left."""
        codes = with_codes(panel, clock)
        for typed in codes[:6]:
            panel.security.use_recovery_code("u1", typed)
        status = panel.security.overview("u1").recovery_codes
        assert (status.remaining, status.total, status.low) == (4, 10, False)
        assert panel.security.use_recovery_code("u1", codes[6]).low
        assert panel.security.overview("u1").recovery_codes.low

    def test_count_is_configurable(
        self, storage: Storage, clock: FixedClock, notes: Recorder
    ) -> None:
        """The service's recovery_code_count decides how many codes a set has."""
        panel = make_panel(storage, clock, notes)
        security = attrs.evolve(panel.security, recovery_code_count=16)
        enable_totp(panel, clock)
        assert len(security.regenerate_recovery_codes("u1", auth=ctx(clock)).codes) == 16

    def test_missing_pepper_is_a_clear_error(
        self, storage: Storage, clock: FixedClock, notes: Recorder
    ) -> None:
        """Without a recovery pepper, recovery codes raise ConfigurationError."""
        panel = make_panel(storage, clock, notes, recovery_pepper=None)
        enable_totp(panel, clock)
        with pytest.raises(ConfigurationError) as info:
            panel.security.regenerate_recovery_codes("u1", auth=ctx(clock))
        assert info.value.option == "recovery_pepper"
        with pytest.raises(ConfigurationError):
            panel.security.use_recovery_code("u1", "2222-2222-2222")

    def test_confirm_without_new_codes_is_refused(
        self, panel: UserPanel, clock: FixedClock
    ) -> None:
        """Confirming needs a pending set."""
        with_codes(panel, clock)
        with pytest.raises(PolicyError) as info:
            panel.security.confirm_recovery_codes("u1", auth=ctx(clock))
        assert info.value.code == "recovery_codes.nothing_pending"

    def test_account_without_codes_is_told_so(self, panel: UserPanel, clock: FixedClock) -> None:
        """Using a code on an account that never confirmed any is a policy error."""
        enable_totp(panel, clock)
        with pytest.raises(PolicyError) as info:
            panel.security.use_recovery_code("u1", "2222-2222-2222")
        assert info.value.code == "recovery_codes.not_set_up"


class TestReauthentication:
    @pytest.fixture
    def ready(self, panel: UserPanel, clock: FixedClock) -> UserPanel:
        panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        with_codes(panel, clock)
        panel.security.regenerate_recovery_codes("u1", auth=ctx(clock))
        panel.security.register_session("u1", "s-other")
        return panel

    OPERATIONS: ClassVar[dict[SensitiveAction, Any]] = {
        SensitiveAction.CHANGE_PASSWORD: lambda s, c: s.change_password(
            "u1", PASSWORD, NEW_PASSWORD, auth=c
        ),
        SensitiveAction.ENABLE_TWO_FACTOR: lambda s, c: s.start_totp(
            "u1", auth=c, account_name="ada"
        ),
        SensitiveAction.DISABLE_TWO_FACTOR: lambda s, c: s.disable_totp("u1", auth=c),
        SensitiveAction.REGENERATE_RECOVERY_CODES: lambda s, c: s.confirm_recovery_codes(
            "u1", auth=c
        ),
        SensitiveAction.SIGN_OUT_OTHER_SESSIONS: lambda s, c: s.revoke_other_sessions("u1", auth=c),
    }

    @pytest.mark.parametrize("action", list(OPERATIONS))
    def test_every_sensitive_action_needs_a_recent_login(
        self, ready: UserPanel, clock: FixedClock, action: SensitiveAction
    ) -> None:
        """Each sensitive action refuses an 11-minute-old login and accepts a fresh one."""
        run = self.OPERATIONS[action]
        with pytest.raises(ReauthenticationRequired) as info:
            run(ready.security, ctx(clock, age=timedelta(minutes=11)))
        assert info.value.action == action.value
        run(ready.security, ctx(clock, age=timedelta(minutes=9)))

    @pytest.mark.parametrize("action", list(OPERATIONS))
    def test_host_overrides_apply(
        self, storage: Storage, clock: FixedClock, notes: Recorder, action: SensitiveAction
    ) -> None:
        """A host rule demanding password and TOTP refuses a password-only login."""
        strict = ReauthPolicy().with_overrides(
            {action: ReauthRule(max_age=timedelta(minutes=2), factors=[{"password", "totp"}])}
        )
        setup = make_panel(storage, clock, notes)
        setup.security.set_password("u1", PASSWORD, auth=ctx(clock))
        with_codes(setup, clock)
        setup.security.regenerate_recovery_codes("u1", auth=ctx(clock))
        panel = make_panel(storage, clock, notes, reauth_policy=strict, rng=SeededRandom(9))
        run = self.OPERATIONS[action]
        with pytest.raises(ReauthenticationRequired) as info:
            run(panel.security, ctx(clock, factors=("password",)))
        assert info.value.factors == (frozenset({"password", "totp"}),)
        run(panel.security, ctx(clock, factors=("password", "totp"), age=timedelta(minutes=1)))

    def test_the_policy_is_shared_with_the_panel(self, panel: UserPanel) -> None:
        """The Security tab uses the panel's one reauth_policy option."""
        assert panel.security.reauth_policy is panel.reauth_policy


class TestSessions:
    def test_registry_lists_newest_first_with_current_flag(
        self, panel: UserPanel, clock: FixedClock
    ) -> None:
        """Sessions are listed by last use; the caller's is marked current."""
        panel.security.register_session(
            "u1", "s-old", ip_address="::ffff:192.0.2.7", user_agent="Firefox\x00/140"
        )
        clock.advance(minutes=5)
        panel.security.register_session("u1", "s-new", ip_address="2001:DB8::1")
        listed = panel.security.sessions("u1", current_session_id="s-old")
        assert [(s.session_id, s.current) for s in listed] == [("s-new", False), ("s-old", True)]
        assert (listed[1].ip_address, listed[1].user_agent) == ("192.0.2.7", "Firefox/140")
        assert listed[0].ip_address == "2001:db8::1"

    @pytest.mark.parametrize(
        ("field", "value", "problem"),
        [
            ("session_id", "", "session_id.invalid"),
            ("session_id", "x" * 257, "session_id.invalid"),
            ("ip_address", "999.1.1.1", "ip_address.invalid"),
        ],
    )
    def test_bad_session_input_is_refused(
        self, panel: UserPanel, field: str, value: str, problem: str
    ) -> None:
        """Session ids and addresses are validated before anything is stored."""
        args: dict[str, Any] = {"session_id": "s-1", "ip_address": None, field: value}
        with pytest.raises(ValidationError) as info:
            panel.security.register_session("u1", args.pop("session_id"), **args)
        assert info.value.codes == (problem,)

    def test_long_user_agent_is_cut(self, panel: UserPanel) -> None:
        """User agents are kept to 512 characters instead of refusing the sign-in."""
        info = panel.security.register_session("u1", "s-1", user_agent="A" * 2000)
        assert info.user_agent == "A" * 512

    def test_touch_updates_last_seen_at_most_every_minute(
        self, panel: UserPanel, clock: FixedClock, storage: Storage
    ) -> None:
        """Touching writes last_seen only after the interval, or when the address changes."""
        panel.security.register_session("u1", "s-1", ip_address="192.0.2.1")
        clock.advance(seconds=20)
        assert panel.security.touch_session("s-1", ip_address="192.0.2.1")
        assert panel.security.sessions("u1")[0].last_seen_at == T0
        assert panel.security.touch_session("s-1", ip_address="192.0.2.2")
        assert panel.security.sessions("u1")[0].ip_address == "192.0.2.2"
        clock.advance(minutes=2)
        panel.security.touch_session("s-1")
        assert panel.security.sessions("u1")[0].last_seen_at == clock.now()

    def test_touch_tells_the_host_a_session_was_signed_out(
        self, panel: UserPanel, clock: FixedClock
    ) -> None:
        """A revoked or unknown session touches as False, so the host ends it."""
        panel.security.register_session("u1", "s-1")
        panel.security.revoke_session("u1", "s-1", auth=ctx(clock))
        assert panel.security.touch_session("s-1") is False
        assert panel.security.touch_session("never") is False

    def test_revoking_another_session_needs_reauthentication(
        self, panel: UserPanel, clock: FixedClock, notes: Recorder
    ) -> None:
        """Signing out another device is sensitive; signing out this one is not."""
        panel.security.register_session("u1", "s-here")
        panel.security.register_session("u1", "s-phone")
        stale = ctx(clock, age=timedelta(hours=2), session_id="s-here")
        with pytest.raises(ReauthenticationRequired):
            panel.security.revoke_session("u1", "s-phone", auth=stale)
        panel.security.revoke_session("u1", "s-here", auth=stale)
        panel.security.revoke_session("u1", "s-phone", auth=ctx(clock))
        assert panel.security.sessions("u1") == ()
        assert [e.subject for e in notes.events] == ["s-here", "s-phone"]

    def test_another_users_session_is_not_found(self, panel: UserPanel, clock: FixedClock) -> None:
        """A user cannot revoke, or even detect, someone else's session."""
        panel.security.register_session("u2", "s-theirs")
        with pytest.raises(NotFoundError) as info:
            panel.security.revoke_session("u1", "s-theirs", auth=ctx(clock))
        assert info.value.code == "session.not_found"
        assert len(panel.security.sessions("u2")) == 1

    def test_sign_out_everywhere_else(
        self, panel: UserPanel, clock: FixedClock, notes: Recorder
    ) -> None:
        """All other sessions are signed out, each with an event; the current one stays."""
        for session_id in ("s-here", "s-1", "s-2"):
            panel.security.register_session("u1", session_id)
        panel.security.register_session("u2", "s-theirs")
        revoked = panel.security.revoke_other_sessions("u1", auth=ctx(clock))
        assert sorted(revoked) == ["s-1", "s-2"]
        assert [s.session_id for s in panel.security.sessions("u1")] == ["s-here"]
        assert len(panel.security.sessions("u2")) == 1
        assert notes.kinds == [SecurityEventKind.SESSION_REVOKED] * 2

    def test_end_session_removes_it_quietly(self, panel: UserPanel, notes: Recorder) -> None:
        """A normal sign-out removes the session without a security event."""
        panel.security.register_session("u1", "s-1")
        assert panel.security.end_session("s-1") is True
        assert panel.security.end_session("s-1") is False
        assert notes.events == []

    def test_duplicate_session_id_is_refused(self, panel: UserPanel) -> None:
        """A session id is registered once."""
        from enspace_profile import AlreadyExistsError

        panel.security.register_session("u1", "s-1")
        with pytest.raises(AlreadyExistsError):
            panel.security.register_session("u1", "s-1")


class WithoutSessions:
    """A storage whose transactions lack the session registry (as a third party's might)."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    @contextmanager
    def _tx(self, write: bool) -> Iterator[Any]:
        with self.inner.transaction(write=write) as tx:
            yield _Partial(tx)

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Any]:
        return self._tx(write)

    def close(self) -> None:
        self.inner.close()


class _Partial:
    def __init__(self, tx: Any) -> None:
        self.profiles = tx.profiles
        self.audit = tx.audit
        self.credentials = tx.credentials
        self.throttle = tx.throttle


class TestCapabilities:
    def test_missing_session_registry_degrades_gracefully(
        self, storage: Storage, clock: FixedClock, notes: Recorder
    ) -> None:
        """Without a session registry the overview lists none and session calls say why."""
        panel = make_panel(WithoutSessions(storage), clock, notes)  # type: ignore[arg-type]
        panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        change = panel.security.change_password("u1", PASSWORD, NEW_PASSWORD, auth=ctx(clock))
        assert change.sign_out_other_sessions
        assert change.revoked_sessions == ()
        assert panel.security.overview("u1").sessions == ()
        with pytest.raises(CapabilityError) as info:
            panel.security.register_session("u1", "s-1")
        assert info.value.capability == "sessions"

    def test_storage_without_credentials_cannot_hold_passwords(
        self, clock: FixedClock, notes: Recorder, tmp_path: Path
    ) -> None:
        """The example JSON adapter lacks the ports: the Security tab raises CapabilityError."""
        import runpy

        examples = Path(__file__).parents[2] / "examples" / "json_file_storage.py"
        json_storage = runpy.run_path(str(examples))["JsonFileStorage"](tmp_path / "p.json")
        panel = make_panel(json_storage, clock, notes)
        assert panel.security.managed_by("u1") is None
        with pytest.raises(CapabilityError) as info:
            panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        assert info.value.capability == "credentials"


class TestEvents:
    def test_kinds_are_namespaced(self) -> None:
        """Every security event kind is a stable 'security.*' string."""
        assert all(kind.value.startswith("security.") for kind in SecurityEventKind)

    def test_failing_notifier_does_not_undo_the_change(
        self, storage: Storage, clock: FixedClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A notifier that raises is logged; the password change and its event stay."""

        def broken(event: AuditEvent) -> None:
            raise RuntimeError(event.kind)

        panel = make_panel(storage, clock, Recorder(), notifier=broken)
        panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        panel.security.change_password("u1", PASSWORD, NEW_PASSWORD, auth=ctx(clock))
        panel.security.verify_password("u1", NEW_PASSWORD)
        kinds = [e.kind for e in panel.security.overview("u1").recent_events]
        assert kinds == [SecurityEventKind.PASSWORD_CHANGED, SecurityEventKind.PASSWORD_SET]
        assert "notifier failed" in caplog.text

    def test_events_are_delivered_after_commit(self, storage: Storage, clock: FixedClock) -> None:
        """When the notifier runs, the event it receives is already stored."""
        seen: list[bool] = []

        def check(event: AuditEvent) -> None:
            with storage.transaction(write=False) as tx:
                seen.append(event in tx.audit.list_for_user(event.user_id))

        panel = make_panel(storage, clock, Recorder(), notifier=check)
        panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        with_codes(panel, clock)
        assert seen
        assert all(seen)

    def test_overview_lists_recent_events_newest_first(
        self, panel: UserPanel, clock: FixedClock
    ) -> None:
        """The overview carries the latest security events, newest first, limited."""
        panel.profile.create("u1", first_name="Ada")
        panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        with_codes(panel, clock)
        events = panel.security.overview("u1", recent_events=2).recent_events
        assert [e.kind for e in events] == [
            SecurityEventKind.RECOVERY_CODES_REGENERATED,
            SecurityEventKind.TWO_FACTOR_ENABLED,
        ]
        everything = panel.security.overview("u1", recent_events=50).recent_events
        assert all(e.kind.startswith("security.") for e in everything)


class TestOverview:
    def test_fresh_account(self, panel: UserPanel) -> None:
        """An account with nothing set up shows every feature off."""
        view = panel.security.overview("u1")
        assert not view.password.is_set
        assert (view.two_factor.enabled, view.two_factor.setup_pending) == (False, False)
        assert (view.recovery_codes.remaining, view.recovery_codes.low) == (0, False)
        assert (view.sessions, view.recent_events) == ((), ())
        assert (view.credentials_epoch, view.locked_until) == (0, None)

    def test_full_account(self, panel: UserPanel, clock: FixedClock) -> None:
        """A set-up account shows password date, 2FA, codes and sessions."""
        panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        with_codes(panel, clock)
        panel.security.register_session("u1", "s-here", user_agent="Safari")
        view = panel.security.overview("u1", current_session_id="s-here")
        assert view.password.changed_at == T0
        assert view.two_factor.enabled_at == T0
        assert (view.recovery_codes.remaining, view.recovery_codes.total) == (10, 10)
        assert view.recovery_codes.generated_at == T0 + timedelta(seconds=30)
        assert [(s.session_id, s.current) for s in view.sessions] == [("s-here", True)]
        assert view.credentials_epoch == 2

    def test_overview_is_frozen(self, panel: UserPanel) -> None:
        """The overview cannot be changed by the host by accident."""
        view = panel.security.overview("u1")
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            view.credentials_epoch = 5  # type: ignore[misc]


class TestConcurrentChanges:
    def test_password_changed_meanwhile_is_a_conflict(
        self, storage: Storage, clock: FixedClock, notes: Recorder
    ) -> None:
        """A change based on a password that was replaced meanwhile is refused."""
        panel = make_panel(storage, clock, notes)
        panel.security.set_password("u1", PASSWORD, auth=ctx(clock))
        racer = make_panel(storage, clock, notes, rng=SeededRandom(8))
        original_verify = panel.security.hasher.verify

        def verify_then_race(password: str, hashed: str) -> bool:
            ok = original_verify(password, hashed)
            if password == PASSWORD:
                racer.security.change_password(
                    "u1", PASSWORD, "a completely other passphrase", auth=ctx(clock)
                )
            return ok

        object.__setattr__(
            panel.security, "password_hash", _Wrapped(panel.security.hasher, verify_then_race)
        )
        with pytest.raises(ConflictError) as info:
            panel.security.change_password("u1", PASSWORD, NEW_PASSWORD, auth=ctx(clock))
        assert info.value.code == "credentials.conflict"
        racer.security.verify_password("u1", "a completely other passphrase")


class _Wrapped:
    """A PasswordHash stand-in whose verify does something extra."""

    def __init__(self, inner: PasswordHash, verify: Any) -> None:
        self._inner = inner
        self.verify = verify

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_account_management_value_is_exported() -> None:
    """AccountManagement is public so hosts can reason about management in their code."""
    assert AccountManagement.local().is_local

"""The Security tab's service: passwords, two-factor, recovery codes, sessions, events.

Reach it as ``panel.security``. Every operation follows the same shape:

1. validate input and check the cheap rules first (SSO management, re-authentication,
   password policy), before any storage write or expensive work;
2. compute slow things **outside** any storage transaction: password hashing takes
   tens of milliseconds and 19 MiB, and must not hold the database's write lock;
3. apply the change and its audit events in **one** write transaction, re-checking
   what could have changed since step 1;
4. hand the events to the host's notifier **after** the commit (a failing notifier
   never undoes the change).

Brute-force throttling counts failed password, TOTP and recovery-code checks per
account in storage (:class:`~enspace_profile.typing.ThrottleRepository`). TOTP and
recovery codes are checked inside the write transaction, so check, verify and count
are atomic. A password attempt is counted *before* it is verified (one short write
transaction) and given back when it succeeds: verifying happens outside any
transaction, and concurrent attempts (threads, processes) can still never get more
verifications than the :class:`~enspace_profile._security.lockout.LockoutPolicy` allows.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, NoReturn

import attrs

from enspace_profile._audit import AuditEvent, JSONValue, Notifier, deliver
from enspace_profile._capability import optional_repository, repository
from enspace_profile._clock import Clock
from enspace_profile._crypto.keyring import KeyRing, SealedBox, aad_for
from enspace_profile._profile.domain import validate_user_id
from enspace_profile._random import RandomSource, new_id
from enspace_profile._security.accounts import AccountManagement, ManagedBy
from enspace_profile._security.domain import (
    AccountCredentials,
    SecurityEventKind,
    SecurityFeature,
    Session,
    TotpEnrolment,
    clean_ip_address,
    clean_session_id,
    clean_user_agent,
)
from enspace_profile._security.lockout import FailureState, LockoutPolicy
from enspace_profile._security.overview import (
    CredentialsChanged,
    NewRecoveryCodes,
    PasswordStatus,
    PasswordVerification,
    RecoveryCodesStatus,
    RecoveryCodeUsed,
    SecurityOverview,
    SessionInfo,
    TotpSetup,
    TwoFactorStatus,
)
from enspace_profile._security.password_policy import PasswordPolicy
from enspace_profile._security.passwords import PasswordHash, normalize_password
from enspace_profile._security.reauth import (
    DEFAULT_REAUTH_POLICY,
    AuthContext,
    ReauthPolicy,
    SensitiveAction,
)
from enspace_profile._security.recovery import (
    DEFAULT_RECOVERY_CODE_COUNT,
    PendingRecoveryCodes,
    RecoveryCodeHasher,
    RecoveryCodeState,
)
from enspace_profile._security.totp import Totp, TotpSecret
from enspace_profile.exceptions import (
    ConfigurationError,
    ConflictError,
    FieldError,
    InvalidCredentialsError,
    NotFoundError,
    PolicyError,
    StorageError,
    ValidationError,
)
from enspace_profile.typing import (
    CredentialRepository,
    SessionRepository,
    Storage,
    ThrottleRepository,
    Transaction,
)

__all__ = ["SIGN_IN", "THROTTLE_SCOPE", "SecurityService"]

THROTTLE_SCOPE: Final = "credentials"
"""The throttle scope of an account's password, TOTP and recovery-code checks (one counter)."""

SIGN_IN: Final = "security.sign_in"
"""The ``action`` of a ``ManagedExternallyError`` raised when verifying a local credential."""

#: Longest password even looked at when verifying: longer input cannot match a password
#: the policy accepted (at most 4096), and is refused before any hashing.
_MAX_PASSWORD_INPUT: Final = 4096
_TOTP_AAD: Final = ("totp", "secret")
_ALL_FEATURES: Final = frozenset(SecurityFeature)
_PROVIDER_FEATURES: Final = frozenset(
    {SecurityFeature.PASSWORD, SecurityFeature.TWO_FACTOR, SecurityFeature.RECOVERY_CODES}
)
_SECURITY_KINDS: Final = tuple(kind.value for kind in SecurityEventKind)


def _validate_issuer(_instance: object, _attribute: object, value: Any) -> None:
    if not isinstance(value, str) or not value.strip() or ":" in value or not value.isprintable():
        raise ValidationError.single(
            "issuer", "invalid", "the issuer is printable text without ':' (e.g. 'ENSPACE')"
        )


def _validate_pepper(_instance: object, _attribute: object, value: Any) -> None:
    if value is not None and (not isinstance(value, bytes) or len(value) < 16):
        raise ValidationError.single(
            "recovery_pepper", "too_short", "the recovery pepper is at least 16 random bytes"
        )


def _pepper_repr(value: bytes | None) -> str:
    return "None" if value is None else "<set>"


def _require_text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationError.single(field, "invalid", "must be text", reason="not_text")
    if len(value) > _MAX_PASSWORD_INPUT:
        raise ValidationError.single(
            field, "too_long", "is longer than any password", maximum=_MAX_PASSWORD_INPUT
        )
    return value


@attrs.frozen(kw_only=True)
class _Attempt:
    """A password attempt counted in advance (see the module documentation)."""

    counted_at: datetime
    state: FailureState


@attrs.define
class _Lazy:
    """Things built on first use (a default hasher costs an import and a probe)."""

    lock: threading.Lock = attrs.Factory(threading.Lock)
    password_hash: PasswordHash | None = None
    dummy_hash: str | None = None
    recovery_hasher: RecoveryCodeHasher | None = None


@attrs.frozen(kw_only=True)
class SecurityService:
    """Everything the Security tab does. Reach it as ``panel.security``.

    Args:
        storage: Where credentials, counters, sessions and events live. Needs the
            ``credentials`` and ``throttle`` repositories; the session list needs
            ``sessions`` (without it, the overview shows no sessions).
        clock: Source of the current time.
        rng: Source of randomness (secrets, salts, event ids).
        notifier: Receives each audit event after its transaction committed.
        password_hash: Hashes passwords (default: ``PasswordHash.recommended()``,
            built on first use).
        password_policy: Which new passwords are accepted.
        lockout_policy: When repeated failures lock an account.
        reauth_policy: How recent an authentication each sensitive action needs.
        key_ring: Encrypts TOTP secrets at rest. Without it, two-factor operations
            raise :class:`~enspace_profile.exceptions.ConfigurationError`.
        recovery_pepper: Secret key (at least 16 bytes) for recovery code hashes.
            Without it, recovery code operations raise ``ConfigurationError``.
        totp: TOTP parameters (6 digits, 30 s, one step of drift).
        issuer: The service name authenticator apps show.
        recovery_code_count: Codes per generated set.
        session_touch_interval: :meth:`touch_session` writes ``last_seen_at`` at most
            this often per session.
    """

    storage: Storage
    clock: Clock
    rng: RandomSource
    notifier: Notifier | None = None
    password_hash: PasswordHash | None = None
    password_policy: PasswordPolicy = attrs.field(factory=PasswordPolicy)
    lockout_policy: LockoutPolicy = attrs.field(factory=LockoutPolicy)
    reauth_policy: ReauthPolicy = DEFAULT_REAUTH_POLICY
    key_ring: KeyRing | None = attrs.field(default=None, repr=False)
    recovery_pepper: bytes | None = attrs.field(
        default=None, repr=_pepper_repr, validator=_validate_pepper
    )
    totp: Totp = attrs.field(factory=Totp)
    issuer: str = attrs.field(default="ENSPACE", validator=_validate_issuer)
    recovery_code_count: int = DEFAULT_RECOVERY_CODE_COUNT
    session_touch_interval: timedelta = timedelta(minutes=1)
    _lazy: _Lazy = attrs.field(factory=_Lazy, init=False, repr=False, eq=False)

    # ------------------------------------------------------------- configuration

    @property
    def hasher(self) -> PasswordHash:
        """The password hasher in use (built on first use when not configured)."""
        if self.password_hash is not None:
            return self.password_hash
        with self._lazy.lock:
            if self._lazy.password_hash is None:
                self._lazy.password_hash = PasswordHash.recommended(random=self.rng)
            return self._lazy.password_hash

    def _dummy_hash(self) -> str:
        """A hash to verify against when a user has no password, so timing reveals nothing."""
        with self._lazy.lock:
            dummy = self._lazy.dummy_hash
        if dummy is None:
            dummy = self.hasher.hash(new_id(self.rng))
            with self._lazy.lock:
                self._lazy.dummy_hash = dummy
        return dummy

    def _ring(self, feature: str) -> KeyRing:
        if self.key_ring is None:
            raise ConfigurationError(option="key_ring", feature=feature)
        return self.key_ring

    def _recovery_hasher(self) -> RecoveryCodeHasher:
        if self.recovery_pepper is None:
            raise ConfigurationError(option="recovery_pepper", feature="recovery codes")
        with self._lazy.lock:
            if self._lazy.recovery_hasher is None:
                self._lazy.recovery_hasher = RecoveryCodeHasher(self.recovery_pepper, rng=self.rng)
            return self._lazy.recovery_hasher

    # ------------------------------------------------------------------ storage

    def _credentials_repo(self, tx: Transaction) -> CredentialRepository:
        credentials: CredentialRepository = repository(tx, "credentials", self.storage)
        return credentials

    def _throttle_repo(self, tx: Transaction) -> ThrottleRepository:
        throttle: ThrottleRepository = repository(tx, "throttle", self.storage)
        return throttle

    def _sessions_repo(self, tx: Transaction) -> SessionRepository:
        sessions: SessionRepository = repository(tx, "sessions", self.storage)
        return sessions

    def _load(self, tx: Transaction, user_id: str) -> AccountCredentials:
        stored = self._credentials_repo(tx).get(user_id)
        return AccountCredentials(user_id=user_id) if stored is None else stored

    def _store(
        self, tx: Transaction, old: AccountCredentials, new: AccountCredentials
    ) -> AccountCredentials:
        repo = self._credentials_repo(tx)
        new = attrs.evolve(new, version=old.version + 1)
        if old.version == 0:
            repo.add(new)
        else:
            repo.update(new, expected_version=old.version)
        return new

    def _event(
        self,
        user_id: str,
        kind: SecurityEventKind,
        now: datetime,
        *,
        subject: str | None = None,
        actor: str | None = None,
        details: Mapping[str, JSONValue] | None = None,
    ) -> AuditEvent:
        return AuditEvent(
            id=new_id(self.rng),
            user_id=user_id,
            kind=kind.value,
            at=now,
            actor=actor,
            subject=subject,
            details=dict(details or {}),
        )

    def _commit_events(self, tx: Transaction, events: Iterable[AuditEvent]) -> None:
        for event in events:
            tx.audit.append(event)

    # ------------------------------------------------------------ shared checks

    def _read(self, user_id: str) -> tuple[AccountCredentials, tuple[str, ...]]:
        """Return the credentials and the profile's names (for the password policy)."""
        with self.storage.transaction(write=False) as tx:
            credentials = self._load(tx, user_id)
            profile = tx.profiles.get(user_id)
        names: tuple[str, ...] = ()
        if profile is not None:
            names = tuple(n for n in (profile.first_name, profile.last_name) if n)
        return credentials, names

    def _ensure_local(self, credentials: AccountCredentials, action: SensitiveAction) -> None:
        """Refuse a credential change on an SSO account, recording the refusal."""
        managed_by = credentials.management.managed_by
        if managed_by is None:
            return
        event = self._event(
            credentials.user_id,
            SecurityEventKind.CHANGE_REFUSED_MANAGED,
            self.clock.now(),
            details={"action": action.value, "provider": managed_by.provider},
        )
        with self.storage.transaction() as tx:
            tx.audit.append(event)
        deliver(self.notifier, [event])
        credentials.management.ensure_local(action)

    def _begin_change(
        self, user_id: str, action: SensitiveAction, auth: AuthContext
    ) -> tuple[AccountCredentials, tuple[str, ...], datetime]:
        """Validate, refuse SSO accounts, require re-authentication; return the state read."""
        validate_user_id(user_id)
        if not isinstance(auth, AuthContext):
            raise ValidationError.single("auth", "invalid", "pass an AuthContext")
        credentials, names = self._read(user_id)
        self._ensure_local(credentials, action)
        now = self.clock.now()
        self.reauth_policy.require(auth, action, user_id=user_id, now=now)
        return credentials, names, now

    def _lockout_events(
        self, user_id: str, state: FailureState, now: datetime, factor: str
    ) -> list[AuditEvent]:
        """Return a lockout event if ``state`` (just after a failure) locks the account."""
        wait = self.lockout_policy.retry_after(state, now)
        if wait <= timedelta(0):
            return []
        return [
            self._event(
                user_id,
                SecurityEventKind.LOCKOUT,
                now,
                details={
                    "factor": factor,
                    "consecutive_failures": state.consecutive_failures,
                    "retry_after_seconds": int(wait.total_seconds()),
                    "locked_until": (now + wait).isoformat(),
                },
            )
        ]

    def _revoke_others(
        self, tx: Transaction, user_id: str, keep: str | None, now: datetime, reason: str
    ) -> tuple[tuple[str, ...], list[AuditEvent]]:
        """Delete the user's registered sessions except ``keep``; return ids and events."""
        sessions: SessionRepository | None = optional_repository(tx, "sessions")
        if sessions is None:
            return (), []
        revoked: list[str] = []
        events: list[AuditEvent] = []
        for session in sessions.list_for_user(user_id):
            if session.session_id == keep:
                continue
            sessions.delete(session.session_id)
            revoked.append(session.session_id)
            events.append(
                self._event(
                    user_id,
                    SecurityEventKind.SESSION_REVOKED,
                    now,
                    subject=session.session_id,
                    details={"reason": reason},
                )
            )
        return tuple(revoked), events

    # ------------------------------------------------------- account management

    def set_managed(
        self,
        user_id: str,
        *,
        provider: str,
        manage_url: str | None = None,
        actor: str | None = None,
    ) -> CredentialsChanged:
        """Mark the account as managed by an identity provider (SSO).

        The account's local credentials (password, authenticator, recovery codes) are
        deleted: from now on the provider is where the user signs in and changes them,
        and every credential change here raises
        :class:`~enspace_profile.exceptions.ManagedExternallyError`. The credentials
        epoch increases, and other sessions should end (those signed in with the
        removed local credentials).

        Args:
            user_id: The account.
            provider: The provider's display name (``"Okta"``).
            manage_url: Where the user manages security there (``https``).
            actor: Who made the change, for the audit log (``None``: the host).

        Returns:
            The new epoch; ``sign_out_other_sessions`` is true.

        Raises:
            ValidationError: ``user_id.*``, ``provider.*``, ``manage_url.*``.
        """
        validate_user_id(user_id)
        management = AccountManagement.managed(provider, manage_url=manage_url)
        return self._set_management(user_id, management, actor=actor)

    def set_local(self, user_id: str, *, actor: str | None = None) -> CredentialsChanged:
        """Mark the account as managed here (no identity provider).

        The account starts without a password: the user sets one with
        :meth:`set_password`. Does nothing (and writes no event) for an account that
        is local already.

        Args:
            user_id: The account.
            actor: Who made the change, for the audit log.

        Returns:
            The (possibly unchanged) epoch; ``sign_out_other_sessions`` is false.

        Raises:
            ValidationError: ``user_id.*``.
        """
        validate_user_id(user_id)
        return self._set_management(user_id, AccountManagement.local(), actor=actor)

    def _set_management(
        self, user_id: str, management: AccountManagement, *, actor: str | None
    ) -> CredentialsChanged:
        now = self.clock.now()
        events: list[AuditEvent] = []
        revoked: tuple[str, ...] = ()
        with self.storage.transaction() as tx:
            current = self._load(tx, user_id)
            if current.management == management:
                return CredentialsChanged(
                    credentials_epoch=current.epoch, sign_out_other_sessions=False
                )
            managed_by = management.managed_by
            sign_out = False
            if managed_by is None:
                updated = attrs.evolve(current, management=management, epoch=current.epoch + 1)
                events.append(
                    self._event(user_id, SecurityEventKind.MANAGED_LOCALLY, now, actor=actor)
                )
            elif not current.management.is_local:
                # Another provider, or a new URL: nothing local to remove.
                updated = attrs.evolve(current, management=management)
                events.append(
                    self._event(
                        user_id,
                        SecurityEventKind.MANAGED_EXTERNALLY,
                        now,
                        actor=actor,
                        details={
                            "provider": managed_by.provider,
                            "manage_url": managed_by.manage_url,
                            "removed": [],
                        },
                    )
                )
            else:
                sign_out = True
                removed = [
                    name
                    for name, present in (
                        ("password", current.has_password),
                        ("two_factor", current.totp is not None),
                        ("recovery_codes", current.recovery.active is not None),
                    )
                    if present
                ]
                updated = AccountCredentials(
                    user_id=user_id,
                    version=current.version,
                    epoch=current.epoch + 1,
                    management=management,
                )
                revoked, revoked_events = self._revoke_others(
                    tx, user_id, None, now, "managed_externally"
                )
                events.append(
                    self._event(
                        user_id,
                        SecurityEventKind.MANAGED_EXTERNALLY,
                        now,
                        actor=actor,
                        details={
                            "provider": managed_by.provider,
                            "manage_url": managed_by.manage_url,
                            "removed": removed,
                        },
                    )
                )
                events.extend(revoked_events)
            stored = self._store(tx, current, updated)
            self._commit_events(tx, events)
        deliver(self.notifier, events)
        return CredentialsChanged(
            credentials_epoch=stored.epoch,
            sign_out_other_sessions=sign_out,
            revoked_sessions=revoked,
        )

    # ---------------------------------------------------------------- passwords

    def set_password(
        self,
        user_id: str,
        password: str,
        *,
        auth: AuthContext,
        names: Sequence[str] = (),
    ) -> CredentialsChanged:
        """Set the first password of an account that has none (no current password needed).

        Args:
            user_id: The account.
            password: The new password.
            auth: The session's authentication (re-authentication rule
                ``security.change_password``); at sign-up, the new session's.
            names: More words the password may not contain (e-mail address, user
                name); the profile's first and last name are added automatically.

        Returns:
            The new credentials epoch; ``sign_out_other_sessions`` is false.

        Raises:
            ManagedExternallyError: for an SSO account (the refusal is audited).
            ReauthenticationRequired: if ``auth`` is not recent or strong enough.
            PolicyError: ``password.already_set`` (use :meth:`change_password`).
            ValidationError: the policy's ``password.*`` codes, all at once.
            ConflictError: if the password was set concurrently.
        """
        action = SensitiveAction.CHANGE_PASSWORD
        credentials, profile_names, now = self._begin_change(user_id, action, auth)
        if credentials.has_password:
            raise PolicyError(
                "a password is already set: change it instead", code="password.already_set"
            )
        normalised = self.password_policy.check(
            password,
            user_id=user_id,
            names=(*profile_names, *names),
            two_factor=credentials.two_factor_enabled,
            field="password",
        )
        new_hash = self.hasher.hash(normalised)
        with self.storage.transaction() as tx:
            current = self._load(tx, user_id)
            current.management.ensure_local(action)
            if current.has_password:
                raise ConflictError(
                    "credentials", user_id, message="a password was set at the same time"
                )
            stored = self._store(
                tx,
                current,
                attrs.evolve(
                    current,
                    password_hash=new_hash,
                    password_changed_at=now,
                    epoch=current.epoch + 1,
                ),
            )
            event = self._event(
                user_id,
                SecurityEventKind.PASSWORD_SET,
                now,
                details={"credentials_epoch": stored.epoch},
            )
            tx.audit.append(event)
        deliver(self.notifier, [event])
        return CredentialsChanged(credentials_epoch=stored.epoch, sign_out_other_sessions=False)

    def change_password(
        self,
        user_id: str,
        current_password: str,
        new_password: str,
        *,
        auth: AuthContext,
        names: Sequence[str] = (),
        sign_out_other_sessions: bool = True,
    ) -> CredentialsChanged:
        """Change the password; the current one is required.

        Cheap checks come first and are reported together (the policy, and whether the
        new password equals the current one as typed); then the current password is
        verified (a failure counts towards the lockout), and the new one hashed, both
        outside any storage transaction.

        Args:
            user_id: The account.
            current_password: The password now in use.
            new_password: The new password.
            auth: The session's authentication (``security.change_password``);
                its ``session_id`` is the session kept when signing out the others.
            names: More words the password may not contain (see :meth:`set_password`).
            sign_out_other_sessions: Sign out the user's other registered sessions
                in the same transaction (and tell the host to end the rest).

        Returns:
            The new credentials epoch, whether other sessions should end, and which
            registered sessions were signed out.

        Raises:
            ManagedExternallyError: for an SSO account (the refusal is audited).
            ReauthenticationRequired: if ``auth`` is not recent or strong enough.
            PolicyError: ``password.not_set`` (use :meth:`set_password`).
            ValidationError: ``new_password.*`` policy codes and ``new_password.reused``,
                all at once; ``current_password.invalid`` for non-text.
            RateLimitedError: while the account is locked after failures.
            InvalidCredentialsError: if ``current_password`` is wrong.
            ConflictError: if the password changed concurrently.
        """
        action = SensitiveAction.CHANGE_PASSWORD
        credentials, profile_names, now = self._begin_change(user_id, action, auth)
        stored_hash = credentials.password_hash
        if stored_hash is None:
            raise PolicyError("no password is set: set one first", code="password.not_set")
        current_text = _require_text(current_password, "current_password")
        errors: list[FieldError] = []
        normalised = ""
        try:
            normalised = self.password_policy.check(
                new_password,
                user_id=user_id,
                names=(*profile_names, *names),
                two_factor=credentials.two_factor_enabled,
                field="new_password",
            )
        except ValidationError as exc:
            errors.extend(exc.errors)
        new_text: object = new_password
        if isinstance(new_text, str) and hmac.compare_digest(
            normalize_password(current_text).encode("utf-8", "surrogatepass"),
            normalize_password(new_text).encode("utf-8", "surrogatepass"),
        ):
            errors.append(
                FieldError(
                    field="new_password",
                    code="new_password.reused",
                    message="must differ from your current password",
                )
            )
        if errors:
            raise ValidationError(errors)
        attempt = self._reserve(user_id, now)
        ok = self.hasher.verify(current_text, stored_hash)
        if not ok:
            self._password_failed(user_id, attempt, now)
        new_hash = self.hasher.hash(normalised)
        events: list[AuditEvent] = []
        revoked: tuple[str, ...] = ()
        stored: AccountCredentials | None = None
        with self.storage.transaction() as tx:
            self._settle_success(tx, user_id, attempt, now)
            current = self._load(tx, user_id)
            if current.password_hash == stored_hash and current.management.is_local:
                stored = self._store(
                    tx,
                    current,
                    attrs.evolve(
                        current,
                        password_hash=new_hash,
                        password_changed_at=now,
                        epoch=current.epoch + 1,
                    ),
                )
                if sign_out_other_sessions:
                    revoked, events = self._revoke_others(
                        tx, user_id, auth.session_id, now, "password_changed"
                    )
                events.insert(
                    0,
                    self._event(
                        user_id,
                        SecurityEventKind.PASSWORD_CHANGED,
                        now,
                        details={
                            "credentials_epoch": stored.epoch,
                            "signed_out_sessions": len(revoked),
                        },
                    ),
                )
                self._commit_events(tx, events)
        if stored is None:
            current.management.ensure_local(action)
            raise ConflictError(
                "credentials", user_id, message="the password was changed at the same time"
            )
        deliver(self.notifier, events)
        return CredentialsChanged(
            credentials_epoch=stored.epoch,
            sign_out_other_sessions=sign_out_other_sessions,
            revoked_sessions=revoked,
        )

    def verify_password(self, user_id: str, password: str) -> PasswordVerification:
        """Check a password at sign-in (or to re-authenticate).

        The attempt is counted before the (slow) verification, outside any
        transaction, and given back on success. A user without a password is checked
        against a dummy hash, so the time taken does not tell whether the account has
        one. A hash in an outdated format or with old parameters is replaced after a
        successful check (the credentials epoch does not change).

        Args:
            user_id: The account (as the host resolved it from the sign-in form).
            password: What the user typed.

        Returns:
            Whether a second factor is required, and the current credentials epoch.

        Raises:
            ManagedExternallyError: for an SSO account (sign in at the provider).
            RateLimitedError: while the account is locked after failures.
            InvalidCredentialsError: wrong password, or no password set.
            ValidationError: ``password.invalid`` (not text) or ``password.too_long``.
        """
        validate_user_id(user_id)
        text = _require_text(password, "password")
        now = self.clock.now()
        with self.storage.transaction() as tx:
            credentials = self._load(tx, user_id)
            credentials.management.ensure_local(SIGN_IN)
            attempt = self._reserve_in(tx, user_id, now)
        stored_hash = credentials.password_hash
        if stored_hash is None:
            self.hasher.verify(text, self._dummy_hash())
            self._password_failed(user_id, attempt, now)
        ok, new_hash = self.hasher.verify_and_update(text, stored_hash)
        if not ok:
            self._password_failed(user_id, attempt, now)
        with self.storage.transaction() as tx:
            self._settle_success(tx, user_id, attempt, now)
            current = self._load(tx, user_id)
            changed = current.password_hash != stored_hash or not current.management.is_local
            if new_hash is not None and not changed:
                current = self._store(tx, current, attrs.evolve(current, password_hash=new_hash))
        if changed:
            # Changed while we verified: the password that matched no longer counts.
            raise InvalidCredentialsError("the password is incorrect")
        return PasswordVerification(
            user_id=user_id,
            two_factor_required=current.two_factor_enabled,
            credentials_epoch=current.epoch,
        )

    def _reserve(self, user_id: str, now: datetime) -> _Attempt:
        with self.storage.transaction() as tx:
            return self._reserve_in(tx, user_id, now)

    def _reserve_in(self, tx: Transaction, user_id: str, now: datetime) -> _Attempt:
        """Refuse a locked account, else count the attempt as a failure in advance."""
        throttle = self._throttle_repo(tx)
        state = throttle.get(user_id, THROTTLE_SCOPE)
        self.lockout_policy.check(state, now)
        reserved = self.lockout_policy.record_failure(state, now)
        throttle.put(user_id, THROTTLE_SCOPE, reserved)
        return _Attempt(counted_at=now, state=reserved)

    def _settle_success(
        self, tx: Transaction, user_id: str, attempt: _Attempt, now: datetime
    ) -> None:
        throttle = self._throttle_repo(tx)
        state = throttle.get(user_id, THROTTLE_SCOPE)
        settled = self.lockout_policy.settle_success(state, counted_at=attempt.counted_at, now=now)
        throttle.put(user_id, THROTTLE_SCOPE, settled)

    def _password_failed(self, user_id: str, attempt: _Attempt, now: datetime) -> NoReturn:
        """Record a lockout caused by this (already counted) failure, then raise."""
        events = self._lockout_events(user_id, attempt.state, now, "password")
        if events:
            with self.storage.transaction() as tx:
                self._commit_events(tx, events)
            deliver(self.notifier, events)
        raise InvalidCredentialsError("the password is incorrect")

    # --------------------------------------------------------------------- TOTP

    def start_totp(self, user_id: str, *, auth: AuthContext, account_name: str) -> TotpSetup:
        """Begin setting up an authenticator app: a new secret, pending until confirmed.

        Starting again replaces an unconfirmed secret; an enabled authenticator keeps
        working until a new one is confirmed.

        Args:
            user_id: The account.
            auth: The session's authentication (``security.enable_two_factor``).
            account_name: How the app labels the account (usually the e-mail address).

        Returns:
            The secret (base32) and the ``otpauth://`` URI to show once.

        Raises:
            ConfigurationError: without a ``key_ring``.
            ManagedExternallyError: for an SSO account (the refusal is audited).
            ReauthenticationRequired: if ``auth`` is not recent or strong enough.
            ValidationError: ``account_name.*``.
        """
        ring = self._ring("two-factor authentication")
        action = SensitiveAction.ENABLE_TWO_FACTOR
        _credentials, _names, now = self._begin_change(user_id, action, auth)
        secret = TotpSecret.generate(self.rng)
        uri = self.totp.provisioning_uri(secret, issuer=self.issuer, account_name=account_name)
        sealed = ring.seal(secret.value, aad=aad_for(user_id, *_TOTP_AAD)).to_bytes()
        with self.storage.transaction() as tx:
            current = self._load(tx, user_id)
            current.management.ensure_local(action)
            pending = TotpEnrolment(sealed_secret=sealed, created_at=now)
            self._store(tx, current, attrs.evolve(current, pending_totp=pending))
        return TotpSetup(
            secret=secret.to_base32(), uri=uri, digits=self.totp.digits, period=self.totp.period
        )

    def confirm_totp(
        self,
        user_id: str,
        code: str,
        *,
        auth: AuthContext,
        sign_out_other_sessions: bool = False,
    ) -> CredentialsChanged:
        """Enable two-factor authentication once the user typed a valid code from the app.

        Args:
            user_id: The account.
            code: A code from the authenticator app (spaces ignored).
            auth: The session's authentication (``security.enable_two_factor``).
            sign_out_other_sessions: Also sign out the user's other registered sessions.

        Returns:
            The new credentials epoch and the sessions signed out.

        Raises:
            ConfigurationError: without a ``key_ring``, or when the secret's key
                is no longer in it.
            ManagedExternallyError: for an SSO account (the refusal is audited).
            ReauthenticationRequired: if ``auth`` is not recent or strong enough.
            PolicyError: ``two_factor.nothing_pending`` (call :meth:`start_totp`).
            RateLimitedError: while the account is locked after failures.
            InvalidCredentialsError: if the code is wrong (counted as a failure).
        """
        ring = self._ring("two-factor authentication")
        action = SensitiveAction.ENABLE_TWO_FACTOR
        _credentials, _names, now = self._begin_change(user_id, action, auth)
        events: list[AuditEvent] = []
        revoked: tuple[str, ...] = ()
        epoch = 0
        with self.storage.transaction() as tx:
            current = self._load(tx, user_id)
            current.management.ensure_local(action)
            pending = current.pending_totp
            if pending is None:
                raise PolicyError(
                    "no authenticator set-up is pending", code="two_factor.nothing_pending"
                )
            throttle = self._throttle_repo(tx)
            state = throttle.get(user_id, THROTTLE_SCOPE)
            self.lockout_policy.check(state, now)
            secret = self._open(ring, user_id, pending.sealed_secret)
            step = self.totp.verify(secret, code, now=now, last_used_step=None)
            if step is None:
                failed = self.lockout_policy.record_failure(state, now)
                throttle.put(user_id, THROTTLE_SCOPE, failed)
                events = self._lockout_events(user_id, failed, now, "totp")
            else:
                throttle.put(user_id, THROTTLE_SCOPE, self.lockout_policy.record_success(state))
                enabled = attrs.evolve(pending, enabled_at=now, last_used_step=step)
                stored = self._store(
                    tx,
                    current,
                    attrs.evolve(current, totp=enabled, pending_totp=None, epoch=current.epoch + 1),
                )
                epoch = stored.epoch
                if sign_out_other_sessions:
                    revoked, events = self._revoke_others(
                        tx, user_id, auth.session_id, now, "two_factor_enabled"
                    )
                events.insert(
                    0,
                    self._event(
                        user_id,
                        SecurityEventKind.TWO_FACTOR_ENABLED,
                        now,
                        details={
                            "method": "totp",
                            "replaced": current.totp is not None,
                            "credentials_epoch": epoch,
                        },
                    ),
                )
            self._commit_events(tx, events)
        deliver(self.notifier, events)
        if step is None:
            raise InvalidCredentialsError("the code is incorrect")
        return CredentialsChanged(
            credentials_epoch=epoch,
            sign_out_other_sessions=sign_out_other_sessions,
            revoked_sessions=revoked,
        )

    def verify_totp(self, user_id: str, code: str) -> None:
        """Check a code from the user's authenticator app (sign-in or re-authentication).

        Check, count and the replay guard happen in one write transaction: a code (its
        time step) that was accepted once is refused afterwards, as is any older one,
        even by another process. A secret sealed with an older key is re-encrypted
        with the current key on the way.

        Args:
            user_id: The account.
            code: What the user typed (spaces ignored).

        Raises:
            ConfigurationError: without a ``key_ring``, or when the secret's key is
                no longer in it.
            ManagedExternallyError: for an SSO account (sign in at the provider).
            PolicyError: ``two_factor.not_enabled``.
            RateLimitedError: while the account is locked after failures.
            InvalidCredentialsError: a wrong, expired or already used code.
        """
        validate_user_id(user_id)
        ring = self._ring("two-factor authentication")
        now = self.clock.now()
        events: list[AuditEvent] = []
        with self.storage.transaction() as tx:
            current = self._load(tx, user_id)
            current.management.ensure_local(SIGN_IN)
            enrolment = current.totp
            if enrolment is None:
                raise PolicyError(
                    "two-factor authentication is not enabled", code="two_factor.not_enabled"
                )
            throttle = self._throttle_repo(tx)
            state = throttle.get(user_id, THROTTLE_SCOPE)
            self.lockout_policy.check(state, now)
            secret = self._open(ring, user_id, enrolment.sealed_secret)
            step = self.totp.verify(secret, code, now=now, last_used_step=enrolment.last_used_step)
            if step is None:
                failed = self.lockout_policy.record_failure(state, now)
                throttle.put(user_id, THROTTLE_SCOPE, failed)
                events = self._lockout_events(user_id, failed, now, "totp")
                self._commit_events(tx, events)
            else:
                throttle.put(user_id, THROTTLE_SCOPE, self.lockout_policy.record_success(state))
                sealed = self._rotated(ring, user_id, enrolment.sealed_secret)
                used = attrs.evolve(enrolment, last_used_step=step, sealed_secret=sealed)
                self._store(tx, current, attrs.evolve(current, totp=used))
        deliver(self.notifier, events)
        if step is None:
            raise InvalidCredentialsError("the code is incorrect")

    def disable_totp(
        self, user_id: str, *, auth: AuthContext, sign_out_other_sessions: bool = False
    ) -> CredentialsChanged:
        """Turn two-factor authentication off (its recovery codes are deleted too).

        Args:
            user_id: The account.
            auth: The session's authentication (``security.disable_two_factor``).
            sign_out_other_sessions: Also sign out the user's other registered sessions.

        Returns:
            The new credentials epoch and the sessions signed out.

        Raises:
            ManagedExternallyError: for an SSO account (the refusal is audited).
            ReauthenticationRequired: if ``auth`` is not recent or strong enough.
            PolicyError: ``two_factor.not_enabled``.
        """
        action = SensitiveAction.DISABLE_TWO_FACTOR
        _credentials, _names, now = self._begin_change(user_id, action, auth)
        events: list[AuditEvent] = []
        revoked: tuple[str, ...] = ()
        with self.storage.transaction() as tx:
            current = self._load(tx, user_id)
            current.management.ensure_local(action)
            if current.totp is None:
                raise PolicyError(
                    "two-factor authentication is not enabled", code="two_factor.not_enabled"
                )
            stored = self._store(
                tx,
                current,
                attrs.evolve(
                    current,
                    totp=None,
                    pending_totp=None,
                    recovery=RecoveryCodeState(),
                    epoch=current.epoch + 1,
                ),
            )
            if sign_out_other_sessions:
                revoked, events = self._revoke_others(
                    tx, user_id, auth.session_id, now, "two_factor_disabled"
                )
            events.insert(
                0,
                self._event(
                    user_id,
                    SecurityEventKind.TWO_FACTOR_DISABLED,
                    now,
                    details={
                        "method": "totp",
                        "recovery_codes_removed": current.recovery.active is not None,
                        "credentials_epoch": stored.epoch,
                    },
                ),
            )
            self._commit_events(tx, events)
        deliver(self.notifier, events)
        return CredentialsChanged(
            credentials_epoch=stored.epoch,
            sign_out_other_sessions=sign_out_other_sessions,
            revoked_sessions=revoked,
        )

    def _open(self, ring: KeyRing, user_id: str, sealed: bytes) -> TotpSecret:
        """Decrypt a stored TOTP secret, turning failures into the host's problems."""
        try:
            box = SealedBox.from_bytes(sealed)
            return TotpSecret(ring.open(box, aad=aad_for(user_id, *_TOTP_AAD)))
        except ValidationError as exc:
            if "ciphertext.unknown_key" in exc.codes:
                raise ConfigurationError(
                    option="key_ring",
                    feature="opening a TOTP secret sealed with a key that is no longer "
                    "in the key ring",
                ) from None
            raise StorageError(
                "a stored TOTP secret could not be decrypted (altered or moved)",
                code="security.secret_undecryptable",
            ) from None

    def _rotated(self, ring: KeyRing, user_id: str, sealed: bytes) -> bytes:
        box = SealedBox.from_bytes(sealed)
        if not ring.needs_rotation(box):
            return sealed
        return ring.rotate(box, aad=aad_for(user_id, *_TOTP_AAD)).to_bytes()

    def reencrypt_secrets(self, *, batch_size: int = 100) -> int:
        """Re-encrypt every stored TOTP secret not sealed with the key ring's current key.

        Run it after putting a new key first in the ring; when it returns, the old
        keys can be dropped. Each account is updated in its own short transaction.

        Args:
            batch_size: Accounts read per page.

        Returns:
            How many accounts were re-encrypted.

        Raises:
            ConfigurationError: without a ``key_ring``, or when a secret's key is not
                in it.
        """
        ring = self._ring("re-encrypting TOTP secrets")
        done = 0
        after: str | None = None
        while True:
            with self.storage.transaction(write=False) as tx:
                page = list(self._credentials_repo(tx).list_user_ids(after=after, limit=batch_size))
            for user_id in page:
                done += self._reencrypt_one(ring, user_id)
            if len(page) < batch_size:
                return done
            after = page[-1]

    def _reencrypted(
        self, ring: KeyRing, user_id: str, enrolment: TotpEnrolment | None
    ) -> TotpEnrolment | None:
        """Return ``enrolment`` sealed with the current key (the same object if it was)."""
        if enrolment is None:
            return None
        self._open(ring, user_id, enrolment.sealed_secret)  # refuses tampered boxes clearly
        sealed = self._rotated(ring, user_id, enrolment.sealed_secret)
        if sealed == enrolment.sealed_secret:
            return enrolment
        return attrs.evolve(enrolment, sealed_secret=sealed)

    def _reencrypt_one(self, ring: KeyRing, user_id: str) -> int:
        now = self.clock.now()
        with self.storage.transaction() as tx:
            current = self._load(tx, user_id)
            totp = self._reencrypted(ring, user_id, current.totp)
            pending = self._reencrypted(ring, user_id, current.pending_totp)
            if totp is current.totp and pending is current.pending_totp:
                return 0
            self._store(tx, current, attrs.evolve(current, totp=totp, pending_totp=pending))
            event = self._event(
                user_id,
                SecurityEventKind.SECRETS_REENCRYPTED,
                now,
                details={"key_id": ring.current.id},
            )
            tx.audit.append(event)
        deliver(self.notifier, [event])
        return 1

    # ----------------------------------------------------------- recovery codes

    def regenerate_recovery_codes(self, user_id: str, *, auth: AuthContext) -> NewRecoveryCodes:
        """Generate a new set of recovery codes, pending until the user confirms saving them.

        The current codes keep working until :meth:`confirm_recovery_codes`.

        Args:
            user_id: The account (two-factor must be enabled).
            auth: The session's authentication
                (``security.regenerate_recovery_codes``).

        Returns:
            The codes, to show once.

        Raises:
            ConfigurationError: without a ``recovery_pepper``.
            ManagedExternallyError: for an SSO account (the refusal is audited).
            ReauthenticationRequired: if ``auth`` is not recent or strong enough.
            PolicyError: ``two_factor.not_enabled``.
        """
        hasher = self._recovery_hasher()
        action = SensitiveAction.REGENERATE_RECOVERY_CODES
        credentials, _names, now = self._begin_change(user_id, action, auth)
        if not credentials.two_factor_enabled:
            raise PolicyError(
                "recovery codes need two-factor authentication", code="two_factor.not_enabled"
            )
        pending = PendingRecoveryCodes.generate(
            self.rng, hasher, now=now, count=self.recovery_code_count
        )
        with self.storage.transaction() as tx:
            current = self._load(tx, user_id)
            current.management.ensure_local(action)
            if not current.two_factor_enabled:
                raise PolicyError(
                    "recovery codes need two-factor authentication",
                    code="two_factor.not_enabled",
                )
            recovery = current.recovery.start_regeneration(pending.code_set)
            self._store(tx, current, attrs.evolve(current, recovery=recovery))
        return NewRecoveryCodes(codes=pending.codes, generated_at=now)

    def confirm_recovery_codes(self, user_id: str, *, auth: AuthContext) -> None:
        """Make the pending recovery codes the active ones; the old codes stop working.

        Args:
            user_id: The account.
            auth: The session's authentication
                (``security.regenerate_recovery_codes``).

        Raises:
            ManagedExternallyError: for an SSO account (the refusal is audited).
            ReauthenticationRequired: if ``auth`` is not recent or strong enough.
            PolicyError: ``recovery_codes.nothing_pending``.
        """
        action = SensitiveAction.REGENERATE_RECOVERY_CODES
        _credentials, _names, now = self._begin_change(user_id, action, auth)
        with self.storage.transaction() as tx:
            current = self._load(tx, user_id)
            current.management.ensure_local(action)
            recovery = current.recovery.confirm(now=now)
            self._store(tx, current, attrs.evolve(current, recovery=recovery))
            assert recovery.active is not None
            event = self._event(
                user_id,
                SecurityEventKind.RECOVERY_CODES_REGENERATED,
                now,
                details={
                    "count": len(recovery.active.codes),
                    "replaced": current.recovery.active is not None,
                },
            )
            tx.audit.append(event)
        deliver(self.notifier, [event])

    def use_recovery_code(self, user_id: str, code: str) -> RecoveryCodeUsed:
        """Accept a recovery code instead of the authenticator app; each code works once.

        Args:
            user_id: The account.
            code: What the user typed (any case; spaces and hyphens ignored).

        Returns:
            How many codes remain, and whether that is few (3 or fewer).

        Raises:
            ConfigurationError: without a ``recovery_pepper``.
            ManagedExternallyError: for an SSO account (sign in at the provider).
            PolicyError: ``recovery_codes.not_set_up``.
            RateLimitedError: while the account is locked after failures.
            InvalidCredentialsError: an unknown or already used code.
        """
        validate_user_id(user_id)
        hasher = self._recovery_hasher()
        now = self.clock.now()
        events: list[AuditEvent] = []
        with self.storage.transaction() as tx:
            current = self._load(tx, user_id)
            current.management.ensure_local(SIGN_IN)
            if current.recovery.active is None:
                raise PolicyError(
                    "the account has no recovery codes", code="recovery_codes.not_set_up"
                )
            throttle = self._throttle_repo(tx)
            state = throttle.get(user_id, THROTTLE_SCOPE)
            self.lockout_policy.check(state, now)
            recovery = current.recovery.use(code, hasher, now)
            if recovery is None or recovery.active is None:
                failed = self.lockout_policy.record_failure(state, now)
                throttle.put(user_id, THROTTLE_SCOPE, failed)
                events = self._lockout_events(user_id, failed, now, "recovery_code")
                result = None
            else:
                throttle.put(user_id, THROTTLE_SCOPE, self.lockout_policy.record_success(state))
                self._store(tx, current, attrs.evolve(current, recovery=recovery))
                result = RecoveryCodeUsed(
                    remaining=recovery.active.remaining, low=recovery.active.low
                )
                events = [
                    self._event(
                        user_id,
                        SecurityEventKind.RECOVERY_CODE_USED,
                        now,
                        details={"remaining": result.remaining},
                    )
                ]
            self._commit_events(tx, events)
        deliver(self.notifier, events)
        if result is None:
            raise InvalidCredentialsError("the recovery code is incorrect")
        return result

    # ----------------------------------------------------------------- sessions

    def register_session(
        self,
        user_id: str,
        session_id: str,
        *,
        ip_address: str | None = None,
        user_agent: str | None = None,
    ) -> SessionInfo:
        """Add a new session to the registry (call it when the user signs in).

        Args:
            user_id: Whose session.
            session_id: The host's identifier for it; **not** the session cookie or
                any bearer secret (it is stored, listed and written to events).
            ip_address: The client address (normalised; IPv4-mapped becomes IPv4).
            user_agent: The client's user agent (cleaned, cut to 512 characters).

        Returns:
            The registered session (marked current).

        Raises:
            ValidationError: ``user_id.*``, ``session_id.invalid``, ``ip_address.invalid``.
            AlreadyExistsError: if the session id is registered already.
            CapabilityError: if the storage has no session registry.
        """
        validate_user_id(user_id)
        now = self.clock.now()
        session = Session(
            session_id=clean_session_id(session_id),
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
            ip_address=clean_ip_address(ip_address),
            user_agent=clean_user_agent(user_agent),
        )
        with self.storage.transaction() as tx:
            self._sessions_repo(tx).add(session)
        return SessionInfo.of(session, current_session_id=session.session_id)

    def touch_session(
        self,
        session_id: str,
        *,
        ip_address: str | None = None,
        user_agent: str | None = None,
    ) -> bool:
        """Note that a session is in use; return ``False`` if it was signed out.

        Call it on requests: when it returns ``False``, end the session (the user
        signed it out from another device). ``last_seen_at`` is written at most once
        per ``session_touch_interval`` unless the address or user agent changed.

        Raises:
            ValidationError: ``session_id.invalid``, ``ip_address.invalid``.
            CapabilityError: if the storage has no session registry.
        """
        session_id = clean_session_id(session_id)
        address = clean_ip_address(ip_address)
        agent = clean_user_agent(user_agent)
        now = self.clock.now()

        def fresh(session: Session) -> bool:
            return (
                now - session.last_seen_at < self.session_touch_interval
                and (address is None or address == session.ip_address)
                and (agent is None or agent == session.user_agent)
            )

        with self.storage.transaction(write=False) as tx:
            seen = self._sessions_repo(tx).get(session_id)
        if seen is None:
            return False
        if fresh(seen):
            return True
        with self.storage.transaction() as tx:
            sessions = self._sessions_repo(tx)
            current = sessions.get(session_id)
            if current is None:
                return False
            if not fresh(current):
                sessions.update(
                    attrs.evolve(
                        current,
                        last_seen_at=max(now, current.last_seen_at),
                        ip_address=address or current.ip_address,
                        user_agent=agent or current.user_agent,
                    )
                )
        return True

    def end_session(self, session_id: str) -> bool:
        """Remove a session the user signed out of; return whether it was registered.

        Raises:
            ValidationError: ``session_id.invalid``.
            CapabilityError: if the storage has no session registry.
        """
        session_id = clean_session_id(session_id)
        with self.storage.transaction() as tx:
            return self._sessions_repo(tx).delete(session_id)

    def sessions(
        self, user_id: str, *, current_session_id: str | None = None
    ) -> tuple[SessionInfo, ...]:
        """Return "where you're signed in": the user's sessions, most recently used first.

        Raises:
            CapabilityError: if the storage has no session registry.
        """
        validate_user_id(user_id)
        with self.storage.transaction(write=False) as tx:
            found = self._sessions_repo(tx).list_for_user(user_id)
        return tuple(SessionInfo.of(s, current_session_id=current_session_id) for s in found)

    def revoke_session(self, user_id: str, session_id: str, *, auth: AuthContext) -> None:
        """Sign one of the user's sessions out.

        Signing out another session is a sensitive action
        (``security.sign_out_other_sessions``); signing out the current one
        (``auth.session_id``) is not.

        Raises:
            ReauthenticationRequired: for another session, if ``auth`` is not recent.
            NotFoundError: ``session.not_found`` if the user has no such session.
            CapabilityError: if the storage has no session registry.
        """
        validate_user_id(user_id)
        session_id = clean_session_id(session_id)
        now = self.clock.now()
        if session_id != auth.session_id or auth.user_id != user_id:
            self.reauth_policy.require(
                auth, SensitiveAction.SIGN_OUT_OTHER_SESSIONS, user_id=user_id, now=now
            )
        with self.storage.transaction() as tx:
            sessions = self._sessions_repo(tx)
            found = sessions.get(session_id)
            if found is None or found.user_id != user_id:
                raise NotFoundError("session", session_id)
            sessions.delete(session_id)
            event = self._event(
                user_id,
                SecurityEventKind.SESSION_REVOKED,
                now,
                subject=session_id,
                details={"reason": "user"},
            )
            tx.audit.append(event)
        deliver(self.notifier, [event])

    def revoke_other_sessions(self, user_id: str, *, auth: AuthContext) -> tuple[str, ...]:
        """Sign out everywhere except the current session (``auth.session_id``).

        Args:
            user_id: The account.
            auth: The session's authentication
                (``security.sign_out_other_sessions``); without a ``session_id``,
                every registered session is signed out.

        Returns:
            The ids of the sessions signed out.

        Raises:
            ReauthenticationRequired: if ``auth`` is not recent or strong enough.
            CapabilityError: if the storage has no session registry.
        """
        validate_user_id(user_id)
        now = self.clock.now()
        self.reauth_policy.require(
            auth, SensitiveAction.SIGN_OUT_OTHER_SESSIONS, user_id=user_id, now=now
        )
        with self.storage.transaction() as tx:
            self._sessions_repo(tx)
            revoked, events = self._revoke_others(tx, user_id, auth.session_id, now, "user")
            self._commit_events(tx, events)
        deliver(self.notifier, events)
        return revoked

    # ------------------------------------------------------------------- reading

    def managed_by(self, user_id: str) -> ManagedBy | None:
        """Return the identity provider managing the account, or ``None`` (local account).

        Storage without a credential repository has no SSO accounts: ``None``. This is
        the lookup ``panel.tabs`` uses to put a notice on an SSO account's Security tab.

        Raises:
            ValidationError: ``user_id.*``.
        """
        validate_user_id(user_id)
        with self.storage.transaction(write=False) as tx:
            credentials: CredentialRepository | None = optional_repository(tx, "credentials")
            if credentials is None:
                return None
            stored = credentials.get(user_id)
        return None if stored is None else stored.management.managed_by

    def sign_in_methods(self, user_id: str) -> int:
        """Return how many ways the user signs in outside integrations (password or SSO).

        The panel hands this to the Integrations tab, so disconnecting the last
        sign-in integration of a user without a password is refused. Storage without
        a credential repository knows of none: 0.

        Raises:
            ValidationError: ``user_id.*``.
        """
        validate_user_id(user_id)
        with self.storage.transaction(write=False) as tx:
            credentials: CredentialRepository | None = optional_repository(tx, "credentials")
            stored = None if credentials is None else credentials.get(user_id)
        return 0 if stored is None else stored.sign_in_methods

    def credentials_epoch(self, user_id: str) -> int:
        """Return the account's credentials epoch (0 before any credential change).

        A host that stores the epoch in each session ends sessions whose epoch is
        older: they were signed in before a credential change.
        """
        validate_user_id(user_id)
        with self.storage.transaction(write=False) as tx:
            return self._load(tx, user_id).epoch

    def overview(
        self, user_id: str, *, current_session_id: str | None = None, recent_events: int = 10
    ) -> SecurityOverview:
        """Return everything the Security tab shows, read in one consistent snapshot.

        Args:
            user_id: The account.
            current_session_id: The session looking at the page (marked current).
            recent_events: How many security events to include, newest first.

        Returns:
            The :class:`SecurityOverview`.

        Raises:
            ValidationError: ``user_id.*``.
            CapabilityError: if the storage cannot store credentials.
        """
        validate_user_id(user_id)
        now = self.clock.now()
        with self.storage.transaction(write=False) as tx:
            credentials = self._load(tx, user_id)
            sessions: Sequence[Session] = ()
            registry: SessionRepository | None = optional_repository(tx, "sessions")
            if registry is not None:
                sessions = registry.list_for_user(user_id)
            state = self._throttle_repo(tx).get(user_id, THROTTLE_SCOPE)
            events = tx.audit.list_for_user(
                user_id, kinds=_SECURITY_KINDS, limit=max(recent_events, 0), newest_first=True
            )
        return _overview(
            credentials,
            sessions=sessions,
            events=events,
            current_session_id=current_session_id,
            retry_after=self.lockout_policy.retry_after(state, now),
            now=now,
        )


def _overview(
    credentials: AccountCredentials,
    *,
    sessions: Sequence[Session],
    events: Sequence[AuditEvent],
    current_session_id: str | None,
    retry_after: timedelta,
    now: datetime,
) -> SecurityOverview:
    managed_by: ManagedBy | None = credentials.management.managed_by
    at_provider = _PROVIDER_FEATURES if managed_by is not None else frozenset()
    active = credentials.recovery.active
    totp = credentials.totp
    return SecurityOverview(
        user_id=credentials.user_id,
        managed_by=managed_by,
        managed_at_provider=at_provider,
        managed_here=_ALL_FEATURES - at_provider,
        password=PasswordStatus(
            is_set=credentials.has_password, changed_at=credentials.password_changed_at
        ),
        two_factor=TwoFactorStatus(
            enabled=totp is not None,
            enabled_at=None if totp is None else totp.enabled_at,
            setup_pending=credentials.pending_totp is not None,
        ),
        recovery_codes=RecoveryCodesStatus(
            remaining=0 if active is None else active.remaining,
            total=0 if active is None else len(active.codes),
            low=active is not None and active.low,
            generated_at=None if active is None else active.generated_at,
            pending=credentials.recovery.pending is not None,
        ),
        sessions=tuple(SessionInfo.of(s, current_session_id=current_session_id) for s in sessions),
        recent_events=tuple(events),
        credentials_epoch=credentials.epoch,
        locked_until=now + retry_after if retry_after > timedelta(0) else None,
    )

"""What the Security tab's operations return: the overview and small result objects.

Everything here is frozen and safe to log: secrets that must be shown once (a new
TOTP secret, new recovery codes) are hidden from ``repr``.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from enspace_profile._audit import AuditEvent
from enspace_profile._security.accounts import ManagedBy
from enspace_profile._security.domain import SecurityFeature, Session

__all__ = [
    "CredentialsChanged",
    "NewRecoveryCodes",
    "PasswordStatus",
    "PasswordVerification",
    "RecoveryCodeUsed",
    "RecoveryCodesStatus",
    "SecurityOverview",
    "SessionInfo",
    "TotpSetup",
    "TwoFactorStatus",
]


@attrs.frozen(kw_only=True)
class CredentialsChanged:
    """The outcome of a credential change.

    Attributes:
        credentials_epoch: The account's new credentials epoch. Store it in the
            current session; sessions holding an older epoch predate the change.
        sign_out_other_sessions: Whether the host should end the user's other
            sessions (those it does not track in the session registry included).
        revoked_sessions: Sessions of the registry that were signed out by the change.
    """

    credentials_epoch: int
    sign_out_other_sessions: bool
    revoked_sessions: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class PasswordVerification:
    """A password that verified.

    Attributes:
        user_id: Whose password.
        two_factor_required: Whether the user must also pass a second factor
            (:meth:`SecurityService.verify_totp` or a recovery code).
        credentials_epoch: The current epoch, to store in the new session.
    """

    user_id: str
    two_factor_required: bool
    credentials_epoch: int


@attrs.frozen(kw_only=True)
class TotpSetup:
    """A new authenticator secret, to show once (as a QR code of :attr:`uri`, and as text).

    Attributes:
        secret: The secret in base32, for typing into an app; hidden from ``repr``.
        uri: The ``otpauth://`` URI to render as a QR code; hidden from ``repr``.
        digits: Code length.
        period: Seconds per code.
    """

    secret: str = attrs.field(repr=False)
    uri: str = attrs.field(repr=False)
    digits: int
    period: int


@attrs.frozen(kw_only=True)
class NewRecoveryCodes:
    """Freshly generated recovery codes: show them once, then let the user confirm.

    Attributes:
        codes: The codes (``xxxx-xxxx-xxxx``); hidden from ``repr``; never stored.
        generated_at: When they were generated.
    """

    codes: tuple[str, ...] = attrs.field(repr=lambda codes: f"<{len(codes)} codes hidden>")
    generated_at: datetime


@attrs.frozen(kw_only=True)
class RecoveryCodeUsed:
    """A recovery code that worked (and can never work again).

    Attributes:
        remaining: Unused codes left.
        low: Whether 3 or fewer are left (suggest generating new ones).
    """

    remaining: int
    low: bool


@attrs.frozen(kw_only=True)
class PasswordStatus:
    """The password part of the overview.

    Attributes:
        is_set: Whether the account has a password.
        changed_at: When it was last set, if known.
    """

    is_set: bool
    changed_at: datetime | None


@attrs.frozen(kw_only=True)
class TwoFactorStatus:
    """The two-factor part of the overview.

    Attributes:
        enabled: Whether an authenticator app is enabled.
        enabled_at: Since when.
        setup_pending: Whether a set-up was started and not confirmed.
    """

    enabled: bool
    enabled_at: datetime | None
    setup_pending: bool


@attrs.frozen(kw_only=True)
class RecoveryCodesStatus:
    """The recovery code part of the overview.

    Attributes:
        remaining: Unused codes of the active set (0 without one).
        total: Codes in the active set (0 without one).
        low: Whether an active set is down to 3 or fewer codes (show a warning).
        generated_at: When the active set was generated.
        pending: Whether new codes were generated and await confirmation.
    """

    remaining: int
    total: int
    low: bool
    generated_at: datetime | None
    pending: bool


@attrs.frozen(kw_only=True)
class SessionInfo:
    """One row of "where you're signed in".

    Attributes:
        session_id: The host's session identifier.
        created_at: When the user signed in.
        last_seen_at: When the session was last used.
        ip_address: The last client address, if known.
        user_agent: The client's user agent, if known.
        current: Whether this is the session looking at the page.
    """

    session_id: str
    created_at: datetime
    last_seen_at: datetime
    ip_address: str | None
    user_agent: str | None
    current: bool

    @classmethod
    def of(cls, session: Session, *, current_session_id: str | None) -> SessionInfo:
        """Return the row for ``session``, marked current when its id matches."""
        return cls(
            session_id=session.session_id,
            created_at=session.created_at,
            last_seen_at=session.last_seen_at,
            ip_address=session.ip_address,
            user_agent=session.user_agent,
            current=session.session_id == current_session_id,
        )


@attrs.frozen(kw_only=True)
class SecurityOverview:
    """Everything the Security tab shows for one user.

    Attributes:
        user_id: Whose account.
        managed_by: The identity provider managing the credentials, or ``None``.
        managed_at_provider: Features to change at the provider ("Change this at Okta").
        managed_here: Features the user manages on this page.
        password: Password status.
        two_factor: Two-factor status.
        recovery_codes: Recovery code status (with the low-codes warning).
        sessions: Registered sessions, most recently used first (empty when the
            storage has no session registry).
        recent_events: The latest security events, newest first.
        credentials_epoch: The current credentials epoch.
        locked_until: While repeated failures lock the account, until when.
    """

    user_id: str
    managed_by: ManagedBy | None
    managed_at_provider: frozenset[SecurityFeature]
    managed_here: frozenset[SecurityFeature]
    password: PasswordStatus
    two_factor: TwoFactorStatus
    recovery_codes: RecoveryCodesStatus
    sessions: tuple[SessionInfo, ...]
    recent_events: tuple[AuditEvent, ...]
    credentials_epoch: int
    locked_until: datetime | None

    @property
    def managed_externally(self) -> bool:
        """Whether an identity provider manages the account's credentials."""
        return self.managed_by is not None

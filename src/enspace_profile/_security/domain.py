"""What the Security tab stores: credentials, the session registry, event kinds.

These frozen objects are what the storage ports (:mod:`enspace_profile.typing`) take
and return. They hold secrets only in protected form: a password *hash*, a TOTP secret
*sealed* with the host's key ring, recovery code *hashes*. ``repr`` shows none of them.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import attrs

from enspace_profile._clock import ensure_utc
from enspace_profile._security.accounts import AccountManagement
from enspace_profile._security.recovery import RecoveryCodeState
from enspace_profile.exceptions import ValidationError

__all__ = [
    "MAX_SESSION_ID_LENGTH",
    "MAX_USER_AGENT_LENGTH",
    "AccountCredentials",
    "SecurityEventKind",
    "SecurityFeature",
    "Session",
    "TotpEnrolment",
    "clean_ip_address",
    "clean_session_id",
    "clean_user_agent",
]

MAX_SESSION_ID_LENGTH: Final = 256
"""Longest session identifier the registry accepts."""

MAX_USER_AGENT_LENGTH: Final = 512
"""User agents are cut to this many characters (they are shown, never parsed)."""


class SecurityEventKind(StrEnum):
    """Kinds of the audit events the Security tab writes (the value is ``AuditEvent.kind``)."""

    PASSWORD_SET = "security.password_set"  # noqa: S105 - an event kind, not a password
    PASSWORD_CHANGED = "security.password_changed"  # noqa: S105 - an event kind
    TWO_FACTOR_ENABLED = "security.two_factor_enabled"
    TWO_FACTOR_DISABLED = "security.two_factor_disabled"
    RECOVERY_CODES_REGENERATED = "security.recovery_codes_regenerated"
    RECOVERY_CODE_USED = "security.recovery_code_used"
    LOCKOUT = "security.lockout"
    SESSION_REVOKED = "security.session_revoked"
    CHANGE_REFUSED_MANAGED = "security.change_refused_managed"
    MANAGED_EXTERNALLY = "security.managed_externally"
    MANAGED_LOCALLY = "security.managed_locally"
    SECRETS_REENCRYPTED = "security.secrets_reencrypted"


class SecurityFeature(StrEnum):
    """The parts of the Security tab, for saying what is managed where."""

    PASSWORD = "password"  # noqa: S105 - a feature name, not a password
    TWO_FACTOR = "two_factor"
    RECOVERY_CODES = "recovery_codes"
    SESSIONS = "sessions"


def _optional_utc(value: datetime | None) -> datetime | None:
    return None if value is None else ensure_utc(value)


def _bytes_repr(value: bytes) -> str:
    return f"<{len(value)} bytes>"


def _hash_repr(value: str | None) -> str:
    return "None" if value is None else "<hidden>"


@attrs.frozen(kw_only=True)
class TotpEnrolment:
    """One authenticator app's TOTP secret, sealed, and how far it has been used.

    Attributes:
        sealed_secret: ``SealedBox.to_bytes()`` of the secret (AES-GCM under the
            host's key ring, bound to the user); hidden from ``repr``.
        created_at: When the secret was generated.
        enabled_at: When the user confirmed it (``None`` while pending).
        last_used_step: The last accepted time step; that step and all earlier ones
            are refused (replay protection).
    """

    sealed_secret: bytes = attrs.field(repr=_bytes_repr)
    created_at: datetime = attrs.field(converter=ensure_utc)
    enabled_at: datetime | None = attrs.field(default=None, converter=_optional_utc)
    last_used_step: int | None = None


@attrs.frozen(kw_only=True)
class AccountCredentials:
    """Everything stored about how one user signs in.

    Attributes:
        user_id: The host's id for the user.
        version: 0 for a record not stored yet, then 1, 2, ... (optimistic concurrency).
        epoch: Increases with every credential change; hosts compare it with the
            value they stored in a session to end sessions that predate a change.
        management: Local, or managed by an identity provider (SSO).
        password_hash: The PHC (or imported) hash, or ``None``; hidden from ``repr``.
        password_changed_at: When the password was last set.
        totp: The enabled authenticator, or ``None`` (two-factor off).
        pending_totp: An authenticator being set up, not yet confirmed.
        recovery: Active and pending recovery code sets (hashes only).
    """

    user_id: str
    version: int = 0
    epoch: int = 0
    management: AccountManagement = attrs.field(factory=AccountManagement.local)
    password_hash: str | None = attrs.field(default=None, repr=_hash_repr)
    password_changed_at: datetime | None = attrs.field(default=None, converter=_optional_utc)
    totp: TotpEnrolment | None = None
    pending_totp: TotpEnrolment | None = None
    recovery: RecoveryCodeState = attrs.field(factory=RecoveryCodeState)

    @property
    def has_password(self) -> bool:
        """Whether a password is set."""
        return self.password_hash is not None

    @property
    def sign_in_methods(self) -> int:
        """How many ways this account signs in outside integrations.

        A managed account signs in through its identity provider; a local one with
        its password, if it has one.
        """
        if not self.management.is_local:
            return 1
        return 1 if self.has_password else 0

    @property
    def two_factor_enabled(self) -> bool:
        """Whether a confirmed authenticator is enabled."""
        return self.totp is not None


@attrs.frozen(kw_only=True)
class Session:
    """One signed-in session, as the host reported it.

    Attributes:
        session_id: The host's identifier for the session. Not the session cookie or
            any other bearer secret: it is stored, shown and written to events.
        user_id: Whose session.
        created_at: When the user signed in.
        last_seen_at: When the host last saw the session in use.
        ip_address: The last client address (normalised), or ``None``.
        user_agent: The client's user agent (cut to 512 characters), or ``None``.
    """

    session_id: str
    user_id: str
    created_at: datetime = attrs.field(converter=ensure_utc)
    last_seen_at: datetime = attrs.field(converter=ensure_utc)
    ip_address: str | None = None
    user_agent: str | None = None


def clean_session_id(value: Any, *, field: str = "session_id") -> str:
    """Return ``value`` if it is a usable session id, else raise.

    Raises:
        ValidationError: ``<field>.invalid``: not 1 to 256 printable characters.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_SESSION_ID_LENGTH:
        raise ValidationError.single(
            field,
            "invalid",
            f"a session id is 1 to {MAX_SESSION_ID_LENGTH} printable characters",
            limit=MAX_SESSION_ID_LENGTH,
        )
    if not value.isprintable():
        raise ValidationError.single(field, "invalid", "a session id is printable text")
    return value


def clean_ip_address(value: Any) -> str | None:
    """Return the normalised form of an IPv4 or IPv6 address (``None`` stays ``None``).

    IPv4-mapped IPv6 addresses become plain IPv4, so one client is shown one way.

    >>> clean_ip_address("2001:DB8::0:1")
    '2001:db8::1'
    >>> clean_ip_address("::ffff:192.0.2.7")
    '192.0.2.7'

    Raises:
        ValidationError: ``ip_address.invalid``.
    """
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise ValidationError.single("ip_address", "invalid", "not an IP address")
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValidationError.single("ip_address", "invalid", "not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def clean_user_agent(value: Any) -> str | None:
    """Return a user agent fit for display: unprintable characters dropped, at most 512.

    User agents are shown to the user, never trusted or parsed, so they are cleaned
    rather than refused (refusing would break signing in for odd clients).

    Raises:
        ValidationError: ``user_agent.invalid`` if it is not text.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError.single("user_agent", "invalid", "the user agent must be text")
    cleaned = value if value.isprintable() else "".join(ch for ch in value if ch.isprintable())
    cleaned = cleaned.strip()[:MAX_USER_AGENT_LENGTH]
    return cleaned or None

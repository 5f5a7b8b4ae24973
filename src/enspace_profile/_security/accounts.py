"""Who manages an account's credentials: ENSPACE itself, or an identity provider (SSO).

In accounts with SSO, security changes must be made at the identity provider: the
password, second factors and recovery codes live there. :meth:`AccountManagement.ensure_local`
refuses such changes with :class:`~enspace_profile.exceptions.ManagedExternallyError`,
which carries the provider's name and, when known, the page where the user can make
the change.

>>> managed = AccountManagement.managed("Okta", manage_url="https://acme.okta.com/enduser/settings")
>>> try:
...     managed.ensure_local(SensitiveAction.CHANGE_PASSWORD)
... except ManagedExternallyError as error:
...     print(error.provider, error.manage_url)
Okta https://acme.okta.com/enduser/settings
"""

from __future__ import annotations

import ipaddress
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from enspace_profile._security.reauth import SensitiveAction
from enspace_profile.exceptions import ManagedExternallyError, ValidationError

__all__ = [
    "IDENTITY_PROVIDER_ACTIONS",
    "AccountManagement",
    "ManagedBy",
]

IDENTITY_PROVIDER_ACTIONS: Final = frozenset(
    {
        SensitiveAction.CHANGE_PASSWORD,
        SensitiveAction.ENABLE_TWO_FACTOR,
        SensitiveAction.DISABLE_TWO_FACTOR,
        SensitiveAction.REGENERATE_RECOVERY_CODES,
    }
)
"""Actions on credentials that an identity provider owns for SSO-managed accounts.

Tokens, integrations and sessions belong to ENSPACE and stay available.
"""

_MAX_PROVIDER_LENGTH: Final = 100
_MAX_URL_LENGTH: Final = 2048
_LOOPBACK_NAMES: Final = frozenset({"localhost"})


def _validate_provider(_instance: object, _attribute: object, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError.single("provider", "required", "the provider's name is required")
    if len(value) > _MAX_PROVIDER_LENGTH or not value.isprintable():
        raise ValidationError.single(
            "provider",
            "invalid",
            f"the provider's name is printable text of at most {_MAX_PROVIDER_LENGTH} characters",
            limit=_MAX_PROVIDER_LENGTH,
        )


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bad_url(problem: str, message: str) -> ValidationError:
    return ValidationError.single("manage_url", problem, message)


def _validate_manage_url(_instance: object, _attribute: object, value: Any) -> None:
    """Accept ``https://`` URLs, and ``http://`` only for loopback hosts (local development).

    Plain http to a real host would let anyone on the path swap the page where users
    go to change their password; a loopback address never leaves the machine, and
    identity providers run locally during development (e.g. ``http://localhost:8080``).
    """
    if value is None:
        return
    if not isinstance(value, str) or not value:
        raise _bad_url("invalid", "the management URL must be text")
    if len(value) > _MAX_URL_LENGTH or not value.isprintable() or any(ch in value for ch in " \\"):
        raise _bad_url("invalid", "the management URL is not a valid URL")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - parsing the port validates it
    except ValueError:
        raise _bad_url("invalid", "the management URL is not a valid URL") from None
    if parts.username is not None or parts.password is not None:
        raise _bad_url("credentials", "the management URL must not contain a user name or password")
    if not host:
        raise _bad_url("invalid", "the management URL needs a host")
    scheme = parts.scheme.lower()
    if scheme == "https" or (scheme == "http" and _is_loopback(host)):
        return
    raise _bad_url("insecure", "the management URL must use https")


@attrs.frozen(kw_only=True)
class ManagedBy:
    """The identity provider that manages an account's credentials.

    Attributes:
        provider: Display name (``"Okta"``, ``"Microsoft Entra ID"``).
        manage_url: Where the user manages security at the provider, or ``None``.
            ``https`` only (``http`` is accepted for loopback hosts in development);
            never with a user name or password in it.

    Raises:
        ValidationError: ``provider.required``, ``provider.invalid``, ``manage_url.invalid``,
            ``manage_url.credentials`` or ``manage_url.insecure``.
    """

    provider: str = attrs.field(validator=_validate_provider)
    manage_url: str | None = attrs.field(default=None, validator=_validate_manage_url)


@attrs.frozen(kw_only=True)
class AccountManagement:
    """Whether ENSPACE or an identity provider manages an account's credentials.

    Attributes:
        managed_by: The identity provider, or ``None`` for a local account.
    """

    managed_by: ManagedBy | None = None

    @classmethod
    def local(cls) -> AccountManagement:
        """Return the management of an account whose credentials ENSPACE keeps."""
        return cls()

    @classmethod
    def managed(cls, provider: str, *, manage_url: str | None = None) -> AccountManagement:
        """Return the management of an SSO account.

        Raises:
            ValidationError: as :class:`ManagedBy`.
        """
        return cls(managed_by=ManagedBy(provider=provider, manage_url=manage_url))

    @property
    def is_local(self) -> bool:
        """Whether ENSPACE manages the credentials."""
        return self.managed_by is None

    def ensure_local(self, action: SensitiveAction | str) -> None:
        """Refuse ``action`` if an identity provider manages this account.

        Call it for the actions in :data:`IDENTITY_PROVIDER_ACTIONS`.

        Args:
            action: What is being attempted (its code is reported).

        Raises:
            ManagedExternallyError: with ``provider``, ``manage_url`` and ``action``.
        """
        if self.managed_by is not None:
            raise ManagedExternallyError(
                provider=self.managed_by.provider,
                manage_url=self.managed_by.manage_url,
                action=str(action),
            )

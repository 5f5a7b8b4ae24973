"""The facade: one :class:`UserPanel` per host, wiring storage, catalogs and policies to tabs.

It holds no logic of its own; each tab is a service attribute.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Self

from enspace_profile._audit import Notifier
from enspace_profile._clock import Clock, SystemClock
from enspace_profile._crypto.keyring import KeyRing
from enspace_profile._integrations.domain import (
    DisconnectPolicy,
    LastSignInMethodPolicy,
    ProviderCatalog,
)
from enspace_profile._integrations.service import IntegrationService, SignInMethodCounter
from enspace_profile._lab.domain import LabRegistry
from enspace_profile._lab.service import LabCachePolicy, LabService
from enspace_profile._profile.domain import ProfileRules
from enspace_profile._profile.locales import LocaleCatalog
from enspace_profile._profile.names import NamePolicy
from enspace_profile._profile.service import ProfileService
from enspace_profile._profile.themes import ThemeCatalog
from enspace_profile._random import RandomSource, SystemRandom
from enspace_profile._security.lockout import LockoutPolicy
from enspace_profile._security.password_policy import PasswordPolicy
from enspace_profile._security.passwords import PasswordHash
from enspace_profile._security.reauth import DEFAULT_REAUTH_POLICY, ReauthPolicy
from enspace_profile._security.service import SecurityService
from enspace_profile._security.totp import Totp
from enspace_profile._tabs.registry import TabRegistry
from enspace_profile._tabs.service import TabService
from enspace_profile._tokens.domain import (
    DEFAULT_LAST_USED_INTERVAL,
    DEFAULT_SCOPE_CATALOG,
    ExpiryPolicy,
    ScopeCatalog,
)
from enspace_profile._tokens.format import DEFAULT_TOKEN_FORMAT, TokenFormat
from enspace_profile._tokens.hashing import Pepper, TokenHasher
from enspace_profile._tokens.service import DEFAULT_MAX_TOKENS_PER_USER, TokenService
from enspace_profile.exceptions import ConfigurationError
from enspace_profile.typing import Storage

if TYPE_CHECKING:
    from enspace_profile._profile.images import PicturePolicy

__all__ = ["UserPanel"]


class UserPanel:
    """The back end of the User Panel: one object per host application.

    Args:
        storage: Where everything is kept (:class:`~enspace_profile.MemoryStorage`,
            :class:`~enspace_profile.SQLiteStorage`, or your own adapter).
        locales: UI languages offered (default: :meth:`LocaleCatalog.default`).
        themes: Themes offered (default: :meth:`ThemeCatalog.default`).
        names: Name length limits.
        pictures: Limits for profile pictures.
        clock: Source of time (inject a ``FixedClock`` in tests).
        rng: Source of randomness (the OS CSPRNG by default).
        notifier: Called with each audit event after it committed (emails, webhooks).
        key_ring: Encrypts secrets at rest (integration credentials, ...). Optional:
            the panel constructs without one, and features that need it raise
            :class:`~enspace_profile.exceptions.ConfigurationError` when used.
        reauth_policy: How recent an authentication sensitive actions need (default:
            10 minutes for every :class:`~enspace_profile.SensitiveAction`).
        providers: The external services users may connect (default: none).
        disconnect_policy: Decides whether an integration may be removed (default:
            never the user's last way to sign in).
        sign_in_methods: Tells, for a user id, how many ways to sign in the user has
            outside the Integrations tab (default: the Security tab's count: a local
            password or an SSO-managed account).
        lab: The lab features offered in the Lab tab (default: none, so the Lab
            tab is hidden).
        lab_cache: How ``panel.lab.is_enabled`` caches (default: re-read the
            storage's change marker at most every second, 10 000 users).
        tabs: The panel's tabs (default: :meth:`TabRegistry.default`, the
            product's six tabs with Billing coming soon).
        password_hash: Hashes passwords (default: ``PasswordHash.recommended()``:
            Argon2id with OWASP's parameters, scrypt where Argon2id is missing).
        password_policy: Which new passwords are accepted (NIST SP 800-63B-4).
        lockout_policy: When repeated failed sign-in checks lock an account.
        recovery_pepper: Secret key (16+ random bytes, kept outside the database) for
            recovery code hashes; recovery codes raise ``ConfigurationError`` without it.
            Two-factor authentication needs ``key_ring`` in the same way.
        totp: TOTP parameters (default: 6 digits, 30 seconds, one step of drift).
        issuer: The service name authenticator apps show next to the account.
        token_peppers: Server-side secrets for personal access token digests, current
            first (keep older ones while rotating). Without them the panel still
            constructs, and ``panel.tokens`` raises ``ConfigurationError``.
        scopes: The scopes tokens may carry (default: ``api:read``, ``api:write``).
        token_format: Prefix and length of tokens (default ``esp_``, 40 characters).
        expiry_policy: Allowed token lifetimes (default: required, at most 366 days).
        max_tokens_per_user: Cap on a user's live tokens (default 100).
        token_last_used_interval: Record a token's "last used" at most this often
            (default 10 minutes).

    Attributes:
        profile: The Profile tab (:class:`~enspace_profile.ProfileService`).
        lab: The Lab tab (:class:`~enspace_profile.LabService`).
        tabs: The tabs as each user sees them (:class:`~enspace_profile.TabService`).
        integrations: The Integrations tab (:class:`~enspace_profile.IntegrationService`).
        security: The Security tab (:class:`~enspace_profile.SecurityService`).
        tokens: The Dev tab (:class:`~enspace_profile.TokenService`); needs
            ``token_peppers``.

    >>> from enspace_profile import UserPanel, MemoryStorage
    >>> panel = UserPanel(storage=MemoryStorage())
    >>> panel.profile.create("u1", first_name="Ada", last_name="Lovelace").display_name
    'Ada Lovelace'
    """

    def __init__(
        self,
        *,
        storage: Storage,
        locales: LocaleCatalog | None = None,
        themes: ThemeCatalog | None = None,
        names: NamePolicy | None = None,
        pictures: PicturePolicy | None = None,
        clock: Clock | None = None,
        rng: RandomSource | None = None,
        notifier: Notifier | None = None,
        lab: LabRegistry | None = None,
        lab_cache: LabCachePolicy | None = None,
        tabs: TabRegistry | None = None,
        key_ring: KeyRing | None = None,
        reauth_policy: ReauthPolicy | None = None,
        providers: ProviderCatalog | None = None,
        disconnect_policy: DisconnectPolicy | None = None,
        sign_in_methods: SignInMethodCounter | None = None,
        password_hash: PasswordHash | None = None,
        password_policy: PasswordPolicy | None = None,
        lockout_policy: LockoutPolicy | None = None,
        recovery_pepper: bytes | None = None,
        totp: Totp | None = None,
        issuer: str = "ENSPACE",
        token_peppers: Sequence[Pepper] | None = None,
        scopes: ScopeCatalog | None = None,
        token_format: TokenFormat | None = None,
        expiry_policy: ExpiryPolicy | None = None,
        max_tokens_per_user: int = DEFAULT_MAX_TOKENS_PER_USER,
        token_last_used_interval: timedelta = DEFAULT_LAST_USED_INTERVAL,
    ) -> None:
        self.storage = storage
        self.clock: Clock = clock or SystemClock()
        self.rng: RandomSource = rng or SystemRandom()
        self.locales = LocaleCatalog.default() if locales is None else locales
        self.themes = ThemeCatalog.default() if themes is None else themes
        if pictures is None:
            from enspace_profile._profile.images import PicturePolicy  # noqa: PLC0415

            pictures = PicturePolicy()
        rules = ProfileRules(
            names=names or NamePolicy(),
            locales=self.locales,
            themes=self.themes,
            pictures=pictures,
        )
        self.notifier = notifier
        self.profile = ProfileService(
            storage=storage, rules=rules, clock=self.clock, rng=self.rng, notifier=notifier
        )
        self.lab = LabService(
            storage=storage,
            registry=LabRegistry() if lab is None else lab,
            clock=self.clock,
            rng=self.rng,
            notifier=notifier,
            cache_policy=LabCachePolicy() if lab_cache is None else lab_cache,
        )
        self.key_ring = key_ring
        self.reauth_policy = DEFAULT_REAUTH_POLICY if reauth_policy is None else reauth_policy
        self.security = SecurityService(
            storage=storage,
            clock=self.clock,
            rng=self.rng,
            notifier=notifier,
            password_hash=password_hash,
            password_policy=password_policy or PasswordPolicy(),
            lockout_policy=lockout_policy or LockoutPolicy(),
            reauth_policy=self.reauth_policy,
            key_ring=key_ring,
            recovery_pepper=recovery_pepper,
            totp=totp or Totp(),
            issuer=issuer,
        )
        self.tabs = TabService(
            TabRegistry.default() if tabs is None else tabs,
            lab_visible=self.lab.has_visible_features,
            managed_by=self.security.managed_by,
        )
        self.integrations = IntegrationService(
            storage=storage,
            providers=ProviderCatalog() if providers is None else providers,
            clock=self.clock,
            rng=self.rng,
            key_ring=key_ring,
            reauth_policy=self.reauth_policy,
            disconnect_policy=disconnect_policy or LastSignInMethodPolicy(),
            sign_in_methods=self.security.sign_in_methods
            if sign_in_methods is None
            else sign_in_methods,
            notifier=notifier,
        )

        self._tokens = (
            None
            if token_peppers is None
            else TokenService(
                storage=storage,
                hasher=TokenHasher(token_peppers),
                scopes=DEFAULT_SCOPE_CATALOG if scopes is None else scopes,
                clock=self.clock,
                rng=self.rng,
                token_format=DEFAULT_TOKEN_FORMAT if token_format is None else token_format,
                expiry_policy=ExpiryPolicy() if expiry_policy is None else expiry_policy,
                reauth_policy=self.reauth_policy,
                max_tokens_per_user=max_tokens_per_user,
                last_used_interval=token_last_used_interval,
                notifier=notifier,
            )
        )

    @property
    def tokens(self) -> TokenService:
        """The Dev tab: personal access tokens (:class:`~enspace_profile.TokenService`).

        Raises:
            ConfigurationError: if the panel was built without ``token_peppers``
                (hosts that do not offer tokens never touch this).
        """
        if self._tokens is None:
            raise ConfigurationError(
                option="token_peppers", feature="personal access tokens (panel.tokens)"
            )
        return self._tokens

    @classmethod
    def open(cls, path: str | os.PathLike[str], **options: object) -> Self:
        """Open (creating and migrating if needed) the embedded SQLite default at ``path``.

        Args:
            path: The database file (``":memory:"`` for a throwaway database).
            **options: Passed to :class:`UserPanel` (``clock``, ``locales``, ...).

        Raises:
            SchemaVersionError: if the file was written by a newer version.
            StorageError: if the file is not a usable SQLite database.
        """
        from enspace_profile.stores.sqlite import SQLiteStorage  # noqa: PLC0415 - keep import light

        return cls(storage=SQLiteStorage(path), **options)  # type: ignore[arg-type]

    def close(self) -> None:
        """Close the storage."""
        self.storage.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<UserPanel storage={self.storage!r}>"

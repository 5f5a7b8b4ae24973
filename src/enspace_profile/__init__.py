"""enspace_profile: the back end of a SaaS User Panel.

Start with :class:`UserPanel`::

    from enspace_profile import UserPanel

    panel = UserPanel.open("panel.db")          # embedded SQLite default
    profile = panel.profile.create("u1", first_name="Ada")
    panel.profile.save("u1", {"last_name": "Lovelace"}, version=profile.version)

Importing this package loads no locale data and opens no file.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from enspace_profile import exceptions
    from enspace_profile._audit import AuditEvent, FieldChange
    from enspace_profile._clock import Clock, FixedClock, SystemClock
    from enspace_profile._crypto.keyring import EncryptionKey, KeyRing
    from enspace_profile._integrations.domain import (
        Connection,
        ConnectionStatus,
        Credentials,
        DisconnectPolicy,
        LastSignInMethodPolicy,
        Provider,
        ProviderCatalog,
        ProviderKind,
    )
    from enspace_profile._integrations.oauth import (
        AuthorizationRedirect,
        AuthorizationRequest,
        OAuthGrant,
    )
    from enspace_profile._integrations.service import (
        ConnectionCredentials,
        IntegrationService,
        ReencryptionReport,
    )
    from enspace_profile._lab.domain import (
        Audience,
        AudienceKind,
        FeatureState,
        LabFeature,
        LabRegistry,
        OptIn,
        Reason,
        Stage,
        Terms,
        rollout_bucket,
    )
    from enspace_profile._lab.service import LabCachePolicy, LabItem, LabService
    from enspace_profile._panel import UserPanel
    from enspace_profile._profile.avatar import Avatar, AvatarPalette, avatar_for
    from enspace_profile._profile.domain import EDITABLE_FIELDS, PictureRef, Profile, ProfileRules
    from enspace_profile._profile.images import (
        ImageInfo,
        PicturePolicy,
        PreparedPicture,
        inspect_image,
        prepare_picture,
        reencode,
        strip_metadata,
    )
    from enspace_profile._profile.locales import Language, LocaleCatalog
    from enspace_profile._profile.names import (
        NamePolicy,
        display_name,
        grapheme_length,
        initials,
        normalize_name,
    )
    from enspace_profile._profile.service import ProfileService
    from enspace_profile._profile.themes import (
        ColorScheme,
        Theme,
        ThemeCatalog,
        ThemeMode,
        ThemePreference,
        ThemeTokens,
        contrast_ratio,
    )
    from enspace_profile._random import RandomSource, SeededRandom, SystemRandom
    from enspace_profile._security.accounts import AccountManagement, ManagedBy
    from enspace_profile._security.domain import (
        AccountCredentials,
        SecurityEventKind,
        SecurityFeature,
        Session,
        TotpEnrolment,
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
    from enspace_profile._security.passwords import (
        Argon2idHasher,
        DjangoPbkdf2Hasher,
        PasswordHash,
        PasswordHasher,
        ScryptHasher,
    )
    from enspace_profile._security.reauth import (
        AuthContext,
        Factor,
        ReauthPolicy,
        ReauthRule,
        SensitiveAction,
    )
    from enspace_profile._security.service import SecurityService
    from enspace_profile._security.totp import Totp, TotpSecret
    from enspace_profile._tabs.registry import Tab, TabNote, TabRegistry, TabRule, TabStatus
    from enspace_profile._tabs.service import AccountManagementLookup, LabVisibility, TabService
    from enspace_profile._tokens.domain import (
        AccessToken,
        CreatedToken,
        ExpiryPolicy,
        Principal,
        Scope,
        ScopeCatalog,
        TokenCredential,
        TokenStatus,
        describe_rejection,
    )
    from enspace_profile._tokens.format import (
        TOKEN_PATTERN,
        TokenFormat,
        find_tokens,
        token_from_header,
    )
    from enspace_profile._tokens.hashing import Pepper, TokenHasher
    from enspace_profile._tokens.service import KEEP, TokenService
    from enspace_profile.exceptions import (
        AlreadyExistsError,
        ConflictError,
        EnspaceProfileError,
        FieldError,
        InsufficientScopeError,
        InvalidCredentialsError,
        ManagedExternallyError,
        NotFoundError,
        RateLimitedError,
        ReauthenticationRequired,
        TokenError,
        ValidationError,
    )
    from enspace_profile.serialization import converter, make_converter
    from enspace_profile.stores.memory import MemoryStorage
    from enspace_profile.stores.sqlite import SQLiteStorage

# Public name -> the module that defines it. Imported on first use (PEP 562), so
# `import enspace_profile` stays cheap: no Babel data, no Pillow, no tab a host
# does not use.
_LAZY: dict[str, str] = {
    "AccessToken": "enspace_profile._tokens.domain",
    "AccountCredentials": "enspace_profile._security.domain",
    "AccountManagement": "enspace_profile._security.accounts",
    "AccountManagementLookup": "enspace_profile._tabs.service",
    "AlreadyExistsError": "enspace_profile.exceptions",
    "Argon2idHasher": "enspace_profile._security.passwords",
    "Audience": "enspace_profile._lab.domain",
    "AudienceKind": "enspace_profile._lab.domain",
    "AuditEvent": "enspace_profile._audit",
    "AuthContext": "enspace_profile._security.reauth",
    "AuthorizationRedirect": "enspace_profile._integrations.oauth",
    "AuthorizationRequest": "enspace_profile._integrations.oauth",
    "Avatar": "enspace_profile._profile.avatar",
    "AvatarPalette": "enspace_profile._profile.avatar",
    "Clock": "enspace_profile._clock",
    "ColorScheme": "enspace_profile._profile.themes",
    "ConflictError": "enspace_profile.exceptions",
    "Connection": "enspace_profile._integrations.domain",
    "ConnectionCredentials": "enspace_profile._integrations.service",
    "ConnectionStatus": "enspace_profile._integrations.domain",
    "CreatedToken": "enspace_profile._tokens.domain",
    "Credentials": "enspace_profile._integrations.domain",
    "CredentialsChanged": "enspace_profile._security.overview",
    "DisconnectPolicy": "enspace_profile._integrations.domain",
    "DjangoPbkdf2Hasher": "enspace_profile._security.passwords",
    "EDITABLE_FIELDS": "enspace_profile._profile.domain",
    "EncryptionKey": "enspace_profile._crypto.keyring",
    "EnspaceProfileError": "enspace_profile.exceptions",
    "ExpiryPolicy": "enspace_profile._tokens.domain",
    "Factor": "enspace_profile._security.reauth",
    "FailureState": "enspace_profile._security.lockout",
    "FeatureState": "enspace_profile._lab.domain",
    "FieldChange": "enspace_profile._audit",
    "FieldError": "enspace_profile.exceptions",
    "FixedClock": "enspace_profile._clock",
    "ImageInfo": "enspace_profile._profile.images",
    "InsufficientScopeError": "enspace_profile.exceptions",
    "IntegrationService": "enspace_profile._integrations.service",
    "InvalidCredentialsError": "enspace_profile.exceptions",
    "KEEP": "enspace_profile._tokens.service",
    "KeyRing": "enspace_profile._crypto.keyring",
    "LabCachePolicy": "enspace_profile._lab.service",
    "LabFeature": "enspace_profile._lab.domain",
    "LabItem": "enspace_profile._lab.service",
    "LabRegistry": "enspace_profile._lab.domain",
    "LabService": "enspace_profile._lab.service",
    "LabVisibility": "enspace_profile._tabs.service",
    "Language": "enspace_profile._profile.locales",
    "LastSignInMethodPolicy": "enspace_profile._integrations.domain",
    "LocaleCatalog": "enspace_profile._profile.locales",
    "LockoutPolicy": "enspace_profile._security.lockout",
    "ManagedBy": "enspace_profile._security.accounts",
    "ManagedExternallyError": "enspace_profile.exceptions",
    "MemoryStorage": "enspace_profile.stores.memory",
    "NamePolicy": "enspace_profile._profile.names",
    "NewRecoveryCodes": "enspace_profile._security.overview",
    "NotFoundError": "enspace_profile.exceptions",
    "OAuthGrant": "enspace_profile._integrations.oauth",
    "OptIn": "enspace_profile._lab.domain",
    "PasswordHash": "enspace_profile._security.passwords",
    "PasswordHasher": "enspace_profile._security.passwords",
    "PasswordPolicy": "enspace_profile._security.password_policy",
    "PasswordStatus": "enspace_profile._security.overview",
    "PasswordVerification": "enspace_profile._security.overview",
    "Pepper": "enspace_profile._tokens.hashing",
    "PicturePolicy": "enspace_profile._profile.images",
    "PictureRef": "enspace_profile._profile.domain",
    "PreparedPicture": "enspace_profile._profile.images",
    "Principal": "enspace_profile._tokens.domain",
    "Profile": "enspace_profile._profile.domain",
    "ProfileRules": "enspace_profile._profile.domain",
    "ProfileService": "enspace_profile._profile.service",
    "Provider": "enspace_profile._integrations.domain",
    "ProviderCatalog": "enspace_profile._integrations.domain",
    "ProviderKind": "enspace_profile._integrations.domain",
    "RandomSource": "enspace_profile._random",
    "RateLimitedError": "enspace_profile.exceptions",
    "Reason": "enspace_profile._lab.domain",
    "ReauthPolicy": "enspace_profile._security.reauth",
    "ReauthRule": "enspace_profile._security.reauth",
    "ReauthenticationRequired": "enspace_profile.exceptions",
    "RecoveryCodeUsed": "enspace_profile._security.overview",
    "RecoveryCodesStatus": "enspace_profile._security.overview",
    "ReencryptionReport": "enspace_profile._integrations.service",
    "SQLiteStorage": "enspace_profile.stores.sqlite",
    "Scope": "enspace_profile._tokens.domain",
    "ScopeCatalog": "enspace_profile._tokens.domain",
    "ScryptHasher": "enspace_profile._security.passwords",
    "SecurityEventKind": "enspace_profile._security.domain",
    "SecurityFeature": "enspace_profile._security.domain",
    "SecurityOverview": "enspace_profile._security.overview",
    "SecurityService": "enspace_profile._security.service",
    "SeededRandom": "enspace_profile._random",
    "SensitiveAction": "enspace_profile._security.reauth",
    "Session": "enspace_profile._security.domain",
    "SessionInfo": "enspace_profile._security.overview",
    "Stage": "enspace_profile._lab.domain",
    "SystemClock": "enspace_profile._clock",
    "SystemRandom": "enspace_profile._random",
    "TOKEN_PATTERN": "enspace_profile._tokens.format",
    "Tab": "enspace_profile._tabs.registry",
    "TabNote": "enspace_profile._tabs.registry",
    "TabRegistry": "enspace_profile._tabs.registry",
    "TabRule": "enspace_profile._tabs.registry",
    "TabService": "enspace_profile._tabs.service",
    "TabStatus": "enspace_profile._tabs.registry",
    "Terms": "enspace_profile._lab.domain",
    "Theme": "enspace_profile._profile.themes",
    "ThemeCatalog": "enspace_profile._profile.themes",
    "ThemeMode": "enspace_profile._profile.themes",
    "ThemePreference": "enspace_profile._profile.themes",
    "ThemeTokens": "enspace_profile._profile.themes",
    "TokenCredential": "enspace_profile._tokens.domain",
    "TokenError": "enspace_profile.exceptions",
    "TokenFormat": "enspace_profile._tokens.format",
    "TokenHasher": "enspace_profile._tokens.hashing",
    "TokenService": "enspace_profile._tokens.service",
    "TokenStatus": "enspace_profile._tokens.domain",
    "Totp": "enspace_profile._security.totp",
    "TotpEnrolment": "enspace_profile._security.domain",
    "TotpSecret": "enspace_profile._security.totp",
    "TotpSetup": "enspace_profile._security.overview",
    "TwoFactorStatus": "enspace_profile._security.overview",
    "UserPanel": "enspace_profile._panel",
    "ValidationError": "enspace_profile.exceptions",
    "avatar_for": "enspace_profile._profile.avatar",
    "contrast_ratio": "enspace_profile._profile.themes",
    "converter": "enspace_profile.serialization",
    "describe_rejection": "enspace_profile._tokens.domain",
    "display_name": "enspace_profile._profile.names",
    "exceptions": "enspace_profile.exceptions",
    "find_tokens": "enspace_profile._tokens.format",
    "grapheme_length": "enspace_profile._profile.names",
    "initials": "enspace_profile._profile.names",
    "inspect_image": "enspace_profile._profile.images",
    "make_converter": "enspace_profile.serialization",
    "normalize_name": "enspace_profile._profile.names",
    "prepare_picture": "enspace_profile._profile.images",
    "reencode": "enspace_profile._profile.images",
    "rollout_bucket": "enspace_profile._lab.domain",
    "strip_metadata": "enspace_profile._profile.images",
    "token_from_header": "enspace_profile._tokens.format",
}

__all__ = [
    "EDITABLE_FIELDS",
    "KEEP",
    "TOKEN_PATTERN",
    "AccessToken",
    "AccountCredentials",
    "AccountManagement",
    "AccountManagementLookup",
    "AlreadyExistsError",
    "Argon2idHasher",
    "Audience",
    "AudienceKind",
    "AuditEvent",
    "AuthContext",
    "AuthorizationRedirect",
    "AuthorizationRequest",
    "Avatar",
    "AvatarPalette",
    "Clock",
    "ColorScheme",
    "ConflictError",
    "Connection",
    "ConnectionCredentials",
    "ConnectionStatus",
    "CreatedToken",
    "Credentials",
    "CredentialsChanged",
    "DisconnectPolicy",
    "DjangoPbkdf2Hasher",
    "EncryptionKey",
    "EnspaceProfileError",
    "ExpiryPolicy",
    "Factor",
    "FailureState",
    "FeatureState",
    "FieldChange",
    "FieldError",
    "FixedClock",
    "ImageInfo",
    "InsufficientScopeError",
    "IntegrationService",
    "InvalidCredentialsError",
    "KeyRing",
    "LabCachePolicy",
    "LabFeature",
    "LabItem",
    "LabRegistry",
    "LabService",
    "LabVisibility",
    "Language",
    "LastSignInMethodPolicy",
    "LocaleCatalog",
    "LockoutPolicy",
    "ManagedBy",
    "ManagedExternallyError",
    "MemoryStorage",
    "NamePolicy",
    "NewRecoveryCodes",
    "NotFoundError",
    "OAuthGrant",
    "OptIn",
    "PasswordHash",
    "PasswordHasher",
    "PasswordPolicy",
    "PasswordStatus",
    "PasswordVerification",
    "Pepper",
    "PicturePolicy",
    "PictureRef",
    "PreparedPicture",
    "Principal",
    "Profile",
    "ProfileRules",
    "ProfileService",
    "Provider",
    "ProviderCatalog",
    "ProviderKind",
    "RandomSource",
    "RateLimitedError",
    "Reason",
    "ReauthPolicy",
    "ReauthRule",
    "ReauthenticationRequired",
    "RecoveryCodeUsed",
    "RecoveryCodesStatus",
    "ReencryptionReport",
    "SQLiteStorage",
    "Scope",
    "ScopeCatalog",
    "ScryptHasher",
    "SecurityEventKind",
    "SecurityFeature",
    "SecurityOverview",
    "SecurityService",
    "SeededRandom",
    "SensitiveAction",
    "Session",
    "SessionInfo",
    "Stage",
    "SystemClock",
    "SystemRandom",
    "Tab",
    "TabNote",
    "TabRegistry",
    "TabRule",
    "TabService",
    "TabStatus",
    "Terms",
    "Theme",
    "ThemeCatalog",
    "ThemeMode",
    "ThemePreference",
    "ThemeTokens",
    "TokenCredential",
    "TokenError",
    "TokenFormat",
    "TokenHasher",
    "TokenService",
    "TokenStatus",
    "Totp",
    "TotpEnrolment",
    "TotpSecret",
    "TotpSetup",
    "TwoFactorStatus",
    "UserPanel",
    "ValidationError",
    "avatar_for",
    "contrast_ratio",
    "converter",
    "describe_rejection",
    "display_name",
    "exceptions",
    "find_tokens",
    "grapheme_length",
    "initials",
    "inspect_image",
    "make_converter",
    "normalize_name",
    "prepare_picture",
    "reencode",
    "rollout_bucket",
    "strip_metadata",
    "token_from_header",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first access and cache it in the module."""
    module_name = _LAZY.get(name)
    if module_name is None:
        msg = f"module 'enspace_profile' has no attribute {name!r}"
        raise AttributeError(msg)
    module = importlib.import_module(module_name)
    value = module if module_name == f"enspace_profile.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

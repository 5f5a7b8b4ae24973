"""enspace_profile: the back end of a SaaS User Panel.

Start with :class:`UserPanel`::

    from enspace_profile import UserPanel

    panel = UserPanel.open("panel.db")          # embedded SQLite default
    profile = panel.profile.create("u1", first_name="Ada")
    panel.profile.save("u1", {"last_name": "Lovelace"}, version=profile.version)

Importing this package loads no locale data and opens no file.
"""

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

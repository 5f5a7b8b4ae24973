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
from enspace_profile.exceptions import (
    AlreadyExistsError,
    ConflictError,
    EnspaceProfileError,
    FieldError,
    NotFoundError,
    ValidationError,
)
from enspace_profile.serialization import converter, make_converter
from enspace_profile.stores.memory import MemoryStorage
from enspace_profile.stores.sqlite import SQLiteStorage

__all__ = [
    "EDITABLE_FIELDS",
    "AlreadyExistsError",
    "AuditEvent",
    "Avatar",
    "AvatarPalette",
    "Clock",
    "ColorScheme",
    "ConflictError",
    "EnspaceProfileError",
    "FieldChange",
    "FieldError",
    "FixedClock",
    "ImageInfo",
    "Language",
    "LocaleCatalog",
    "MemoryStorage",
    "NamePolicy",
    "NotFoundError",
    "PicturePolicy",
    "PictureRef",
    "PreparedPicture",
    "Profile",
    "ProfileRules",
    "ProfileService",
    "RandomSource",
    "SQLiteStorage",
    "SeededRandom",
    "SystemClock",
    "SystemRandom",
    "Theme",
    "ThemeCatalog",
    "ThemeMode",
    "ThemePreference",
    "ThemeTokens",
    "UserPanel",
    "ValidationError",
    "avatar_for",
    "contrast_ratio",
    "converter",
    "display_name",
    "exceptions",
    "grapheme_length",
    "initials",
    "inspect_image",
    "make_converter",
    "normalize_name",
    "prepare_picture",
    "reencode",
    "strip_metadata",
]

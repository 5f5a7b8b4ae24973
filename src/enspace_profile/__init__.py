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
from enspace_profile._profile.domain import EDITABLE_FIELDS, PictureRef, Profile, ProfileRules
from enspace_profile._profile.names import (
    NamePolicy,
    display_name,
    grapheme_length,
    initials,
    normalize_name,
)
from enspace_profile._profile.service import ProfileService
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
    "Clock",
    "ConflictError",
    "EnspaceProfileError",
    "FieldChange",
    "FieldError",
    "FixedClock",
    "MemoryStorage",
    "NamePolicy",
    "NotFoundError",
    "PictureRef",
    "Profile",
    "ProfileRules",
    "ProfileService",
    "RandomSource",
    "SQLiteStorage",
    "SeededRandom",
    "SystemClock",
    "SystemRandom",
    "UserPanel",
    "ValidationError",
    "converter",
    "display_name",
    "exceptions",
    "grapheme_length",
    "initials",
    "make_converter",
    "normalize_name",
]

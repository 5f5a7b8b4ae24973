"""The Profile tab's domain: the profile entity and the rules a Save must pass.

Pure code: no storage, no clock, no I/O. The service feeds it values and stores what
it returns.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import attrs

from enspace_profile._audit import FieldChange, JSONValue
from enspace_profile._profile.names import NamePolicy, display_name, initials, name_errors
from enspace_profile._profile.themes import ThemePreference
from enspace_profile._validation import validate_user_id
from enspace_profile.exceptions import FieldError, ValidationError

if TYPE_CHECKING:
    from enspace_profile._profile.images import PicturePolicy, PreparedPicture
    from enspace_profile._profile.locales import LocaleCatalog
    from enspace_profile._profile.themes import ThemeCatalog

__all__ = [
    "EDITABLE_FIELDS",
    "KEEP",
    "Keep",
    "PictureRef",
    "Profile",
    "ProfileEdit",
    "ProfileRules",
    "validate_user_id",
]

#: The fields a Save may change, in the order the Profile tab shows them.
EDITABLE_FIELDS: Final = ("picture", "first_name", "last_name", "language", "theme")


@attrs.frozen(kw_only=True)
class PictureRef:
    """A reference to a stored profile picture (the bytes live in the blob store).

    Attributes:
        sha256: Hex SHA-256 of the stored (metadata-free) bytes; the blob's key.
        media_type: ``image/png``, ``image/jpeg``, ``image/gif`` or ``image/webp``.
        width: Pixels.
        height: Pixels.
        size: Bytes.
    """

    sha256: str
    media_type: str
    width: int
    height: int
    size: int


@attrs.frozen(kw_only=True)
class Profile:
    """A person's profile as the Profile tab shows and saves it.

    Attributes:
        user_id: The host's identifier for the user (opaque to us).
        first_name: Normalised first name (never empty).
        last_name: Normalised last name, or ``None``.
        language: Canonical UI language identifier from the locale catalog (``pt_BR``).
        theme: Visual preference: one theme, or a day and a night theme.
        picture: The profile picture, or ``None`` (the avatar falls back to initials).
        created_at: When the profile was created (UTC).
        updated_at: When it was last saved (UTC).
        version: Increases by one on every Save that changes something.
    """

    user_id: str
    first_name: str
    last_name: str | None
    language: str
    theme: ThemePreference
    picture: PictureRef | None = None
    created_at: datetime
    updated_at: datetime
    version: int = 1

    @property
    def display_name(self) -> str:
        """The name shown in workflows and records ("Ana Souza", or "Ana")."""
        return display_name(self.first_name, self.last_name)

    @property
    def initials(self) -> str:
        """The avatar's fallback text when there is no picture."""
        return initials(self.first_name, self.last_name)


def theme_json(preference: ThemePreference) -> dict[str, Any]:
    """Return the JSON form of a theme preference (as stored and audited)."""
    return {
        "mode": preference.mode.value,
        "day": preference.day,
        "night": preference.night,
    }


def audit_value(field: str, value: object) -> JSONValue:
    """Return how a profile field's value appears in the audit log (never raw bytes)."""
    if isinstance(value, ThemePreference):
        return theme_json(value)
    if isinstance(value, PictureRef):
        return value.sha256
    if value is None or isinstance(value, str | int):
        return value
    msg = f"no audit form for {field}"
    raise TypeError(msg)


class Keep(enum.Enum):
    """Marks a field an edit leaves as it is."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


@attrs.frozen(kw_only=True)
class ProfileEdit:
    """A validated, normalised set of changes, as the Profile tab's Save submits it.

    Each field holds its new value, or :data:`KEEP` when the Save does not touch it.
    ``last_name`` and ``picture`` may be ``None``: cleared.
    """

    first_name: str | Keep = KEEP
    last_name: str | Keep | None = KEEP
    language: str | Keep = KEEP
    theme: ThemePreference | Keep = KEEP
    picture: PreparedPicture | Keep | None = KEEP

    def picture_ref(self) -> PictureRef | Keep | None:
        """The reference the profile will hold for the new picture (or ``None``/``KEEP``)."""
        if self.picture is None or isinstance(self.picture, Keep):
            return self.picture
        info = self.picture.info
        return PictureRef(
            sha256=self.picture.sha256,
            media_type=info.media_type,
            width=info.width,
            height=info.height,
            size=len(self.picture.data),
        )

    def apply_to(
        self, profile: Profile, *, now: datetime
    ) -> tuple[Profile, tuple[FieldChange, ...]]:
        """Return the profile after this edit and the field changes it makes.

        Fields whose new value equals the stored one are not changes. With no change,
        ``profile`` itself comes back (same version) with an empty tuple.
        """
        new_values: dict[str, Any] = {
            "first_name": self.first_name,
            "last_name": self.last_name,
            "language": self.language,
            "theme": self.theme,
            "picture": self.picture_ref(),
        }
        changes = []
        updates: dict[str, Any] = {}
        for name in EDITABLE_FIELDS:
            new = new_values[name]
            old = getattr(profile, name)
            if new is KEEP or new == old:
                continue
            updates[name] = new
            changes.append(
                FieldChange(field=name, old=audit_value(name, old), new=audit_value(name, new))
            )
        if not changes:
            return profile, ()
        updated = attrs.evolve(profile, **updates, updated_at=now, version=profile.version + 1)
        return updated, tuple(changes)


@attrs.frozen(kw_only=True)
class ProfileRules:
    """Everything a Save is checked against: name limits, languages, themes, pictures.

    Attributes:
        names: Length limits for the name fields.
        locales: The UI languages the host supports.
        themes: The themes the host offers.
        pictures: Limits for uploaded pictures.
    """

    names: NamePolicy
    locales: LocaleCatalog
    themes: ThemeCatalog
    pictures: PicturePolicy

    def validate_changes(self, changes: Mapping[str, object]) -> ProfileEdit:
        """Validate every change at once and return the normalised values.

        ``picture`` takes image bytes (returned as a ``PreparedPicture``: checked and
        stripped of metadata) or ``None`` to remove the picture.

        Raises:
            ValidationError: listing every problem, unknown field names included.
        """
        if not isinstance(changes, Mapping):
            raise ValidationError.single("changes", "invalid_type", "must be a mapping")
        errors: list[FieldError] = []
        clean: dict[str, Any] = {}  # each value has passed its own field's check
        for name, value in changes.items():
            if name not in EDITABLE_FIELDS:
                errors.append(
                    FieldError(
                        field=str(name),
                        code="profile.unknown_field",
                        message=f"{name!r} is not a profile field",
                        params={"allowed": list(EDITABLE_FIELDS)},
                    ),
                )
                continue
            try:
                clean[name] = self._validate_field(name, value, errors)
            except ValidationError as exc:
                errors.extend(exc.errors)
        if errors:
            raise ValidationError(errors)
        return ProfileEdit(**clean)

    def _validate_field(self, name: str, value: object, errors: list[FieldError]) -> object:
        if name in ("first_name", "last_name"):
            if name == "last_name" and value is None:
                value = ""
            normalised, problems = name_errors(value, field=name, policy=self.names)
            errors.extend(problems)
            return normalised or None
        if name == "language":
            return self.locales.validate(value, field=name)
        if name == "theme":
            return self.themes.validate_preference(value, field=name)
        # picture
        if value is None:
            return None
        return self.prepare_picture(value)

    def prepare_picture(self, value: object) -> PreparedPicture:
        """Check picture bytes against the policy and strip their metadata."""
        from enspace_profile._profile.images import prepare_picture  # noqa: PLC0415 - cheap, keeps import light

        if not isinstance(value, bytes | bytearray | memoryview):
            raise ValidationError.single("picture", "invalid_type", "must be image bytes or None")
        return prepare_picture(bytes(value), policy=self.pictures, field="picture")

    def new_values(
        self,
        *,
        first_name: object,
        last_name: object,
        language: object,
        theme: object,
    ) -> ProfileEdit:
        """Validate the fields of a new profile (all at once), filling defaults for ``None``."""
        changes: dict[str, object] = {"first_name": first_name, "last_name": last_name}
        changes["language"] = self.locales.default.identifier if language is None else language
        changes["theme"] = self.themes.default_preference if theme is None else theme
        return self.validate_changes(changes)

"""The initials avatar shown when a user has no profile picture.

The background colour is derived from the user id (SHA-256, so it is the same in
every process and every release), and the text colour is whichever of a light
and a dark text colour has the higher WCAG contrast with it. Every palette colour
is checked to reach 4.5:1, so initials are always readable.

The SVG is built by hand from a fixed template: only ``svg``, ``title``,
``rect``/``circle`` and ``text`` elements, no scripts, no event attributes, no
external references, and the initials are XML-escaped.

Example:
    >>> avatar = avatar_for("user-42", "AS")
    >>> avatar.background in AvatarPalette.default().colors
    True
    >>> avatar.render_svg(32).startswith("<svg ")
    True
"""

from __future__ import annotations

import functools
import hashlib
import html
import re
from collections.abc import Iterable
from typing import Literal

import attrs

from enspace_profile._profile.themes import contrast_ratio, normalize_color
from enspace_profile.exceptions import FieldError, ValidationError

__all__ = [
    "DEFAULT_AVATAR_COLORS",
    "MAX_INITIALS_LENGTH",
    "MIN_AVATAR_CONTRAST",
    "Avatar",
    "AvatarPalette",
    "AvatarShape",
    "avatar_for",
    "readable_text_color",
]

MIN_AVATAR_CONTRAST = 4.5
"""Every palette colour must reach this ratio with its text colour (WCAG 1.4.3 AA)."""

MAX_INITIALS_LENGTH = 32
"""Longest initials string (in code points, after cleaning) an avatar accepts."""

MIN_SVG_SIZE = 16
MAX_SVG_SIZE = 1024

# Chosen for this library: 12 saturated mid-dark hues that carry white text and 4
# pastels that carry dark text, all checked at palette construction.
DEFAULT_AVATAR_COLORS: tuple[str, ...] = (
    "#b4232a",
    "#b8420f",
    "#8f5f00",
    "#55731a",
    "#1e7a3c",
    "#0a7561",
    "#0b6f84",
    "#1f65b8",
    "#3f51c4",
    "#6a3fc2",
    "#8e2fae",
    "#b02468",
    "#f2c14e",
    "#8fd3c1",
    "#f4a3b4",
    "#a9c7f5",
)
"""The default avatar background colours."""

AvatarShape = Literal["circle", "square"]

_SHAPES: tuple[str, ...] = ("circle", "square")
_FONT_FAMILY = (
    "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, 'Noto Sans', sans-serif"
)
_WHITESPACE = re.compile(r"\s+")
# Characters XML 1.0 forbids or that can reorder surrounding text: C0/C1 controls,
# lone surrogates, U+FFFE/U+FFFF, and bidirectional embedding/override/isolate marks.
_UNSAFE_CHARS = re.compile(
    r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]",
)


def readable_text_color(
    background: str,
    *,
    light: str = "#ffffff",
    dark: str = "#111111",
) -> str:
    """Pick the text colour with the higher WCAG contrast on ``background``.

    This is the WCAG ratio itself, not a brightness (YIQ) heuristic; ties go to
    ``light``.

    Args:
        background: The fill colour (``#rrggbb`` or ``#rgb``).
        light: The light text candidate.
        dark: The dark text candidate.

    Returns:
        ``light`` or ``dark``, normalised to lowercase ``#rrggbb``.

    Raises:
        ValidationError: ``color.invalid`` for a malformed colour.

    Example:
        >>> readable_text_color("#f2c14e")
        '#111111'
    """
    light, dark = normalize_color(light), normalize_color(dark)
    if contrast_ratio(dark, background) > contrast_ratio(light, background):
        return dark
    return light


def _as_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _palette_index(user_id: str, size: int) -> int:
    """Stable index: the first 8 bytes of SHA-256(user id), modulo ``size``."""
    digest = hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % size


@attrs.frozen(kw_only=True)
class AvatarPalette:
    """Background colours for initials avatars, each paired with a readable text colour.

    Attributes:
        colors: Distinct background colours (normalised to lowercase ``#rrggbb``).
        light_text: Text colour for dark backgrounds.
        dark_text: Text colour for light backgrounds (near-black).

    Raises:
        ValidationError: All problems at once: ``avatar.palette_empty``,
            ``color.invalid``, ``avatar.palette_duplicate`` and
            ``avatar.palette_contrast`` (a colour that reaches
            :data:`MIN_AVATAR_CONTRAST` with neither text colour; params ``color``,
            ``ratio``, ``minimum``).

    Example:
        >>> palette = AvatarPalette(colors=("#1f65b8", "#F2C14E"))
        >>> palette.pick("user-1") in (("#1f65b8", "#ffffff"), ("#f2c14e", "#111111"))
        True
    """

    colors: tuple[str, ...] = attrs.field(converter=_as_tuple)
    light_text: str = "#ffffff"
    dark_text: str = "#111111"
    _foregrounds: tuple[str, ...] = attrs.field(init=False, repr=False, eq=False, default=())

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        light, dark = self._text_colors(errors)
        if not self.colors:
            errors.append(
                FieldError(
                    field="colors",
                    code="avatar.palette_empty",
                    message="an avatar palette needs at least one colour",
                    params={},
                ),
            )
        colors: list[str] = []
        foregrounds: list[str] = []
        for index, raw in enumerate(self.colors):
            field = f"colors[{index}]"
            try:
                color = normalize_color(raw, field=field)
            except ValidationError as error:
                errors.extend(error.errors)
                continue
            if color in colors:
                errors.append(
                    FieldError(
                        field=field,
                        code="avatar.palette_duplicate",
                        message=f"{color} appears more than once",
                        params={"color": color},
                    ),
                )
                continue
            colors.append(color)
            if light is None or dark is None:
                continue
            foreground = readable_text_color(color, light=light, dark=dark)
            ratio = contrast_ratio(foreground, color)
            if ratio < MIN_AVATAR_CONTRAST:
                errors.append(
                    FieldError(
                        field=field,
                        code="avatar.palette_contrast",
                        message=(
                            f"{color} reaches only {ratio:.2f}:1 with the better text colour; "
                            f"{MIN_AVATAR_CONTRAST:g}:1 is required"
                        ),
                        params={
                            "color": color,
                            "text": foreground,
                            "ratio": round(ratio, 2),
                            "minimum": MIN_AVATAR_CONTRAST,
                        },
                    ),
                )
            foregrounds.append(foreground)
        if errors:
            raise ValidationError(errors)
        object.__setattr__(self, "colors", tuple(colors))
        object.__setattr__(self, "light_text", light)
        object.__setattr__(self, "dark_text", dark)
        object.__setattr__(self, "_foregrounds", tuple(foregrounds))

    def _text_colors(self, errors: list[FieldError]) -> tuple[str | None, str | None]:
        result: list[str | None] = []
        for field, raw in (("light_text", self.light_text), ("dark_text", self.dark_text)):
            try:
                result.append(normalize_color(raw, field=field))
            except ValidationError as error:
                errors.extend(error.errors)
                result.append(None)
        return result[0], result[1]

    @classmethod
    def default(cls) -> AvatarPalette:
        """The built-in palette of :data:`DEFAULT_AVATAR_COLORS` (16 colours)."""
        return _default_palette()

    def __len__(self) -> int:
        return len(self.colors)

    def text_color_for(self, background: str) -> str:
        """The text colour (``light_text`` or ``dark_text``) with more contrast on ``background``.

        Raises:
            ValidationError: ``color.invalid`` for a malformed colour.
        """
        return readable_text_color(background, light=self.light_text, dark=self.dark_text)

    def index_for(self, user_id: str) -> int:
        """The palette index for a user: SHA-256 of the UTF-8 id, never ``hash()``.

        Raises:
            ValidationError: ``avatar.user_id_invalid`` for an empty or non-string id.
        """
        _check_user_id(user_id)
        return _palette_index(user_id, len(self.colors))

    def pick(self, user_id: str) -> tuple[str, str]:
        """Return ``(background, foreground)`` for a user, the same in every process.

        Raises:
            ValidationError: ``avatar.user_id_invalid`` for an empty or non-string id.
        """
        index = self.index_for(user_id)
        return self.colors[index], self._foregrounds[index]


@functools.cache
def _default_palette() -> AvatarPalette:
    """Build (once, on first use) the immutable default palette."""
    return AvatarPalette(colors=DEFAULT_AVATAR_COLORS)


def _check_user_id(user_id: object) -> None:
    if not isinstance(user_id, str) or not user_id:
        raise ValidationError(
            [
                FieldError(
                    field="user_id",
                    code="avatar.user_id_invalid",
                    message="a user id is a non-empty string",
                    params={},
                ),
            ],
        )


def _clean_text(value: str) -> str:
    """Collapse whitespace and drop characters that XML forbids or that reorder text."""
    return _UNSAFE_CHARS.sub("", _WHITESPACE.sub(" ", value)).strip()


def _convert_initials(value: object) -> object:
    return _clean_text(value) if isinstance(value, str) else value


@attrs.frozen(kw_only=True)
class Avatar:
    """An initials avatar: what to draw and in which colours.

    Attributes:
        initials: The text (already computed by the caller); whitespace is
            collapsed and control, surrogate and bidi-override characters are
            removed. May be empty (a plain disc is drawn).
        background: Fill colour, lowercase ``#rrggbb``.
        foreground: Text colour, lowercase ``#rrggbb``.

    Raises:
        ValidationError: ``avatar.initials_invalid``, ``avatar.initials_too_long``,
            ``color.invalid`` or ``avatar.contrast`` (colours under
            :data:`MIN_AVATAR_CONTRAST`), all at once.
    """

    initials: str = attrs.field(converter=_convert_initials)
    background: str
    foreground: str

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        initials: object = self.initials
        if not isinstance(initials, str):
            errors.append(
                FieldError(
                    field="initials",
                    code="avatar.initials_invalid",
                    message="initials are a string",
                    params={},
                ),
            )
        elif len(initials) > MAX_INITIALS_LENGTH:
            errors.append(
                FieldError(
                    field="initials",
                    code="avatar.initials_too_long",
                    message=f"initials are at most {MAX_INITIALS_LENGTH} characters",
                    params={"limit": MAX_INITIALS_LENGTH, "actual": len(initials)},
                ),
            )
        colors: dict[str, str] = {}
        for field in ("background", "foreground"):
            try:
                colors[field] = normalize_color(getattr(self, field), field=field)
            except ValidationError as error:
                errors.extend(error.errors)
        if len(colors) == 2:
            ratio = contrast_ratio(colors["foreground"], colors["background"])
            if ratio < MIN_AVATAR_CONTRAST:
                errors.append(
                    FieldError(
                        field="foreground",
                        code="avatar.contrast",
                        message=(f"text contrast {ratio:.2f}:1 is below {MIN_AVATAR_CONTRAST:g}:1"),
                        params={"ratio": round(ratio, 2), "minimum": MIN_AVATAR_CONTRAST},
                    ),
                )
        if errors:
            raise ValidationError(errors)
        for field, color in colors.items():
            object.__setattr__(self, field, color)

    def render_svg(
        self,
        size: int = 64,
        *,
        shape: AvatarShape = "circle",
        label: str | None = None,
    ) -> str:
        """Render the avatar as a small, self-contained, script-free SVG document.

        Safe to inline in HTML or serve as ``image/svg+xml``: the only elements are
        ``svg``, ``title``, ``circle``/``rect`` and ``text``; all text is escaped;
        there are no links, styles, scripts, event attributes or web fonts.

        Args:
            size: Width and height in CSS pixels, 16 to 1024.
            shape: ``"circle"`` or ``"square"``.
            label: Accessible name (``aria-label`` and ``<title>``); defaults to
                the initials (or ``"Avatar"`` when they are empty).

        Returns:
            The SVG markup, with ``role="img"``.

        Raises:
            ValidationError: ``avatar.size_out_of_range``, ``avatar.shape_invalid``
                or ``avatar.label_invalid``, all at once.

        Example:
            >>> svg = Avatar(initials="A&B", background="#1f65b8", foreground="#fff").render_svg()
            >>> "A&amp;B" in svg and "<script" not in svg
            True
        """
        errors = _render_errors(size, shape, label)
        if errors:
            raise ValidationError(errors)
        name = _clean_text(label) if label is not None else ""
        name = name or self.initials or "Avatar"
        escaped_name = html.escape(name, quote=True)
        if shape == "circle":
            fill = f'<circle cx="50" cy="50" r="50" fill="{self.background}"/>'
        else:
            fill = f'<rect x="0" y="0" width="100" height="100" fill="{self.background}"/>'
        text = ""
        if self.initials:
            text = (
                f'<text x="50" y="50" dy="0.35em" text-anchor="middle" '
                f'fill="{self.foreground}" font-family="{_FONT_FAMILY}" '
                f'font-size="{_font_size(self.initials)}" font-weight="600">'
                f"{html.escape(self.initials, quote=True)}</text>"
            )
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
            f'viewBox="0 0 100 100" role="img" aria-label="{escaped_name}">'
            f"<title>{escaped_name}</title>{fill}{text}</svg>"
        )


def _font_size(initials: str) -> int:
    """Font size in viewBox units (of 100) so longer initials still fit."""
    length = len(initials)
    if length <= 2:  # the usual "first + last" initials
        return 40
    if length == 3:
        return 32
    return 24


def _render_errors(size: object, shape: object, label: object) -> list[FieldError]:
    errors: list[FieldError] = []
    if (
        not isinstance(size, int)
        or isinstance(size, bool)
        or not MIN_SVG_SIZE <= size <= MAX_SVG_SIZE
    ):
        errors.append(
            FieldError(
                field="size",
                code="avatar.size_out_of_range",
                message=f"the avatar size is a whole number from {MIN_SVG_SIZE} to {MAX_SVG_SIZE}",
                params={"min": MIN_SVG_SIZE, "max": MAX_SVG_SIZE},
            ),
        )
    if shape not in _SHAPES:
        errors.append(
            FieldError(
                field="shape",
                code="avatar.shape_invalid",
                message="the avatar shape is 'circle' or 'square'",
                params={"allowed": _SHAPES},
            ),
        )
    if label is not None and (not isinstance(label, str) or len(label) > 200):
        errors.append(
            FieldError(
                field="label",
                code="avatar.label_invalid",
                message="the label is a string of at most 200 characters",
                params={"limit": 200},
            ),
        )
    return errors


def avatar_for(user_id: str, initials: str, *, palette: AvatarPalette | None = None) -> Avatar:
    """Build the initials avatar for a user.

    Args:
        user_id: The user's stable id; picks the colour via SHA-256.
        initials: Already computed initials (e.g. ``"AS"``).
        palette: Colours to choose from; defaults to :meth:`AvatarPalette.default`.

    Returns:
        The avatar; the same user id always gets the same colours.

    Raises:
        ValidationError: ``avatar.user_id_invalid`` or an initials problem (see :class:`Avatar`).

    Example:
        >>> avatar_for("u1", "AS") == avatar_for("u1", "AS")
        True
    """
    chosen = palette if palette is not None else AvatarPalette.default()
    errors: list[FieldError] = []
    try:
        background, foreground = chosen.pick(user_id)
    except ValidationError as error:
        errors.extend(error.errors)
        # Still check the initials so the caller hears about every problem at once.
        background, foreground = chosen.colors[0], chosen.text_color_for(chosen.colors[0])
    try:
        avatar = Avatar(initials=initials, background=background, foreground=foreground)
    except ValidationError as error:
        errors.extend(error.errors)
    if errors:
        raise ValidationError(errors)
    return avatar

"""Visual preferences: colour themes, their accessibility checks and the user's choice.

The Profile tab lets a user "choose up to two aesthetic themes". As on GitHub, a
:class:`ThemePreference` is either *single* (one theme, always) or *sync* (a day
theme and a night theme, picked by the operating system's colour scheme).

A :class:`ThemeCatalog` holds the themes a host offers. Every theme, built-in or
registered by the host, must pass the WCAG 2.x contrast table
:data:`CONTRAST_RULES` before it can be registered, so a user can never pick an
unreadable theme.

Example:
    >>> catalog = ThemeCatalog.default()
    >>> preference = catalog.validate_preference({"mode": "sync", "day": "light", "night": "dark"})
    >>> catalog.resolve(preference, "dark").id
    'dark'
    >>> round(contrast_ratio("#777", "#ffffff"), 2)
    4.48
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import attrs

from enspace_profile.exceptions import (
    AlreadyExistsError,
    FieldError,
    NotFoundError,
    ValidationError,
)

__all__ = [
    "CONTRAST_RULES",
    "HIGH_CONTRAST_TEXT_MINIMUM",
    "MAX_THEMES_PER_PREFERENCE",
    "TOKEN_NAMES",
    "ColorScheme",
    "ContrastKind",
    "ContrastResult",
    "ContrastRule",
    "Theme",
    "ThemeCatalog",
    "ThemeMode",
    "ThemePreference",
    "ThemeTokens",
    "check_contrast",
    "contrast_ratio",
    "normalize_color",
    "relative_luminance",
]

# --------------------------------------------------------------------------- colours

_HEX_COLOR = re.compile(r"#(?P<hex>[0-9a-fA-F]{6}|[0-9a-fA-F]{3})")
_SHOWN_VALUE_LIMIT = 32


def _linear_channel(value: int) -> float:
    """Undo the sRGB transfer function for one 8-bit channel (WCAG 2.x formula)."""
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _shown(value: object) -> str:
    """A short, printable rendering of a rejected value for messages and params."""
    text = value if isinstance(value, str) else type(value).__name__
    return text if len(text) <= _SHOWN_VALUE_LIMIT else text[:_SHOWN_VALUE_LIMIT] + "…"


def _color_error(field: str, value: object, *, role: str | None = None) -> FieldError:
    params: dict[str, Any] = {"value": _shown(value)}
    if role is not None:
        params["role"] = role
    return FieldError(
        field=field,
        code="color.invalid",
        message=f"{_shown(value)!r} is not a colour like #rrggbb or #rgb",
        params=params,
    )


def _matches(pattern: re.Pattern[str], value: object) -> bool:
    """Whether ``value`` is a string that ``pattern`` matches entirely."""
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _parse_color(value: object) -> str | None:
    """Return ``#rrggbb`` (lowercase) for a valid colour string, else ``None``."""
    if not isinstance(value, str):
        return None
    match = _HEX_COLOR.fullmatch(value.strip())
    if match is None:
        return None
    digits = match["hex"].lower()
    if len(digits) == 3:  # the #rgb short form
        digits = "".join(d * 2 for d in digits)
    return "#" + digits


def normalize_color(value: object, *, field: str = "color") -> str:
    """Normalise a CSS hex colour to lowercase ``#rrggbb``.

    Args:
        value: ``"#rrggbb"`` or ``"#rgb"``, any case, surrounding spaces ignored.
        field: The field name to report in the error.

    Returns:
        The colour as lowercase ``#rrggbb``.

    Raises:
        ValidationError: ``color.invalid`` if ``value`` is not such a colour.

    Example:
        >>> normalize_color(" #ABC ")
        '#aabbcc'
    """
    color = _parse_color(value)
    if color is None:
        raise ValidationError([_color_error(field, value)])
    return color


def _luminance_of(color: str) -> float:
    """Relative luminance of an already normalised ``#rrggbb`` colour."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _linear_channel(r) + 0.7152 * _linear_channel(g) + 0.0722 * _linear_channel(b)


def _ratio_of(foreground: str, background: str) -> float:
    """Contrast ratio of two already normalised colours."""
    first, second = _luminance_of(foreground), _luminance_of(background)
    lighter, darker = max(first, second), min(first, second)
    return (lighter + 0.05) / (darker + 0.05)


def relative_luminance(color: str) -> float:
    """The WCAG 2.x relative luminance of a colour, from 0 (black) to 1 (white).

    Args:
        color: ``"#rrggbb"`` or ``"#rgb"``.

    Returns:
        ``0.2126 R + 0.7152 G + 0.0722 B`` over linearised sRGB channels.

    Raises:
        ValidationError: ``color.invalid`` for a malformed colour.
    """
    return _luminance_of(normalize_color(color))


def contrast_ratio(foreground: str, background: str) -> float:
    """The WCAG 2.x contrast ratio between two colours, from 1.0 to 21.0.

    The ratio is symmetric; it is not rounded (WCAG thresholds apply to the
    exact value, so 4.499 fails a 4.5 minimum).

    Args:
        foreground: ``"#rrggbb"`` or ``"#rgb"`` (case-insensitive).
        background: Same format.

    Returns:
        ``(L1 + 0.05) / (L2 + 0.05)`` with ``L1`` the lighter luminance.

    Raises:
        ValidationError: ``color.invalid`` for each malformed colour (both at once).

    Example:
        >>> contrast_ratio("#000", "#FFFFFF")
        21.0
    """
    fg, bg = _parse_color(foreground), _parse_color(background)
    errors = [
        _color_error("color", value, role=role)
        for role, value, parsed in (("foreground", foreground, fg), ("background", background, bg))
        if parsed is None
    ]
    if errors:
        raise ValidationError(errors)
    assert fg is not None
    assert bg is not None
    return _ratio_of(fg, bg)


# --------------------------------------------------------------------------- themes


class ColorScheme(enum.StrEnum):
    """Whether a theme is light or dark (what CSS ``color-scheme`` calls it)."""

    LIGHT = "light"
    DARK = "dark"


class ContrastKind(enum.StrEnum):
    """What a contrast rule protects: readable text or visible UI components."""

    TEXT = "text"
    """Body text and text on coloured fills (WCAG 1.4.3, 1.4.6 for high contrast)."""
    UI = "ui"
    """Borders, focus indicators and status colours (WCAG 1.4.11 non-text contrast)."""


class ContrastRule(NamedTuple):
    """One row of the contrast table: ``foreground`` on ``background`` needs ``minimum``."""

    foreground: str
    background: str
    minimum: float
    kind: ContrastKind


CONTRAST_RULES: tuple[ContrastRule, ...] = (
    ContrastRule("text", "background", 4.5, ContrastKind.TEXT),
    ContrastRule("text", "surface", 4.5, ContrastKind.TEXT),
    ContrastRule("muted_text", "background", 4.5, ContrastKind.TEXT),
    ContrastRule("muted_text", "surface", 4.5, ContrastKind.TEXT),
    ContrastRule("accent_text", "accent", 4.5, ContrastKind.TEXT),
    ContrastRule("accent", "background", 3.0, ContrastKind.UI),
    ContrastRule("danger", "background", 3.0, ContrastKind.UI),
    ContrastRule("success", "background", 3.0, ContrastKind.UI),
    ContrastRule("warning", "background", 3.0, ContrastKind.UI),
    ContrastRule("border", "background", 3.0, ContrastKind.UI),
    ContrastRule("focus", "background", 3.0, ContrastKind.UI),
    ContrastRule("focus", "surface", 3.0, ContrastKind.UI),
)
"""Every theme must pass every row (WCAG 2.x AA; text rows are raised for high contrast)."""

HIGH_CONTRAST_TEXT_MINIMUM = 7.0
"""Minimum for :attr:`ContrastKind.TEXT` rows in high-contrast themes (WCAG AAA 1.4.6)."""

MAX_THEMES_PER_PREFERENCE = 2
"""A user chooses at most two themes (one for day, one for night)."""

_THEME_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
_NAME_LIMIT = 64
_CSS_PREFIX = re.compile(r"--[A-Za-z0-9_-]*")
# Conservative allow-list: no braces, semicolons, "<" (so never "</style>"), backslashes
# or comments, so the selector cannot break out of the rule block.
_CSS_SELECTOR = re.compile(r"[A-Za-z0-9_\-.#:\[\]=\"' (),>+~*|^$]{1,200}")


@attrs.frozen(kw_only=True)
class ThemeTokens:
    """The colours a theme defines, each normalised to lowercase ``#rrggbb``.

    ``#rgb`` and upper case are accepted on construction. All malformed colours
    are reported at once.

    Attributes:
        background: Page background.
        surface: Cards, panels and inputs drawn on the background.
        text: Body text.
        muted_text: Secondary text (hints, timestamps).
        accent: Primary buttons and links.
        accent_text: Text drawn on an ``accent`` fill.
        border: Input and card borders.
        danger: Errors and destructive actions.
        success: Confirmations.
        warning: Warnings.
        focus: The keyboard focus ring.

    Raises:
        ValidationError: ``color.invalid`` per malformed token (field ``tokens.<name>``).
    """

    background: str
    surface: str
    text: str
    muted_text: str
    accent: str
    accent_text: str
    border: str
    danger: str
    success: str
    warning: str
    focus: str

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        for name in TOKEN_NAMES:
            raw = getattr(self, name)
            color = _parse_color(raw)
            if color is None:
                errors.append(_color_error(f"tokens.{name}", raw))
            else:
                object.__setattr__(self, name, color)
        if errors:
            raise ValidationError(errors)

    def as_dict(self) -> dict[str, str]:
        """Return ``{token name: colour}`` in declaration order."""
        return {name: getattr(self, name) for name in TOKEN_NAMES}

    def color(self, name: str) -> str:
        """Return the colour of token ``name``.

        Raises:
            NotFoundError: ``token.not_found`` if there is no such token.
        """
        if name not in TOKEN_NAMES:
            raise NotFoundError("token", name)
        value: str = getattr(self, name)
        return value


TOKEN_NAMES: tuple[str, ...] = tuple(a.name for a in attrs.fields(ThemeTokens))
"""Names of the :class:`ThemeTokens` colours, in declaration order."""


def _coerce_scheme(value: object) -> ColorScheme | None:
    if isinstance(value, ColorScheme):
        return value
    if isinstance(value, str):
        try:
            return ColorScheme(value.strip().lower())
        except ValueError:
            return None
    return None


@attrs.frozen(kw_only=True)
class Theme:
    """One colour theme a user can pick.

    Attributes:
        id: Stable slug (lowercase ASCII letters, digits, inner hyphens; at most 64).
        name: Display name (the host translates it if needed).
        scheme: Light or dark; ``"light"``/``"dark"`` strings are accepted.
        tokens: The colours.
        high_contrast: Text pairs must reach 7:1 instead of 4.5:1.
        colorblind_friendly: Status colours stay distinguishable with colour-vision
            deficiencies (e.g. blue/orange instead of green/red).
        deprecated_by: Id of the replacement theme once deprecated, else ``None``.

    Raises:
        ValidationError: ``theme.id_invalid``, ``theme.name_invalid`` or
            ``theme.scheme_invalid`` (all at once).

    Example:
        >>> ThemeCatalog.default().get("dark").css_variables()["color-scheme"]
        'dark'
    """

    id: str
    name: str
    scheme: ColorScheme
    tokens: ThemeTokens
    high_contrast: bool = False
    colorblind_friendly: bool = False
    deprecated_by: str | None = None

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        if not _matches(_THEME_ID, self.id):
            errors.append(
                FieldError(
                    field="id",
                    code="theme.id_invalid",
                    message="a theme id uses lowercase letters, digits and inner hyphens (max 64)",
                    params={"value": _shown(self.id)},
                ),
            )
        name: object = self.name
        if not isinstance(name, str) or not name.strip() or len(name) > _NAME_LIMIT:
            errors.append(
                FieldError(
                    field="name",
                    code="theme.name_invalid",
                    message=f"a theme name is 1 to {_NAME_LIMIT} characters",
                    params={"limit": _NAME_LIMIT},
                ),
            )
        scheme = _coerce_scheme(self.scheme)
        if scheme is None:
            errors.append(
                FieldError(
                    field="scheme",
                    code="theme.scheme_invalid",
                    message="a theme scheme is 'light' or 'dark'",
                    params={"value": _shown(self.scheme), "allowed": tuple(ColorScheme)},
                ),
            )
        else:
            object.__setattr__(self, "scheme", scheme)
        if self.deprecated_by is not None and not _matches(_THEME_ID, self.deprecated_by):
            errors.append(
                FieldError(
                    field="deprecated_by",
                    code="theme.id_invalid",
                    message="deprecated_by must be a theme id",
                    params={"value": _shown(self.deprecated_by)},
                ),
            )
        tokens: object = self.tokens
        if not isinstance(tokens, ThemeTokens):
            errors.append(
                FieldError(
                    field="tokens",
                    code="theme.tokens_invalid",
                    message="tokens must be a ThemeTokens instance",
                    params={},
                ),
            )
        if errors:
            raise ValidationError(errors)

    @property
    def deprecated(self) -> bool:
        """Whether the theme has been replaced and is no longer offered."""
        return self.deprecated_by is not None

    def css_variables(self, prefix: str = "--esp-") -> dict[str, str]:
        """Return CSS custom properties for the theme, ready for a ``:root {}`` block.

        Token names use hyphens (``muted_text`` becomes ``--esp-muted-text``); the
        ``color-scheme`` property is included so native controls match.

        Args:
            prefix: Custom-property prefix; must start with ``--``.

        Returns:
            ``{"--esp-background": "#ffffff", ..., "color-scheme": "light"}``.

        Raises:
            ValidationError: ``theme.css_prefix_invalid`` for an unsafe prefix.
        """
        if not _matches(_CSS_PREFIX, prefix):
            raise ValidationError(
                [
                    FieldError(
                        field="prefix",
                        code="theme.css_prefix_invalid",
                        message="a CSS custom-property prefix starts with '--' and uses "
                        "letters, digits, '-' and '_'",
                        params={"value": _shown(prefix)},
                    ),
                ],
            )
        variables = {
            f"{prefix}{name.replace('_', '-')}": color
            for name, color in self.tokens.as_dict().items()
        }
        variables["color-scheme"] = str(self.scheme)
        return variables

    def css(self, selector: str = ":root", *, prefix: str = "--esp-") -> str:
        r"""Return a CSS rule that declares the theme's variables.

        Args:
            selector: Where to apply them, e.g. ``":root"`` or ``'[data-theme="dark"]'``.
            prefix: Custom-property prefix (see :meth:`css_variables`).

        Returns:
            Text like ``":root {\n  --esp-background: #ffffff;\n  ...\n}\n"``.

        Raises:
            ValidationError: ``theme.css_selector_invalid`` for a selector with
                characters that could end the rule (braces, ``;``, ``<``, comments),
                or ``theme.css_prefix_invalid``.
        """
        if not _matches(_CSS_SELECTOR, selector):
            raise ValidationError(
                [
                    FieldError(
                        field="selector",
                        code="theme.css_selector_invalid",
                        message="the CSS selector contains characters that are not allowed",
                        params={"value": _shown(selector)},
                    ),
                ],
            )
        lines = [f"  {name}: {value};" for name, value in self.css_variables(prefix).items()]
        return f"{selector} {{\n" + "\n".join(lines) + "\n}\n"


@attrs.frozen(kw_only=True)
class ContrastResult:
    """The outcome of one :data:`CONTRAST_RULES` row for one theme.

    Attributes:
        rule: The row checked.
        minimum: The minimum that applied (raised for high-contrast text rows).
        ratio: The exact contrast ratio.
    """

    rule: ContrastRule
    minimum: float
    ratio: float

    @property
    def passed(self) -> bool:
        """Whether the ratio reaches the minimum (compared unrounded, as WCAG says)."""
        return self.ratio >= self.minimum

    @property
    def shown_ratio(self) -> float:
        """The ratio to 2 decimals, never rounded up onto the minimum when failing."""
        shown = round(self.ratio, 2)
        if not self.passed and shown >= self.minimum:
            shown = math.floor(self.ratio * 100) / 100
        return shown


def check_contrast(theme: Theme) -> tuple[ContrastResult, ...]:
    """Check a theme against every row of :data:`CONTRAST_RULES`.

    A host building a theme editor can show the whole table; the catalog refuses
    a theme if any result has ``passed == False``.

    Args:
        theme: The theme to check.

    Returns:
        One result per rule, in table order.
    """
    results = []
    for rule in CONTRAST_RULES:
        minimum = rule.minimum
        if theme.high_contrast and rule.kind is ContrastKind.TEXT:
            minimum = max(minimum, HIGH_CONTRAST_TEXT_MINIMUM)
        ratio = _ratio_of(theme.tokens.color(rule.foreground), theme.tokens.color(rule.background))
        results.append(ContrastResult(rule=rule, minimum=minimum, ratio=ratio))
    return tuple(results)


def _contrast_error(theme: Theme, result: ContrastResult) -> FieldError:
    rule = result.rule
    fg, bg = theme.tokens.color(rule.foreground), theme.tokens.color(rule.background)
    return FieldError(
        field=f"tokens.{rule.foreground}",
        code="theme.contrast",
        message=(
            f"{rule.foreground} ({fg}) on {rule.background} ({bg}) has contrast "
            f"{result.shown_ratio}:1; at least {result.minimum:g}:1 is required"
        ),
        params={
            "theme": theme.id,
            "foreground": rule.foreground,
            "background": rule.background,
            "ratio": result.shown_ratio,
            "minimum": result.minimum,
            "kind": str(rule.kind),
        },
    )


# --------------------------------------------------------------------------- preference


class ThemeMode(enum.StrEnum):
    """How a preference picks its theme."""

    SINGLE = "single"
    """Always the one theme."""
    SYNC = "sync"
    """The day theme or the night theme, following the system colour scheme."""


def _coerce_mode(value: object) -> ThemeMode | None:
    if isinstance(value, ThemeMode):
        return value
    if isinstance(value, str):
        try:
            return ThemeMode(value.strip().lower())
        except ValueError:
            return None
    return None


def _mode_error(field: str, value: object) -> FieldError:
    return FieldError(
        field=field,
        code="theme.mode_invalid",
        message="the theme mode is 'single' or 'sync'",
        params={"value": _shown(value), "allowed": tuple(str(m) for m in ThemeMode)},
    )


def _structure_errors(
    mode: ThemeMode,
    day: object,
    night: object,
    *,
    day_field: str,
    night_field: str,
) -> list[FieldError]:
    """Shape problems shared by the constructor and the catalog's validation."""
    errors: list[FieldError] = []
    if day is None or (isinstance(day, str) and not day.strip()):
        errors.append(
            FieldError(
                field=day_field,
                code="theme.missing",
                message="choose a theme",
                params={},
            ),
        )
    if mode is ThemeMode.SINGLE and night is not None:
        errors.append(
            FieldError(
                field=night_field,
                code="theme.night_not_allowed",
                message="a single-theme preference has no night theme",
                params={},
            ),
        )
    if mode is ThemeMode.SYNC and (night is None or (isinstance(night, str) and not night.strip())):
        errors.append(
            FieldError(
                field=night_field,
                code="theme.night_missing",
                message="a synced preference needs a night theme",
                params={},
            ),
        )
    for value, where in ((day, day_field), (night, night_field)):
        if value is not None and not isinstance(value, str):
            errors.append(
                FieldError(
                    field=where,
                    code="theme.id_invalid",
                    message="a theme id is a string",
                    params={"value": _shown(value)},
                ),
            )
    return errors


def _parse_system_scheme(value: ColorScheme | str | None) -> ColorScheme | None:
    """Read ``light``/``dark`` leniently (``'"dark"'`` from a client hint works too)."""
    if isinstance(value, str) and not isinstance(value, ColorScheme):
        value = value.strip().strip("\"'")
    return _coerce_scheme(value)


@attrs.frozen(kw_only=True)
class ThemePreference:
    """A user's choice of at most two themes.

    Build it with :meth:`single` or :meth:`sync`; check it against a catalog with
    :meth:`ThemeCatalog.validate_preference` before storing it.

    Attributes:
        mode: :attr:`ThemeMode.SINGLE` or :attr:`ThemeMode.SYNC`.
        day: The theme id used in single mode, or by day in sync mode.
        night: The night theme id (sync mode only, else ``None``).

    Raises:
        ValidationError: ``theme.mode_invalid``, ``theme.missing``,
            ``theme.night_missing``, ``theme.night_not_allowed`` or
            ``theme.id_invalid`` (all at once).

    Example:
        >>> ThemePreference.sync(day="light", night="dark").resolve("dark")
        'dark'
    """

    mode: ThemeMode
    day: str
    night: str | None = None

    def __attrs_post_init__(self) -> None:
        mode = _coerce_mode(self.mode)
        if mode is None:
            raise ValidationError([_mode_error("mode", self.mode)])
        object.__setattr__(self, "mode", mode)
        errors = _structure_errors(mode, self.day, self.night, day_field="day", night_field="night")
        if errors:
            raise ValidationError(errors)

    @classmethod
    def single(cls, theme_id: str) -> ThemePreference:
        """One theme, whatever the system scheme."""
        return cls(mode=ThemeMode.SINGLE, day=theme_id)

    @classmethod
    def sync(cls, *, day: str, night: str) -> ThemePreference:
        """``day`` when the system is light (or unknown), ``night`` when it is dark."""
        return cls(mode=ThemeMode.SYNC, day=day, night=night)

    @property
    def theme_ids(self) -> tuple[str, ...]:
        """The chosen theme ids: ``(day,)`` or ``(day, night)``."""
        if self.night is None:
            return (self.day,)
        return (self.day, self.night)

    def resolve(self, system_scheme: ColorScheme | str | None) -> str:
        """Return the id of the theme to render.

        Args:
            system_scheme: The system's colour scheme (e.g. from
                ``prefers-color-scheme``); ``None`` or anything other than
                ``"dark"`` counts as light.

        Returns:
            The day theme, or the night theme in sync mode when the system is dark.
        """
        if self.night is not None and _parse_system_scheme(system_scheme) is ColorScheme.DARK:
            return self.night
        return self.day


# --------------------------------------------------------------------------- catalog

_PREFERENCE_KEYS = frozenset({"mode", "theme", "day", "night"})


@attrs.frozen
class _RawChoice:
    """A preference as read from input, before the catalog looks at the ids."""

    mode: ThemeMode | None
    day: object
    night: object
    errors: list[FieldError]


def _too_many(field: str, limit: int, actual: int) -> FieldError:
    return FieldError(
        field=field,
        code="theme.too_many",
        message=f"choose at most {limit} theme(s)",
        params={"limit": limit, "actual": actual},
    )


def _read_mapping(value: Mapping[Any, Any], field: str) -> _RawChoice:
    errors = [
        FieldError(
            field=field,
            code="theme.unknown_key",
            message=f"unexpected key {_shown(str(key))!r}",
            params={"key": _shown(str(key)), "allowed": tuple(sorted(_PREFERENCE_KEYS))},
        )
        for key in value
        if key not in _PREFERENCE_KEYS
    ]
    raw_mode = value.get("mode")
    if raw_mode is None:
        raw_mode = ThemeMode.SYNC if value.get("night") is not None else ThemeMode.SINGLE
    mode = _coerce_mode(raw_mode)
    if mode is None:
        errors.append(_mode_error(f"{field}.mode", raw_mode))
    theme, day, night = value.get("theme"), value.get("day"), value.get("night")
    if theme is not None and day is not None and theme != day:
        limit = 1 if mode is ThemeMode.SINGLE else MAX_THEMES_PER_PREFERENCE
        actual = 3 if night is not None else 2
        errors.append(_too_many(field, limit, actual))
    return _RawChoice(mode=mode, day=day if day is not None else theme, night=night, errors=errors)


def _read_sequence(value: list[Any] | tuple[Any, ...], field: str) -> _RawChoice:
    count = len(value)
    if count > MAX_THEMES_PER_PREFERENCE:
        error = _too_many(field, MAX_THEMES_PER_PREFERENCE, count)
        return _RawChoice(mode=None, day=None, night=None, errors=[error])
    if count == MAX_THEMES_PER_PREFERENCE:
        return _RawChoice(mode=ThemeMode.SYNC, day=value[0], night=value[1], errors=[])
    day = value[0] if value else None
    return _RawChoice(mode=ThemeMode.SINGLE, day=day, night=None, errors=[])


def _read_choice(value: object, field: str) -> _RawChoice:
    if isinstance(value, ThemePreference):
        return _RawChoice(mode=value.mode, day=value.day, night=value.night, errors=[])
    if isinstance(value, str):
        return _RawChoice(mode=ThemeMode.SINGLE, day=value, night=None, errors=[])
    if isinstance(value, Mapping):
        return _read_mapping(value, field)
    if isinstance(value, list | tuple):
        return _read_sequence(value, field)
    error = FieldError(
        field=field,
        code="theme.invalid_type",
        message="a theme preference is a theme id, a mapping or a ThemePreference",
        params={"type": type(value).__name__},
    )
    return _RawChoice(mode=None, day=None, night=None, errors=[error])


@attrs.define(init=False)
class ThemeCatalog:
    """The themes a host offers, and the rules for choosing among them.

    Themes are checked against :data:`CONTRAST_RULES` when registered.
    The catalog is an ordinary object (no global state): build one per host,
    usually from :meth:`default`, and add the host's own themes.

    Args:
        themes: Themes to register, in order (each is checked).
        sync_requires_matching_schemes: In sync mode the day theme must be light
            and the night theme dark.
        default_theme_id: The theme of :attr:`default_preference`, and the fallback
            for unknown ids in stored preferences.

    Raises:
        ValidationError: A theme fails the contrast table (see :meth:`register`).
        AlreadyExistsError: Two themes share an id.

    Example:
        >>> catalog = ThemeCatalog.default()
        >>> [t.id for t in catalog.themes][:2]
        ['light', 'dark']
    """

    sync_requires_matching_schemes: bool
    default_theme_id: str
    _by_id: dict[str, Theme] = attrs.field(repr=False)

    def __init__(
        self,
        themes: Iterable[Theme] = (),
        *,
        sync_requires_matching_schemes: bool = True,
        default_theme_id: str = "light",
    ) -> None:
        self.__attrs_init__(
            sync_requires_matching_schemes=sync_requires_matching_schemes,
            default_theme_id=default_theme_id,
            by_id={},
        )
        for theme in themes:
            self.register(theme)

    @classmethod
    def default(cls, *, sync_requires_matching_schemes: bool = True) -> ThemeCatalog:
        """A fresh catalog with the built-in themes.

        ``light``, ``dark``, ``light-high-contrast``, ``dark-high-contrast``,
        ``light-colorblind`` and ``dark-colorblind`` (blue/orange status colours,
        distinguishable with deuteranopia and protanopia).

        Args:
            sync_requires_matching_schemes: See the class.

        Returns:
            A new catalog; registering on it does not affect other catalogs.
        """
        return cls(
            _builtin_themes(),
            sync_requires_matching_schemes=sync_requires_matching_schemes,
        )

    # -- registry ----------------------------------------------------------------

    @property
    def themes(self) -> tuple[Theme, ...]:
        """Every registered theme (deprecated ones included), in registration order."""
        return tuple(self._by_id.values())

    @property
    def selectable(self) -> tuple[Theme, ...]:
        """The themes a user may choose now (not deprecated), in registration order."""
        return tuple(t for t in self._by_id.values() if t.deprecated_by is None)

    def __iter__(self) -> Iterator[Theme]:
        return iter(self.themes)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, theme_id: object) -> bool:
        return theme_id in self._by_id

    def get(self, theme_id: str) -> Theme:
        """Return the theme with id ``theme_id``.

        Raises:
            NotFoundError: ``theme.not_found``.
        """
        theme = self._by_id.get(theme_id)
        if theme is None:
            raise NotFoundError("theme", theme_id)
        return theme

    def register(self, theme: Theme) -> Theme:
        """Add a theme after checking it against the contrast table.

        Args:
            theme: The theme. If ``deprecated_by`` is set, that replacement must
                already be registered and have the same scheme.

        Returns:
            The registered theme.

        Raises:
            AlreadyExistsError: ``theme.already_exists`` if the id is taken.
            ValidationError: ``theme.contrast`` once per failing pair (params
                ``foreground``, ``background``, ``ratio``, ``minimum``, ``kind``),
                plus replacement problems, all at once.
        """
        if theme.id in self._by_id:
            raise AlreadyExistsError("theme", theme.id, field="id")
        errors = [_contrast_error(theme, r) for r in check_contrast(theme) if not r.passed]
        if theme.deprecated_by is not None:
            errors.extend(self._replacement_errors(theme, theme.deprecated_by))
        if errors:
            raise ValidationError(errors)
        self._by_id[theme.id] = theme
        return theme

    def deprecate(self, theme_id: str, *, replacement: str) -> Theme:
        """Stop offering a theme; stored preferences move to ``replacement``.

        Args:
            theme_id: The theme to deprecate.
            replacement: A registered theme of the same scheme. It may itself be
                deprecated later (chains are followed), but no cycle may form.

        Returns:
            The updated (deprecated) theme.

        Raises:
            NotFoundError: ``theme.not_found`` for either id.
            ValidationError: ``theme.replacement_scheme_mismatch`` or
                ``theme.deprecation_cycle``.
        """
        theme = self.get(theme_id)
        self.get(replacement)
        errors = self._replacement_errors(theme, replacement)
        if errors:
            raise ValidationError(errors)
        updated = attrs.evolve(theme, deprecated_by=replacement)
        self._by_id[theme_id] = updated
        return updated

    def _replacement_errors(self, theme: Theme, replacement: str) -> list[FieldError]:
        target = self._by_id.get(replacement)
        if target is None:
            return [
                FieldError(
                    field="deprecated_by",
                    code="theme.unknown",
                    message=f"replacement theme {replacement!r} is not registered",
                    params={"theme": replacement},
                ),
            ]
        errors: list[FieldError] = []
        if target.scheme is not theme.scheme:
            errors.append(
                FieldError(
                    field="replacement",
                    code="theme.replacement_scheme_mismatch",
                    message="a replacement theme must have the same colour scheme",
                    params={"theme": theme.id, "replacement": replacement},
                ),
            )
        chain = self._chain(replacement)
        if theme.id in chain:
            errors.append(
                FieldError(
                    field="replacement",
                    code="theme.deprecation_cycle",
                    message=f"deprecating {theme.id!r} in favour of {replacement!r} forms a cycle",
                    params={"theme": theme.id, "replacement": replacement},
                ),
            )
        return errors

    def _chain(self, theme_id: str) -> list[str]:
        """Ids from ``theme_id`` along ``deprecated_by`` links (stops on a cycle)."""
        chain: list[str] = []
        current: str | None = theme_id
        while current is not None and current not in chain:
            chain.append(current)
            theme = self._by_id.get(current)
            current = theme.deprecated_by if theme is not None else None
        return chain

    # -- preferences -------------------------------------------------------------

    @property
    def default_preference(self) -> ThemePreference:
        """A single-mode preference for :attr:`default_theme_id`."""
        return ThemePreference.single(self.default_theme_id)

    def validate_preference(
        self,
        value: object,
        *,
        field: str = "theme",
        allow_mismatched_sync: bool | None = None,
    ) -> ThemePreference:
        """Check a user's new theme choice and return it as a :class:`ThemePreference`.

        Args:
            value: One of

                * a :class:`ThemePreference`;
                * a theme id (single mode): ``"dark"``;
                * a mapping: ``{"mode": "single", "theme": "dark"}`` or
                  ``{"mode": "sync", "day": "light", "night": "dark"}`` (``mode``
                  defaults to ``sync`` when ``night`` is given, else ``single``);
                * a list of one or two ids (two means sync: day, night).

                Ids are compared after stripping spaces and lower-casing.
            field: Field name used in errors (``"theme"`` gives ``theme.day``...).
            allow_mismatched_sync: Override the catalog's
                ``sync_requires_matching_schemes`` for this call (``None``: use it).

        Returns:
            The normalised preference.

        Raises:
            ValidationError: Every problem at once, with codes ``theme.invalid_type``,
                ``theme.unknown_key``, ``theme.mode_invalid``, ``theme.too_many``,
                ``theme.missing``, ``theme.night_missing``, ``theme.night_not_allowed``,
                ``theme.id_invalid``, ``theme.unknown``, ``theme.deprecated``
                (params ``replacement``), ``theme.sync_day_not_light`` and
                ``theme.sync_night_not_dark``.
        """
        raw = _read_choice(value, field)
        errors = list(raw.errors)
        day_field, night_field = f"{field}.day", f"{field}.night"
        day, night = _clean_id(raw.day), _clean_id(raw.night)
        if raw.mode is not None:
            errors.extend(
                _structure_errors(
                    raw.mode, day, night, day_field=day_field, night_field=night_field
                ),
            )
        found: dict[str, Theme] = {}
        for theme_id, where in ((day, day_field), (night, night_field)):
            if isinstance(theme_id, str) and theme_id:
                theme, problem = self._check_choosable(theme_id, where)
                if problem is not None:
                    errors.append(problem)
                if theme is not None:
                    found[where] = theme
        if allow_mismatched_sync is None:
            allow_mismatched_sync = not self.sync_requires_matching_schemes
        if raw.mode is ThemeMode.SYNC and not allow_mismatched_sync:
            errors.extend(_scheme_errors(found.get(day_field), found.get(night_field), field))
        if errors:
            raise ValidationError(errors)
        assert raw.mode is not None
        assert isinstance(day, str)
        if raw.mode is ThemeMode.SYNC:
            assert isinstance(night, str)
            return ThemePreference.sync(day=day, night=night)
        return ThemePreference.single(day)

    def _check_choosable(self, theme_id: str, field: str) -> tuple[Theme | None, FieldError | None]:
        theme = self._by_id.get(theme_id)
        if theme is None:
            return None, FieldError(
                field=field,
                code="theme.unknown",
                message=f"there is no theme {_shown(theme_id)!r}",
                params={"theme": _shown(theme_id)},
            )
        if theme.deprecated_by is not None:
            replacement = self._canonical_id(theme_id, theme.scheme)
            return theme, FieldError(
                field=field,
                code="theme.deprecated",
                message=f"the theme {theme_id!r} was retired; choose {replacement!r} instead",
                params={"theme": theme_id, "replacement": replacement},
            )
        return theme, None

    def _fallback_id(self, scheme: ColorScheme | None) -> str:
        """The theme to use when a stored id cannot be followed any more."""
        default = self._by_id.get(self.default_theme_id)
        if scheme is None or (default is not None and default.scheme is scheme):
            return self.default_theme_id
        for theme in self.selectable:
            if theme.scheme is scheme:
                return theme.id
        return self.default_theme_id

    def _canonical_id(self, theme_id: str, scheme: ColorScheme | None) -> str:
        chain = self._chain(theme_id)
        last = self._by_id.get(chain[-1])
        if last is None or last.deprecated_by is not None:
            # Unknown id (a host theme no longer registered) or a cycle.
            return self._fallback_id(scheme)
        return last.id

    def canonical(self, preference: ThemePreference) -> ThemePreference:
        """Map a stored preference onto themes the catalog still offers.

        Deprecated ids are replaced by their replacement (chains are followed).
        Ids the catalog does not know (e.g. a host theme that was removed) fall
        back to :attr:`default_theme_id` (single mode and the day slot) or to the
        first selectable dark theme (the night slot), so a stored preference
        always renders.

        Args:
            preference: As loaded from storage.

        Returns:
            The same preference if nothing changed, else an updated copy.
        """
        if preference.night is None:
            day = self._canonical_id(preference.day, None)
            return preference if day == preference.day else ThemePreference.single(day)
        day = self._canonical_id(preference.day, ColorScheme.LIGHT)
        night = self._canonical_id(preference.night, ColorScheme.DARK)
        if (day, night) == (preference.day, preference.night):
            return preference
        return ThemePreference.sync(day=day, night=night)

    def resolve(
        self,
        preference: ThemePreference | None,
        system_scheme: ColorScheme | str | None = None,
    ) -> Theme:
        """Return the theme to render for a stored preference.

        Args:
            preference: The user's preference; ``None`` means :attr:`default_preference`.
            system_scheme: The system colour scheme (``None`` counts as light).

        Returns:
            The theme (after :meth:`canonical`).

        Raises:
            NotFoundError: ``theme.not_found`` if even the default theme is not registered.
        """
        chosen = self.canonical(preference if preference is not None else self.default_preference)
        return self.get(chosen.resolve(system_scheme))


def _clean_id(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _scheme_errors(day: Theme | None, night: Theme | None, field: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if day is not None and day.scheme is not ColorScheme.LIGHT:
        errors.append(
            FieldError(
                field=f"{field}.day",
                code="theme.sync_day_not_light",
                message=f"the day theme must be a light theme; {day.id!r} is {day.scheme}",
                params={"theme": day.id, "scheme": str(day.scheme)},
            ),
        )
    if night is not None and night.scheme is not ColorScheme.DARK:
        errors.append(
            FieldError(
                field=f"{field}.night",
                code="theme.sync_night_not_dark",
                message=f"the night theme must be a dark theme; {night.id!r} is {night.scheme}",
                params={"theme": night.id, "scheme": str(night.scheme)},
            ),
        )
    return errors


# --------------------------------------------------------------------------- built-ins

# Colours chosen for this library and checked by CONTRAST_RULES on every catalog build.
_LIGHT = {
    "background": "#ffffff",
    "surface": "#f5f7f9",
    "text": "#1b1f24",
    "muted_text": "#5a6470",
    "accent": "#1f62c8",
    "accent_text": "#ffffff",
    "border": "#8a939d",
    "danger": "#c8232c",
    "success": "#1d7a3a",
    "warning": "#946200",
    "focus": "#1f62c8",
}
_DARK = {
    "background": "#121417",
    "surface": "#1c2026",
    "text": "#e8eaed",
    "muted_text": "#a3adb8",
    "accent": "#5b9cf5",
    "accent_text": "#0b0d10",
    "border": "#69727d",
    "danger": "#f2676a",
    "success": "#45b864",
    "warning": "#d6a23a",
    "focus": "#7cb4ff",
}
_LIGHT_HIGH_CONTRAST = {
    "background": "#ffffff",
    "surface": "#f3f3f3",
    "text": "#000000",
    "muted_text": "#333333",
    "accent": "#0a3d91",
    "accent_text": "#ffffff",
    "border": "#4a4a4a",
    "danger": "#a1000b",
    "success": "#005c1f",
    "warning": "#6b4400",
    "focus": "#0a3d91",
}
_DARK_HIGH_CONTRAST = {
    "background": "#000000",
    "surface": "#121212",
    "text": "#ffffff",
    "muted_text": "#d4d4d4",
    "accent": "#8cc4ff",
    "accent_text": "#000000",
    "border": "#a0a0a0",
    "danger": "#ff8a8a",
    "success": "#6ee58a",
    "warning": "#ffd060",
    "focus": "#ffd060",
}
# Colour-blind variants: status colours on a blue/orange axis (success blue,
# danger orange) instead of green/red, which deuteranopes and protanopes confuse.
_LIGHT_COLORBLIND = {**_LIGHT, "danger": "#c24e00", "success": "#1d5fb8", "warning": "#8a6a00"}
_DARK_COLORBLIND = {**_DARK, "danger": "#f08a3c", "success": "#5aa8f5", "warning": "#d6c23a"}


def _builtin_themes() -> tuple[Theme, ...]:
    """Build the built-in themes (on demand, so importing the package stays cheap)."""
    rows: tuple[tuple[str, str, ColorScheme, dict[str, str], bool, bool], ...] = (
        ("light", "Light", ColorScheme.LIGHT, _LIGHT, False, False),
        ("dark", "Dark", ColorScheme.DARK, _DARK, False, False),
        (
            "light-high-contrast",
            "Light high contrast",
            ColorScheme.LIGHT,
            _LIGHT_HIGH_CONTRAST,
            True,
            False,
        ),
        (
            "dark-high-contrast",
            "Dark high contrast",
            ColorScheme.DARK,
            _DARK_HIGH_CONTRAST,
            True,
            False,
        ),
        (
            "light-colorblind",
            "Light colour-blind",
            ColorScheme.LIGHT,
            _LIGHT_COLORBLIND,
            False,
            True,
        ),
        ("dark-colorblind", "Dark colour-blind", ColorScheme.DARK, _DARK_COLORBLIND, False, True),
    )
    return tuple(
        Theme(
            id=theme_id,
            name=name,
            scheme=scheme,
            tokens=ThemeTokens(**tokens),
            high_contrast=high_contrast,
            colorblind_friendly=colorblind,
        )
        for theme_id, name, scheme, tokens, high_contrast, colorblind in rows
    )

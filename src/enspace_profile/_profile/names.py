r"""Personal names: normalisation, length in graphemes, initials and display names.

Follows W3C "Personal names around the world": every script is welcome, one-letter
names are fine, apostrophes, hyphens, periods and spaces are fine. What we refuse is
what cannot be typed or shown: control characters, surrogates, private-use and
unassigned code points, and invisible format characters (bidi embeddings, overrides
and isolates, soft hyphens, tag characters, ...). ZWJ and ZWNJ stay: Persian, Indic
scripts and emoji sequences need them.

Lengths are counted in extended grapheme clusters (what a reader sees as one
character), using the ``regex`` module's ``\\X``; its Unicode tables are newer than
the stdlib's and are used for every character class here, so segmentation and
category checks agree.
"""

from __future__ import annotations

import unicodedata

import attrs
import regex

from enspace_profile.exceptions import FieldError, ValidationError

__all__ = [
    "NamePolicy",
    "display_name",
    "grapheme_length",
    "initials",
    "normalize_name",
]

# Any run of Unicode white space (incl. NBSP, ideographic space, line separators,
# tabs and newlines) becomes one ASCII space.
_WHITESPACE = regex.compile(r"\p{White_Space}+")
# Control, surrogate, private-use, unassigned and format characters, except ZWNJ/ZWJ.
_FORBIDDEN = regex.compile(r"(?![\u200c\u200d])[\p{Cc}\p{Cs}\p{Co}\p{Cn}\p{Cf}]")
_GRAPHEME = regex.compile(r"\X")
_LETTER = regex.compile(r"\p{L}")
# Scripts whose names take a single character in an avatar.
_SINGLE_CHAR_SCRIPT = regex.compile(
    r"[\p{Script=Han}\p{Script=Hangul}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Bopomofo}]",
)
# When a word has no letter, punctuation and spaces are still skipped (digits and emoji are not).
_PUNCTUATION = regex.compile(r"[\p{P}\p{Z}]+")

#: Refuse absurd input before any Unicode work, whatever the grapheme limit.
_MAX_CODE_POINTS = 4096


@attrs.frozen(kw_only=True)
class NamePolicy:
    """Length limits for the two name fields, in grapheme clusters.

    Attributes:
        first_name_min: Minimum graphemes in a first name (default 1).
        first_name_max: Maximum graphemes in a first name (default 64).
        last_name_min: Minimum graphemes in a last name; 0 makes it optional (default).
        last_name_max: Maximum graphemes in a last name (default 64).
    """

    first_name_min: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    first_name_max: int = attrs.field(default=64, validator=attrs.validators.ge(1))
    last_name_min: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    last_name_max: int = attrs.field(default=64, validator=attrs.validators.ge(1))

    def limits(self, field: str) -> tuple[int, int]:
        """Return ``(minimum, maximum)`` graphemes for ``first_name`` or ``last_name``."""
        if field == "last_name":
            return self.last_name_min, self.last_name_max
        return self.first_name_min, self.first_name_max


_DEFAULT_POLICY = NamePolicy()


def grapheme_length(text: str) -> int:
    """Return how many extended grapheme clusters ``text`` has.

    >>> grapheme_length("👩‍👩‍👧")  # one family emoji built with ZWJ
    1
    """
    return len(_GRAPHEME.findall(text))


def _name_errors(
    value: object, field: str, minimum: int, maximum: int
) -> tuple[str, list[FieldError]]:
    """Normalise ``value``; return it with the list of problems found (empty if valid)."""

    def error(problem: str, message: str, **params: object) -> FieldError:
        return FieldError(field=field, code=f"{field}.{problem}", message=message, params=params)

    if not isinstance(value, str):
        return "", [error("invalid_type", "must be text", actual=type(value).__name__)]
    if len(value) > _MAX_CODE_POINTS:
        return "", [error("too_long", f"must be at most {maximum} characters", limit=maximum)]
    # Checked before normalising: surrogates cannot be normalised or encoded.
    forbidden = _FORBIDDEN.search(_WHITESPACE.sub(" ", value))
    if forbidden is not None:
        point = f"U+{ord(forbidden.group()):04X}"
        message = f"contains a character that cannot be used in a name ({point})"
        return "", [error("invalid_character", message, code_point=point)]
    normalised = _WHITESPACE.sub(" ", unicodedata.normalize("NFC", value)).strip(" ")
    length = grapheme_length(normalised)
    if length < minimum:
        problem = "required" if length == 0 else "too_short"
        message = "is required" if length == 0 else f"must be at least {minimum} characters"
        return normalised, [error(problem, message, limit=minimum, actual=length)]
    if length > maximum:
        message = f"must be at most {maximum} characters"
        return normalised, [error("too_long", message, limit=maximum, actual=length)]
    return normalised, []


def normalize_name(
    value: object,
    *,
    field: str = "first_name",
    policy: NamePolicy | None = None,
) -> str:
    r"""Normalise one name field, or raise :class:`~enspace_profile.exceptions.ValidationError`.

    NFC-normalises, trims and collapses all Unicode white space, refuses characters
    that cannot be shown, and checks the length in graphemes. Normalising twice gives
    the same result. An empty ``last_name`` normalises to ``""``.

    Args:
        value: The raw input (anything; non-text is refused).
        field: ``"first_name"`` or ``"last_name"``: picks the limits and names the errors.
        policy: Length limits; defaults to :class:`NamePolicy()`.

    Returns:
        The normalised name.

    Raises:
        ValidationError: with codes such as ``first_name.too_long``,
            ``first_name.invalid_character``, ``first_name.required``.

    >>> normalize_name("  Ana\u00a0 María ")
    'Ana María'
    >>> normalize_name("O’Brien-Smith Jr.", field="last_name")
    'O’Brien-Smith Jr.'
    """
    minimum, maximum = (policy or _DEFAULT_POLICY).limits(field)
    normalised, errors = _name_errors(value, field, minimum, maximum)
    if errors:
        raise ValidationError(errors)
    return normalised


def name_errors(
    value: object, *, field: str, policy: NamePolicy | None = None
) -> tuple[str, list[FieldError]]:
    """Like :func:`normalize_name` but return ``(normalised, errors)`` instead of raising.

    Used when validating several fields at once so every problem is reported together.
    """
    minimum, maximum = (policy or _DEFAULT_POLICY).limits(field)
    return _name_errors(value, field, minimum, maximum)


def _initial_of(word: str) -> str:
    """Return the grapheme that stands for ``word``: its first letter, else its first grapheme."""
    clusters: list[str] = _GRAPHEME.findall(word)
    for cluster in clusters:
        if _LETTER.match(cluster) is not None:
            return cluster
    for cluster in clusters:
        if _PUNCTUATION.fullmatch(cluster) is None:
            return cluster  # a digit, an emoji or another symbol grapheme
    return clusters[0] if clusters else ""


def _upper(cluster: str) -> str:
    """Upper-case a grapheme only when that keeps its length (no "SS" from "ß")."""
    upper = unicodedata.normalize("NFC", cluster.upper())
    return upper if len(upper) == len(cluster) else cluster


def initials(first_name: str, last_name: str | None = None) -> str:
    """Return the avatar initials for a name: grapheme-aware, never empty for a valid name.

    The first letter of the first name plus the first letter of the last word of the
    last name; a single character for names written in CJK, Hangul or Kana; leading
    punctuation, digits and symbols are skipped when a letter exists; emoji sequences,
    flags, combining accents and Indic conjuncts are never split.

    Args:
        first_name: The first name (normalised here, so raw input is fine).
        last_name: The last name, or ``None``.

    Returns:
        One or two graphemes.

    Raises:
        ValidationError: if either name is not valid (see :func:`normalize_name`).

    >>> initials("ada", "lovelace")
    'AL'
    >>> initials("Jürgen", "von der Straße")
    'JS'
    >>> initials("太郎", "山田")
    '太'
    """
    first = normalize_name(first_name, field="first_name")
    last = normalize_name("" if last_name is None else last_name, field="last_name")
    head = _initial_of(first)
    if _SINGLE_CHAR_SCRIPT.match(head) is not None:
        return head
    tail = _initial_of(last.split(" ")[-1]) if last else ""
    if tail and _SINGLE_CHAR_SCRIPT.match(tail) is not None:
        tail = ""
    return _upper(head) + _upper(tail)


def display_name(first_name: str, last_name: str | None = None) -> str:
    """Return the name as shown in workflows and records.

    >>> display_name("Ana", "Souza")
    'Ana Souza'
    >>> display_name("Cher", None)
    'Cher'
    """
    return f"{first_name} {last_name}" if last_name else first_name

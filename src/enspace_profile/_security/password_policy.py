"""Which new passwords are accepted, after NIST SP 800-63B-4 (section 3.1.1.2).

The rules, and what was decided where NIST leaves a choice:

* Length is counted in Unicode code points after NFKC normalisation (the form
  that is hashed, see :func:`~enspace_profile._security.passwords.normalize_password`).
  At least 15 when the password is the only factor, at least 8 when the account
  also has a second factor; at most 128 by default (NIST: allow at least 64).
  Nothing is ever truncated or stripped, spaces included.
* No composition rules (no "one digit, one symbol"): NIST forbids them.
* A blocklist: the 30 000 most common passwords bundled with the library (see
  ``data/LICENSE-common-passwords.txt``) plus any the host adds, compared
  case-insensitively. A password that only repeats a unit of up to 4
  characters (``"aaaa..."``, ``"abcabc..."``) or a blocklisted password
  (``"passwordpassword"``, ``"1234567890123456"``) counts as common too.
* Context: the user's own name parts (3 characters or more) and user id (or the
  part of it before ``@``) may not appear anywhere in the password, ignoring case
  and accents.
* Characters: anything that can be typed is accepted, including spaces, emoji
  and every script. Refused are control characters (Cc, tab and newline
  included), lone surrogates (Cs) and code points unassigned in this Python's
  Unicode database (Cn): none can be typed, and normalisation is only stable for
  assigned characters, so accepting them could make a password stop matching
  its hash after a Python upgrade.

The bundled list is read lazily, once per process, on the first check.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import attrs

from enspace_profile._security.passwords import PasswordHash, normalize_password
from enspace_profile.exceptions import FieldError, ValidationError

__all__ = ["PasswordPolicy", "check_not_reused", "common_passwords"]

_BLOCKLIST_RESOURCE = "common-passwords.txt.gz"
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Cn"})
_NAME_SEPARATORS = re.compile(r"[\W_]+")
_MIN_CONTEXT_LENGTH = 3
_SHORT_REPEATED_UNIT = 4


@functools.cache
def common_passwords() -> frozenset[str]:
    """Return the bundled blocklist: 30 000 common passwords, NFKC case-folded.

    Read from the package data on the first call only.

    Returns:
        The passwords, lowercase.
    """
    # Imported here: importlib.resources and gzip cost ~6 ms that importing the
    # package must not pay.
    import gzip  # noqa: PLC0415 - lazy
    import importlib.resources  # noqa: PLC0415 - lazy

    resource = importlib.resources.files("enspace_profile._security") / "data"
    data = (resource / _BLOCKLIST_RESOURCE).read_bytes()
    return frozenset(gzip.decompress(data).decode("utf-8").splitlines())


def _fold(text: str) -> str:
    """Return ``text`` as compared with blocklists: NFKC, then case-folded."""
    return normalize_password(text).casefold()


def _skeleton(text: str) -> str:
    """Return ``text`` case-folded and without accents, for finding names in passwords."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _fold_blocklist(words: Iterable[str]) -> frozenset[str]:
    if isinstance(words, str):
        raise ValidationError.single(
            "extra_blocklist", "invalid", "give a collection of passwords, not one string"
        )
    return frozenset(_fold(word) for word in words)


def _blocklist_repr(words: frozenset[str]) -> str:
    return f"<{len(words)} passwords>"


def _range_validator(low: int, high: int) -> Any:
    def validate(_instance: object, attribute: attrs.Attribute[int], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValidationError.single(
                attribute.name,
                "out_of_range",
                f"must be an integer from {low} to {high}",
                minimum=low,
                maximum=high,
            )

    return validate


def _has_refused_characters(text: str) -> bool:
    if text.isprintable():  # fast path: no Cc, Cs or Cn at all
        return False
    return any(unicodedata.category(char) in _REFUSED_CATEGORIES for char in text)


def _periodic_units(text: str) -> Iterator[str]:
    """Yield each unit ``u`` such that ``text`` is ``u`` repeated (the last copy may be cut)."""
    for period in range(1, len(text)):
        if text[period:] == text[:-period]:
            yield text[:period]


@attrs.frozen(kw_only=True)
class PasswordPolicy:
    """Rules for choosing a new password (NIST SP 800-63B-4); see the module notes.

    Attributes:
        min_length: Minimum length when the password is the only factor.
        min_length_two_factor: Minimum length when a second factor is enabled.
        max_length: Maximum length (64 to 4096).
        extra_blocklist: The host's own refused passwords (service name,
            product words, a breach corpus); compared case-insensitively.
        use_common_passwords: Whether to refuse the bundled common passwords.

    >>> policy = PasswordPolicy()
    >>> policy.check("correct horse battery staple", user_id="u1", names=["Ada"])
    'correct horse battery staple'
    >>> try:
    ...     policy.check("Lovelace1815", user_id="u1", names=["Ada Lovelace"])
    ... except ValidationError as error:
    ...     error.codes
    ('password.too_short', 'password.contains_personal_info')

    Raises:
        ValidationError: on construction, for a limit out of range or a minimum
            above the maximum.
    """

    min_length: int = attrs.field(default=15, validator=_range_validator(1, 4096))
    min_length_two_factor: int = attrs.field(default=8, validator=_range_validator(1, 4096))
    max_length: int = attrs.field(default=128, validator=_range_validator(64, 4096))
    extra_blocklist: frozenset[str] = attrs.field(
        factory=frozenset, converter=_fold_blocklist, repr=_blocklist_repr
    )
    use_common_passwords: bool = True

    def __attrs_post_init__(self) -> None:
        errors = [
            FieldError(
                field=name,
                code=f"{name}.out_of_range",
                message="must not exceed max_length",
                params={"maximum": self.max_length},
            )
            for name, value in (
                ("min_length", self.min_length),
                ("min_length_two_factor", self.min_length_two_factor),
            )
            if value > self.max_length
        ]
        if errors:
            raise ValidationError(errors)

    def check(
        self,
        password: object,
        *,
        user_id: str,
        names: Sequence[str] = (),
        two_factor: bool = False,
        field: str = "password",
    ) -> str:
        """Return ``password`` normalised (NFKC) if it may be used, else raise.

        This is the form to hand to :meth:`PasswordHash.hash` (which normalises
        again; NFKC is idempotent). A password over the maximum is reported as
        too long (and for invalid characters) without the blocklist and
        personal-information checks, which would be moot. Whether the password
        equals the current one needs the stored hash: see :func:`check_not_reused`.

        Args:
            password: What the user typed (any object; only text can pass).
            user_id: The account's identifier, refused inside the password.
            names: The user's names (first, last, display), whose parts of 3
                characters or more are refused inside the password.
            two_factor: Whether the account has a second factor (lower minimum).
            field: The field name used in error codes.

        Returns:
            The NFKC-normalised password.

        Raises:
            ValidationError: one error listing every problem found, with codes
                ``<field>.invalid`` (params ``reason``: ``"not_text"`` or
                ``"characters"``), ``<field>.too_short`` (``minimum``,
                ``actual``), ``<field>.too_long`` (``maximum``, ``actual``),
                ``<field>.common`` and ``<field>.contains_personal_info``
                (``sources``: some of ``"name"``, ``"user_id"``).
        """

        def problem(name: str, message: str, **params: Any) -> FieldError:
            return FieldError(field=field, code=f"{field}.{name}", message=message, params=params)

        if not isinstance(password, str):
            raise ValidationError([problem("invalid", "must be text", reason="not_text")])
        normalised = normalize_password(password)
        errors: list[FieldError] = []
        if _has_refused_characters(normalised):
            errors.append(
                problem(
                    "invalid",
                    "contains control or unassigned characters",
                    reason="characters",
                )
            )
        length = len(normalised)
        minimum = self.min_length_two_factor if two_factor else self.min_length
        if length < minimum:
            errors.append(
                problem(
                    "too_short",
                    f"must be at least {minimum} characters",
                    minimum=minimum,
                    actual=length,
                )
            )
        elif length > self.max_length:
            errors.append(
                problem(
                    "too_long",
                    f"must be at most {self.max_length} characters",
                    maximum=self.max_length,
                    actual=length,
                )
            )
        if length <= self.max_length:
            if self._is_common(normalised.casefold()):
                errors.append(problem("common", "is too common; choose another"))
            sources = _personal_info_sources(normalised, user_id=user_id, names=names)
            if sources:
                errors.append(
                    problem(
                        "contains_personal_info",
                        "must not contain your name or user id",
                        sources=sources,
                    )
                )
        if errors:
            raise ValidationError(errors)
        return normalised

    def _is_common(self, folded: str) -> bool:
        if self._is_listed(folded):
            return True
        return any(
            (len(unit) <= _SHORT_REPEATED_UNIT and len(folded) >= 2 * len(unit))
            or self._is_listed(unit)
            for unit in _periodic_units(folded)
        )

    def _is_listed(self, folded: str) -> bool:
        return folded in self.extra_blocklist or (
            self.use_common_passwords and folded in common_passwords()
        )


def _personal_info_sources(password: str, *, user_id: str, names: Sequence[str]) -> tuple[str, ...]:
    haystack = _skeleton(password)
    sources: list[str] = []
    parts = {
        part
        for name in names
        for part in _NAME_SEPARATORS.split(_skeleton(name))
        if len(part) >= _MIN_CONTEXT_LENGTH
    }
    if any(part in haystack for part in parts):
        sources.append("name")
    folded_id = _skeleton(user_id)
    ids = {folded_id, folded_id.partition("@")[0]}
    if any(len(ident) >= _MIN_CONTEXT_LENGTH and ident in haystack for ident in ids):
        sources.append("user_id")
    return tuple(sources)


def check_not_reused(
    password: str,
    *,
    current_hash: str | None,
    hasher: PasswordHash,
    field: str = "password",
) -> None:
    """Refuse a new password that equals the current one.

    Costs one hash verification, so call it after :meth:`PasswordPolicy.check`
    has passed (its cheap checks come first).

    Args:
        password: The new password.
        current_hash: The stored hash of the current password (``None`` if the
            account has none).
        hasher: The front object that verifies stored hashes.
        field: The field name used in the error code.

    Raises:
        ValidationError: ``<field>.reused`` when ``password`` matches
            ``current_hash``; as :meth:`PasswordHash.verify` for a bad hash.
    """
    if current_hash is not None and hasher.verify(password, current_hash):
        raise ValidationError.single(field, "reused", "must differ from your current password")

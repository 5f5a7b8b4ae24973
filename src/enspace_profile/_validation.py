"""Small validators shared by the tabs: slugs, https URLs, user ids, display text, times.

Each raises :class:`~enspace_profile.exceptions.ValidationError` with stable codes
``<field>.<problem>``; :class:`ErrorCollector` gathers several fields' problems so a
caller reports them all at once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, ParamSpec, TypeVar
from urllib.parse import urlsplit

import attrs

from enspace_profile.exceptions import FieldError, ValidationError

__all__ = [
    "ErrorCollector",
    "validate_aware_datetime",
    "validate_https_url",
    "validate_slug",
    "validate_text",
    "validate_user_id",
]

_P = ParamSpec("_P")
_T = TypeVar("_T")

_SLUG_MIN: Final = 2
_SLUG_MAX: Final = 64
_SLUG_RE: Final = re.compile(r"[a-z0-9][a-z0-9._-]*")
_URL_MAX: Final = 2048
# RFC 3986 allows these printable ASCII characters in a URL (no space, no `"<>\^`{|}`).
_URL_CHARS_RE: Final = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
_BAD_ESCAPE_RE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HOST_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME_RE: Final = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")
_HOSTNAME_MAX: Final = 253
_LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})
_USER_ID_MAX: Final = 255


@attrs.define
class ErrorCollector:
    """Collects field errors so that one :class:`ValidationError` reports all of them.

    >>> errors = ErrorCollector()
    >>> errors.capture(validate_slug, "Bad Key", field="key") is None
    True
    >>> errors.codes
    ('key.invalid',)
    """

    errors: list[FieldError] = attrs.field(factory=list)

    @property
    def codes(self) -> tuple[str, ...]:
        """The codes collected so far, in order."""
        return tuple(e.code for e in self.errors)

    def add(self, field: str, problem: str, message: str, **params: Any) -> None:
        """Record one problem; its code becomes ``<field>.<problem>``."""
        self.errors.append(
            FieldError(field=field, code=f"{field}.{problem}", message=message, params=params),
        )

    def capture(self, func: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T | None:
        """Call a validator; record its :class:`ValidationError` instead of raising it.

        Returns:
            What ``func`` returned, or ``None`` if it raised a :class:`ValidationError`.
        """
        try:
            return func(*args, **kwargs)
        except ValidationError as error:
            self.errors.extend(error.errors)
            return None

    def raise_if_any(self) -> None:
        """Raise one :class:`ValidationError` carrying everything collected, if anything was.

        Raises:
            ValidationError: if at least one problem was recorded.
        """
        if self.errors:
            raise ValidationError(self.errors)


def validate_slug(value: object, *, field: str = "key") -> str:
    """Check a machine key: 2 to 64 of ``a-z 0-9 . _ -``, starting with a letter or digit.

    Keys are never normalised (``"Dark-Mode"`` is refused, not lowered): a key is
    compared byte for byte everywhere, so what is registered is what is looked up.

    >>> validate_slug("new-editor.v2")
    'new-editor.v2'

    Args:
        value: The candidate key.
        field: The field name used in error codes.

    Returns:
        ``value`` unchanged.

    Raises:
        ValidationError: ``<field>.invalid_type``, ``<field>.too_short``,
            ``<field>.too_long`` or ``<field>.invalid``.
    """
    if not isinstance(value, str):
        raise ValidationError.single(field, "invalid_type", "must be text")
    if len(value) < _SLUG_MIN:
        raise ValidationError.single(
            field, "too_short", f"must be at least {_SLUG_MIN} characters", limit=_SLUG_MIN
        )
    if len(value) > _SLUG_MAX:
        raise ValidationError.single(
            field, "too_long", f"must be at most {_SLUG_MAX} characters", limit=_SLUG_MAX
        )
    if _SLUG_RE.fullmatch(value) is None:
        raise ValidationError.single(
            field,
            "invalid",
            "may only contain lowercase letters, digits, '.', '_' and '-', "
            "and must start with a letter or a digit",
        )
    return value


def _host_is_valid(host: str, *, bracketed: bool) -> bool:
    if bracketed:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return len(host) <= _HOSTNAME_MAX and _HOSTNAME_RE.fullmatch(host) is not None


def validate_https_url(
    value: object,
    *,
    field: str,
    allow_loopback_http: bool = False,
    allow_fragment: bool = True,
) -> str:
    """Check that a URL is an absolute ``https`` URL that is safe to show and follow.

    Refused: other schemes (``javascript:``, ``http:``), embedded credentials
    (``https://user:pass@host``), whitespace, control and non-ASCII characters
    (percent-encode them; internationalised host names must be in punycode),
    backslashes, a missing or malformed host, a bad port, more than 2048 characters.

    >>> validate_https_url("https://example.com/lab/feedback?f=1", field="feedback_url")
    'https://example.com/lab/feedback?f=1'

    Args:
        value: The candidate URL.
        field: The field name used in error codes.
        allow_loopback_http: Also accept ``http://localhost``, ``http://127.0.0.1`` and
            ``http://[::1]`` (RFC 8252 loopback redirects for native and local apps).
        allow_fragment: Accept a ``#fragment`` (OAuth endpoints must not have one).

    Returns:
        ``value`` unchanged.

    Raises:
        ValidationError: ``<field>.invalid_type``, ``<field>.too_long``,
            ``<field>.invalid_characters``, ``<field>.invalid``, ``<field>.not_https``,
            ``<field>.credentials`` or ``<field>.fragment``.
    """
    if not isinstance(value, str):
        raise ValidationError.single(field, "invalid_type", "must be text")
    if len(value) > _URL_MAX:
        raise ValidationError.single(
            field, "too_long", f"must be at most {_URL_MAX} characters", limit=_URL_MAX
        )
    if _URL_CHARS_RE.fullmatch(value) is None or _BAD_ESCAPE_RE.search(value):
        raise ValidationError.single(
            field,
            "invalid_characters",
            "must not contain spaces, control characters, non-ASCII characters, "
            "backslashes or a stray '%' (percent-encode them)",
        )
    try:
        parts = urlsplit(value)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        raise ValidationError.single(field, "invalid", "is not a valid URL") from None
    scheme = parts.scheme.lower()
    loopback_http = allow_loopback_http and scheme == "http" and host in _LOOPBACK_HOSTS
    if scheme != "https" and not loopback_http:
        raise ValidationError.single(field, "not_https", "must start with https://")
    if "@" in parts.netloc:
        raise ValidationError.single(
            field, "credentials", "must not contain a user name or password"
        )
    if not host or not _host_is_valid(host, bracketed="[" in parts.netloc):
        raise ValidationError.single(field, "invalid", "must name a valid host")
    if not allow_fragment and "#" in value:
        raise ValidationError.single(field, "fragment", "must not contain a #fragment")
    return value


def validate_user_id(value: object, *, field: str = "user_id") -> str:
    """Check a host-supplied user id: non-empty printable text, at most 255 characters.

    Raises:
        ValidationError: ``<field>.invalid`` or ``<field>.too_long``.
    """
    if not isinstance(value, str) or not value or not value.isprintable() or value.isspace():
        raise ValidationError.single(field, "invalid", "must be non-empty printable text")
    if len(value) > _USER_ID_MAX:
        raise ValidationError.single(
            field, "too_long", f"must be at most {_USER_ID_MAX} characters", limit=_USER_ID_MAX
        )
    return value


def validate_text(
    value: object,
    *,
    field: str,
    max_length: int,
    required: bool = True,
    multiline: bool = False,
) -> str:
    """Check display text: a string, not blank (if required), bounded, no control characters.

    Raises:
        ValidationError: ``<field>.invalid_type``, ``<field>.required``,
            ``<field>.too_long`` or ``<field>.invalid_characters``.
    """
    if not isinstance(value, str):
        raise ValidationError.single(field, "invalid_type", "must be text")
    if required and not value.strip():
        raise ValidationError.single(field, "required", "must not be empty")
    if len(value) > max_length:
        raise ValidationError.single(
            field, "too_long", f"must be at most {max_length} characters", limit=max_length
        )
    allowed = "\n\t" if multiline else ""
    if not all(c.isprintable() or c in allowed for c in value):
        raise ValidationError.single(
            field, "invalid_characters", "must not contain control characters"
        )
    return value


def validate_aware_datetime(value: object, *, field: str) -> datetime:
    """Check that ``value`` is a timezone-aware datetime; return it converted to UTC.

    Raises:
        ValidationError: ``<field>.invalid_type`` or ``<field>.naive``.
    """
    if not isinstance(value, datetime):
        raise ValidationError.single(field, "invalid_type", "must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError.single(
            field, "naive", "must be timezone-aware (e.g. datetime.now(UTC))"
        )
    return value.astimezone(UTC)

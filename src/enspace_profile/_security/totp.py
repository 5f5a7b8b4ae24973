"""Time-based one-time passwords (RFC 6238 TOTP over RFC 4226 HOTP, HMAC-SHA1).

The secret is 160 random bits (the size RFC 4226 recommends), shown to the user as
unpadded base32 and inside an ``otpauth://`` URI for QR codes. HMAC-SHA1 is what every
authenticator app supports; its use in HOTP is not affected by SHA-1 collision attacks.

Verification accepts the current time step and at most one step either side (clock
drift), never a step at or before the last one accepted for the user (so a code, once
used, cannot be replayed, nor can an older one), compares in constant time, and
reports bad input as "no match" rather than raising.

>>> secret = TotpSecret(b"12345678901234567890")
>>> from datetime import datetime, UTC
>>> when = datetime.fromtimestamp(59, UTC)
>>> Totp(digits=8).code_at(secret, when)
'94287082'
>>> Totp(digits=8).verify(secret, "9428 7082", now=when, last_used_step=None)
1
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import attrs

from enspace_profile._clock import ensure_utc
from enspace_profile._random import RandomSource
from enspace_profile.exceptions import FieldError, ValidationError

__all__ = [
    "DEFAULT_SECRET_LENGTH",
    "MIN_SECRET_LENGTH",
    "Totp",
    "TotpSecret",
    "otpauth_uri",
]

DEFAULT_SECRET_LENGTH: Final = 20
"""Bytes of a generated secret (160 bits, RFC 4226's recommendation)."""

MIN_SECRET_LENGTH: Final = 16
"""Fewest bytes a secret may have (128 bits, RFC 4226's minimum)."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_DIGITS: Final = 6
_MAX_DIGITS: Final = 8
_MAX_DRIFT_STEPS: Final = 1
# Longest user input considered at all (a code with generous spacing); longer is refused
# before any other work.
_MAX_CODE_INPUT: Final = 32
_MAX_LABEL_LENGTH: Final = 256
_ASCII_DIGITS: Final = frozenset("0123456789")
_BASE32_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


def _validate_secret(_instance: object, _attribute: object, value: Any) -> None:
    if not isinstance(value, bytes) or len(value) < MIN_SECRET_LENGTH:
        raise ValidationError.single(
            "secret",
            "too_short",
            f"a TOTP secret has at least {MIN_SECRET_LENGTH} bytes",
            minimum=MIN_SECRET_LENGTH,
        )


@attrs.frozen
class TotpSecret:
    """The shared secret of one authenticator; never shown in ``repr``.

    Args:
        value: The raw secret, at least 16 bytes (20 when generated).

    Raises:
        ValidationError: ``secret.too_short``.
    """

    value: bytes = attrs.field(repr=False, validator=_validate_secret)

    def __repr__(self) -> str:
        return "TotpSecret(<hidden>)"

    @classmethod
    def generate(cls, rng: RandomSource) -> TotpSecret:
        """Return a fresh 160-bit secret drawn from ``rng``."""
        return cls(rng.token_bytes(DEFAULT_SECRET_LENGTH))

    @classmethod
    def from_base32(cls, text: str) -> TotpSecret:
        """Parse a base32 secret as apps show it: any case, spaces and ``=`` padding ignored.

        Args:
            text: The base32 text.

        Returns:
            The :class:`TotpSecret`.

        Raises:
            ValidationError: ``secret.invalid`` (message never echoes the text) or
                ``secret.too_short``.
        """
        cleaned = "".join(text.split()).upper().rstrip("=")
        if not cleaned or not _BASE32_CHARS.issuperset(cleaned):
            raise ValidationError.single("secret", "invalid", "the secret is not valid base32")
        try:
            raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
        except (binascii.Error, ValueError):
            raise ValidationError.single(
                "secret", "invalid", "the secret is not valid base32"
            ) from None
        return cls(raw)

    def to_base32(self) -> str:
        """Return the secret as unpadded upper-case base32 (for manual entry in an app)."""
        return base64.b32encode(self.value).decode("ascii").rstrip("=")


def _label_errors(field: str, value: object) -> list[FieldError]:
    if not isinstance(value, str) or not value.strip():
        return [FieldError(field=field, code=f"{field}.required", message=f"{field} is required")]
    if ":" in value:
        return [
            FieldError(
                field=field,
                code=f"{field}.invalid",
                message=f"{field} cannot contain ':' (it separates issuer and account)",
            )
        ]
    if len(value) > _MAX_LABEL_LENGTH or not value.isprintable():
        return [
            FieldError(
                field=field,
                code=f"{field}.invalid",
                message=f"{field} must be printable text of at most {_MAX_LABEL_LENGTH} characters",
                params={"limit": _MAX_LABEL_LENGTH},
            )
        ]
    return []


def _config_errors(*, digits: object, period: object, drift_steps: object) -> list[FieldError]:
    errors: list[FieldError] = []
    if type(digits) is not int or not _MIN_DIGITS <= digits <= _MAX_DIGITS:
        errors.append(
            FieldError(
                field="digits",
                code="digits.out_of_range",
                message=f"digits must be {_MIN_DIGITS} to {_MAX_DIGITS}",
                params={"minimum": _MIN_DIGITS, "maximum": _MAX_DIGITS},
            )
        )
    if type(period) is not int or period < 1:
        errors.append(
            FieldError(
                field="period",
                code="period.out_of_range",
                message="period must be a positive number of seconds",
            )
        )
    if type(drift_steps) is not int or not 0 <= drift_steps <= _MAX_DRIFT_STEPS:
        errors.append(
            FieldError(
                field="drift_steps",
                code="drift_steps.out_of_range",
                message=f"drift_steps must be 0 to {_MAX_DRIFT_STEPS}",
                params={"minimum": 0, "maximum": _MAX_DRIFT_STEPS},
            )
        )
    return errors


def otpauth_uri(
    secret: TotpSecret,
    *,
    issuer: str,
    account_name: str,
    digits: int = 6,
    period: int = 30,
) -> str:
    """Return the ``otpauth://totp/...`` URI that authenticator apps scan as a QR code.

    The label is ``Issuer:account`` and the issuer is repeated in the ``issuer``
    parameter (as the Key URI format recommends); both are percent-encoded (spaces as
    ``%20``). The URI contains the secret: show it only to its owner, never log it.

    Args:
        secret: The secret to provision.
        issuer: The service name shown in the app (``"ENSPACE"``); no ``:``.
        account_name: The user's account (usually the e-mail address); no ``:``.
        digits: Code length, 6 to 8.
        period: Seconds per time step.

    Returns:
        The URI.

    Raises:
        ValidationError: all problems with ``issuer``, ``account_name``, ``digits``, ``period``.

    >>> otpauth_uri(TotpSecret(b"12345678901234567890"), issuer="ENSPACE Cloud",
    ...             account_name="ada@example.com")
    'otpauth://totp/ENSPACE%20Cloud:ada%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=ENSPACE%20Cloud&algorithm=SHA1&digits=6&period=30'
    """
    errors = _label_errors("issuer", issuer) + _label_errors("account_name", account_name)
    errors += _config_errors(digits=digits, period=period, drift_steps=0)
    if errors:
        raise ValidationError(errors)
    label = f"{quote(issuer, safe='')}:{quote(account_name, safe='')}"
    return (
        f"otpauth://totp/{label}?secret={secret.to_base32()}&issuer={quote(issuer, safe='')}"
        f"&algorithm=SHA1&digits={digits}&period={period}"
    )


def _check_step(step: int) -> None:
    if not 0 <= step < 1 << 64:
        raise ValidationError.single(
            "step", "out_of_range", "the time step must be between 1970 and the far future"
        )


def _hotp(key: bytes, counter: int, digits: int) -> str:
    """RFC 4226 HOTP: HMAC-SHA1 of the 8-byte counter, dynamically truncated."""
    digest = hmac.digest(key, counter.to_bytes(8, "big"), hashlib.sha1)
    offset = digest[-1] & 0x0F
    number = int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFF_FFFF
    return str(number % 10**digits).zfill(digits)


def _normalize_code(code: object, digits: int) -> str | None:
    if not isinstance(code, str) or len(code) > _MAX_CODE_INPUT:
        return None
    compact = code.replace(" ", "").strip()
    if len(compact) != digits or not _ASCII_DIGITS.issuperset(compact):
        return None
    return compact


@attrs.frozen(kw_only=True)
class Totp:
    """TOTP parameters and the operations that use them.

    Attributes:
        digits: Code length, 6 (default) to 8.
        period: Seconds per time step (default 30).
        drift_steps: Time steps accepted either side of the current one: 0 or 1 (default 1,
            RFC 6238's recommendation; more would widen the window an observed code works).

    Raises:
        ValidationError: ``digits.out_of_range``, ``period.out_of_range``,
            ``drift_steps.out_of_range`` (all at once).
    """

    digits: int = 6
    period: int = 30
    drift_steps: int = 1

    def __attrs_post_init__(self) -> None:
        errors = _config_errors(
            digits=self.digits, period=self.period, drift_steps=self.drift_steps
        )
        if errors:
            raise ValidationError(errors)

    def time_step(self, when: datetime) -> int:
        """Return the RFC 6238 time step ``floor(unix_time / period)`` containing ``when``.

        Raises:
            ValueError: if ``when`` is naive.
        """
        if when.tzinfo is None or when.utcoffset() is None:
            ensure_utc(when)  # raises the library's ValueError for naive datetimes
        # Aware subtraction honours any offset; whole seconds then floor exactly.
        elapsed = when - _EPOCH
        return (elapsed.days * 86_400 + elapsed.seconds) // self.period

    def code_for_step(self, secret: TotpSecret, step: int) -> str:
        """Return the code for one time step (RFC 4226 HOTP with the step as counter).

        Raises:
            ValidationError: ``step.out_of_range`` if the step is negative or beyond 64 bits.
        """
        _check_step(step)
        return _hotp(secret.value, step, self.digits)

    def code_at(self, secret: TotpSecret, when: datetime) -> str:
        """Return the code an authenticator app shows at ``when``.

        Args:
            secret: The shared secret.
            when: A timezone-aware time, not before 1970.

        Returns:
            The zero-padded code, ``digits`` characters long.

        Raises:
            ValueError: if ``when`` is naive.
            ValidationError: ``step.out_of_range`` before 1970.
        """
        return self.code_for_step(secret, self.time_step(when))

    def verify(
        self,
        secret: TotpSecret,
        code: object,
        *,
        now: datetime,
        last_used_step: int | None,
    ) -> int | None:
        """Check a code the user typed; return the time step it matched, or ``None``.

        Store the returned step as the user's ``last_used_step``: a later call refuses that
        step and every earlier one, so no code is accepted twice.

        Args:
            secret: The user's secret.
            code: What the user typed; spaces are ignored (``"123 456"``). Anything that is
                not exactly ``digits`` ASCII digits simply does not match.
            now: The current time (timezone-aware).
            last_used_step: The step returned by the last successful verification, if any.

        Returns:
            The matched time step (the latest one if several match), or ``None``.

        Raises:
            ValueError: if ``now`` is naive.
        """
        current = self.time_step(now)
        candidate = _normalize_code(code, self.digits)
        if candidate is None:
            return None
        floor = -1 if last_used_step is None else last_used_step
        matched: int | None = None
        key, digits = secret.value, self.digits
        # Steps below 0 (before 1970) do not exist; no datetime reaches 2**64 steps.
        for step in range(max(0, current - self.drift_steps), current + self.drift_steps + 1):
            # Every candidate is computed and compared, so timing does not reveal which matched.
            equal = hmac.compare_digest(_hotp(key, step, digits), candidate)
            if equal and step > floor:
                matched = step
        return matched

    def provisioning_uri(self, secret: TotpSecret, *, issuer: str, account_name: str) -> str:
        """Return :func:`otpauth_uri` with this object's ``digits`` and ``period``."""
        return otpauth_uri(
            secret, issuer=issuer, account_name=account_name, digits=self.digits, period=self.period
        )

"""The shape of a personal access token: ``<prefix><random body><checksum>``.

A token such as ``esp_`` + 30 random base62 characters + 6 checksum characters is:

* **recognisable**: the host-chosen prefix (default ``esp_``) tells people and secret
  scanners what they are looking at; :attr:`TokenFormat.pattern` finds tokens in text;
* **unguessable**: the body is 30 characters drawn uniformly from the 62 base62
  characters, ``30 * log2(62) ≈ 178.6`` bits of entropy (at least 160 bits are required);
* **self-checking**: the last 6 characters are the CRC32 of ``prefix + body`` written in
  base62 (``62**6 > 2**32``, so every CRC32 value fits), so typos and made-up strings are
  refused offline, before any storage lookup.

Why 30 body characters: 27 would already give 160.8 bits, but 30 (the length GitHub
uses) leaves a comfortable margin and makes the default token a round 40 characters.
The body is drawn by rejection sampling (a random byte is used only if it is below
``62 * 4 = 248``), so every position is uniform and the length is always the same.

:meth:`TokenFormat.check` is on the hot path of every API call: it refuses malformed
input with a handful of C-level string operations and no regular expression.

>>> from enspace_profile._random import SeededRandom
>>> token = DEFAULT_TOKEN_FORMAT.generate(SeededRandom(1))
>>> len(token), token.startswith("esp_")
(40, True)
>>> DEFAULT_TOKEN_FORMAT.check(token) == token
True
"""

from __future__ import annotations

import re
import zlib
from typing import Any, Final

import attrs

from enspace_profile._random import RandomSource
from enspace_profile.exceptions import (
    MalformedTokenError,
    TokenChecksumError,
    ValidationError,
)

__all__ = [
    "BASE62_ALPHABET",
    "CHECKSUM_LENGTH",
    "DEFAULT_BODY_LENGTH",
    "DEFAULT_MAX_INPUT_LENGTH",
    "DEFAULT_PREFIX",
    "DEFAULT_TOKEN_FORMAT",
    "MIN_BODY_LENGTH",
    "TOKEN_PATTERN",
    "TokenFormat",
    "find_tokens",
    "token_from_header",
]

BASE62_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
"""The 62 characters a token body and checksum are made of, in digit order."""

CHECKSUM_LENGTH: Final = 6
"""Characters of base62 CRC32 at the end of every token (``62**6 > 2**32``)."""

DEFAULT_PREFIX: Final = "esp_"
"""The default prefix: short, recognisable, ends in ``_``."""

DEFAULT_BODY_LENGTH: Final = 30
"""Default random characters (≈ 178.6 bits)."""

MIN_BODY_LENGTH: Final = 27
"""Fewest random characters allowed: ``ceil(160 / log2(62))``, i.e. at least 160 bits."""

_MAX_BODY_LENGTH: Final = 128

DEFAULT_MAX_INPUT_LENGTH: Final = 256
"""Inputs longer than this are refused before any other work is done."""

_PREFIX_RE: Final = re.compile(r"[a-z0-9]{2,16}_\Z")
# Bytes below this bound map uniformly onto the alphabet (248 = 62 * 4).
_UNBIASED_BYTE_BOUND: Final = 248
_BASE: Final = len(BASE62_ALPHABET)
_PAIR_BASE: Final = _BASE * _BASE
_PAIR_BASE_SQUARED: Final = _PAIR_BASE * _PAIR_BASE
# All 3,844 two-character base62 strings: the 6-character checksum is 3 table lookups.
_PAIRS: Final = tuple(a + b for a in BASE62_ALPHABET for b in BASE62_ALPHABET)

# Messages are constants: they never echo any part of the input (it may be a secret).
_NOT_A_STRING: Final = "token must be a string"
_TOO_LONG: Final = "token is far too long"
_WRONG_PREFIX: Final = "token does not start with the expected prefix"
_WRONG_LENGTH: Final = "token does not have the expected length"
_BAD_CHARACTERS: Final = "token contains characters outside A-Z, a-z, 0-9 after its prefix"
_BAD_CHECKSUM: Final = "token checksum does not match (mistyped or made up)"
_NO_HEADER: Final = "no credentials in the Authorization header"
_BAD_SCHEME: Final = "the Authorization header must be 'Bearer <token>' or 'token <token>'"
_MAX_HEADER_LENGTH: Final = 8192
_SCHEMES: Final = frozenset({"bearer", "token"})


def _checksum(data: bytes) -> str:
    """Return the 6-character base62 CRC32 of ``data``."""
    crc = zlib.crc32(data)
    pairs = _PAIRS
    return (
        pairs[crc // _PAIR_BASE_SQUARED]
        + pairs[crc // _PAIR_BASE % _PAIR_BASE]
        + pairs[crc % _PAIR_BASE]
    )


def _validate_prefix(_instance: object, _attribute: object, value: Any) -> None:
    if not isinstance(value, str) or _PREFIX_RE.match(value) is None:
        raise ValidationError.single(
            "prefix",
            "invalid",
            "prefix must be 2-16 characters from a-z and 0-9 followed by '_'",
            min_length=2,
            max_length=16,
        )


def _validate_body_length(_instance: object, _attribute: object, value: Any) -> None:
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not MIN_BODY_LENGTH <= value <= _MAX_BODY_LENGTH
    ):
        raise ValidationError.single(
            "body_length",
            "out_of_range",
            f"body_length must be an integer from {MIN_BODY_LENGTH} to {_MAX_BODY_LENGTH}",
            minimum=MIN_BODY_LENGTH,
            maximum=_MAX_BODY_LENGTH,
        )


@attrs.frozen(kw_only=True)
class TokenFormat:
    """How tokens look: generate them, check them offline, find them in text.

    Attributes:
        prefix: 2-16 characters from ``[a-z0-9]`` then ``_`` (default ``"esp_"``).
        body_length: Random base62 characters, at least 27 (160 bits); default 30.
        max_input_length: Anything longer is refused before any other work (default 256;
            at least the token length).

    Raises:
        ValidationError: on construction, if an attribute is out of range
            (``prefix.invalid``, ``body_length.out_of_range``,
            ``max_input_length.out_of_range``).
    """

    prefix: str = attrs.field(default=DEFAULT_PREFIX, validator=_validate_prefix)
    body_length: int = attrs.field(default=DEFAULT_BODY_LENGTH, validator=_validate_body_length)
    max_input_length: int = DEFAULT_MAX_INPUT_LENGTH

    # Precomputed by __attrs_post_init__ so that check() does no arithmetic.
    _prefix_length: int = attrs.field(init=False, repr=False, eq=False)
    _length: int = attrs.field(init=False, repr=False, eq=False)
    _pattern: re.Pattern[str] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        length = len(self.prefix) + self.body_length + CHECKSUM_LENGTH
        limit: Any = self.max_input_length  # checked at run time: hosts may pass anything
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < length:
            raise ValidationError.single(
                "max_input_length",
                "out_of_range",
                f"max_input_length must be an integer of at least {length} (the token length)",
                minimum=length,
            )
        pattern = re.compile(
            rf"\b{re.escape(self.prefix)}[0-9A-Za-z]{{{self.body_length + CHECKSUM_LENGTH}}}\b",
            re.ASCII,
        )
        object.__setattr__(self, "_prefix_length", len(self.prefix))
        object.__setattr__(self, "_length", length)
        object.__setattr__(self, "_pattern", pattern)

    @property
    def length(self) -> int:
        """The exact length of every token of this format (40 by default)."""
        return self._length

    @property
    def pattern(self) -> re.Pattern[str]:
        """A compiled, word-bounded regular expression matching tokens of this format.

        Give ``pattern.pattern`` to secret scanners. A match is a *candidate*: use
        :meth:`find_tokens` to keep only candidates whose checksum is right.
        """
        return self._pattern

    def generate(self, rng: RandomSource) -> str:
        """Return a new token drawn from ``rng``.

        Args:
            rng: The random source; production code must pass a CSPRNG
                (:class:`~enspace_profile._random.SystemRandom`).

        Returns:
            ``prefix + body + checksum``; it always passes :meth:`check`.
        """
        wanted = self.body_length
        alphabet = BASE62_ALPHABET
        chars: list[str] = []
        while len(chars) < wanted:
            # A few spare bytes: ~3% of bytes are rejected, so one draw nearly always suffices.
            for byte in rng.token_bytes(wanted - len(chars) + 8):
                if byte < _UNBIASED_BYTE_BOUND:
                    chars.append(alphabet[byte % _BASE])
                    if len(chars) == wanted:
                        break
        head = self.prefix + "".join(chars)
        return head + _checksum(head.encode())

    def check(self, raw: object) -> str:
        """Return ``raw`` if it is shaped like a token of this format with a correct checksum.

        This runs offline and fast (no storage, no regular expression): call it before
        hashing or looking anything up. Error messages never contain the input.

        Args:
            raw: Whatever the client sent (e.g. the ``Authorization`` header's credential).

        Returns:
            The token, as a plain ``str``.

        Raises:
            MalformedTokenError: if ``raw`` is not a string, is longer than
                :attr:`max_input_length`, lacks the prefix, has the wrong length or
                contains characters other than base62 after the prefix.
            TokenChecksumError: if it is well-formed but the checksum does not match.
        """
        if type(raw) is not str:
            if not isinstance(raw, str):
                raise MalformedTokenError(_NOT_A_STRING)
            raw = str.__str__(raw)  # a str subclass: continue with a plain copy
        size = len(raw)
        if size > self.max_input_length:
            raise MalformedTokenError(_TOO_LONG)
        if not raw.startswith(self.prefix):
            raise MalformedTokenError(_WRONG_PREFIX)
        if size != self._length:
            raise MalformedTokenError(_WRONG_LENGTH)
        # isascii() is O(1); once the text is ASCII, bytes.isalnum() is exactly
        # [A-Za-z0-9] and faster than str.isalnum(), and the bytes feed the CRC.
        if not raw.isascii():
            raise MalformedTokenError(_BAD_CHARACTERS)
        data = raw.encode()
        if not data[self._prefix_length :].isalnum():
            raise MalformedTokenError(_BAD_CHARACTERS)
        # The checksum is not a secret (anyone holding the token can compute it), so a
        # plain comparison is fine here; the keyed digest is compared in constant time.
        if _checksum(data[:-CHECKSUM_LENGTH]) != raw[-CHECKSUM_LENGTH:]:
            raise TokenChecksumError(_BAD_CHECKSUM)
        return raw

    def is_valid(self, raw: object) -> bool:
        """Return whether :meth:`check` would accept ``raw``."""
        try:
            self.check(raw)
        except (MalformedTokenError, TokenChecksumError):
            return False
        return True

    def find_tokens(self, text: str) -> list[str]:
        """Return the tokens of this format found in ``text``, in order of appearance.

        Only word-bounded candidates whose checksum is right are returned, so random
        strings that merely look similar are not reported.

        Args:
            text: Any text (a log line, a file, a chat message).

        Returns:
            The tokens, possibly with repetitions; empty if there are none.
        """
        return [m for m in self._pattern.findall(text) if self.is_valid(m)]

    def hint(self, token: str) -> str:
        """Return the non-secret reminder shown in lists: ``prefix + "…" + last 4 chars``.

        >>> TokenFormat().hint("esp_" + "a" * 30 + "0xYz12")
        'esp_…Yz12'
        """
        return f"{self.prefix}…{token[-4:]}"


DEFAULT_TOKEN_FORMAT: Final = TokenFormat()
"""The default format: prefix ``esp_``, 30 random characters, 40 characters in all."""

TOKEN_PATTERN: Final = DEFAULT_TOKEN_FORMAT.pattern
"""The scanner regular expression for :data:`DEFAULT_TOKEN_FORMAT`."""


def find_tokens(text: str, *, token_format: TokenFormat = DEFAULT_TOKEN_FORMAT) -> list[str]:
    """Return the valid tokens of ``token_format`` found in ``text``.

    See :meth:`TokenFormat.find_tokens`; this uses :data:`DEFAULT_TOKEN_FORMAT` by default.

    >>> from enspace_profile._random import SeededRandom
    >>> token = DEFAULT_TOKEN_FORMAT.generate(SeededRandom(7))
    >>> find_tokens(f"leaked: {token}.") == [token]
    True
    """
    return token_format.find_tokens(text)


def token_from_header(value: str | bytes | None) -> str:
    """Return the credential of an ``Authorization`` header, ready for ``authenticate``.

    Accepts ``Bearer <token>`` (RFC 6750) and ``token <token>`` (as GitHub does), with
    the scheme in any case and surrounding whitespace ignored. The credential itself is
    not checked here: pass it to ``panel.tokens.authenticate``, which does.

    Args:
        value: The header's value as the web framework hands it over (``None`` if the
            request has no such header).

    Returns:
        The credential part.

    Raises:
        MalformedTokenError: if the header is missing, empty, far too long, not text,
            or uses another scheme (``Basic ...``). The message never repeats the header.

    >>> token_from_header("Bearer esp_abc")
    'esp_abc'
    >>> token_from_header("token esp_abc")
    'esp_abc'
    """
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedTokenError(_BAD_CHARACTERS) from None
    if not isinstance(value, str) or not value.strip():
        raise MalformedTokenError(_NO_HEADER)
    if len(value) > _MAX_HEADER_LENGTH:
        raise MalformedTokenError(_TOO_LONG)
    parts = value.split(None, 1)
    if len(parts) != 2 or parts[0].lower() not in _SCHEMES:
        raise MalformedTokenError(_BAD_SCHEME)
    return parts[1].strip()

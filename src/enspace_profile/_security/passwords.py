"""Password hashing for the Security tab: hashers, PHC strings and one front object.

Use :class:`PasswordHash` (``PasswordHash.recommended()``); the hashers are its
strategies and rarely need to be called directly.

Stored formats (``<b64>`` is standard base64, alphabet ``A-Za-z0-9+/``, without
``=`` padding, as the PHC string format specifies):

* Argon2id: ``$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<b64 salt>$<b64 hash>``,
  the same string the reference implementation, argon2-cffi and pwdlib write.
* scrypt: ``$scrypt$ln=<log2 N>,r=<block size>,p=<parallelism>$<b64 salt>$<b64 hash>``,
  the layout passlib uses for scrypt.
* Django (import only, or for hosts that must stay compatible):
  ``pbkdf2_sha256$<iterations>$<salt text>$<base64 hash with padding>``.

Normalisation: every password is put into Unicode NFKC before it is hashed or
checked by the policy (NIST SP 800-63B-4 suggests NFKC or NFKD). NFKC makes the
same password typed on different systems hash the same: a precomposed "é" and
"e" + combining accent, or the full-width letters of an East Asian input method
(U+FF21...) and ASCII "ABC", are one password. NFKC keeps composed letters short, so length limits
count what people see. Normalisation is idempotent and stable for assigned code
points, which is why :class:`~enspace_profile._security.password_policy.PasswordPolicy`
refuses unassigned ones.

Pepper: with ``pepper=`` the front object hashes
``base64(HMAC-SHA256(pepper, utf8(NFKC(password))))`` instead of the password, so a
stolen database is useless without the pepper, which the host keeps outside it
(environment, secret manager). There is one pepper per :class:`PasswordHash`; it
cannot be rotated without the users' passwords, so changing it invalidates every
peppered hash. Hashes imported from another system were made without it: give
their hashers as ``imported=`` and they are checked against the password exactly
as typed (neither normalised nor peppered), then upgraded.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import threading
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

from enspace_profile._random import RandomSource, SystemRandom
from enspace_profile.exceptions import EnspaceProfileError, ValidationError

__all__ = [
    "Argon2idHasher",
    "DjangoPbkdf2Hasher",
    "PasswordHash",
    "PasswordHasher",
    "PhcHash",
    "ScryptHasher",
    "argon2id_available",
    "format_phc",
    "normalize_password",
    "parse_phc",
]

_HASH_FIELD = "password_hash"

#: Largest memory a stored hash may ask for (bytes). A corrupted or hostile hash
#: in storage must not make one verification allocate gigabytes; 2 GiB still
#: admits RFC 9106's first recommendation for Argon2id (m = 2 GiB).
_MAX_MEMORY_BYTES = 2 * 1024**3
_MAX_ARGON2_ITERATIONS = 64
_MAX_LANES = 64
_MAX_PBKDF2_ITERATIONS = 10_000_000
_SALT_BYTES = (8, 64)
_DIGEST_BYTES = (16, 64)

_PHC_ID = re.compile(r"[a-z0-9-]{1,32}\Z")
_PHC_PARAM_NAME = re.compile(r"[a-z0-9-]{1,32}\Z")
_PHC_PARAM_VALUE = re.compile(r"[a-zA-Z0-9/+.-]{1,128}\Z")
_PHC_VERSION = re.compile(r"v=(0|[1-9][0-9]{0,8})\Z")
_B64 = re.compile(r"[A-Za-z0-9+/]{2,1024}\Z")
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]{0,17})\Z")


# --------------------------------------------------------------------------- helpers


def normalize_password(password: str) -> str:
    """Return ``password`` in Unicode NFKC, the form that is hashed and checked.

    Args:
        password: The password as typed.

    Returns:
        The NFKC form (the same object when it is already normalised).

    >>> normalize_password("\uff50\uff41\uff53\uff53")  # full-width letters
    'pass'
    """
    if unicodedata.is_normalized("NFKC", password):
        return password
    return unicodedata.normalize("NFKC", password)


def _malformed(message: str) -> ValidationError:
    return ValidationError.single(_HASH_FIELD, "malformed", message)


def _unsupported(message: str, **params: Any) -> ValidationError:
    return ValidationError.single(_HASH_FIELD, "unsupported", message, **params)


def _unknown_format() -> ValidationError:
    return ValidationError.single(
        _HASH_FIELD,
        "unknown_format",
        "the stored password hash is in a format no configured hasher knows",
    )


def _b64_decode(text: str) -> bytes:
    """Decode unpadded standard base64 that is in canonical form (or raise)."""
    if not _B64.match(text) or len(text) % 4 == 1:
        raise _malformed("salt and hash must be unpadded standard base64")
    data = base64.b64decode(text + "=" * (-len(text) % 4))
    if _b64_encode(data) != text:
        # Unused low bits set: another string decodes to the same bytes.
        raise _malformed("salt and hash must be canonical base64")
    return data


def _b64_encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _to_bytes(password: str) -> bytes:
    # surrogatepass: a lone surrogate cannot make hashing blow up; the policy
    # refuses such passwords before they are ever hashed.
    return password.encode("utf-8", "surrogatepass")


def _check_range(field: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError.single(
            field,
            "out_of_range",
            f"must be an integer from {low} to {high}",
            minimum=low,
            maximum=high,
        )


def _range_validator(low: int, high: int) -> Any:
    def validate(_instance: object, attribute: attrs.Attribute[int], value: Any) -> None:
        _check_range(attribute.name, value, low, high)

    return validate


@functools.cache
def argon2id_available() -> bool:
    """Tell whether the installed ``cryptography`` can compute Argon2id.

    ``cryptography`` gained Argon2id in version 44, and only when built against a
    library that implements it (OpenSSL 3.2 or later); the answer is computed once.

    Returns:
        ``True`` when :class:`Argon2idHasher` can hash and verify.
    """
    # Imported here, like every KDF below: loading cryptography's KDFs costs ~20 ms,
    # which importing enspace_profile must not pay.
    try:
        from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415 - lazy
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id  # noqa: PLC0415 - lazy
    except ImportError:  # pragma: no cover - depends on the installed cryptography
        return False
    try:
        Argon2id(salt=bytes(8), length=4, iterations=1, lanes=1, memory_cost=8)
    except UnsupportedAlgorithm:  # pragma: no cover - depends on the OpenSSL build
        return False
    return True


# ----------------------------------------------------------------------------- PHC


def _validate_phc_id(_instance: object, _attribute: object, value: Any) -> None:
    if not isinstance(value, str) or not _PHC_ID.match(value):
        raise _malformed("the algorithm id must be 1-32 of a-z, 0-9 and '-'")


def _to_params(value: Mapping[str, str]) -> dict[str, str]:
    return dict(value)


def _validate_phc_params(
    _instance: object, _attribute: object, value: Mapping[object, object]
) -> None:
    for name, param in value.items():
        if not (isinstance(name, str) and _PHC_PARAM_NAME.match(name)):
            raise _malformed("parameter names must be 1-32 of a-z, 0-9 and '-'")
        if not (isinstance(param, str) and _PHC_PARAM_VALUE.match(param)):
            raise _malformed("parameter values must be 1-128 of a-z, A-Z, 0-9, '/', '+', '.', '-'")


def _validate_phc_bytes(_instance: object, _attribute: object, value: Any) -> None:
    if not isinstance(value, bytes) or not 1 <= len(value) <= 768:
        raise _malformed("salt and hash must be 1-768 bytes")


def _validate_phc_version(_instance: object, _attribute: object, value: Any) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**9
    ):
        raise _malformed("the version must be a non-negative integer below 10**9")


@attrs.frozen(kw_only=True)
class PhcHash:
    """One password hash in the PHC string format, taken apart.

    ``$<id>[$v=<version>][$<name>=<value>(,<name>=<value>)*]$<salt>$<hash>``; salt
    and hash are standard base64 without padding. Unlike the PHC specification,
    which lets both be left out, a salt and a hash are required here: a password
    hash without them is of no use.

    Attributes:
        id: The algorithm identifier (``"argon2id"``).
        version: The ``v=`` value, or ``None`` when the string has none.
        params: Parameter names to their textual values, in string order.
        salt: The decoded salt (kept out of ``repr``).
        hash: The decoded digest (kept out of ``repr``).
    """

    id: str = attrs.field(validator=_validate_phc_id)
    version: int | None = attrs.field(default=None, validator=_validate_phc_version)
    params: dict[str, str] = attrs.field(
        factory=dict,
        converter=_to_params,
        validator=_validate_phc_params,
    )
    salt: bytes = attrs.field(repr=False, validator=_validate_phc_bytes)
    hash: bytes = attrs.field(repr=False, validator=_validate_phc_bytes)

    def int_param(self, name: str, *, minimum: int, maximum: int) -> int:
        """Return parameter ``name`` as an integer within ``[minimum, maximum]``.

        Args:
            name: The parameter's name (``"m"``).
            minimum: The smallest value that makes sense for the algorithm.
            maximum: The largest value this library agrees to compute.

        Returns:
            The value.

        Raises:
            ValidationError: ``password_hash.malformed`` when the parameter is
                missing, not a decimal integer or below ``minimum``;
                ``password_hash.unsupported`` when it is above ``maximum``.
        """
        text = self.params.get(name)
        if text is None or not _DECIMAL.match(text):
            raise _malformed(f"parameter {name!r} must be a decimal integer")
        value = int(text)
        if value < minimum:
            raise _malformed(f"parameter {name!r} must be at least {minimum}")
        if value > maximum:
            raise _unsupported(
                f"parameter {name!r} is above the supported maximum {maximum}",
                parameter=name,
                maximum=maximum,
            )
        return value


def parse_phc(text: object) -> PhcHash:
    """Parse a PHC-format hash string.

    Args:
        text: A string, for example ``"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"``.

    Returns:
        The parts, so that ``format_phc(parse_phc(text)) == text``.

    Raises:
        ValidationError: ``password_hash.malformed`` for anything else
            (including non-canonical base64, repeated parameters, leading zeros
            in the version).

    >>> parse_phc("$scrypt$ln=17,r=8,p=1$c2FsdA$aGFzaA").params
    {'ln': '17', 'r': '8', 'p': '1'}
    """
    if not isinstance(text, str) or len(text) > 4096:
        raise _malformed("a PHC string is text of at most 4096 characters")
    parts = text.split("$")
    if len(parts) < 4 or parts[0] != "":  # "", id, salt, hash at least
        raise _malformed("a PHC string looks like $id[$v=..][$k=v,..]$salt$hash")
    algorithm, *middle, salt_text, hash_text = parts[1:]
    version: int | None = None
    if middle and (match := _PHC_VERSION.match(middle[0])):
        version = int(match.group(1))
        middle = middle[1:]
    params: dict[str, str] = {}
    if len(middle) > 1:
        raise _malformed("a PHC string has at most one parameter segment")
    if middle:
        for pair in middle[0].split(","):
            name, equals, value = pair.partition("=")
            if not equals or name in params:
                raise _malformed("parameters must be unique name=value pairs")
            params[name] = value
    return PhcHash(
        id=algorithm,
        version=version,
        params=params,
        salt=_b64_decode(salt_text),
        hash=_b64_decode(hash_text),
    )


def format_phc(phc: PhcHash) -> str:
    """Write ``phc`` as a PHC string (the inverse of :func:`parse_phc`).

    Args:
        phc: The parts.

    Returns:
        ``$<id>[$v=<version>][$<params>]$<salt>$<hash>``.
    """
    segments = ["", phc.id]
    if phc.version is not None:
        segments.append(f"v={phc.version}")
    if phc.params:
        segments.append(",".join(f"{name}={value}" for name, value in phc.params.items()))
    segments += [_b64_encode(phc.salt), _b64_encode(phc.hash)]
    return "$".join(segments)


# -------------------------------------------------------------------------- hashers


class PasswordHasher(Protocol):
    """One password hashing scheme (a strategy for :class:`PasswordHash`).

    Hashers see the password exactly as given: normalising and peppering are the
    front object's job. ``identify`` never raises; the other methods raise
    :class:`~enspace_profile.exceptions.ValidationError` (field ``password_hash``)
    for a hash that is not theirs or is malformed.
    """

    def identify(self, hashed: str, /) -> bool:
        """Return whether ``hashed`` is in this hasher's format (cheap, never raises)."""
        ...

    def hash(self, password: str, /) -> str:
        """Return a new salted hash of ``password``."""
        ...

    def verify(self, password: str, hashed: str, /) -> bool:
        """Return whether ``password`` matches ``hashed`` (constant-time comparison)."""
        ...

    def needs_rehash(self, hashed: str, /) -> bool:
        """Return whether ``hashed`` was made with other parameters than this hasher's."""
        ...


def _require_argon2id() -> None:
    if not argon2id_available():
        raise EnspaceProfileError(
            "Argon2id needs cryptography >= 44 built with OpenSSL >= 3.2; use ScryptHasher",
            code="password_hash.argon2id_unavailable",
        )


@attrs.frozen(kw_only=True)
class Argon2idHasher:
    """Argon2id (RFC 9106) through ``cryptography``; the recommended hasher.

    The defaults are OWASP's minimum for Argon2id: 19 MiB of memory, 2 passes,
    1 lane, a 16-byte salt and a 32-byte hash. One hash takes some tens of
    milliseconds and 19 MiB, hence :class:`PasswordHash`'s concurrency cap.

    Attributes:
        memory_cost: Memory in KiB (``m``).
        iterations: Number of passes (``t``).
        lanes: Degree of parallelism (``p``).
        salt_length: Bytes of fresh salt per hash.
        hash_length: Bytes of output.
        random: Where salts come from.

    >>> hasher = Argon2idHasher(memory_cost=64, iterations=1)
    >>> hasher.verify("pw", hasher.hash("pw"))
    True
    """

    memory_cost: int = attrs.field(
        default=19_456, validator=_range_validator(8, _MAX_MEMORY_BYTES // 1024)
    )
    iterations: int = attrs.field(default=2, validator=_range_validator(1, _MAX_ARGON2_ITERATIONS))
    lanes: int = attrs.field(default=1, validator=_range_validator(1, _MAX_LANES))
    salt_length: int = attrs.field(default=16, validator=_range_validator(*_SALT_BYTES))
    hash_length: int = attrs.field(default=32, validator=_range_validator(*_DIGEST_BYTES))
    random: RandomSource = attrs.field(factory=SystemRandom, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.memory_cost < 8 * self.lanes:
            raise ValidationError.single(
                "memory_cost",
                "out_of_range",
                "Argon2 needs at least 8 KiB of memory per lane",
                minimum=8 * self.lanes,
            )

    def identify(self, hashed: str, /) -> bool:
        """Return whether ``hashed`` is an Argon2id PHC string."""
        return hashed.startswith("$argon2id$")

    def hash(self, password: str, /) -> str:
        """Return ``$argon2id$v=19$m=..,t=..,p=..$salt$hash`` for ``password``."""
        salt = self.random.token_bytes(self.salt_length)
        digest = _argon2id(
            password,
            salt,
            memory=self.memory_cost,
            iterations=self.iterations,
            lanes=self.lanes,
            length=self.hash_length,
        )
        params = {"m": str(self.memory_cost), "t": str(self.iterations), "p": str(self.lanes)}
        return format_phc(PhcHash(id="argon2id", version=19, params=params, salt=salt, hash=digest))

    def verify(self, password: str, hashed: str, /) -> bool:
        """Return whether ``password`` matches the Argon2id hash ``hashed``."""
        phc, memory, iterations, lanes = self._parse(hashed)
        digest = _argon2id(
            password,
            phc.salt,
            memory=memory,
            iterations=iterations,
            lanes=lanes,
            length=len(phc.hash),
        )
        return hmac.compare_digest(digest, phc.hash)

    def needs_rehash(self, hashed: str, /) -> bool:
        """Return whether ``hashed`` differs from this hasher's parameters or lengths."""
        phc, memory, iterations, lanes = self._parse(hashed)
        return (memory, iterations, lanes, len(phc.salt), len(phc.hash)) != (
            self.memory_cost,
            self.iterations,
            self.lanes,
            self.salt_length,
            self.hash_length,
        )

    def _parse(self, hashed: str) -> tuple[PhcHash, int, int, int]:
        if not self.identify(hashed):
            raise _unknown_format()
        phc = parse_phc(hashed)
        if phc.version != 19:
            raise _unsupported("only Argon2 version 19 (0x13) is supported")
        if set(phc.params) != {"m", "t", "p"}:
            raise _unsupported("an Argon2id hash must have exactly the parameters m, t and p")
        lanes = phc.int_param("p", minimum=1, maximum=_MAX_LANES)
        memory = phc.int_param("m", minimum=8 * lanes, maximum=_MAX_MEMORY_BYTES // 1024)
        iterations = phc.int_param("t", minimum=1, maximum=_MAX_ARGON2_ITERATIONS)
        _check_lengths(phc)
        return phc, memory, iterations, lanes


def _argon2id(
    password: str, salt: bytes, *, memory: int, iterations: int, lanes: int, length: int
) -> bytes:
    _require_argon2id()
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id  # noqa: PLC0415 - lazy

    kdf = Argon2id(salt=salt, length=length, iterations=iterations, lanes=lanes, memory_cost=memory)
    return kdf.derive(_to_bytes(password))


def _check_lengths(phc: PhcHash) -> None:
    if not _SALT_BYTES[0] <= len(phc.salt) <= _SALT_BYTES[1]:
        raise _unsupported("the salt must be 8-64 bytes")
    if not _DIGEST_BYTES[0] <= len(phc.hash) <= _DIGEST_BYTES[1]:
        raise _unsupported("the hash must be 16-64 bytes")


def _validate_scrypt_memory(instance: ScryptHasher, _attribute: object, _value: int) -> None:
    if 128 * instance.block_size << instance.log2_n > _MAX_MEMORY_BYTES:
        raise ValidationError.single(
            "log2_n",
            "out_of_range",
            "scrypt parameters needing more than 2 GiB are not supported",
        )


@attrs.frozen(kw_only=True)
class ScryptHasher:
    """scrypt (RFC 7914) through ``cryptography``; the fallback without Argon2id.

    The defaults are OWASP's: N = 2**17 (``log2_n=17``), r = 8, p = 1, needing
    128 * r * N = 128 MiB per hash. ``cryptography``'s ``Scrypt`` has no
    maximum-memory argument (unlike :func:`hashlib.scrypt`, whose 32 MiB default
    refuses these parameters); it sizes its own limit from N and r, so this
    class enforces a 2 GiB ceiling on hashes read from storage instead.

    Attributes:
        log2_n: log2 of the CPU/memory cost N (``ln``).
        block_size: r.
        parallelism: p.
        salt_length: Bytes of fresh salt per hash.
        hash_length: Bytes of output.
        random: Where salts come from.
    """

    log2_n: int = attrs.field(default=17, validator=_range_validator(1, 31))
    block_size: int = attrs.field(
        default=8, validator=[_range_validator(1, 64), _validate_scrypt_memory]
    )
    parallelism: int = attrs.field(default=1, validator=_range_validator(1, _MAX_LANES))
    salt_length: int = attrs.field(default=16, validator=_range_validator(*_SALT_BYTES))
    hash_length: int = attrs.field(default=32, validator=_range_validator(*_DIGEST_BYTES))
    random: RandomSource = attrs.field(factory=SystemRandom, repr=False, eq=False)

    def identify(self, hashed: str, /) -> bool:
        """Return whether ``hashed`` is a ``$scrypt$`` PHC string."""
        return hashed.startswith("$scrypt$")

    def hash(self, password: str, /) -> str:
        """Return ``$scrypt$ln=..,r=..,p=..$salt$hash`` for ``password``."""
        salt = self.random.token_bytes(self.salt_length)
        digest = _scrypt(
            password,
            salt,
            log2_n=self.log2_n,
            block_size=self.block_size,
            parallelism=self.parallelism,
            length=self.hash_length,
        )
        params = {"ln": str(self.log2_n), "r": str(self.block_size), "p": str(self.parallelism)}
        return format_phc(PhcHash(id="scrypt", params=params, salt=salt, hash=digest))

    def verify(self, password: str, hashed: str, /) -> bool:
        """Return whether ``password`` matches the scrypt hash ``hashed``."""
        phc, log2_n, block_size, parallelism = self._parse(hashed)
        digest = _scrypt(
            password,
            phc.salt,
            log2_n=log2_n,
            block_size=block_size,
            parallelism=parallelism,
            length=len(phc.hash),
        )
        return hmac.compare_digest(digest, phc.hash)

    def needs_rehash(self, hashed: str, /) -> bool:
        """Return whether ``hashed`` differs from this hasher's parameters or lengths."""
        phc, log2_n, block_size, parallelism = self._parse(hashed)
        return (log2_n, block_size, parallelism, len(phc.salt), len(phc.hash)) != (
            self.log2_n,
            self.block_size,
            self.parallelism,
            self.salt_length,
            self.hash_length,
        )

    def _parse(self, hashed: str) -> tuple[PhcHash, int, int, int]:
        if not self.identify(hashed):
            raise _unknown_format()
        phc = parse_phc(hashed)
        if phc.version is not None or set(phc.params) != {"ln", "r", "p"}:
            raise _unsupported("a scrypt hash must have exactly the parameters ln, r and p")
        log2_n = phc.int_param("ln", minimum=1, maximum=31)
        block_size = phc.int_param("r", minimum=1, maximum=64)
        parallelism = phc.int_param("p", minimum=1, maximum=_MAX_LANES)
        if 128 * block_size << log2_n > _MAX_MEMORY_BYTES:
            raise _unsupported("scrypt parameters needing more than 2 GiB are not supported")
        _check_lengths(phc)
        return phc, log2_n, block_size, parallelism


def _scrypt(
    password: str, salt: bytes, *, log2_n: int, block_size: int, parallelism: int, length: int
) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt  # noqa: PLC0415 - lazy

    kdf = Scrypt(salt=salt, length=length, n=1 << log2_n, r=block_size, p=parallelism)
    return kdf.derive(_to_bytes(password))


_DJANGO_PREFIX = "pbkdf2_sha256$"
_SALT_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@attrs.frozen(kw_only=True)
class DjangoPbkdf2Hasher:
    """Django's default ``pbkdf2_sha256$<iterations>$<salt>$<base64 hash>`` hashes.

    Meant for importing the users of a Django site: list it in
    :class:`PasswordHash`'s ``imported=`` and each hash is replaced by the current
    hasher's at the user's next successful sign-in. It can also produce such
    hashes (22-character alphanumeric salts, as Django does) for a host that must
    stay readable by Django.

    Attributes:
        iterations: PBKDF2 iterations for new hashes (Django 5.2's default);
            stored hashes with another count verify but need a rehash.
        random: Where salts come from.
    """

    iterations: int = attrs.field(
        default=1_000_000, validator=_range_validator(1, _MAX_PBKDF2_ITERATIONS)
    )
    random: RandomSource = attrs.field(factory=SystemRandom, repr=False, eq=False)

    def identify(self, hashed: str, /) -> bool:
        """Return whether ``hashed`` starts with ``pbkdf2_sha256$``."""
        return hashed.startswith(_DJANGO_PREFIX)

    def hash(self, password: str, /) -> str:
        """Return ``pbkdf2_sha256$<iterations>$<salt>$<base64 hash>`` for ``password``."""
        salt = self._salt()
        digest = hashlib.pbkdf2_hmac("sha256", _to_bytes(password), salt.encode(), self.iterations)
        encoded = base64.b64encode(digest).decode("ascii")
        return f"{_DJANGO_PREFIX}{self.iterations}${salt}${encoded}"

    def verify(self, password: str, hashed: str, /) -> bool:
        """Return whether ``password`` matches the Django hash ``hashed``."""
        iterations, salt, expected = self._parse(hashed)
        digest = hashlib.pbkdf2_hmac("sha256", _to_bytes(password), salt, iterations)
        return hmac.compare_digest(digest, expected)

    def needs_rehash(self, hashed: str, /) -> bool:
        """Return whether ``hashed`` used another iteration count than this hasher."""
        iterations, _salt, _expected = self._parse(hashed)
        return iterations != self.iterations

    def _salt(self) -> str:
        # Rejection sampling keeps the 62 characters equally likely.
        chars: list[str] = []
        while len(chars) < 22:
            chars.extend(
                _SALT_ALPHABET[byte % 62] for byte in self.random.token_bytes(32) if byte < 248
            )
        return "".join(chars[:22])

    def _parse(self, hashed: str) -> tuple[int, bytes, bytes]:
        if not self.identify(hashed):
            raise _unknown_format()
        parts = hashed.split("$")
        if len(parts) != 4 or not _DECIMAL.match(parts[1]) or not 1 <= len(parts[2]) <= 256:
            raise _malformed("expected pbkdf2_sha256$<iterations>$<salt>$<base64 hash>")
        iterations = int(parts[1])
        if iterations < 1:
            raise _malformed("the iteration count must be positive")
        if iterations > _MAX_PBKDF2_ITERATIONS:
            raise _unsupported(
                f"more than {_MAX_PBKDF2_ITERATIONS} iterations are not supported",
                maximum=_MAX_PBKDF2_ITERATIONS,
            )
        try:
            expected = base64.b64decode(parts[3].encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise _malformed("the hash must be padded standard base64") from None
        if len(expected) != 32:
            raise _malformed("a pbkdf2_sha256 hash is 32 bytes")
        return iterations, parts[2].encode("utf-8", "surrogatepass"), expected


# --------------------------------------------------------------------------- facade


def _tuple_of_hashers(value: Sequence[PasswordHasher]) -> tuple[PasswordHasher, ...]:
    return tuple(value)


def _validate_hashers(_instance: object, _attribute: object, value: tuple[object, ...]) -> None:
    if not value:
        raise ValidationError.single("hashers", "empty", "give at least one hasher")


def _validate_pepper(_instance: object, _attribute: object, value: Any) -> None:
    if value is not None and (not isinstance(value, bytes) or len(value) < 16):
        raise ValidationError.single(
            "pepper", "too_short", "a pepper must be at least 16 random bytes", minimum=16
        )


def _pepper_repr(value: bytes | None) -> str:
    return "None" if value is None else "<set>"


@attrs.frozen
class PasswordHash:
    """Hash and verify passwords; upgrade old hashes as users sign in.

    The first hasher is current: it makes every new hash. The others (and the
    ``imported`` ones) only verify hashes made earlier; a successful
    :meth:`verify_and_update` on such a hash returns a fresh one to store.

    Passwords are normalised to NFKC and, when a pepper is set, replaced by
    ``base64(HMAC-SHA256(pepper, utf8(password)))`` before any hasher sees them
    (see the module documentation). Hashes in ``imported`` formats are checked
    against the password exactly as typed, without normalisation or pepper.

    A hash string that no hasher recognises raises ``ValidationError``
    (``password_hash.unknown_format``) instead of returning ``False``: it is
    broken data or a missing hasher, not a wrong password, and must be noticed.

    Attributes:
        hashers: Hashers for hashes this object makes; the first is current.
        pepper: Optional server-side secret (at least 16 bytes; never shown).
        imported: Hashers for hashes brought from another system.
        max_concurrent: How many hashes may be computed at once; more callers
            wait. Each Argon2id hash holds 19 MiB (scrypt 128 MiB) for tens of
            milliseconds (scrypt hundreds), so this bounds memory and CPU.

    >>> hasher = PasswordHash([Argon2idHasher(memory_cost=64, iterations=1)])
    >>> stored = hasher.hash("correct horse battery staple")
    >>> hasher.verify("correct horse battery staple", stored)
    True
    >>> hasher.verify_and_update("wrong", stored)
    (False, None)

    Raises:
        ValidationError: on construction, for an empty ``hashers``, a pepper
            shorter than 16 bytes or ``max_concurrent`` below 1.
    """

    hashers: tuple[PasswordHasher, ...] = attrs.field(
        converter=_tuple_of_hashers, validator=_validate_hashers
    )
    pepper: bytes | None = attrs.field(
        default=None, kw_only=True, repr=_pepper_repr, validator=_validate_pepper
    )
    imported: tuple[PasswordHasher, ...] = attrs.field(
        default=(), kw_only=True, converter=_tuple_of_hashers
    )
    max_concurrent: int = attrs.field(default=2, kw_only=True, validator=_range_validator(1, 1024))
    _gate: threading.BoundedSemaphore = attrs.field(init=False, repr=False, eq=False)

    @_gate.default
    def _make_gate(self) -> threading.BoundedSemaphore:
        return threading.BoundedSemaphore(self.max_concurrent)

    @classmethod
    def recommended(
        cls,
        *,
        pepper: bytes | None = None,
        imported: Sequence[PasswordHasher] = (),
        max_concurrent: int = 2,
        random: RandomSource | None = None,
    ) -> PasswordHash:
        """Return Argon2id with OWASP's parameters, or scrypt where Argon2id is missing.

        The other of the two is kept as a verify-only hasher, so hashes survive a
        move between machines with and without Argon2id support.

        Args:
            pepper: Optional server-side secret, at least 16 bytes.
            imported: Hashers for hashes imported from another system.
            max_concurrent: How many hashes may be computed at once.
            random: Where salts come from (the OS CSPRNG by default).

        Returns:
            The configured front object.
        """
        source: RandomSource = random if random is not None else SystemRandom()
        argon2 = Argon2idHasher(random=source)
        scrypt = ScryptHasher(random=source)
        hashers: list[PasswordHasher] = [argon2, scrypt] if argon2id_available() else [scrypt]
        return cls(hashers, pepper=pepper, imported=imported, max_concurrent=max_concurrent)

    @property
    def current(self) -> PasswordHasher:
        """The hasher that makes new hashes."""
        return self.hashers[0]

    def hash(self, password: str) -> str:
        """Return a new hash of ``password`` made by the current hasher.

        This does not apply a :class:`PasswordPolicy`; check the password first.

        Args:
            password: The password as typed (normalised here).

        Returns:
            The string to store.

        Raises:
            ValidationError: ``password.invalid`` when ``password`` is not text.
        """
        prepared = self._prepare(password)
        with self._gate:
            return self.current.hash(prepared)

    def verify(self, password: str, hashed: str) -> bool:
        """Return whether ``password`` matches the stored ``hashed``.

        Args:
            password: The password as typed.
            hashed: The stored hash, in any configured or imported format.

        Returns:
            ``True`` on a match; ``False`` for a wrong password.

        Raises:
            ValidationError: ``password_hash.unknown_format`` when no hasher
                knows ``hashed``; ``password_hash.malformed`` or
                ``password_hash.unsupported`` when its hasher cannot read it;
                ``password.invalid`` when ``password`` is not text.
        """
        hasher, is_imported = self._hasher_for(hashed)
        candidate = self._candidate(password, is_imported=is_imported)
        with self._gate:
            return hasher.verify(candidate, hashed)

    def verify_and_update(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """Verify ``password``; on success, also return a new hash when ``hashed`` is outdated.

        Args:
            password: The password as typed.
            hashed: The stored hash.

        Returns:
            ``(False, None)`` for a wrong password; ``(True, None)`` when
            ``hashed`` is current; ``(True, new_hash)`` when it was made by
            another hasher, an imported one or with other parameters: store
            ``new_hash`` in its place.

        Raises:
            ValidationError: as :meth:`verify`.
        """
        hasher, is_imported = self._hasher_for(hashed)
        candidate = self._candidate(password, is_imported=is_imported)
        with self._gate:
            ok = hasher.verify(candidate, hashed)
        if not ok:
            return False, None
        if is_imported or hasher is not self.current or hasher.needs_rehash(hashed):
            return True, self.hash(password)
        return True, None

    def needs_rehash(self, hashed: str) -> bool:
        """Return whether ``hashed`` should be replaced by a hash from the current hasher.

        Raises:
            ValidationError: as :meth:`verify`.
        """
        hasher, is_imported = self._hasher_for(hashed)
        return is_imported or hasher is not self.current or hasher.needs_rehash(hashed)

    def _hasher_for(self, hashed: object) -> tuple[PasswordHasher, bool]:
        if isinstance(hashed, str):
            for hasher in self.hashers:
                if hasher.identify(hashed):
                    return hasher, False
            for hasher in self.imported:
                if hasher.identify(hashed):
                    return hasher, True
        raise _unknown_format()

    def _candidate(self, password: object, *, is_imported: bool) -> str:
        if is_imported:
            return _require_text(password)
        return self._prepare(password)

    def _prepare(self, password: object) -> str:
        normalised = normalize_password(_require_text(password))
        if self.pepper is None:
            return normalised
        mac = hmac.new(self.pepper, _to_bytes(normalised), hashlib.sha256).digest()
        return base64.b64encode(mac).decode("ascii")


def _require_text(password: object) -> str:
    if not isinstance(password, str):
        raise ValidationError.single(
            "password", "invalid", "the password must be text", reason="not_text"
        )
    return password

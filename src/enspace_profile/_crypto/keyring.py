"""Encryption at rest for small secrets (TOTP seeds, integration credentials).

A :class:`KeyRing` holds one or more AES-256-GCM keys. The **first** key is current:
:meth:`KeyRing.seal` always encrypts with it. **Every** key can decrypt, so keys can be
rotated without a flag day: put the new key first, keep the old ones until
:meth:`KeyRing.needs_rotation` is false for every stored box (re-encrypt them with
:meth:`KeyRing.rotate`), then drop the old keys.

Each ciphertext is bound to *where it belongs* through associated data built by
:func:`aad_for` (user, purpose or provider, field). A ciphertext copied into another
user's row or another column does not decrypt there, even under the same key.

A :class:`SealedBox` serialises to one compact byte string for a single BLOB column::

    version (1 byte, 0x01) | len(key id) (1 byte) | key id (UTF-8) | nonce (12) | ciphertext+tag

Nonces are 96 random bits per message, drawn from the injected
:class:`~enspace_profile._random.RandomSource`. With random nonces one key should not
seal more than about 2**32 messages; rotate long before that (the ring makes it cheap).

>>> from enspace_profile._random import SeededRandom
>>> ring = KeyRing.generate(SeededRandom(1), "2026-01")
>>> aad = aad_for("user-1", "totp", "secret")
>>> box = ring.seal(b"seed", aad=aad)
>>> ring.open(SealedBox.from_bytes(box.to_bytes()), aad=aad)
b'seed'
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

import attrs

from enspace_profile._random import RandomSource, SystemRandom
from enspace_profile.exceptions import FieldError, ValidationError

if TYPE_CHECKING:  # pragma: no cover - the AEAD import costs ~30 ms; load it on first use
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KEY_LENGTH",
    "NONCE_LENGTH",
    "EncryptionKey",
    "KeyRing",
    "SealedBox",
    "aad_for",
]

KEY_LENGTH: Final = 32
"""Bytes in an AES-256 key."""

NONCE_LENGTH: Final = 12
"""Bytes in an AES-GCM nonce (96 bits, the size GCM is designed for)."""

_TAG_LENGTH: Final = 16
_FORMAT_VERSION: Final = 1
_KEY_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")
_AAD_DOMAIN: Final = b"enspace-profile/aad/v1"


def _validate_key_id(_instance: object, _attribute: object, value: Any) -> None:
    if not isinstance(value, str) or _KEY_ID_RE.match(value) is None:
        raise ValidationError.single(
            "key_id",
            "invalid",
            "a key id is 1 to 64 characters: letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit",
        )


def _validate_key_material(_instance: object, _attribute: object, value: Any) -> None:
    if not isinstance(value, bytes) or len(value) != KEY_LENGTH:
        raise ValidationError.single(
            "key",
            "wrong_length",
            f"an AES-256 key is exactly {KEY_LENGTH} bytes",
            expected=KEY_LENGTH,
        )


@attrs.frozen(kw_only=True)
class EncryptionKey:
    """One AES-256-GCM key with a public, stable identifier.

    The identifier is stored next to every ciphertext so the ring knows which key opens
    it; choose something meaningful such as ``"2026-01"``. The key material never
    appears in ``repr``.

    Attributes:
        id: 1 to 64 characters from ``[A-Za-z0-9._:-]``.
        key: Exactly 32 random bytes.

    Raises:
        ValidationError: ``key_id.invalid`` or ``key.wrong_length``.
    """

    id: str = attrs.field(validator=_validate_key_id)
    key: bytes = attrs.field(repr=False, validator=_validate_key_material)

    @classmethod
    def generate(cls, rng: RandomSource, key_id: str) -> EncryptionKey:
        """Return a fresh key drawn from ``rng``.

        Args:
            rng: The random source (use the system CSPRNG outside tests).
            key_id: The identifier for the new key.

        Returns:
            A new :class:`EncryptionKey`.

        Raises:
            ValidationError: ``key_id.invalid``.
        """
        return cls(id=key_id, key=rng.token_bytes(KEY_LENGTH))

    @classmethod
    def from_base64(cls, key_id: str, encoded: str) -> EncryptionKey:
        """Build a key from its standard or URL-safe base64 text (how hosts keep it in config).

        Args:
            key_id: The identifier for the key.
            encoded: 32 bytes in base64 (padding optional, surrounding spaces ignored).

        Returns:
            The :class:`EncryptionKey`.

        Raises:
            ValidationError: ``key.invalid_base64``, ``key.wrong_length`` or ``key_id.invalid``
                (the message never contains the text given).
        """
        text = encoded.strip()
        text = text.replace("-", "+").replace("_", "/")
        text += "=" * (-len(text) % 4)
        try:
            raw = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise ValidationError.single(
                "key", "invalid_base64", "the key is not valid base64"
            ) from None
        return cls(id=key_id, key=raw)

    def to_base64(self) -> str:
        """Return the key material as standard base64 text (to put in a host's config)."""
        return base64.b64encode(self.key).decode("ascii")


def _undecryptable(problem: str, message: str, **params: object) -> ValidationError:
    return ValidationError.single("ciphertext", problem, message, **params)


@attrs.frozen(kw_only=True)
class SealedBox:
    """An encrypted value: which key sealed it, its nonce and the ciphertext with GCM tag.

    Attributes:
        key_id: Identifier of the :class:`EncryptionKey` that sealed it.
        nonce: The 12-byte nonce.
        ciphertext: The encrypted bytes followed by the 16-byte authentication tag.
    """

    key_id: str = attrs.field(validator=_validate_key_id)
    nonce: bytes = attrs.field(repr=False)
    ciphertext: bytes = attrs.field(repr=False)

    def __attrs_post_init__(self) -> None:
        if len(self.nonce) != NONCE_LENGTH:
            raise _undecryptable(
                "malformed", f"the nonce must be {NONCE_LENGTH} bytes", expected=NONCE_LENGTH
            )
        if len(self.ciphertext) < _TAG_LENGTH:
            raise _undecryptable(
                "malformed", "the ciphertext is shorter than its authentication tag"
            )

    def __repr__(self) -> str:
        return (
            f"SealedBox(key_id={self.key_id!r}, nonce=<{len(self.nonce)} bytes>, "
            f"ciphertext=<{len(self.ciphertext)} bytes>)"
        )

    def to_bytes(self) -> bytes:
        """Return the compact, versioned serialisation (see the module docstring)."""
        key_id = self.key_id.encode("ascii")
        return bytes((_FORMAT_VERSION, len(key_id))) + key_id + self.nonce + self.ciphertext

    @classmethod
    def from_bytes(cls, data: bytes) -> SealedBox:
        """Parse what :meth:`to_bytes` produced.

        Args:
            data: The stored bytes (``bytes``, ``bytearray`` or ``memoryview``).

        Returns:
            The :class:`SealedBox`; it is not decrypted or authenticated yet.

        Raises:
            ValidationError: ``ciphertext.malformed`` (any shape problem) or
                ``ciphertext.unsupported_version``.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise _undecryptable("malformed", "a sealed box is stored as bytes")
        raw = bytes(data)
        if len(raw) < 2:
            raise _undecryptable("malformed", "the sealed box is truncated")
        if raw[0] != _FORMAT_VERSION:
            raise _undecryptable(
                "unsupported_version",
                "the sealed box was written in an unknown format",
                version=raw[0],
            )
        id_end = 2 + raw[1]
        if len(raw) < id_end + NONCE_LENGTH + _TAG_LENGTH:
            raise _undecryptable("malformed", "the sealed box is truncated")
        try:
            key_id = raw[2:id_end].decode("ascii")
        except UnicodeDecodeError:
            raise _undecryptable("malformed", "the key id is not ASCII") from None
        if _KEY_ID_RE.match(key_id) is None:
            raise _undecryptable("malformed", "the key id is not valid")
        nonce_end = id_end + NONCE_LENGTH
        return cls(key_id=key_id, nonce=raw[id_end:nonce_end], ciphertext=raw[nonce_end:])


def aad_for(*parts: str) -> bytes:
    """Return associated data that binds a ciphertext to where it is stored.

    Every part is length-prefixed, so different splits never collide:
    ``aad_for("ab", "c") != aad_for("a", "bc")``. Pass the owner first, then the
    purpose or provider, then the field, e.g. ``aad_for(user_id, "github", "access_token")``.

    Args:
        *parts: One or more strings (any Unicode).

    Returns:
        Bytes to pass as ``aad`` to :meth:`KeyRing.seal` and :meth:`KeyRing.open`.

    Raises:
        ValidationError: ``aad.empty`` when no part is given, ``aad.invalid`` for a non-string.
    """
    if not parts:
        raise ValidationError.single(
            "aad", "empty", "associated data needs at least one part (e.g. the user id)"
        )
    chunks = [_AAD_DOMAIN, len(parts).to_bytes(4, "big")]
    for part in parts:
        if not isinstance(part, str):
            raise ValidationError.single("aad", "invalid", "associated data parts are strings")
        # surrogatepass keeps the encoding injective even for lone surrogates.
        encoded = part.encode("utf-8", "surrogatepass")
        chunks.append(len(encoded).to_bytes(8, "big"))
        chunks.append(encoded)
    return b"".join(chunks)


def _to_key_tuple(keys: Iterable[EncryptionKey]) -> tuple[EncryptionKey, ...]:
    return tuple(keys)


def _build_ciphers(ring: KeyRing) -> dict[str, AESGCM]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415 - lazy, ~30 ms

    return {key.id: AESGCM(key.key) for key in ring.keys}


@attrs.frozen
class KeyRing:
    """An ordered set of AES-256-GCM keys: the first encrypts, all decrypt.

    Args:
        keys: At least one :class:`EncryptionKey`, newest first, with unique ids.
        rng: Source of nonces (default: the system CSPRNG).

    Raises:
        ValidationError: ``keys.empty`` or ``keys.duplicate_id`` (all problems at once).
    """

    keys: tuple[EncryptionKey, ...] = attrs.field(converter=_to_key_tuple)
    rng: RandomSource = attrs.field(factory=SystemRandom, kw_only=True, repr=False, eq=False)
    _ciphers: dict[str, AESGCM] | None = attrs.field(default=None, init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        if not self.keys:
            errors.append(
                FieldError(field="keys", code="keys.empty", message="a key ring needs a key")
            )
        if any(not isinstance(key, EncryptionKey) for key in self.keys):
            errors.append(
                FieldError(
                    field="keys",
                    code="keys.invalid",
                    message="a key ring holds EncryptionKey objects",
                )
            )
        else:
            seen: set[str] = set()
            for key in self.keys:
                if key.id in seen:
                    errors.append(
                        FieldError(
                            field="keys",
                            code="keys.duplicate_id",
                            message=f"key id {key.id!r} appears twice",
                            params={"key_id": key.id},
                        )
                    )
                seen.add(key.id)
        if errors:
            raise ValidationError(errors)

    @classmethod
    def generate(cls, rng: RandomSource, key_id: str) -> KeyRing:
        """Return a ring with one fresh key drawn from ``rng`` (also used for nonces).

        Args:
            rng: The random source.
            key_id: Identifier of the new key.

        Returns:
            A one-key :class:`KeyRing`.

        Raises:
            ValidationError: ``key_id.invalid``.
        """
        return cls((EncryptionKey.generate(rng, key_id),), rng=rng)

    @property
    def current(self) -> EncryptionKey:
        """The key :meth:`seal` encrypts with (the first one)."""
        return self.keys[0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of all keys, current first."""
        return tuple(key.id for key in self.keys)

    def with_current(self, key: EncryptionKey) -> KeyRing:
        """Return a ring where ``key`` is current and the existing keys still decrypt.

        Raises:
            ValidationError: ``keys.duplicate_id`` if the id is already in the ring.
        """
        return KeyRing((key, *self.keys), rng=self.rng)

    def _cipher(self, key_id: str) -> AESGCM | None:
        ciphers = self._ciphers
        if ciphers is None:
            ciphers = _build_ciphers(self)
            object.__setattr__(self, "_ciphers", ciphers)  # a cache; the ring stays immutable
        return ciphers.get(key_id)

    def seal(self, plaintext: bytes, *, aad: bytes) -> SealedBox:
        """Encrypt ``plaintext`` with the current key and a fresh random nonce.

        Args:
            plaintext: The secret bytes.
            aad: Associated data from :func:`aad_for`; the same value is needed to open.

        Returns:
            The :class:`SealedBox`.

        """
        key = self.current
        cipher = self._cipher(key.id)
        assert cipher is not None
        nonce = self.rng.token_bytes(NONCE_LENGTH)
        return SealedBox(
            key_id=key.id, nonce=nonce, ciphertext=cipher.encrypt(nonce, plaintext, aad)
        )

    def open(self, box: SealedBox, *, aad: bytes) -> bytes:
        """Decrypt and authenticate ``box``.

        Failures are reported as :class:`~enspace_profile.exceptions.ValidationError` on the
        field ``ciphertext`` (the box is this call's input): they mean the stored value was
        corrupted, moved to another row or column, or sealed with a key no longer in the
        ring. Only the key *id* is ever reported, never key material or plaintext.

        Args:
            box: What :meth:`seal` returned (or :meth:`SealedBox.from_bytes` parsed).
            aad: The same associated data given to :meth:`seal`.

        Returns:
            The plaintext.

        Raises:
            ValidationError: ``ciphertext.unknown_key`` or ``ciphertext.undecryptable``
                (wrong associated data, tampering, or a different key with the same id).
        """
        cipher = self._cipher(box.key_id)
        if cipher is None:
            raise _undecryptable(
                "unknown_key",
                f"no key with id {box.key_id!r} is in the key ring",
                key_id=box.key_id,
            )
        from cryptography.exceptions import InvalidTag  # noqa: PLC0415 - loaded with AESGCM

        try:
            return cipher.decrypt(box.nonce, box.ciphertext, aad)
        except InvalidTag:
            raise _undecryptable(
                "undecryptable",
                "the value could not be decrypted: it was altered, moved, or sealed "
                "with a different key",
                key_id=box.key_id,
            ) from None

    def needs_rotation(self, box: SealedBox) -> bool:
        """Return whether ``box`` was sealed with a key other than the current one."""
        return box.key_id != self.current.id

    def rotate(self, box: SealedBox, *, aad: bytes) -> SealedBox:
        """Return ``box`` re-encrypted under the current key.

        The box is always opened first, so a tampered box is refused even when it is
        already current; a current box is then returned unchanged.

        Args:
            box: The stored box.
            aad: Its associated data.

        Returns:
            A box sealed by the current key.

        Raises:
            ValidationError: as :meth:`open`.
        """
        plaintext = self.open(box, aad=aad)
        if not self.needs_rotation(box):
            return box
        return self.seal(plaintext, aad=aad)

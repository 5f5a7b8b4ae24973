"""Recovery codes: one-time codes that replace the second factor when the phone is lost.

**Format.** Codes are 12 characters from a 31-character alphabet with no look-alikes
(no ``0``/``o``, ``1``/``l``/``i``), written lower case in three groups of four:
``k7mq-3xrf-p9dw``. Each code carries ``12 * log2(31) ≈ 59.4`` bits (at least 50 are
required; ten characters of this alphabet would give only 49.5). Characters are drawn by
rejection sampling, so every position is uniform. Input is case-insensitive and spaces
and hyphens are ignored.

**Storage.** Only keyed hashes are stored (:class:`RecoveryCodeHasher`). The plaintext
codes exist exactly once: in the :class:`PendingRecoveryCodes` returned when a set is
generated, to be shown to the user.

**Regenerate, then confirm.** A new set starts *pending* (unconfirmed). It replaces the
active set only when the user confirms they saved it
(:meth:`RecoveryCodeState.confirm`); until then the old codes keep working and the new
ones do not, so a user who closes the page early is not left with codes they never saw.

>>> from datetime import datetime, UTC
>>> from enspace_profile._random import SeededRandom
>>> now = datetime(2026, 1, 1, tzinfo=UTC)
>>> hasher = RecoveryCodeHasher(b"p" * 32, rng=SeededRandom(2))
>>> pending = PendingRecoveryCodes.generate(SeededRandom(1), hasher, now=now)
>>> state = RecoveryCodeState().start_regeneration(pending.code_set).confirm(now=now)
>>> state = state.use(pending.codes[0].upper(), hasher, now=now)
>>> state.active.remaining
9
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

import attrs

from enspace_profile._clock import ensure_utc
from enspace_profile._random import RandomSource, SystemRandom
from enspace_profile.exceptions import PolicyError, ValidationError

__all__ = [
    "DEFAULT_RECOVERY_CODE_COUNT",
    "LOW_RECOVERY_CODES",
    "RECOVERY_CODE_ALPHABET",
    "PendingRecoveryCodes",
    "RecoveryCode",
    "RecoveryCodeHasher",
    "RecoveryCodeSet",
    "RecoveryCodeState",
    "generate_recovery_codes",
    "normalize_recovery_code",
]

RECOVERY_CODE_ALPHABET: Final = "23456789abcdefghjkmnpqrstuvwxyz"
"""The 31 characters codes are made of: digits 2-9 and letters without ``i``, ``l``, ``o``."""

DEFAULT_RECOVERY_CODE_COUNT: Final = 10
"""Codes in a new set."""

LOW_RECOVERY_CODES: Final = 3
"""A set with this many unused codes or fewer is :attr:`RecoveryCodeSet.low`."""

_GROUP: Final = 4
_GROUPS: Final = 3
_CODE_CHARS: Final = _GROUP * _GROUPS
_MAX_COUNT: Final = 100
# Longest input considered at all; longer is refused before any other work.
_MAX_INPUT: Final = 64
_ALPHABET_SET: Final = frozenset(RECOVERY_CODE_ALPHABET)
# Bytes below this bound map uniformly onto the alphabet (248 = 31 * 8).
_UNBIASED_BYTE_BOUND: Final = 248
_IGNORED: Final = str.maketrans("", "", " -\t")

_HASH_VERSION: Final = 1
_SALT_LENGTH: Final = 16
_MAC_LENGTH: Final = 32
_HASH_LENGTH: Final = 1 + _SALT_LENGTH + _MAC_LENGTH
_MIN_PEPPER: Final = 16


def _group(compact: str) -> str:
    return "-".join(compact[i : i + _GROUP] for i in range(0, _CODE_CHARS, _GROUP))


def _random_code(rng: RandomSource) -> str:
    chars: list[str] = []
    while len(chars) < _CODE_CHARS:
        for byte in rng.token_bytes(_CODE_CHARS):
            if byte < _UNBIASED_BYTE_BOUND and len(chars) < _CODE_CHARS:
                chars.append(RECOVERY_CODE_ALPHABET[byte % len(RECOVERY_CODE_ALPHABET)])
    return _group("".join(chars))


def generate_recovery_codes(
    rng: RandomSource, *, count: int = DEFAULT_RECOVERY_CODE_COUNT
) -> tuple[str, ...]:
    """Return ``count`` distinct new codes in display form (``xxxx-xxxx-xxxx``).

    Args:
        rng: The random source (the system CSPRNG outside tests).
        count: How many codes, 1 to 100.

    Returns:
        The codes, each in the canonical form :func:`normalize_recovery_code` returns.

    Raises:
        ValidationError: ``count.out_of_range``.
    """
    if type(count) is not int or not 1 <= count <= _MAX_COUNT:
        raise ValidationError.single(
            "count",
            "out_of_range",
            f"between 1 and {_MAX_COUNT} recovery codes",
            minimum=1,
            maximum=_MAX_COUNT,
        )
    codes: dict[str, None] = {}
    while len(codes) < count:
        codes[_random_code(rng)] = None
    return tuple(codes)


def normalize_recovery_code(user_input: object) -> str | None:
    """Return the canonical form of a code the user typed, or ``None`` if it cannot be one.

    Case is ignored, as are spaces, tabs and hyphens anywhere.

    >>> normalize_recovery_code(" K7MQ 3XRF-p9dw ")
    'k7mq-3xrf-p9dw'
    >>> normalize_recovery_code("k7mq-3xrf-p9d0") is None
    True
    """
    if not isinstance(user_input, str) or len(user_input) > _MAX_INPUT:
        return None
    compact = user_input.translate(_IGNORED).strip().lower()
    if len(compact) != _CODE_CHARS or not _ALPHABET_SET.issuperset(compact):
        return None
    return _group(compact)


def _validate_pepper(_instance: object, _attribute: object, value: Any) -> None:
    if not isinstance(value, bytes) or len(value) < _MIN_PEPPER:
        raise ValidationError.single(
            "pepper",
            "too_short",
            f"the pepper has at least {_MIN_PEPPER} random bytes",
            minimum=_MIN_PEPPER,
        )


def _mac(pepper: bytes, salt: bytes, canonical: str) -> bytes:
    return hmac.digest(pepper, salt + canonical.encode("ascii"), hashlib.sha256)


def _digest_matches(pepper: bytes, canonical: str, stored_hash: object) -> bool:
    if (
        not isinstance(stored_hash, bytes)
        or len(stored_hash) != _HASH_LENGTH
        or stored_hash[0] != _HASH_VERSION
    ):
        return False
    salt = stored_hash[1 : 1 + _SALT_LENGTH]
    return hmac.compare_digest(_mac(pepper, salt, canonical), stored_hash[1 + _SALT_LENGTH :])


@attrs.frozen
class RecoveryCodeHasher:
    """Hashes recovery codes for storage: salted HMAC-SHA256 keyed with a server pepper.

    Why a fast keyed hash and not a password hash: a recovery code is ~59 random bits,
    not a human-chosen password, so there is no dictionary to try, and brute force
    against a stolen hash still costs ~2**58 HMACs per code. The pepper (a secret kept
    outside the database, e.g. in the host's config) means a database dump alone allows
    no guessing at all; the random per-code salt stops one computation from testing
    every stored code at once. A slow hash would add nothing but latency, because
    checking one code compares it against every code in the set.

    Stored value: ``version (1 byte) | salt (16) | HMAC-SHA256(pepper, salt | code) (32)``.

    Args:
        pepper: At least 16 secret random bytes; never shown in ``repr``.
        rng: Source of salts (default: the system CSPRNG).

    Raises:
        ValidationError: ``pepper.too_short``.
    """

    pepper: bytes = attrs.field(repr=False, validator=_validate_pepper)
    rng: RandomSource = attrs.field(factory=SystemRandom, kw_only=True, repr=False, eq=False)

    def __repr__(self) -> str:
        return "RecoveryCodeHasher(<pepper hidden>)"

    def hash(self, code: str) -> bytes:
        """Return the value to store for ``code``; salted, so every call gives a new value.

        ``code`` may be in any spelling :func:`normalize_recovery_code` accepts.

        Raises:
            ValidationError: ``recovery_code.invalid`` if ``code`` is not a recovery code.
        """
        canonical = normalize_recovery_code(code)
        if canonical is None:
            raise ValidationError.single("recovery_code", "invalid", "this is not a recovery code")
        salt = self.rng.token_bytes(_SALT_LENGTH)
        return bytes((_HASH_VERSION,)) + salt + _mac(self.pepper, salt, canonical)

    def matches(self, code: object, stored_hash: bytes) -> bool:
        """Return whether ``code`` is the code behind ``stored_hash`` (constant-time compare).

        Malformed input on either side simply does not match.
        """
        canonical = normalize_recovery_code(code)
        return canonical is not None and _digest_matches(self.pepper, canonical, stored_hash)


@attrs.frozen(kw_only=True)
class RecoveryCode:
    """One stored code: its hash and when it was used (``None`` while unused).

    Attributes:
        digest: The value :meth:`RecoveryCodeHasher.hash` returned; hidden from ``repr``.
        used_at: When the code was used, or ``None``.
    """

    digest: bytes = attrs.field(repr=False)
    used_at: datetime | None = attrs.field(
        default=None, converter=attrs.converters.optional(ensure_utc)
    )

    @property
    def used(self) -> bool:
        """Whether the code has been used."""
        return self.used_at is not None


def _to_codes(codes: Iterable[RecoveryCode]) -> tuple[RecoveryCode, ...]:
    return tuple(codes)


@attrs.frozen(kw_only=True)
class RecoveryCodeSet:
    """A user's set of recovery codes, as stored (hashes only).

    Attributes:
        codes: One :class:`RecoveryCode` per code, in generation order.
        generated_at: When the set was generated.
        confirmed_at: When the user confirmed saving the codes; ``None`` while pending.
    """

    codes: tuple[RecoveryCode, ...] = attrs.field(converter=_to_codes)
    generated_at: datetime = attrs.field(converter=ensure_utc)
    confirmed_at: datetime | None = attrs.field(
        default=None, converter=attrs.converters.optional(ensure_utc)
    )

    @classmethod
    def from_codes(
        cls, codes: Iterable[str], hasher: RecoveryCodeHasher, *, now: datetime
    ) -> RecoveryCodeSet:
        """Return an unconfirmed set holding the hashes of ``codes``.

        Raises:
            ValidationError: ``recovery_code.invalid`` if a code is malformed.
        """
        return cls(
            codes=tuple(RecoveryCode(digest=hasher.hash(code)) for code in codes),
            generated_at=now,
        )

    @property
    def confirmed(self) -> bool:
        """Whether the user confirmed saving the codes (only a confirmed set is usable)."""
        return self.confirmed_at is not None

    @property
    def remaining(self) -> int:
        """How many codes are still unused."""
        return sum(1 for code in self.codes if not code.used)

    @property
    def low(self) -> bool:
        """Whether 3 or fewer codes are left (time to suggest regenerating)."""
        return self.remaining <= LOW_RECOVERY_CODES

    def confirm(self, *, now: datetime) -> RecoveryCodeSet:
        """Return this set marked as confirmed at ``now`` (unchanged if already confirmed)."""
        if self.confirmed:
            return self
        return attrs.evolve(self, confirmed_at=now)

    def use(
        self, code: object, hasher: RecoveryCodeHasher, now: datetime
    ) -> RecoveryCodeSet | None:
        """Spend ``code``: return the set with it marked used, or ``None`` if it does not work.

        A code works once, and only in a confirmed set. Every stored hash is checked, so
        the time taken does not reveal which code matched.

        Args:
            code: What the user typed (any case, spaces and hyphens ignored).
            hasher: The hasher the set was made with.
            now: The current time (timezone-aware).

        Returns:
            The updated set, or ``None`` (unknown code, already used, or set unconfirmed).
        """
        now = ensure_utc(now)
        canonical = normalize_recovery_code(code)
        if not self.confirmed or canonical is None:
            return None
        hit: int | None = None
        for index, stored in enumerate(self.codes):
            if _digest_matches(hasher.pepper, canonical, stored.digest) and not stored.used:
                hit = index
        if hit is None:
            return None
        codes = list(self.codes)
        codes[hit] = attrs.evolve(codes[hit], used_at=now)
        return attrs.evolve(self, codes=tuple(codes))


@attrs.frozen(kw_only=True)
class PendingRecoveryCodes:
    """A freshly generated set: the plaintext codes to show once, and what to store.

    Attributes:
        codes: The codes in display form; hidden from ``repr``; never store them.
        code_set: The unconfirmed :class:`RecoveryCodeSet` to store as pending.
    """

    codes: tuple[str, ...] = attrs.field(repr=False)
    code_set: RecoveryCodeSet

    def __repr__(self) -> str:
        return f"PendingRecoveryCodes(<{len(self.codes)} codes hidden>, code_set={self.code_set!r})"

    @classmethod
    def generate(
        cls,
        rng: RandomSource,
        hasher: RecoveryCodeHasher,
        *,
        now: datetime,
        count: int = DEFAULT_RECOVERY_CODE_COUNT,
    ) -> PendingRecoveryCodes:
        """Generate ``count`` codes and their unconfirmed stored set.

        Raises:
            ValidationError: ``count.out_of_range``.
        """
        codes = generate_recovery_codes(rng, count=count)
        return cls(codes=codes, code_set=RecoveryCodeSet.from_codes(codes, hasher, now=now))


def _require_pending(value: RecoveryCodeSet | None) -> None:
    if value is not None and value.confirmed:
        raise ValidationError.single(
            "pending", "already_confirmed", "a pending recovery code set cannot be confirmed yet"
        )


@attrs.frozen(kw_only=True)
class RecoveryCodeState:
    """A user's recovery codes: the active set and, during regeneration, a pending one.

    Attributes:
        active: The confirmed set in use, or ``None`` (never set up).
        pending: A newly generated, unconfirmed set, or ``None``.
    """

    active: RecoveryCodeSet | None = None
    pending: RecoveryCodeSet | None = None

    def __attrs_post_init__(self) -> None:
        _require_pending(self.pending)
        if self.active is not None and not self.active.confirmed:
            raise ValidationError.single(
                "active", "unconfirmed", "the active recovery code set must be confirmed"
            )

    def start_regeneration(self, code_set: RecoveryCodeSet) -> RecoveryCodeState:
        """Return the state with ``code_set`` pending (replacing an earlier pending set).

        The active set keeps working until :meth:`confirm`.

        Raises:
            ValidationError: ``pending.already_confirmed`` if ``code_set`` is confirmed.
        """
        return attrs.evolve(self, pending=code_set)

    def confirm(self, *, now: datetime) -> RecoveryCodeState:
        """Return the state with the pending set confirmed and active; the old set is gone.

        Raises:
            PolicyError: ``recovery_codes.nothing_pending`` if no set is pending.
        """
        if self.pending is None:
            raise PolicyError(
                "there are no new recovery codes to confirm",
                code="recovery_codes.nothing_pending",
            )
        return RecoveryCodeState(active=self.pending.confirm(now=now), pending=None)

    def discard_pending(self) -> RecoveryCodeState:
        """Return the state without a pending set (the user cancelled)."""
        return attrs.evolve(self, pending=None)

    def use(
        self, code: object, hasher: RecoveryCodeHasher, now: datetime
    ) -> RecoveryCodeState | None:
        """Spend a code of the **active** set; ``None`` if it does not work.

        Pending codes do not work until confirmed.
        """
        if self.active is None:
            return None
        used = self.active.use(code, hasher, now)
        return None if used is None else attrs.evolve(self, active=used)

"""Injectable randomness: secrets come from here, so tests can be deterministic."""

from __future__ import annotations

import random
import secrets
from typing import Protocol

import attrs

__all__ = ["RandomSource", "SeededRandom", "SystemRandom", "new_id"]


class RandomSource(Protocol):
    """A source of random bytes. Production code must use a CSPRNG."""

    def token_bytes(self, n: int) -> bytes:
        """Return ``n`` random bytes."""
        ...


@attrs.frozen
class SystemRandom:
    """The operating system's CSPRNG (``secrets.token_bytes``). The default."""

    def token_bytes(self, n: int) -> bytes:
        """Return ``n`` bytes from :func:`secrets.token_bytes`."""
        return secrets.token_bytes(n)


@attrs.define
class SeededRandom:
    """A **predictable** source for tests and examples. Never use it in production."""

    seed: int = 0
    _rng: random.Random = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - deterministic by design, test-only

    def token_bytes(self, n: int) -> bytes:
        """Return ``n`` pseudo-random bytes from the seeded generator."""
        return self._rng.randbytes(n)


def new_id(rng: RandomSource) -> str:
    """Return a random UUID4 string drawn from ``rng`` (same text as ``str(uuid.uuid4())``).

    >>> import uuid
    >>> uuid.UUID(new_id(SeededRandom(1))).version
    4
    """
    raw = bytearray(rng.token_bytes(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

"""Injectable randomness: secrets come from here, so tests can be deterministic."""

from __future__ import annotations

import random
import secrets
import uuid
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
    """Return a random UUID4 string drawn from ``rng``."""
    return str(uuid.UUID(bytes=rng.token_bytes(16), version=4))

"""Injectable time: the library never calls ``datetime.now`` directly."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

import attrs

__all__ = ["Clock", "FixedClock", "SystemClock", "ensure_utc"]


class Clock(Protocol):
    """Something that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime:
        """Return the current time (timezone-aware, UTC)."""
        ...


@attrs.frozen
class SystemClock:
    """The real wall clock, in UTC. The default everywhere."""

    def now(self) -> datetime:
        """Return ``datetime.now(UTC)``."""
        return datetime.now(UTC)


@attrs.define
class FixedClock:
    """A clock that only moves when told to: for tests, so nothing ever sleeps.

    >>> from datetime import datetime, UTC, timedelta
    >>> clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    >>> clock.advance(minutes=5).isoformat()
    '2026-01-01T00:05:00+00:00'
    """

    current: datetime = attrs.field(factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.current = ensure_utc(self.current)

    def now(self) -> datetime:
        """Return the fixed current time."""
        return self.current

    def advance(self, delta: timedelta | None = None, /, **kwargs: float) -> datetime:
        """Move the clock forward by ``delta`` or ``timedelta(**kwargs)``; return the new time."""
        step = delta if delta is not None else timedelta(**kwargs)
        with self._lock:
            self.current = self.current + step
            return self.current

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (must be timezone-aware)."""
        with self._lock:
            self.current = ensure_utc(when)


def ensure_utc(value: datetime) -> datetime:
    """Return ``value`` converted to UTC; refuse naive datetimes.

    Raises:
        ValueError: if ``value`` has no timezone (naive datetimes are ambiguous).
    """
    if value.tzinfo is None or value.utcoffset() is None:
        msg = "naive datetime: pass a timezone-aware datetime (e.g. datetime.now(UTC))"
        raise ValueError(msg)
    return value.astimezone(UTC)

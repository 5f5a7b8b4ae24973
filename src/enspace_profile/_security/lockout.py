"""Brute-force throttling for password, TOTP and recovery-code checks (pure functions).

A :class:`LockoutPolicy` turns a :class:`FailureState` (one per account and secret kind,
kept by storage) into a decision:

* the first ``threshold`` (10) consecutive failures cost nothing, so a user who
  mistypes is never slowed down;
* from then on each failure locks the account for a window that doubles with every
  extra failure: 1 minute, 2, 4, ... capped at 1 hour;
* independently, there are never more than ``hourly_cap`` (100) failures in any hour,
  even when successes in between keep resetting the consecutive count.

The hourly cap holds for *every* hour-long interval, not just for fixed clock hours:
failures are counted in consecutive fixed windows, and a failure is allowed only while
the current **and** the previous window together hold fewer than ``hourly_cap``. Any
hour-long interval lies within two consecutive windows, so it can never see more. The
price is that a capped account may wait up to two windows.

Storage must apply ``check`` + ``record_*`` atomically (one transaction per attempt);
otherwise concurrent attempts can all pass ``check`` before any failure is counted.

When verifying takes long and must run outside any transaction (password hashing),
count the attempt **in advance**: ``check`` then ``record_failure`` in one transaction,
verify, and on success call :meth:`LockoutPolicy.settle_success` in a second one,
which resets the back-off and gives the reserved failure back. Concurrent attempts then
never get more verifications than the policy allows.

>>> from datetime import datetime, UTC
>>> now = datetime(2026, 1, 1, tzinfo=UTC)
>>> policy = LockoutPolicy()
>>> state = FailureState()
>>> for _ in range(10):
...     policy.check(state, now)
...     state = policy.record_failure(state, now)
>>> policy.retry_after(state, now)
datetime.timedelta(seconds=60)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import attrs

from enspace_profile._clock import ensure_utc
from enspace_profile.exceptions import FieldError, RateLimitedError, ValidationError

__all__ = ["FailureState", "LockoutPolicy"]

_ZERO: Final = timedelta(0)
# 2**64 times any sensible base delay is far beyond any cap; stop doubling there.
_MAX_DOUBLINGS: Final = 64


def _optional_utc(value: datetime | None) -> datetime | None:
    return None if value is None else ensure_utc(value)


@attrs.frozen(kw_only=True)
class FailureState:
    """What storage remembers about recent failed attempts for one account.

    The default value is a clean state (no failures).

    Attributes:
        consecutive_failures: Failures since the last success.
        locked_until: End of the current back-off lock, or ``None``.
        window_start: Start of the current counting window, or ``None`` before any failure.
        failures_in_window: Failures in the current window.
        failures_in_previous_window: Failures in the window just before it.
    """

    consecutive_failures: int = 0
    locked_until: datetime | None = attrs.field(default=None, converter=_optional_utc)
    window_start: datetime | None = attrs.field(default=None, converter=_optional_utc)
    failures_in_window: int = 0
    failures_in_previous_window: int = 0


@attrs.frozen(kw_only=True)
class LockoutPolicy:
    """When repeated failures lock an account, and for how long.

    Attributes:
        threshold: Consecutive failures allowed before locking (default 10).
        base_delay: Lock after the ``threshold``-th failure (default 1 minute); doubles
            with each further consecutive failure.
        max_delay: Longest back-off lock (default 1 hour).
        hourly_cap: Most failures in any ``window`` (default 100).
        window: The interval the cap applies to (default 1 hour).

    Raises:
        ValidationError: for non-positive values or ``max_delay < base_delay``
            (all problems at once).
    """

    threshold: int = 10
    base_delay: timedelta = timedelta(minutes=1)
    max_delay: timedelta = timedelta(hours=1)
    hourly_cap: int = 100
    window: timedelta = timedelta(hours=1)

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []

        def bad(field: str, message: str) -> None:
            errors.append(FieldError(field=field, code=f"{field}.out_of_range", message=message))

        if type(self.threshold) is not int or self.threshold < 1:
            bad("threshold", "threshold must be at least 1")
        if type(self.hourly_cap) is not int or self.hourly_cap < 1:
            bad("hourly_cap", "hourly_cap must be at least 1")
        for field, value in (
            ("base_delay", self.base_delay),
            ("max_delay", self.max_delay),
            ("window", self.window),
        ):
            if value <= _ZERO:
                bad(field, f"{field} must be a positive duration")
        if self.max_delay < self.base_delay:
            bad("max_delay", "max_delay must not be shorter than base_delay")
        if errors:
            raise ValidationError(errors)

    def _rolled(self, state: FailureState, now: datetime) -> FailureState:
        """Return ``state`` with its counting windows moved forward to contain ``now``."""
        start = state.window_start
        if start is None or now < start + self.window:
            return state
        if now < start + 2 * self.window:
            return attrs.evolve(
                state,
                window_start=start + self.window,
                failures_in_window=0,
                failures_in_previous_window=state.failures_in_window,
            )
        return attrs.evolve(
            state, window_start=None, failures_in_window=0, failures_in_previous_window=0
        )

    def _cap_release(self, state: FailureState) -> datetime | None:
        """When the hourly cap allows another failure (``state`` already rolled), if capped."""
        if state.window_start is None:
            return None
        if state.failures_in_window + state.failures_in_previous_window < self.hourly_cap:
            return None
        if state.failures_in_window >= self.hourly_cap:
            return state.window_start + 2 * self.window
        return state.window_start + self.window

    def _backoff(self, consecutive: int) -> timedelta | None:
        extra = consecutive - self.threshold
        if extra < 0:
            return None
        if extra >= _MAX_DOUBLINGS or (1 << extra) >= self.max_delay / self.base_delay:
            return self.max_delay
        return self.base_delay * (1 << extra)

    def retry_after(self, state: FailureState, now: datetime) -> timedelta:
        """Return how long until an attempt is allowed (zero when allowed now).

        Raises:
            ValueError: if ``now`` is naive.
        """
        now = ensure_utc(now)
        ends = (state.locked_until, self._cap_release(self._rolled(state, now)))
        return max([_ZERO, *(until - now for until in ends if until is not None)])

    def check(self, state: FailureState, now: datetime) -> None:
        """Refuse an attempt while the account is locked; call before verifying a secret.

        Raises:
            RateLimitedError: with ``retry_after`` (always positive).
            ValueError: if ``now`` is naive.
        """
        wait = self.retry_after(state, now)
        if wait > _ZERO:
            raise RateLimitedError(retry_after=wait)

    def record_failure(self, state: FailureState, now: datetime) -> FailureState:
        """Return the state after one more failed attempt at ``now``.

        Raises:
            ValueError: if ``now`` is naive.
        """
        now = ensure_utc(now)
        rolled = self._rolled(state, now)
        consecutive = state.consecutive_failures + 1
        delay = self._backoff(consecutive)
        locked_until = state.locked_until
        if delay is not None:
            candidate = now + delay
            locked_until = candidate if locked_until is None else max(locked_until, candidate)
        return attrs.evolve(
            rolled,
            consecutive_failures=consecutive,
            locked_until=locked_until,
            window_start=now if rolled.window_start is None else rolled.window_start,
            failures_in_window=rolled.failures_in_window + 1,
        )

    def settle_success(
        self, state: FailureState, *, counted_at: datetime, now: datetime
    ) -> FailureState:
        """Return the state after an attempt counted in advance (at ``counted_at``) succeeded.

        Like :meth:`record_success`, and the failure recorded for the attempt is removed
        from the hourly count again (from whichever window it fell in, if that window
        still counts), so successful attempts never use up the hourly cap.

        Args:
            state: The stored state (which includes the advance failure).
            counted_at: The ``now`` given to :meth:`record_failure` for this attempt.
            now: The current time.

        Raises:
            ValueError: if a datetime is naive.
        """
        now = ensure_utc(now)
        counted_at = ensure_utc(counted_at)
        rolled = self._rolled(state, now)
        current = rolled.failures_in_window
        previous = rolled.failures_in_previous_window
        start = rolled.window_start
        if start is not None:
            if counted_at >= start:
                current = max(0, current - 1)
            elif counted_at >= start - self.window:
                previous = max(0, previous - 1)
        return attrs.evolve(
            rolled,
            consecutive_failures=0,
            locked_until=None,
            failures_in_window=current,
            failures_in_previous_window=previous,
        )

    def record_success(self, state: FailureState) -> FailureState:
        """Return the state after a successful attempt.

        The consecutive count and the back-off lock are reset; the hourly counts are
        kept, because the cap is what stops an attacker who can interleave successes.
        """
        return attrs.evolve(state, consecutive_failures=0, locked_until=None)

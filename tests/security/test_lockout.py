from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enspace_profile._clock import FixedClock
from enspace_profile._security.lockout import FailureState, LockoutPolicy
from enspace_profile.exceptions import RateLimitedError, ValidationError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fail(policy: LockoutPolicy, state: FailureState, clock: FixedClock, times: int) -> FailureState:
    for _ in range(times):
        policy.check(state, clock.now())
        state = policy.record_failure(state, clock.now())
    return state


class TestBackoff:
    def setup_method(self):
        self.policy = LockoutPolicy()
        self.clock = FixedClock(T0)

    def test_nine_failures_cost_nothing(self):
        """A user who mistypes nine times in a row is never slowed down."""
        state = fail(self.policy, FailureState(), self.clock, 9)
        assert state.consecutive_failures == 9
        assert state.locked_until is None
        self.policy.check(state, self.clock.now())

    def test_tenth_failure_locks_for_a_minute(self):
        """The tenth consecutive failure locks the account for one minute."""
        state = fail(self.policy, FailureState(), self.clock, 10)
        with pytest.raises(RateLimitedError) as info:
            self.policy.check(state, self.clock.now())
        assert info.value.retry_after == timedelta(minutes=1)
        assert info.value.scope == "account"

    def test_lock_ends_after_its_window(self):
        """Once the lock has passed, attempts are allowed again."""
        state = fail(self.policy, FailureState(), self.clock, 10)
        self.clock.advance(seconds=59)
        with pytest.raises(RateLimitedError) as info:
            self.policy.check(state, self.clock.now())
        assert info.value.retry_after == timedelta(seconds=1)
        self.clock.advance(seconds=1)
        self.policy.check(state, self.clock.now())

    @pytest.mark.parametrize(
        ("failures", "minutes"),
        [(10, 1), (11, 2), (12, 4), (13, 8), (14, 16), (15, 32), (16, 60), (17, 60), (40, 60)],
    )
    def test_window_doubles_up_to_an_hour(self, failures, minutes):
        """Each extra failure doubles the lock, capped at one hour."""
        state = FailureState()
        for _ in range(failures):
            state = self.policy.record_failure(state, self.clock.now())
        assert self.policy.retry_after(state, self.clock.now()) == timedelta(minutes=minutes)

    def test_waiting_out_each_lock_grows_it(self):
        """An attacker who waits out every lock faces ever longer waits."""
        state = fail(self.policy, FailureState(), self.clock, 10)
        waits = []
        for _ in range(4):
            wait = self.policy.retry_after(state, self.clock.now())
            waits.append(wait)
            self.clock.advance(wait)
            state = fail(self.policy, state, self.clock, 1)
        assert waits == [timedelta(minutes=m) for m in (1, 2, 4, 8)]

    def test_success_resets_the_consecutive_count(self):
        """A successful login clears the back-off entirely."""
        state = fail(self.policy, FailureState(), self.clock, 9)
        state = self.policy.record_success(state)
        assert state.consecutive_failures == 0
        assert state.locked_until is None
        state = fail(self.policy, state, self.clock, 9)
        self.policy.check(state, self.clock.now())

    def test_success_clears_a_backoff_lock(self):
        """A success recorded by another path (e.g. SSO) lifts the back-off lock."""
        state = fail(self.policy, FailureState(), self.clock, 10)
        state = self.policy.record_success(state)
        self.policy.check(state, self.clock.now())

    def test_record_success_keeps_hourly_counts(self):
        """Successes do not reset the hourly count that enforces the hard cap."""
        state = fail(self.policy, FailureState(), self.clock, 5)
        assert self.policy.record_success(state).failures_in_window == 5

    def test_states_are_immutable(self):
        """Recording returns a new state and leaves the old one untouched."""
        state = FailureState()
        self.policy.record_failure(state, self.clock.now())
        assert state == FailureState()

    def test_default_policy(self):
        """The defaults are 10 failures, 1 minute doubling to 1 hour, 100 per hour."""
        policy = LockoutPolicy()
        assert policy.threshold == 10
        assert policy.base_delay == timedelta(minutes=1)
        assert policy.max_delay == timedelta(hours=1)
        assert policy.hourly_cap == 100
        assert policy.window == timedelta(hours=1)

    def test_naive_times_are_refused(self):
        """Times must be timezone-aware."""
        with pytest.raises(ValueError, match="naive"):
            self.policy.record_failure(FailureState(), datetime(2026, 1, 1))  # noqa: DTZ001


class TestHourlyCap:
    def setup_method(self):
        self.policy = LockoutPolicy()
        self.clock = FixedClock(T0)

    def interleaved(self, state: FailureState, failures: int) -> FailureState:
        """Failures with a success after every nine, so the back-off never kicks in."""
        for index in range(failures):
            self.policy.check(state, self.clock.now())
            state = self.policy.record_failure(state, self.clock.now())
            if index % 9 == 8:
                state = self.policy.record_success(state)
            self.clock.advance(seconds=1)
        return state

    def test_hundred_failures_per_hour_then_locked(self):
        """Even with successes in between, the 101st failure within the hour is refused."""
        state = self.interleaved(FailureState(), 100)
        with pytest.raises(RateLimitedError) as info:
            self.policy.check(self.policy.record_success(state), self.clock.now())
        assert info.value.retry_after > timedelta(0)

    def test_cap_holds_across_window_boundaries(self):
        """Failures at the end of one window and the start of the next never exceed 100 per hour."""
        state = FailureState(window_start=T0 - timedelta(minutes=59), failures_in_window=99)
        self.policy.check(state, self.clock.now())
        state = self.policy.record_failure(state, self.clock.now())
        self.clock.advance(minutes=2)  # the next window has started
        with pytest.raises(RateLimitedError):
            self.policy.check(self.policy.record_success(state), self.clock.now())

    def test_cap_is_released_after_the_windows_pass(self):
        """After the counted failures have aged out, attempts are allowed again."""
        state = self.policy.record_success(self.interleaved(FailureState(), 100))
        wait = self.policy.retry_after(state, self.clock.now())
        assert timedelta(0) < wait <= timedelta(hours=2)
        self.clock.advance(wait)
        self.policy.check(state, self.clock.now())

    def test_old_windows_are_forgotten(self):
        """Failures more than two windows ago no longer count."""
        state = self.interleaved(FailureState(), 50)
        self.clock.advance(hours=3)
        state = self.policy.record_failure(state, self.clock.now())
        assert state.failures_in_window == 1
        assert state.failures_in_previous_window == 0
        assert state.window_start == self.clock.now()

    def test_windows_roll_forward_aligned(self):
        """The next window starts where the previous one ended."""
        state = self.policy.record_failure(FailureState(), self.clock.now())
        self.clock.advance(minutes=61)
        state = self.policy.record_failure(state, self.clock.now())
        assert state.window_start == T0 + timedelta(hours=1)
        assert state.failures_in_previous_window == 1
        assert state.failures_in_window == 1

    @settings(max_examples=100, deadline=None)
    @given(
        st.lists(
            st.tuples(st.sampled_from([0, 1, 5, 60, 600, 1800, 3000]), st.booleans()),
            min_size=1,
            max_size=120,
        )
    )
    def test_never_more_than_cap_in_any_hour(self, events):
        """Whatever the timing and successes, no sliding hour sees more than the cap."""
        policy = LockoutPolicy(
            threshold=3,
            base_delay=timedelta(seconds=1),
            max_delay=timedelta(seconds=4),
            hourly_cap=7,
        )
        clock = FixedClock(T0)
        state = FailureState()
        accepted: list[datetime] = []
        for gap, succeed in events:
            clock.advance(seconds=gap)
            if policy.retry_after(state, clock.now()) > timedelta(0):
                continue
            if succeed:
                state = policy.record_success(state)
            else:
                state = policy.record_failure(state, clock.now())
                accepted.append(clock.now())
        for index, start in enumerate(accepted):
            in_hour = [t for t in accepted[index:] if t < start + timedelta(hours=1)]
            assert len(in_hour) <= 7


class TestPolicyValidation:
    @pytest.mark.parametrize(
        ("kwargs", "codes"),
        [
            ({"threshold": 0}, ("threshold.out_of_range",)),
            ({"hourly_cap": 0}, ("hourly_cap.out_of_range",)),
            ({"base_delay": timedelta(0)}, ("base_delay.out_of_range",)),
            ({"window": -timedelta(seconds=1)}, ("window.out_of_range",)),
            (
                {"base_delay": timedelta(hours=2), "max_delay": timedelta(hours=1)},
                ("max_delay.out_of_range",),
            ),
            (
                {"threshold": 0, "hourly_cap": -1},
                ("threshold.out_of_range", "hourly_cap.out_of_range"),
            ),
        ],
    )
    def test_refuses_nonsense(self, kwargs, codes):
        """Non-positive settings are refused, all problems at once."""
        with pytest.raises(ValidationError) as info:
            LockoutPolicy(**kwargs)
        assert info.value.codes == codes

    def test_huge_failure_counts_stay_capped(self):
        """A state with an absurd failure count still yields the maximum lock, no overflow."""
        policy = LockoutPolicy()
        state = FailureState(consecutive_failures=10**6)
        assert policy.retry_after(policy.record_failure(state, T0), T0) == timedelta(hours=1)


class TestSettleSuccess:
    def setup_method(self):
        self.policy = LockoutPolicy()

    def test_refunds_the_advance_failure(self):
        """An attempt counted in advance and then successful leaves no trace in the counts."""
        state = fail(self.policy, FailureState(), FixedClock(T0), 3)
        reserved = self.policy.record_failure(state, T0)
        settled = self.policy.settle_success(reserved, counted_at=T0, now=T0)
        assert settled.consecutive_failures == 0
        assert settled.locked_until is None
        assert settled.failures_in_window == 3

    def test_clears_a_lock_the_reservation_started(self):
        """The tenth attempt, counted in advance, does not lock the account if it succeeds."""
        state = fail(self.policy, FailureState(), FixedClock(T0), 9)
        reserved = self.policy.record_failure(state, T0)
        assert self.policy.retry_after(reserved, T0) == timedelta(minutes=1)
        settled = self.policy.settle_success(reserved, counted_at=T0, now=T0)
        self.policy.check(settled, T0)

    def test_refund_follows_the_window_the_attempt_fell_in(self):
        """Counted late in one window and settled in the next, the refund hits the older one."""
        reserved = self.policy.record_failure(FailureState(), T0)
        counted = T0 + timedelta(minutes=59)
        reserved = self.policy.record_failure(reserved, counted)
        settled = self.policy.settle_success(
            reserved, counted_at=counted, now=T0 + timedelta(minutes=61)
        )
        assert (settled.failures_in_window, settled.failures_in_previous_window) == (0, 1)

    def test_refund_of_a_forgotten_window_changes_nothing(self):
        """An attempt from a window that no longer counts refunds nothing."""
        counted = T0
        reserved = self.policy.record_failure(FailureState(), counted)
        later = T0 + timedelta(hours=1, minutes=30)
        fresh = self.policy.record_failure(reserved, later)
        settled = self.policy.settle_success(fresh, counted_at=T0 - timedelta(hours=2), now=later)
        assert settled.failures_in_window + settled.failures_in_previous_window == 2

    @settings(max_examples=100)
    @given(st.lists(st.booleans(), max_size=60))
    def test_successes_never_use_the_cap(self, outcomes):
        """With reservations, only real failures count towards the hourly cap."""
        policy = LockoutPolicy(threshold=1000, hourly_cap=1000)
        state = FailureState()
        for ok in outcomes:
            state = policy.record_failure(state, T0)
            if ok:
                state = policy.settle_success(state, counted_at=T0, now=T0)
        assert state.failures_in_window == outcomes.count(False)

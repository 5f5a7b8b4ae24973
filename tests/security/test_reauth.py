from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from enspace_profile._clock import FixedClock
from enspace_profile._security.reauth import (
    DEFAULT_REAUTH_POLICY,
    AuthContext,
    Factor,
    ReauthPolicy,
    ReauthRule,
    SensitiveAction,
)
from enspace_profile.exceptions import ReauthenticationRequired, ValidationError

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def context(
    *, ago: timedelta = timedelta(minutes=1), factors=("password",), user_id="u1"
) -> AuthContext:
    return AuthContext(user_id=user_id, authenticated_at=T0 - ago, factors=frozenset(factors))


class TestSensitiveAction:
    @pytest.mark.parametrize(
        ("action", "value"),
        [
            (SensitiveAction.CHANGE_PASSWORD, "security.change_password"),
            (SensitiveAction.ENABLE_TWO_FACTOR, "security.enable_two_factor"),
            (SensitiveAction.DISABLE_TWO_FACTOR, "security.disable_two_factor"),
            (SensitiveAction.REGENERATE_RECOVERY_CODES, "security.regenerate_recovery_codes"),
            (SensitiveAction.SIGN_OUT_OTHER_SESSIONS, "security.sign_out_other_sessions"),
            (SensitiveAction.CREATE_TOKEN, "tokens.create"),
            (SensitiveAction.REGENERATE_TOKEN, "tokens.regenerate"),
            (SensitiveAction.ROTATE_TOKEN, "tokens.rotate"),
            (SensitiveAction.CONNECT_INTEGRATION, "integrations.connect"),
            (SensitiveAction.DISCONNECT_INTEGRATION, "integrations.disconnect"),
        ],
    )
    def test_stable_codes(self, action, value):
        """Each action has a stable, namespaced string value hosts can store and translate."""
        assert action == value
        assert SensitiveAction(value) is action

    def test_all_actions_are_listed(self):
        """Exactly the ten sensitive actions exist."""
        assert len(SensitiveAction) == 10


class TestAuthContext:
    def test_stores_utc(self):
        """An aware time in another zone is stored as the same instant in UTC."""
        local = datetime(2026, 1, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
        ctx = AuthContext(user_id="u1", authenticated_at=local, factors={"password"})
        assert ctx.authenticated_at == T0
        assert ctx.authenticated_at.tzinfo is UTC

    def test_refuses_naive_times(self):
        """A naive authentication time is ambiguous and refused."""
        with pytest.raises(ValueError, match="naive"):
            AuthContext(user_id="u1", authenticated_at=datetime(2026, 1, 1), factors={"password"})  # noqa: DTZ001

    def test_factors_become_a_frozenset(self):
        """Factors given as any iterable (or one string) become a frozenset of names."""
        assert context(factors=["password", "totp"]).factors == frozenset({"password", "totp"})
        single = AuthContext(user_id="u1", authenticated_at=T0, factors="passkey")  # type: ignore[arg-type]
        assert single.factors == frozenset({"passkey"})

    def test_factor_names_are_plain_strings(self):
        """The Factor enum values compare equal to the strings hosts pass."""
        assert context(factors=[Factor.PASSWORD]).factors == frozenset({"password"})

    def test_user_id_is_required(self):
        """A context must say whose authentication it is."""
        with pytest.raises(ValidationError) as info:
            AuthContext(user_id="", authenticated_at=T0, factors={"password"})
        assert info.value.codes == ("user_id.required",)


class TestReauthRule:
    def test_defaults(self):
        """By default ten minutes and any factor are enough."""
        rule = ReauthRule()
        assert rule.max_age == timedelta(minutes=10)
        assert rule.factors == ()
        assert rule.accepts_factors(frozenset({"sso"}))
        assert not rule.accepts_factors(frozenset())

    @pytest.mark.parametrize(
        ("have", "accepted"),
        [
            ({"password", "totp"}, True),
            ({"password", "totp", "sso"}, True),
            ({"passkey"}, True),
            ({"password"}, False),
            ({"totp"}, False),
            ({"sso"}, False),
            (set(), False),
        ],
    )
    def test_any_one_factor_set_is_enough(self, have, accepted):
        """A context passes when it includes every factor of at least one listed set."""
        rule = ReauthRule(factors=[{"password", "totp"}, {"passkey"}])
        assert rule.accepts_factors(frozenset(have)) is accepted

    def test_reports_all_problems(self):
        """A non-positive age and an empty factor set are reported together."""
        with pytest.raises(ValidationError) as info:
            ReauthRule(max_age=timedelta(0), factors=[set()])
        assert info.value.codes == ("max_age.out_of_range", "factors.empty_set")


class TestRequire:
    def test_recent_authentication_passes(self):
        """Authenticating a minute ago allows every action by default."""
        for action in SensitiveAction:
            DEFAULT_REAUTH_POLICY.require(context(), action, user_id="u1", now=T0)

    def test_exactly_max_age_still_passes(self):
        """The window is inclusive: exactly ten minutes ago is still fine."""
        DEFAULT_REAUTH_POLICY.require(
            context(ago=timedelta(minutes=10)), SensitiveAction.CREATE_TOKEN, user_id="u1", now=T0
        )

    def test_too_old_is_refused_with_details(self):
        """An authentication older than max_age raises with the action and window."""
        with pytest.raises(ReauthenticationRequired) as info:
            DEFAULT_REAUTH_POLICY.require(
                context(ago=timedelta(minutes=10, seconds=1)),
                SensitiveAction.CREATE_TOKEN,
                user_id="u1",
                now=T0,
            )
        assert info.value.action == "tokens.create"
        assert info.value.max_age == timedelta(minutes=10)
        assert info.value.factors == ()
        assert isinstance(info.value, PermissionError)

    def test_ages_with_a_fixed_clock(self):
        """The same context passes now and is refused once the clock moves past the window."""
        clock = FixedClock(T0)
        ctx = AuthContext(user_id="u1", authenticated_at=clock.now(), factors={"sso"})
        DEFAULT_REAUTH_POLICY.require(
            ctx, SensitiveAction.ROTATE_TOKEN, user_id="u1", now=clock.advance(minutes=9)
        )
        clock.advance(minutes=2)
        with pytest.raises(ReauthenticationRequired):
            DEFAULT_REAUTH_POLICY.require(
                ctx, SensitiveAction.ROTATE_TOKEN, user_id="u1", now=clock.now()
            )

    def test_another_users_context_is_refused(self):
        """A session of one user never authorises a change to another user's account."""
        with pytest.raises(ReauthenticationRequired) as info:
            DEFAULT_REAUTH_POLICY.require(
                context(user_id="u1"), SensitiveAction.CHANGE_PASSWORD, user_id="u2", now=T0
            )
        assert info.value.action == "security.change_password"

    def test_small_future_skew_is_tolerated(self):
        """An authentication a few seconds in the future (clock skew) is accepted."""
        DEFAULT_REAUTH_POLICY.require(
            context(ago=-timedelta(seconds=30)), SensitiveAction.CREATE_TOKEN, user_id="u1", now=T0
        )

    def test_authentication_far_in_the_future_is_refused(self):
        """A context dated beyond the allowed skew is distrusted."""
        with pytest.raises(ReauthenticationRequired):
            DEFAULT_REAUTH_POLICY.require(
                context(ago=-timedelta(seconds=31)),
                SensitiveAction.CREATE_TOKEN,
                user_id="u1",
                now=T0,
            )

    def test_context_without_factors_is_refused(self):
        """A context that names no factor proves nothing."""
        with pytest.raises(ReauthenticationRequired):
            DEFAULT_REAUTH_POLICY.require(
                context(factors=()), SensitiveAction.CREATE_TOKEN, user_id="u1", now=T0
            )

    def test_missing_factors_are_refused_with_what_would_work(self):
        """A rule that needs a second factor reports the acceptable factor sets."""
        policy = DEFAULT_REAUTH_POLICY.with_overrides(
            {
                SensitiveAction.DISABLE_TWO_FACTOR: ReauthRule(
                    max_age=timedelta(minutes=5), factors=[{"password", "totp"}, {"passkey"}]
                )
            }
        )
        with pytest.raises(ReauthenticationRequired) as info:
            policy.require(
                context(factors={"password"}),
                SensitiveAction.DISABLE_TWO_FACTOR,
                user_id="u1",
                now=T0,
            )
        assert info.value.max_age == timedelta(minutes=5)
        assert set(info.value.factors) == {frozenset({"password", "totp"}), frozenset({"passkey"})}
        policy.require(
            context(factors={"password", "totp"}),
            SensitiveAction.DISABLE_TWO_FACTOR,
            user_id="u1",
            now=T0,
        )

    def test_naive_now_is_refused(self):
        """The current time must be timezone-aware."""
        with pytest.raises(ValueError, match="naive"):
            DEFAULT_REAUTH_POLICY.require(
                context(),
                SensitiveAction.CREATE_TOKEN,
                user_id="u1",
                now=datetime(2026, 1, 1),  # noqa: DTZ001
            )


class TestReauthPolicy:
    def test_default_table_covers_every_action(self):
        """Every sensitive action has a ten-minute, any-factor rule by default."""
        assert set(DEFAULT_REAUTH_POLICY.rules) == set(SensitiveAction)
        assert all(rule == ReauthRule() for rule in DEFAULT_REAUTH_POLICY.rules.values())

    def test_overrides_change_only_the_named_actions(self):
        """with_overrides replaces the given actions and leaves the rest alone."""
        strict = ReauthRule(max_age=timedelta(minutes=2))
        policy = DEFAULT_REAUTH_POLICY.with_overrides({SensitiveAction.CREATE_TOKEN: strict})
        assert policy.rule_for(SensitiveAction.CREATE_TOKEN) == strict
        assert policy.rule_for(SensitiveAction.ROTATE_TOKEN) == ReauthRule()
        assert DEFAULT_REAUTH_POLICY.rule_for(SensitiveAction.CREATE_TOKEN) == ReauthRule()

    def test_overrides_accept_string_values(self):
        """Hosts may key overrides by the action's string value."""
        strict = ReauthRule(max_age=timedelta(minutes=2))
        policy = DEFAULT_REAUTH_POLICY.with_overrides({"tokens.create": strict})  # type: ignore[dict-item]
        assert policy.rule_for(SensitiveAction.CREATE_TOKEN) == strict

    def test_unknown_actions_are_refused(self):
        """A typo in an override key is a ValidationError, not a silently ignored rule."""
        with pytest.raises(ValidationError) as info:
            DEFAULT_REAUTH_POLICY.with_overrides({"tokens.craete": ReauthRule()})  # type: ignore[dict-item]
        assert info.value.codes == ("action.unknown",)

    def test_rules_are_read_only(self):
        """The rule table cannot be mutated behind the policy's back."""
        with pytest.raises(TypeError):
            DEFAULT_REAUTH_POLICY.rules[SensitiveAction.CREATE_TOKEN] = ReauthRule()  # type: ignore[index]

    def test_missing_actions_fall_back_to_the_default_rule(self):
        """A policy built with a partial table uses default_rule for the rest."""
        policy = ReauthPolicy(rules={}, default_rule=ReauthRule(max_age=timedelta(minutes=1)))
        assert policy.rule_for(SensitiveAction.CREATE_TOKEN).max_age == timedelta(minutes=1)

    def test_custom_skew(self):
        """Hosts can tighten the tolerated clock skew."""
        policy = ReauthPolicy(clock_skew=timedelta(0))
        with pytest.raises(ReauthenticationRequired):
            policy.require(
                context(ago=-timedelta(seconds=1)),
                SensitiveAction.CREATE_TOKEN,
                user_id="u1",
                now=T0,
            )

    def test_negative_skew_is_refused(self):
        """A negative skew makes no sense and is refused."""
        with pytest.raises(ValidationError) as info:
            ReauthPolicy(clock_skew=-timedelta(seconds=1))
        assert info.value.codes == ("clock_skew.out_of_range",)

    def test_valid_until(self):
        """The UI can show when sudo mode ends for an action."""
        ctx = context(ago=timedelta(minutes=4))
        assert DEFAULT_REAUTH_POLICY.valid_until(
            ctx, SensitiveAction.CREATE_TOKEN
        ) == T0 + timedelta(minutes=6)

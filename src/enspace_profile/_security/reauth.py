"""Re-authentication ("sudo mode") for sensitive actions, as data.

The host tells the library how and when the current session last authenticated
(:class:`AuthContext`); a :class:`ReauthPolicy` says, per :class:`SensitiveAction`,
how recent that must be and which factors count. :meth:`ReauthPolicy.require` raises
:class:`~enspace_profile.exceptions.ReauthenticationRequired` carrying what would
satisfy it, so the UI can ask for exactly that and retry.

>>> from datetime import datetime, timedelta, UTC
>>> now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
>>> ctx = AuthContext(user_id="u1", authenticated_at=now - timedelta(minutes=3),
...                   factors={"password", "totp"})
>>> DEFAULT_REAUTH_POLICY.require(ctx, SensitiveAction.CREATE_TOKEN, user_id="u1", now=now)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

import attrs

from enspace_profile._clock import ensure_utc
from enspace_profile.exceptions import FieldError, ReauthenticationRequired, ValidationError

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "DEFAULT_REAUTH_MAX_AGE",
    "DEFAULT_REAUTH_POLICY",
    "AuthContext",
    "Factor",
    "ReauthPolicy",
    "ReauthRule",
    "SensitiveAction",
]

DEFAULT_REAUTH_MAX_AGE: Final = timedelta(minutes=10)
"""How recent an authentication must be by default."""

DEFAULT_CLOCK_SKEW: Final = timedelta(seconds=30)
"""How far in the future an authentication time may be (clocks of different servers)."""


class Factor(StrEnum):
    """Well-known authentication factors (any string is accepted; these are the usual ones)."""

    PASSWORD = "password"  # noqa: S105 - a factor name, not a password
    TOTP = "totp"
    RECOVERY_CODE = "recovery_code"
    PASSKEY = "passkey"
    SSO = "sso"


class SensitiveAction(StrEnum):
    """Actions that need a recent authentication; the value is a stable, namespaced code."""

    CHANGE_PASSWORD = "security.change_password"  # noqa: S105 - an action code
    ENABLE_TWO_FACTOR = "security.enable_two_factor"
    DISABLE_TWO_FACTOR = "security.disable_two_factor"
    REGENERATE_RECOVERY_CODES = "security.regenerate_recovery_codes"
    SIGN_OUT_OTHER_SESSIONS = "security.sign_out_other_sessions"
    CREATE_TOKEN = "tokens.create"  # noqa: S105 - an action code, not a token
    REGENERATE_TOKEN = "tokens.regenerate"  # noqa: S105 - an action code
    ROTATE_TOKEN = "tokens.rotate"  # noqa: S105 - an action code
    CONNECT_INTEGRATION = "integrations.connect"
    DISCONNECT_INTEGRATION = "integrations.disconnect"


def _to_factors(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        # A bare "password" would otherwise become {"p", "a", ...}.
        return frozenset((value,))
    return frozenset(value)


def _validate_user_id(_instance: object, _attribute: object, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValidationError.single("user_id", "required", "user_id is required")


@attrs.frozen(kw_only=True)
class AuthContext:
    """How and when the current session last proved who the user is.

    Attributes:
        user_id: The authenticated user.
        authenticated_at: When the user last authenticated (timezone-aware; stored in UTC).
        factors: The factors used then, e.g. ``{"password", "totp"}`` or ``{"sso"}``.
        session_id: The host's session identifier, if any (not used for decisions).

    Raises:
        ValueError: if ``authenticated_at`` is naive.
        ValidationError: ``user_id.required``.
    """

    user_id: str = attrs.field(validator=_validate_user_id)
    authenticated_at: datetime = attrs.field(converter=ensure_utc)
    factors: frozenset[str] = attrs.field(converter=_to_factors)
    session_id: str | None = None


def _to_factor_sets(value: Iterable[Iterable[str]]) -> tuple[frozenset[str], ...]:
    return tuple(_to_factors(item) for item in value)


@attrs.frozen(kw_only=True)
class ReauthRule:
    """How recent, and with which factors, an authentication must be for one action.

    Attributes:
        max_age: Longest time since authenticating (default 10 minutes).
        factors: Factor sets that count; **any one** is enough when the context's factors
            include all of its members (``[{"password", "totp"}, {"passkey"}]``). Empty
            (the default) means any factor at all.

    Raises:
        ValidationError: ``max_age.out_of_range``, ``factors.empty_set`` (all at once).
    """

    max_age: timedelta = DEFAULT_REAUTH_MAX_AGE
    factors: tuple[frozenset[str], ...] = attrs.field(default=(), converter=_to_factor_sets)

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        if self.max_age <= timedelta(0):
            errors.append(
                FieldError(
                    field="max_age",
                    code="max_age.out_of_range",
                    message="max_age must be a positive duration",
                )
            )
        if any(not factor_set for factor_set in self.factors):
            errors.append(
                FieldError(
                    field="factors",
                    code="factors.empty_set",
                    message="each factor set names at least one factor (leave factors empty "
                    "to accept any)",
                )
            )
        if errors:
            raise ValidationError(errors)

    def accepts_factors(self, factors: frozenset[str]) -> bool:
        """Return whether ``factors`` (what the user authenticated with) satisfy this rule."""
        if not self.factors:
            return bool(factors)
        return any(required <= factors for required in self.factors)


def _to_action(value: object) -> SensitiveAction:
    try:
        return SensitiveAction(value)  # type: ignore[arg-type]  # any value is checked here
    except ValueError:
        raise ValidationError.single(
            "action", "unknown", "not a known sensitive action", action=str(value)
        ) from None


def _to_rules(value: Mapping[SensitiveAction, ReauthRule]) -> Mapping[SensitiveAction, ReauthRule]:
    return MappingProxyType({_to_action(action): rule for action, rule in value.items()})


def _default_rules() -> Mapping[SensitiveAction, ReauthRule]:
    return MappingProxyType(dict.fromkeys(SensitiveAction, ReauthRule()))


@attrs.frozen(kw_only=True)
class ReauthPolicy:
    """The re-authentication rule for every sensitive action.

    The default table asks for an authentication within the last 10 minutes, with any
    factor, for every :class:`SensitiveAction`. Hosts tighten or relax single actions
    with :meth:`with_overrides`.

    Attributes:
        rules: One :class:`ReauthRule` per action (actions missing use ``default_rule``).
        default_rule: The rule for actions missing from ``rules``.
        clock_skew: How far in the future ``authenticated_at`` may be before the context
            is distrusted (default 30 seconds).
    """

    rules: Mapping[SensitiveAction, ReauthRule] = attrs.field(
        factory=_default_rules, converter=_to_rules
    )
    default_rule: ReauthRule = attrs.field(factory=ReauthRule)
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW

    def __attrs_post_init__(self) -> None:
        if self.clock_skew < timedelta(0):
            raise ValidationError.single(
                "clock_skew", "out_of_range", "clock_skew must not be negative"
            )

    def with_overrides(self, overrides: Mapping[SensitiveAction, ReauthRule]) -> ReauthPolicy:
        """Return a policy where the given actions use the given rules.

        Args:
            overrides: Rules by action (a :class:`SensitiveAction` or its string value).

        Returns:
            The new policy; this one is unchanged.

        Raises:
            ValidationError: ``action.unknown`` for a key that is not a sensitive action.
        """
        return attrs.evolve(self, rules={**self.rules, **_to_rules(overrides)})

    def rule_for(self, action: SensitiveAction) -> ReauthRule:
        """Return the rule that applies to ``action``.

        Raises:
            ValidationError: ``action.unknown``.
        """
        return self.rules.get(_to_action(action), self.default_rule)

    def valid_until(self, context: AuthContext, action: SensitiveAction) -> datetime:
        """Return when ``context`` stops being recent enough for ``action`` (for the UI)."""
        return context.authenticated_at + self.rule_for(action).max_age

    def require(
        self,
        context: AuthContext,
        action: SensitiveAction,
        *,
        user_id: str,
        now: datetime,
    ) -> None:
        """Allow ``action`` for ``user_id`` only after a recent enough, strong enough login.

        Refused when the context belongs to another user (a session of user A never
        authorises a change to user B: the remedy is the same, authenticate as the
        right user, and one error keeps callers from treating it as a softer case),
        when it is older than the rule's ``max_age``, when ``authenticated_at`` lies
        further in the future than ``clock_skew`` (a forged or broken context), or when
        its factors match none of the rule's factor sets.

        Args:
            context: The session's authentication facts.
            action: What is about to happen.
            user_id: The account the action changes.
            now: The current time (timezone-aware).

        Raises:
            ReauthenticationRequired: with the action's code, ``max_age`` and ``factors``.
            ValidationError: ``action.unknown``.
            ValueError: if ``now`` is naive.
        """
        action = _to_action(action)
        rule = self.rule_for(action)
        now = ensure_utc(now)
        age = now - context.authenticated_at
        if (
            context.user_id != user_id
            or age < -self.clock_skew
            or age > rule.max_age
            or not rule.accepts_factors(context.factors)
        ):
            raise ReauthenticationRequired(action.value, max_age=rule.max_age, factors=rule.factors)


DEFAULT_REAUTH_POLICY: Final = ReauthPolicy()
"""The default policy: every sensitive action needs an authentication within 10 minutes."""

"""Personal access tokens as domain objects: scopes, expiry rules, the token entity.

Everything here is pure: no storage, no clock (callers pass ``now``), no randomness.
The token *service* builds on these pieces.

Hosts answer every rejected token with the same message while logging the reason::

    try:
        principal = panel.tokens.authenticate(raw)
    except TokenError as exc:
        log_code, public = describe_rejection(exc)
        logger.info("token rejected", extra={"reason": log_code})
        return json_response({"error": public}, status=401)
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple, Self

import attrs

from enspace_profile._clock import ensure_utc
from enspace_profile.exceptions import (
    FieldError,
    InsufficientScopeError,
    TokenError,
    ValidationError,
)

__all__ = [
    "DEFAULT_EXPIRY_PRESETS",
    "DEFAULT_LAST_USED_INTERVAL",
    "DEFAULT_MAX_LIFETIME_DAYS",
    "DEFAULT_SCOPE_CATALOG",
    "MAX_DESCRIPTION_LENGTH",
    "MAX_NAME_LENGTH",
    "AccessToken",
    "CreatedToken",
    "ExpiryPolicy",
    "Principal",
    "Scope",
    "ScopeCatalog",
    "TokenCredential",
    "TokenStatus",
    "build_principal",
    "describe_rejection",
    "from_micros",
    "to_micros",
    "validate_token_description",
    "validate_token_name",
]

MAX_NAME_LENGTH: Final = 100
"""Most characters (code points, after NFC) in a token name."""

MAX_DESCRIPTION_LENGTH: Final = 500
"""Most characters (code points, after NFC) in a token description."""

DEFAULT_EXPIRY_PRESETS: Final = (7, 30, 60, 90)
"""Lifetimes, in days, offered in the Dev tab's expiry menu."""

DEFAULT_MAX_LIFETIME_DAYS: Final = 366
"""Longest lifetime a token may be given unless the host configures otherwise."""

DEFAULT_LAST_USED_INTERVAL: Final = timedelta(minutes=10)
"""Record "last used" at most this often per token, to spare the database a write per call."""

_SCOPE_NAME_RE: Final = re.compile(r"[a-z0-9_.:-]{1,64}\Z")
_DAYS_RE: Final = re.compile(r"([0-9]{1,5})d?\Z")
# Unicode categories refused in names: controls, format characters (bidi overrides,
# zero-width), lone surrogates, and line/paragraph separators.
_FORBIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


# --------------------------------------------------------------------------- scopes


def _validate_scope_name(_instance: object, _attribute: object, value: Any) -> None:
    if not isinstance(value, str) or _SCOPE_NAME_RE.match(value) is None:
        raise ValidationError.single(
            "scope",
            "invalid",
            "scope names are 1-64 characters from a-z, 0-9, '_', '.', ':', '-' (e.g. 'repo:read')",
            max_length=64,
        )


@attrs.frozen(kw_only=True)
class Scope:
    """One permission a token can carry, e.g. ``repo:read``.

    Attributes:
        name: 1-64 characters from ``[a-z0-9_.:-]``.
        description: Shown next to the checkbox in the Dev tab.

    Raises:
        ValidationError: on construction, if ``name`` is invalid (``scope.invalid``).
    """

    name: str = attrs.field(validator=_validate_scope_name)
    description: str = ""


def _to_frozenset(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


def _to_scope_tuple(value: Iterable[Scope]) -> tuple[Scope, ...]:
    return tuple(value)


def _validate_unique_scopes(
    _instance: object,
    _attribute: object,
    value: tuple[Scope, ...],
) -> None:
    names = [s.name for s in value]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValidationError.single(
            "scopes",
            "duplicate",
            f"scope names must be unique; repeated: {', '.join(duplicates)}",
            duplicates=duplicates,
        )


@attrs.frozen(kw_only=True)
class ScopeCatalog:
    """The scopes a host offers, in display order.

    Attributes:
        scopes: The scopes; names unique.
        require_scope: Whether a token needs at least one scope (default ``True``:
            a token that can do nothing is almost always a mistake).

    >>> catalog = ScopeCatalog(scopes=[Scope(name="repo:read"), Scope(name="repo:write")])
    >>> sorted(catalog.validate(["repo:read"]))
    ['repo:read']
    """

    scopes: tuple[Scope, ...] = attrs.field(
        converter=_to_scope_tuple,
        validator=_validate_unique_scopes,
    )
    require_scope: bool = True
    _names: frozenset[str] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_names", frozenset(s.name for s in self.scopes))

    @property
    def names(self) -> frozenset[str]:
        """Every scope name in the catalog."""
        return self._names

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[Scope]:
        return iter(self.scopes)

    def __len__(self) -> int:
        return len(self.scopes)

    def validate(self, scopes: Iterable[str], *, field: str = "scopes") -> frozenset[str]:
        """Return ``scopes`` as a frozenset if every one is in the catalog.

        Args:
            scopes: Scope names the user selected (duplicates are harmless).
            field: The field name used in errors.

        Returns:
            The selected scope names.

        Raises:
            ValidationError: ``<field>.invalid_type`` if ``scopes`` is a single string or
                holds non-strings; ``<field>.unknown`` listing **every** unknown name
                (param ``unknown``, sorted); ``<field>.required`` if empty while
                :attr:`require_scope` is set.
        """
        if isinstance(scopes, str | bytes):
            raise ValidationError.single(
                field,
                "invalid_type",
                "scopes must be a collection of scope names, not a single string",
            )
        try:
            selected = list(scopes)
        except TypeError:
            raise ValidationError.single(
                field, "invalid_type", "scopes must be a collection of scope names"
            ) from None
        if not all(isinstance(s, str) for s in selected):
            raise ValidationError.single(field, "invalid_type", "every scope must be a string")
        chosen = frozenset(selected)
        unknown = sorted(chosen - self._names)
        if unknown:
            raise ValidationError.single(
                field,
                "unknown",
                f"unknown scope(s): {', '.join(unknown)}",
                unknown=unknown,
            )
        if not chosen and self.require_scope:
            raise ValidationError.single(field, "required", "select at least one scope")
        return chosen


DEFAULT_SCOPE_CATALOG: Final = ScopeCatalog(
    scopes=[
        Scope(name="api:read", description="Read your data through the API"),
        Scope(name="api:write", description="Change your data through the API"),
    ]
)
"""The scopes offered when the host defines none: read and write access to its API."""


# --------------------------------------------------------------------------- expiry


def _validate_presets(
    _instance: object,
    _attribute: object,
    value: tuple[Any, ...],
) -> None:
    if not value or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in value):
        raise ValidationError.single(
            "presets", "invalid", "presets must be a non-empty list of positive day counts"
        )


def _to_int_tuple(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class ExpiryPolicy:
    """When tokens may expire: presets, custom dates, a maximum, optional "never".

    Attributes:
        presets: Lifetimes in days offered as a menu (default 7, 30, 60, 90).
        default_days: The preset selected by default in the form (default 30).
        allow_custom: Whether other day counts and custom dates are accepted (default ``True``).
        max_lifetime_days: Longest lifetime allowed (default 366).
        allow_no_expiry: Whether "no expiration" is offered (default ``False``: an expiry
            is required).

    Raises:
        ValidationError: on construction, if presets are not positive, a preset or the
            default exceeds the maximum, or the default is not a preset.

    >>> from datetime import UTC, datetime
    >>> now = datetime(2026, 1, 1, tzinfo=UTC)
    >>> ExpiryPolicy().resolve(30, now=now).isoformat()
    '2026-01-31T00:00:00+00:00'
    """

    presets: tuple[int, ...] = attrs.field(
        default=DEFAULT_EXPIRY_PRESETS,
        converter=_to_int_tuple,
        validator=_validate_presets,
    )
    default_days: int = 30
    allow_custom: bool = True
    max_lifetime_days: int = DEFAULT_MAX_LIFETIME_DAYS
    allow_no_expiry: bool = False

    def __attrs_post_init__(self) -> None:
        maximum: Any = self.max_lifetime_days  # checked at run time: hosts may pass anything
        errors: list[FieldError] = []
        if isinstance(maximum, bool) or not isinstance(maximum, int) or maximum < 1:
            errors.append(
                FieldError(
                    field="max_lifetime_days",
                    code="max_lifetime_days.invalid",
                    message="max_lifetime_days must be a positive number of days",
                )
            )
        elif max(self.presets) > maximum:
            errors.append(
                FieldError(
                    field="presets",
                    code="presets.beyond_maximum",
                    message=f"presets must not exceed max_lifetime_days ({maximum})",
                    params={"maximum_days": maximum},
                )
            )
        if self.default_days not in self.presets:
            errors.append(
                FieldError(
                    field="default_days",
                    code="default_days.not_a_preset",
                    message="default_days must be one of the presets",
                    params={"presets": list(self.presets)},
                )
            )
        if errors:
            raise ValidationError(errors)

    @property
    def expiry_required(self) -> bool:
        """Whether every token must have an expiry date."""
        return not self.allow_no_expiry

    @property
    def max_lifetime(self) -> timedelta:
        """:attr:`max_lifetime_days` as a timedelta."""
        return timedelta(days=self.max_lifetime_days)

    def latest_expiry(self, now: datetime) -> datetime:
        """Return the latest expiry allowed for a token created at ``now``."""
        return ensure_utc(now) + self.max_lifetime

    def resolve(
        self,
        expires: int | str | datetime | None,
        *,
        now: datetime,
        field: str = "expires_at",
    ) -> datetime | None:
        """Turn the form's expiry choice into an expiry time (or ``None`` for never).

        Args:
            expires: One of:

                * an ``int``: a lifetime in days; must be a preset unless
                  :attr:`allow_custom` is set;
                * a ``str``: ``"30d"`` or ``"30"`` (same as the int), or an ISO 8601
                  date-time **with** offset (same as a datetime);
                * an aware ``datetime``: a custom expiry (needs :attr:`allow_custom`);
                * ``None``: never expires (needs :attr:`allow_no_expiry`).
            now: The current time, aware (from the service's clock).
            field: The field name used in errors.

        Returns:
            The expiry time in UTC, or ``None`` if the token never expires.

        Raises:
            ValidationError: with code ``<field>.<problem>`` where problem is
                ``required`` (None but expiry required), ``invalid_type``, ``invalid``
                (unparseable string), ``not_a_preset`` (days not offered),
                ``custom_not_allowed``, ``naive`` (datetime without timezone),
                ``in_past`` (not after ``now``), or ``beyond_maximum`` (params
                ``maximum_days`` and ``latest``, the latest allowed time in ISO 8601).
        """
        try:
            current = ensure_utc(now)
        except ValueError:
            raise ValidationError.single(
                "now", "naive", "now must be a timezone-aware datetime"
            ) from None
        if expires is None:
            if self.allow_no_expiry:
                return None
            raise ValidationError.single(field, "required", "choose when the token expires")
        if isinstance(expires, str):
            expires = self._parse(expires, field=field)
        if isinstance(expires, bool):
            raise ValidationError.single(
                field, "invalid_type", "expiry must be a number of days or a date"
            )
        if isinstance(expires, int):
            return self._from_days(expires, now=current, field=field)
        if isinstance(expires, datetime):
            return self._from_datetime(expires, now=current, field=field)
        raise ValidationError.single(
            field, "invalid_type", "expiry must be a number of days or a date"
        )

    def _parse(self, text: str, *, field: str) -> int | datetime:
        stripped = text.strip()
        match = _DAYS_RE.match(stripped)
        if match is not None:
            return int(match.group(1))
        try:
            return datetime.fromisoformat(stripped)
        except ValueError:
            raise ValidationError.single(
                field,
                "invalid",
                "expiry must be a number of days (e.g. '30d') or an ISO 8601 date-time",
            ) from None

    def _from_days(self, days: int, *, now: datetime, field: str) -> datetime:
        if days not in self.presets:
            if not self.allow_custom:
                raise ValidationError.single(
                    field,
                    "not_a_preset",
                    f"choose one of {', '.join(map(str, self.presets))} days",
                    presets=list(self.presets),
                )
            if days < 1:
                raise ValidationError.single(
                    field, "in_past", "the expiry must be at least one day away"
                )
            if days > self.max_lifetime_days:
                raise self._beyond_maximum(now=now, field=field)
        return now + timedelta(days=days)

    def _from_datetime(self, when: datetime, *, now: datetime, field: str) -> datetime:
        if not self.allow_custom:
            raise ValidationError.single(
                field,
                "custom_not_allowed",
                f"choose one of {', '.join(map(str, self.presets))} days",
                presets=list(self.presets),
            )
        try:
            expiry = ensure_utc(when)
        except ValueError:
            raise ValidationError.single(
                field, "naive", "the expiry date needs a timezone (e.g. UTC)"
            ) from None
        except OverflowError:  # beyond year 9999 once converted to UTC
            raise self._beyond_maximum(now=now, field=field) from None
        if expiry <= now:
            raise ValidationError.single(field, "in_past", "the expiry must be in the future")
        if expiry > now + self.max_lifetime:
            raise self._beyond_maximum(now=now, field=field)
        return expiry

    def _beyond_maximum(self, *, now: datetime, field: str) -> ValidationError:
        latest = (now + self.max_lifetime).isoformat()
        return ValidationError.single(
            field,
            "beyond_maximum",
            f"tokens may live at most {self.max_lifetime_days} days (until {latest} at the latest)",
            maximum_days=self.max_lifetime_days,
            latest=latest,
        )


# --------------------------------------------------------------------------- entity


class TokenStatus(enum.StrEnum):
    """Where a token is in its life."""

    ACTIVE = "active"
    """Authenticates."""
    EXPIRED = "expired"
    """Its expiry time has passed."""
    REVOKED = "revoked"
    """Revoked by the user or an admin, or rotated away."""


@attrs.frozen(kw_only=True)
class AccessToken:
    """A personal access token as stored: everything except the token itself.

    Attributes:
        id: Stable identifier (a UUID string).
        user_id: Owner.
        name: Shown in the Dev tab (see :func:`validate_token_name`).
        description: Optional notes (see :func:`validate_token_description`).
        scopes: What the token may do.
        created_at: Creation time (aware UTC).
        expires_at: Expiry time, or ``None`` if it never expires.
        last_used_at: When it last authenticated a call (updated at most once per interval).
        last_used_ip: Client address of that call, if the host passed one.
        last_used_user_agent: User agent of that call, if the host passed one.
        revoked_at: When it stopped working (may be in the future during a rotation
            grace period), or ``None``.
        revoked_reason: Why (``"user"``, ``"rotated"``, ``"admin"``, ...), or ``None``.
        family_id: Shared by a token and all tokens rotated from it.
        rotated_to: Id of the token that replaced this one, or ``None``.
        pepper_id: The pepper :attr:`digest` was computed with.
        digest: HMAC-SHA256 of the token (left out of ``repr``).
        hint: Non-secret reminder, ``prefix + "…" + last 4 characters``.
    """

    id: str
    user_id: str
    name: str
    description: str = ""
    scopes: frozenset[str] = attrs.field(converter=_to_frozenset)
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = None
    last_used_ip: str | None = None
    last_used_user_agent: str | None = None
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    family_id: str
    rotated_to: str | None = None
    pepper_id: str
    digest: bytes = attrs.field(repr=False)
    hint: str

    @property
    def never_expires(self) -> bool:
        """Whether the token was created without an expiry (shown as a warning in the UI)."""
        return self.expires_at is None

    def status(self, now: datetime) -> TokenStatus:
        r"""Return the token's status at ``now``; revocation wins over expiry.

        >>> from datetime import UTC, datetime, timedelta
        >>> now = datetime(2026, 1, 1, tzinfo=UTC)
        >>> token = AccessToken(id="t1", user_id="u1", name="CI", scopes={"repo:read"},
        ...     created_at=now, expires_at=now + timedelta(days=7), family_id="t1",
        ...     pepper_id="p1", digest=b"\0" * 32, hint="esp_…abcd")
        >>> token.status(now).value, token.status(now + timedelta(days=7)).value
        ('active', 'expired')
        """
        if self.revoked_at is not None and now >= self.revoked_at:
            return TokenStatus.REVOKED
        if self.expires_at is not None and now >= self.expires_at:
            return TokenStatus.EXPIRED
        return TokenStatus.ACTIVE

    def is_active(self, now: datetime) -> bool:
        """Return whether the token authenticates at ``now``."""
        return self.status(now) is TokenStatus.ACTIVE

    def needs_last_used_update(
        self,
        now: datetime,
        interval: timedelta = DEFAULT_LAST_USED_INTERVAL,
    ) -> bool:
        """Return whether a use at ``now`` should be written (at most once per ``interval``)."""
        return self.last_used_at is None or now - self.last_used_at >= interval

    def record_use(
        self,
        now: datetime,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> AccessToken:
        """Return a copy with the "last used" fields set to this use."""
        return attrs.evolve(
            self,
            last_used_at=now,
            last_used_ip=ip,
            last_used_user_agent=user_agent,
        )

    def revoke(
        self,
        now: datetime,
        *,
        reason: str,
        rotated_to: str | None = None,
    ) -> AccessToken:
        """Return a copy revoked at ``now``; an already revoked token keeps its first revocation."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return self
        return attrs.evolve(
            self,
            revoked_at=now,
            revoked_reason=reason,
            rotated_to=rotated_to if rotated_to is not None else self.rotated_to,
        )


class _PrincipalFields(NamedTuple):
    user_id: str
    token_id: str
    scopes: frozenset[str]


class Principal(_PrincipalFields):
    """Who a verified token authenticates, and what it may do.

    A named tuple rather than an attrs class: one is built for every authenticated
    API request, and a tuple costs a quarter as much (storage adapters that already
    hold a ``frozenset`` use :func:`build_principal`). It is immutable, hashable and
    compares by value; the shared converter turns it into a dict.

    Attributes:
        user_id: The token's owner.
        token_id: The token used.
        scopes: The token's scopes (any iterable of names becomes a ``frozenset``).

    >>> Principal(user_id="u1", token_id="t1", scopes=["repo:read"]).has_scopes("repo:read")
    True
    """

    __slots__ = ()

    def __new__(cls, user_id: str, token_id: str, scopes: Iterable[str]) -> Self:
        return tuple.__new__(cls, (user_id, token_id, frozenset(scopes)))

    @classmethod
    def for_token(cls, token: AccessToken) -> Principal:
        """Return the principal a verified ``token`` authenticates."""
        return cls(user_id=token.user_id, token_id=token.id, scopes=token.scopes)

    def has_scopes(self, *required: str) -> bool:
        """Return whether the token has every scope in ``required`` (true if none are given)."""
        return self.scopes.issuperset(required)

    def require_scopes(self, *required: str) -> None:
        """Do nothing if the token has every scope in ``required``.

        Raises:
            InsufficientScopeError: listing every missing scope (``.missing``).
        """
        missing = set(required) - self.scopes
        if missing:
            raise InsufficientScopeError(missing)


def build_principal(user_id: str, token_id: str, scopes: frozenset[str]) -> Principal:
    """Return a :class:`Principal` without converting anything (for storage adapters).

    ``scopes`` must already be a ``frozenset``. Adapters on the hot path may inline
    this as ``tuple.__new__(Principal, (user_id, token_id, scopes))``.

    >>> build_principal("u1", "t1", frozenset({"a"})) == Principal("u1", "t1", {"a"})
    True
    """
    return tuple.__new__(Principal, (user_id, token_id, scopes))


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
# Below 2**32 seconds (year 2106) a float timestamp is within 0.24 µs of the exact
# value, so fromtimestamp() (which rounds to the nearest µs) is exact, and faster.
_FAST_LIMIT: Final = 2**32 * 1_000_000


def to_micros(when: datetime) -> int:
    """Return an aware datetime as integer microseconds since the Unix epoch, exactly.

    >>> to_micros(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC))
    1000005
    """
    return (when - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    """Return the aware UTC datetime that :func:`to_micros` turned into ``value``, exactly.

    >>> from_micros(1000005).isoformat()
    '1970-01-01T00:00:01.000005+00:00'
    """
    if -_FAST_LIMIT < value < _FAST_LIMIT:
        return datetime.fromtimestamp(value / 1_000_000, UTC)
    return _EPOCH + timedelta(microseconds=value)


def _opt_micros(when: datetime | None) -> int | None:
    return None if when is None else to_micros(when)


class TokenCredential(NamedTuple):
    """What authenticating a request needs to know about one stored token.

    Storage adapters return it from their by-digest lookup (``token_lookup``), the path
    every API call takes, so it is deliberately cheap: a named tuple costs a fraction
    of a frozen attrs instance, times are integer microseconds since the Unix epoch
    (:func:`to_micros`; SQLite stores them that way, so nothing is converted per call),
    and the memory adapter keeps one ready per token. It holds no secret; ``repr``
    leaves the digest out anyway.

    Attributes:
        principal: Who the token authenticates and what it may do.
        valid_until_us: The earlier of the expiry and the revocation time (``None``: the
            token neither expires nor was revoked). At or after it the token does not
            authenticate, and the service loads the full token to say why.
        last_used_us: When a use was last recorded (throttled; ``None``: never).
        pepper_id: The pepper the stored digest was computed with.
        digest: The stored digest, compared in constant time with the presented one.
    """

    principal: Principal
    valid_until_us: int | None
    last_used_us: int | None
    pepper_id: str
    digest: bytes

    @classmethod
    def for_token(cls, token: AccessToken) -> TokenCredential:
        """Return the credential of a stored ``token``."""
        expires, revoked = token.expires_at, token.revoked_at
        until = (
            expires if revoked is None else revoked if expires is None else min(expires, revoked)
        )
        return cls(
            Principal.for_token(token),
            _opt_micros(until),
            _opt_micros(token.last_used_at),
            token.pepper_id,
            token.digest,
        )

    def __repr__(self) -> str:
        return (
            f"TokenCredential(principal={self.principal!r}, "
            f"valid_until_us={self.valid_until_us!r}, last_used_us={self.last_used_us!r}, "
            f"pepper_id={self.pepper_id!r})"
        )


@attrs.frozen(kw_only=True, repr=False)
class CreatedToken:
    """A newly created token and its secret, which is shown to the user exactly once.

    Only the digest is stored; after this object is gone the secret cannot be recovered.
    ``repr()`` and ``str()`` never include the secret.

    Attributes:
        token: The stored entity.
        secret: The token itself, to display once (and never to log).
    """

    token: AccessToken
    secret: str

    def __repr__(self) -> str:
        return f"CreatedToken(token={self.token!r}, secret=<hidden>)"

    __str__ = __repr__


# --------------------------------------------------------------------------- names


def _clean_text(value: object, *, field: str, allow_newlines: bool) -> tuple[str, list[FieldError]]:
    if not isinstance(value, str):
        raise ValidationError.single(field, "invalid_type", f"{field} must be a string")
    text = unicodedata.normalize("NFC", value)
    if allow_newlines:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.strip()
    errors: list[FieldError] = []
    allowed = "\n\t" if allow_newlines else ""
    bad = sorted(
        {
            f"U+{ord(ch):04X}"
            for ch in text
            if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES and ch not in allowed
        }
    )
    if bad:
        errors.append(
            FieldError(
                field=field,
                code=f"{field}.invalid_characters",
                message=f"{field} must not contain control or invisible formatting characters",
                params={"characters": bad},
            )
        )
    return text, errors


def _check_length(text: str, *, field: str, limit: int, errors: list[FieldError]) -> None:
    if len(text) > limit:
        errors.append(
            FieldError(
                field=field,
                code=f"{field}.too_long",
                message=f"{field} must be at most {limit} characters",
                params={"limit": limit, "actual": len(text)},
            )
        )


def validate_token_name(value: object, *, field: str = "name") -> str:
    """Return ``value`` normalized (NFC) and trimmed, if it is a valid token name.

    Args:
        value: The name the user typed.
        field: The field name used in errors.

    Returns:
        The cleaned name, 1-100 characters.

    Raises:
        ValidationError: with every problem found: ``<field>.invalid_type``,
            ``<field>.required`` (empty after trimming), ``<field>.too_long`` (params
            ``limit``, ``actual``), ``<field>.invalid_characters`` (control or format
            characters; param ``characters`` lists their code points).

    >>> validate_token_name("  Deploy bot ")
    'Deploy bot'
    """
    text, errors = _clean_text(value, field=field, allow_newlines=False)
    if not text:
        errors.append(
            FieldError(field=field, code=f"{field}.required", message=f"{field} is required")
        )
    _check_length(text, field=field, limit=MAX_NAME_LENGTH, errors=errors)
    if errors:
        raise ValidationError(errors)
    return text


def validate_token_description(value: object, *, field: str = "description") -> str:
    r"""Return ``value`` normalized (NFC) and trimmed, if it is a valid token description.

    Line breaks (normalized to ``\n``) and tabs are allowed; ``None`` means empty.

    Raises:
        ValidationError: ``<field>.invalid_type``, ``<field>.too_long`` (over 500
            characters; params ``limit``, ``actual``), ``<field>.invalid_characters``.
    """
    if value is None:
        return ""
    text, errors = _clean_text(value, field=field, allow_newlines=True)
    _check_length(text, field=field, limit=MAX_DESCRIPTION_LENGTH, errors=errors)
    if errors:
        raise ValidationError(errors)
    return text


# --------------------------------------------------------------------------- errors


def describe_rejection(exc: TokenError) -> tuple[str, str]:
    """Return ``(code, public_message)`` for a rejected token.

    Log the precise ``code`` (``"token.expired"``, ``"token.bad_checksum"``, ...); send
    only ``public_message`` (always ``"invalid token"``) to the client, so a caller
    cannot tell a revoked token from a made-up one.

    >>> from enspace_profile.exceptions import ExpiredTokenError
    >>> describe_rejection(ExpiredTokenError("token t1 expired"))
    ('token.expired', 'invalid token')
    """
    return exc.code, TokenError.public_message

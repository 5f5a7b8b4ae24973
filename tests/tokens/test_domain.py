from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import TypeVar

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enspace_profile._clock import FixedClock
from enspace_profile._random import SeededRandom
from enspace_profile._tokens.domain import (
    DEFAULT_SCOPE_CATALOG,
    AccessToken,
    CreatedToken,
    ExpiryPolicy,
    Principal,
    Scope,
    ScopeCatalog,
    TokenCredential,
    TokenStatus,
    build_principal,
    describe_rejection,
    from_micros,
    to_micros,
    validate_token_description,
    validate_token_name,
)
from enspace_profile._tokens.format import DEFAULT_TOKEN_FORMAT
from enspace_profile.exceptions import (
    ExpiredTokenError,
    InsufficientScopeError,
    MalformedTokenError,
    RevokedTokenError,
    TokenChecksumError,
    UnknownTokenError,
    ValidationError,
)

T = TypeVar("T")

CLOCK = FixedClock(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
NOW = CLOCK.now()
SECRET = DEFAULT_TOKEN_FORMAT.generate(SeededRandom(5))

CATALOG = ScopeCatalog(
    scopes=[
        Scope(name="repo:read", description="Read repositories"),
        Scope(name="repo:write", description="Push to repositories"),
        Scope(name="user.email", description="Read your email address"),
    ]
)


def make_token(**changes: object) -> AccessToken:
    token = AccessToken(
        id="tok-1",
        user_id="user-1",
        name="CI",
        scopes={"repo:read"},
        created_at=NOW,
        expires_at=NOW + timedelta(days=30),
        family_id="tok-1",
        pepper_id="2026",
        digest=b"\x07" * 32,
        hint=DEFAULT_TOKEN_FORMAT.hint(SECRET),
    )
    return attrs.evolve(token, **changes)


def outcome(
    function: Callable[..., T], *args: object, **kwargs: object
) -> tuple[T | None, tuple[str, ...]]:
    try:
        return function(*args, **kwargs), ()
    except ValidationError as exc:
        return None, exc.codes


def codes(info: pytest.ExceptionInfo[ValidationError]) -> tuple[str, ...]:
    return info.value.codes


class TestScope:
    @pytest.mark.parametrize("name", ["repo:read", "a", "user.email", "admin:org_hook", "x-y", "9"])
    def test_valid_names(self, name):
        """Lowercase names made of [a-z0-9_.:-] are accepted."""
        assert Scope(name=name).name == name

    @pytest.mark.parametrize(
        "name", ["", "Repo:read", "repo read", "répo", "repo/read", "a" * 65, 1]
    )
    def test_invalid_names(self, name):
        """Uppercase, spaces, other punctuation, non-ASCII and over-long names are refused."""
        with pytest.raises(ValidationError) as info:
            Scope(name=name)
        assert codes(info) == ("scope.invalid",)


class TestScopeCatalog:
    def test_validate_returns_a_frozenset(self):
        """Known scopes come back as a frozenset; duplicates collapse."""
        assert CATALOG.validate(["repo:read", "repo:write", "repo:read"]) == frozenset(
            {"repo:read", "repo:write"}
        )

    def test_unknown_scopes_are_all_listed(self):
        """Every unknown scope is named in one error, sorted."""
        with pytest.raises(ValidationError) as info:
            CATALOG.validate(["repo:read", "zeta", "admin", "zeta"])
        assert codes(info) == ("scopes.unknown",)
        assert info.value.errors[0].params["unknown"] == ["admin", "zeta"]
        assert "admin" in str(info.value)
        assert "zeta" in str(info.value)

    def test_field_name_is_configurable(self):
        """Errors use the caller's field name."""
        with pytest.raises(ValidationError) as info:
            CATALOG.validate(["nope"], field="token.scopes")
        assert codes(info) == ("token.scopes.unknown",)

    def test_at_least_one_scope_by_default(self):
        """An empty selection is refused unless the host allows it."""
        with pytest.raises(ValidationError) as info:
            CATALOG.validate([])
        assert codes(info) == ("scopes.required",)
        relaxed = attrs.evolve(CATALOG, require_scope=False)
        assert relaxed.validate([]) == frozenset()

    @pytest.mark.parametrize("scopes", ["repo:read", b"repo:read", [1], ["repo:read", None], 5])
    def test_wrong_types_are_refused(self, scopes):
        """A bare string, bytes, non-iterables and non-string members are refused."""
        with pytest.raises(ValidationError) as info:
            CATALOG.validate(scopes)
        assert codes(info) == ("scopes.invalid_type",)

    def test_duplicate_names_in_catalog_are_refused(self):
        """A catalog cannot define the same scope twice."""
        with pytest.raises(ValidationError) as info:
            ScopeCatalog(scopes=[Scope(name="a"), Scope(name="a")])
        assert codes(info) == ("scopes.duplicate",)

    def test_collection_behaviour(self):
        """The catalog iterates in display order and answers membership."""
        assert [s.name for s in CATALOG] == ["repo:read", "repo:write", "user.email"]
        assert len(CATALOG) == 3
        assert "repo:read" in CATALOG
        assert "nope" not in CATALOG
        assert CATALOG.names == {"repo:read", "repo:write", "user.email"}

    @given(names=st.lists(st.text(max_size=12), max_size=6))
    @settings(max_examples=200)
    def test_validate_accepts_exactly_known_non_empty_sets(self, names):
        """validate returns the set iff it is non-empty and all names are known, else refuses it."""
        try:
            result = CATALOG.validate(names)
        except ValidationError:
            assert not names or not set(names) <= CATALOG.names
        else:
            assert result == set(names)
            assert result
            assert result <= CATALOG.names


class TestExpiryPolicy:
    @pytest.mark.parametrize(
        ("expires", "expected"),
        [
            (7, NOW + timedelta(days=7)),
            (30, NOW + timedelta(days=30)),
            (60, NOW + timedelta(days=60)),
            (90, NOW + timedelta(days=90)),
            ("30d", NOW + timedelta(days=30)),
            ("90", NOW + timedelta(days=90)),
            (" 7d ", NOW + timedelta(days=7)),
            (45, NOW + timedelta(days=45)),
            (366, NOW + timedelta(days=366)),
            (datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)),
            (
                datetime(2026, 6, 1, 9, tzinfo=timezone(timedelta(hours=2))),
                datetime(2026, 6, 1, 7, tzinfo=UTC),
            ),
            ("2026-06-01T00:00:00Z", datetime(2026, 6, 1, tzinfo=UTC)),
            ("2026-06-01T02:00:00+02:00", datetime(2026, 6, 1, tzinfo=UTC)),
            (NOW + timedelta(days=366), NOW + timedelta(days=366)),
        ],
    )
    def test_accepted_choices(self, expires, expected):
        """Presets, custom day counts, 'Nd' strings and aware dates resolve to a UTC expiry."""
        result = ExpiryPolicy().resolve(expires, now=CLOCK.now())
        assert result == expected
        assert result is not None
        assert result.utcoffset() == timedelta(0)

    @pytest.mark.parametrize(
        ("expires", "code"),
        [
            (None, "expires_at.required"),
            (True, "expires_at.invalid_type"),
            (3.5, "expires_at.invalid_type"),
            (["7"], "expires_at.invalid_type"),
            ("soon", "expires_at.invalid"),
            ("", "expires_at.invalid"),
            ("7 days", "expires_at.invalid"),
            (0, "expires_at.in_past"),
            (-7, "expires_at.in_past"),
            (367, "expires_at.beyond_maximum"),
            ("10000d", "expires_at.beyond_maximum"),
            (10**30, "expires_at.beyond_maximum"),
            (datetime(2026, 6, 1), "expires_at.naive"),  # noqa: DTZ001 - the point of the test
            ("2026-06-01", "expires_at.naive"),
            (NOW, "expires_at.in_past"),
            (NOW - timedelta(seconds=1), "expires_at.in_past"),
            (NOW + timedelta(days=366, seconds=1), "expires_at.beyond_maximum"),
            (
                datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),
                "expires_at.beyond_maximum",
            ),
        ],
    )
    def test_refused_choices(self, expires, code):
        """Missing, mistyped, past, naive and too-distant expiries are refused precisely."""
        with pytest.raises(ValidationError) as info:
            ExpiryPolicy().resolve(expires, now=NOW)
        assert codes(info) == (code,)

    def test_beyond_maximum_tells_the_limit(self):
        """The error for a too-distant date carries the maximum days and the latest allowed date."""
        with pytest.raises(ValidationError) as info:
            ExpiryPolicy().resolve(NOW + timedelta(days=400), now=NOW)
        error = info.value.errors[0]
        assert error.params == {
            "maximum_days": 366,
            "latest": (NOW + timedelta(days=366)).isoformat(),
        }
        assert "366 days" in error.message

    def test_no_expiry_only_when_allowed(self):
        """None means 'never expires' only when the host allows it."""
        policy = ExpiryPolicy(allow_no_expiry=True)
        assert policy.resolve(None, now=NOW) is None
        assert not policy.expiry_required
        assert ExpiryPolicy().expiry_required

    @pytest.mark.parametrize(
        ("expires", "code"),
        [
            (45, "expires_at.not_a_preset"),
            ("45d", "expires_at.not_a_preset"),
            (datetime(2026, 2, 1, tzinfo=UTC), "expires_at.custom_not_allowed"),
        ],
    )
    def test_presets_only(self, expires, code):
        """Without custom expiries, only preset day counts are accepted."""
        policy = ExpiryPolicy(allow_custom=False)
        assert policy.resolve(30, now=NOW) == NOW + timedelta(days=30)
        with pytest.raises(ValidationError) as info:
            policy.resolve(expires, now=NOW)
        assert codes(info) == (code,)
        assert info.value.errors[0].params["presets"] == [7, 30, 60, 90]

    def test_custom_maximum(self):
        """A host can shorten the maximum lifetime."""
        policy = ExpiryPolicy(presets=[7, 30], default_days=7, max_lifetime_days=30)
        assert policy.latest_expiry(NOW) == NOW + timedelta(days=30)
        with pytest.raises(ValidationError) as info:
            policy.resolve(31, now=NOW)
        assert codes(info) == ("expires_at.beyond_maximum",)

    def test_naive_now_is_refused(self):
        """The current time must be aware."""
        with pytest.raises(ValidationError) as info:
            ExpiryPolicy().resolve(30, now=datetime(2026, 1, 1))  # noqa: DTZ001
        assert codes(info) == ("now.naive",)

    def test_field_name_is_configurable(self):
        """Errors use the caller's field name."""
        with pytest.raises(ValidationError) as info:
            ExpiryPolicy().resolve(None, now=NOW, field="expiry")
        assert codes(info) == ("expiry.required",)

    @pytest.mark.parametrize(
        ("options", "expected_codes"),
        [
            ({"presets": []}, ("presets.invalid",)),
            ({"presets": [0, 30]}, ("presets.invalid",)),
            ({"presets": [7, 30, 400]}, ("presets.beyond_maximum",)),
            ({"max_lifetime_days": 0}, ("max_lifetime_days.invalid",)),
            ({"default_days": 14}, ("default_days.not_a_preset",)),
            (
                {"max_lifetime_days": 60, "default_days": 14},
                ("presets.beyond_maximum", "default_days.not_a_preset"),
            ),
        ],
    )
    def test_inconsistent_configuration_is_refused(self, options, expected_codes):
        """A policy whose presets, default and maximum disagree cannot be built."""
        with pytest.raises(ValidationError) as info:
            ExpiryPolicy(**options)
        assert codes(info) == expected_codes

    @given(
        expires=st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=40),
            st.datetimes(timezones=st.just(UTC)),
            st.datetimes(),
            st.booleans(),
        )
    )
    @settings(max_examples=200)
    def test_resolve_result_is_within_bounds_or_refused(self, expires):
        """Any input resolves to a time after now and within the maximum, or is refused."""
        policy = ExpiryPolicy()
        result, error_codes = outcome(policy.resolve, expires, now=NOW)
        if error_codes:
            assert all(code.startswith("expires_at.") for code in error_codes)
        else:
            assert result is not None
            assert NOW < result <= NOW + timedelta(days=366)


class TestAccessToken:
    def test_active_until_expiry(self):
        """A token is active before its expiry and expired from the expiry instant on."""
        token = make_token()
        clock = FixedClock(NOW)
        assert token.status(clock.now()) is TokenStatus.ACTIVE
        clock.advance(days=30, seconds=-1)
        assert token.status(clock.now()) is TokenStatus.ACTIVE
        assert token.is_active(clock.now())
        clock.advance(seconds=1)
        assert token.status(clock.now()) is TokenStatus.EXPIRED
        assert not token.is_active(clock.now())

    def test_never_expiring_token(self):
        """A token without expiry is flagged and stays active."""
        token = make_token(expires_at=None)
        assert token.never_expires
        assert not make_token().never_expires
        assert token.status(NOW + timedelta(days=10_000)) is TokenStatus.ACTIVE

    def test_revocation_wins_over_expiry(self):
        """A revoked token reports revoked, even after it would have expired."""
        token = make_token().revoke(NOW + timedelta(days=1), reason="user")
        assert token.status(NOW + timedelta(days=1)) is TokenStatus.REVOKED
        assert token.status(NOW + timedelta(days=60)) is TokenStatus.REVOKED
        assert token.revoked_reason == "user"

    def test_scheduled_revocation_for_rotation_grace(self):
        """A revocation time in the future keeps the token active until then."""
        token = make_token(
            revoked_at=NOW + timedelta(hours=1), revoked_reason="rotated", rotated_to="tok-2"
        )
        assert token.status(NOW) is TokenStatus.ACTIVE
        assert token.status(NOW + timedelta(hours=1)) is TokenStatus.REVOKED

    def test_revoke_keeps_the_first_revocation(self):
        """Revoking an already revoked token changes nothing."""
        first = make_token().revoke(NOW, reason="user")
        again = first.revoke(NOW + timedelta(days=1), reason="admin")
        assert again == first

    def test_revoke_records_the_successor(self):
        """Rotation revokes the old token and points it at its successor."""
        token = make_token().revoke(NOW, reason="rotated", rotated_to="tok-2")
        assert token.rotated_to == "tok-2"
        assert token.revoked_at == NOW

    def test_status_values(self):
        """Statuses serialize as lowercase strings."""
        assert [s.value for s in TokenStatus] == ["active", "expired", "revoked"]
        assert TokenStatus.ACTIVE == "active"

    @pytest.mark.parametrize(
        ("last_used", "now", "expected"),
        [
            (None, NOW, True),
            (NOW, NOW, False),
            (NOW, NOW + timedelta(minutes=9, seconds=59), False),
            (NOW, NOW + timedelta(minutes=10), True),
            (NOW, NOW + timedelta(days=3), True),
        ],
    )
    def test_last_used_is_written_at_most_once_per_interval(self, last_used, now, expected):
        """Last-used is written only if unset or older than the interval (default 10 minutes)."""
        token = make_token(last_used_at=last_used)
        assert token.needs_last_used_update(now) is expected

    def test_custom_last_used_interval(self):
        """The interval is configurable."""
        token = make_token(last_used_at=NOW)
        assert token.needs_last_used_update(NOW + timedelta(minutes=1), timedelta(seconds=30))

    def test_record_use(self):
        """record_use sets time, address and user agent of the latest use."""
        used = make_token().record_use(NOW, ip="203.0.113.9", user_agent="curl/8")
        assert (used.last_used_at, used.last_used_ip, used.last_used_user_agent) == (
            NOW,
            "203.0.113.9",
            "curl/8",
        )
        assert not used.needs_last_used_update(NOW + timedelta(minutes=5))

    def test_scopes_become_a_frozenset(self):
        """Scopes given as any iterable are stored as a frozenset."""
        assert make_token(scopes=["a", "b", "a"]).scopes == frozenset({"a", "b"})

    def test_repr_leaves_out_the_digest_and_has_no_secret(self):
        """The entity's repr shows the hint but not the digest, and never the token."""
        text = repr(make_token())
        assert "\\x07" not in text
        assert "digest" not in text
        assert SECRET not in text
        assert SECRET[4:-4] not in text
        assert SECRET[-4:] in text


class TestPrincipal:
    PRINCIPAL = Principal(user_id="user-1", token_id="tok-1", scopes={"repo:read", "user.email"})

    @pytest.mark.parametrize(
        ("required", "expected"),
        [
            ((), True),
            (("repo:read",), True),
            (("repo:read", "user.email"), True),
            (("repo:write",), False),
            (("repo:read", "repo:write"), False),
        ],
    )
    def test_has_scopes(self, required, expected):
        """has_scopes is true only if every required scope is present."""
        assert self.PRINCIPAL.has_scopes(*required) is expected

    def test_require_scopes_lists_every_missing_scope(self):
        """require_scopes raises InsufficientScopeError naming all missing scopes."""
        self.PRINCIPAL.require_scopes("repo:read")
        with pytest.raises(InsufficientScopeError) as info:
            self.PRINCIPAL.require_scopes("repo:read", "repo:write", "admin")
        assert info.value.missing == ("admin", "repo:write")
        assert isinstance(info.value, PermissionError)

    def test_for_token(self):
        """A principal is built from a verified token."""
        principal = Principal.for_token(make_token())
        assert principal == Principal(user_id="user-1", token_id="tok-1", scopes={"repo:read"})

    def test_scopes_from_any_iterable_and_immutable(self):
        """Scopes given as a list become a frozenset; a principal cannot be changed."""
        principal = Principal(user_id="u", token_id="t", scopes=["b", "a", "a"])
        assert principal.scopes == frozenset({"a", "b"})
        with pytest.raises(AttributeError):
            principal.user_id = "other"  # type: ignore[misc]

    def test_pickles_and_hashes(self):
        """Principals survive pickling (e.g. into a task queue) and can be dict keys."""
        import pickle

        assert pickle.loads(pickle.dumps(self.PRINCIPAL)) == self.PRINCIPAL
        assert {self.PRINCIPAL: 1}[self.PRINCIPAL] == 1

    def test_fast_builder_equals_the_constructor(self):
        """build_principal makes the same immutable principal as the constructor."""
        built = build_principal("user-1", "tok-1", frozenset({"repo:read", "user.email"}))
        assert built == self.PRINCIPAL
        assert type(built) is Principal
        assert hash(built) == hash(self.PRINCIPAL)
        assert repr(built) == repr(self.PRINCIPAL)
        with pytest.raises(AttributeError):
            built.user_id = "other"  # type: ignore[misc]

    def test_serialises_to_json_ready_data(self):
        """The shared converter turns a principal into a dict with sorted scopes."""
        from enspace_profile import converter

        data = converter.unstructure(self.PRINCIPAL)
        assert data == {
            "user_id": "user-1",
            "token_id": "tok-1",
            "scopes": ["repo:read", "user.email"],
        }
        assert converter.structure(data, Principal) == self.PRINCIPAL


class TestTokenCredential:
    @pytest.mark.parametrize(
        ("expires", "revoked", "expected"),
        [
            (NOW + timedelta(days=1), None, NOW + timedelta(days=1)),
            (None, NOW, NOW),
            (NOW + timedelta(days=1), NOW, NOW),
            (NOW, NOW + timedelta(days=1), NOW),
            (None, None, None),
        ],
    )
    def test_valid_until_is_the_earlier_of_expiry_and_revocation(self, expires, revoked, expected):
        """valid_until_us is the first moment the token stops working, in microseconds."""
        credential = TokenCredential.for_token(
            make_token(expires_at=expires, revoked_at=revoked, last_used_at=NOW)
        )
        assert credential.valid_until_us == (None if expected is None else to_micros(expected))
        assert credential.last_used_us == to_micros(NOW)
        assert credential.principal == Principal.for_token(make_token())

    def test_repr_leaves_out_the_digest(self):
        """The credential's repr has no digest bytes."""
        credential = TokenCredential.for_token(make_token(digest=b"\x07" * 32))
        assert "\\x07" not in repr(credential)
        assert "digest" not in repr(credential)


class TestMicroseconds:
    @given(when=st.datetimes(timezones=st.just(UTC)))
    @settings(max_examples=200)
    def test_round_trip_is_exact(self, when):
        """Any aware datetime survives the trip through integer microseconds unchanged."""
        assert from_micros(to_micros(when)) == when

    def test_other_offsets_become_utc(self):
        """A datetime with another offset maps to the same instant, returned in UTC."""
        when = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
        back = from_micros(to_micros(when))
        assert back == when
        assert back.tzinfo is UTC


class TestDefaultScopes:
    def test_read_and_write(self):
        """The default catalog offers API read and write access."""
        assert DEFAULT_SCOPE_CATALOG.names == {"api:read", "api:write"}


class TestCreatedToken:
    def test_secret_is_available_once_created(self):
        """The created token carries the secret for the one-time display."""
        created = CreatedToken(token=make_token(), secret=SECRET)
        assert created.secret == SECRET

    @pytest.mark.parametrize("render", [repr, str, format, ascii])
    def test_never_renders_the_secret(self, render):
        """No string rendering of a created token contains any part of the secret."""
        text = render(CreatedToken(token=make_token(), secret=SECRET))
        assert SECRET not in text
        assert SECRET[4:-4] not in text
        assert "hidden" in text
        assert "tok-1" in text

    def test_inside_containers(self):
        """The secret stays hidden when the object is printed inside a list or dict."""
        created = CreatedToken(token=make_token(), secret=SECRET)
        assert SECRET not in repr([created])
        assert SECRET not in str({"created": created})


class TestTokenName:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("CI", "CI"),
            ("  Deploy bot  ", "Deploy bot"),
            ("Cafe\u0301", "Café"),
            ("x" * 100, "x" * 100),
            ("日本語のトークン", "日本語のトークン"),
            ("emoji 🚀", "emoji 🚀"),
        ],
    )
    def test_valid_names(self, value, expected):
        """Names are NFC-normalized, trimmed, and kept otherwise."""
        assert validate_token_name(value) == expected

    @pytest.mark.parametrize(
        ("value", "expected_codes"),
        [
            ("", ("name.required",)),
            ("   \t ", ("name.required",)),
            ("x" * 101, ("name.too_long",)),
            ("bad\nname", ("name.invalid_characters",)),
            ("bell\x07", ("name.invalid_characters",)),
            ("rtl\u202eexe.txt", ("name.invalid_characters",)),
            ("zero\u200bwidth", ("name.invalid_characters",)),
            ("line\u2028sep", ("name.invalid_characters",)),
            ("\x00" + "x" * 100, ("name.invalid_characters", "name.too_long")),
            (None, ("name.invalid_type",)),
            (42, ("name.invalid_type",)),
        ],
    )
    def test_invalid_names(self, value, expected_codes):
        """Empty, too long, control/format characters and non-strings are refused, all at once."""
        with pytest.raises(ValidationError) as info:
            validate_token_name(value)
        assert codes(info) == expected_codes

    def test_too_long_reports_limit_and_actual(self):
        """The too-long error carries the limit and the actual length."""
        with pytest.raises(ValidationError) as info:
            validate_token_name("y" * 120)
        assert info.value.errors[0].params == {"limit": 100, "actual": 120}

    def test_field_name_is_configurable(self):
        """Errors use the caller's field name."""
        with pytest.raises(ValidationError) as info:
            validate_token_name("", field="token_name")
        assert codes(info) == ("token_name.required",)

    @given(value=st.text(max_size=130))
    @settings(max_examples=200)
    def test_result_is_clean_or_refused(self, value):
        """Any string either yields a trimmed NFC name of 1-100 characters or a ValidationError."""
        import unicodedata

        name, error_codes = outcome(validate_token_name, value)
        if error_codes:
            assert all(code.startswith("name.") for code in error_codes)
        else:
            assert 1 <= len(name) <= 100
            assert name == name.strip()
            assert unicodedata.is_normalized("NFC", name)
            assert all(unicodedata.category(c) not in {"Cc", "Cf"} for c in name)


class TestTokenDescription:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (None, ""),
            ("", ""),
            ("  Used by the\r\nnightly build\t ", "Used by the\nnightly build"),
            ("x" * 500, "x" * 500),
        ],
    )
    def test_valid_descriptions(self, value, expected):
        """Descriptions may be empty or multi-line; they are trimmed with newlines normalized."""
        assert validate_token_description(value) == expected

    @pytest.mark.parametrize(
        ("value", "expected_codes"),
        [
            ("x" * 501, ("description.too_long",)),
            ("a\x1bb", ("description.invalid_characters",)),
            (b"bytes", ("description.invalid_type",)),
        ],
    )
    def test_invalid_descriptions(self, value, expected_codes):
        """Over 500 characters, controls other than newline/tab, and non-strings are refused."""
        with pytest.raises(ValidationError) as info:
            validate_token_description(value)
        assert codes(info) == expected_codes


class TestDescribeRejection:
    @pytest.mark.parametrize(
        ("exc", "code"),
        [
            (MalformedTokenError("x"), "token.malformed"),
            (TokenChecksumError("x"), "token.bad_checksum"),
            (UnknownTokenError("x"), "token.unknown"),
            (ExpiredTokenError("x", token_id="t1"), "token.expired"),
            (RevokedTokenError("x", token_id="t1"), "token.revoked"),
        ],
    )
    def test_precise_code_uniform_message(self, exc, code):
        """Every token rejection gives its precise code for logs and the same public message."""
        assert describe_rejection(exc) == (code, "invalid token")

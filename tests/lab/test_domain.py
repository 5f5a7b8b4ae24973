from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enspace_profile._clock import FixedClock
from enspace_profile._lab.domain import (
    ROLLOUT_BUCKETS,
    Audience,
    AudienceKind,
    ErrorCollector,
    FeatureState,
    LabFeature,
    LabRegistry,
    OptIn,
    Reason,
    Stage,
    Terms,
    check_opt_in,
    check_opt_out,
    dependants_of,
    evaluate,
    rollout_bucket,
    validate_https_url,
    validate_slug,
    validate_user_id,
)
from enspace_profile._random import SeededRandom, new_id
from enspace_profile.exceptions import (
    AlreadyExistsError,
    NotFoundError,
    PolicyError,
    ValidationError,
)

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
USER = "user-1"
SLUG_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


def feature(key: str, **kwargs) -> LabFeature:
    return LabFeature(key=key, title=kwargs.pop("title", key.title()), **kwargs)


def opt(key: str, enabled: bool = True, *, user: str = USER, terms: str | None = None) -> OptIn:
    return OptIn(user_id=user, key=key, enabled=enabled, at=START, terms_version_accepted=terms)


def choices(*opt_ins: OptIn) -> dict[str, OptIn]:
    return {o.key: o for o in opt_ins}


def users(count: int, seed: int = 7) -> list[str]:
    rng = SeededRandom(seed)
    return [new_id(rng) for _ in range(count)]


class TestValidateSlug:
    @pytest.mark.parametrize(
        "value", ["ab", "dark-mode", "new_editor.v2", "a" * 64, "0day", "x.y_z-1"]
    )
    def test_accepts_slugs(self, value: str) -> None:
        """Lowercase letters, digits, '.', '_' and '-' from 2 to 64 characters are keys."""
        assert validate_slug(value) == value

    @pytest.mark.parametrize(
        ("value", "code"),
        [
            ("", "key.too_short"),
            ("a", "key.too_short"),
            ("a" * 65, "key.too_long"),
            ("Dark-Mode", "key.invalid"),
            ("dark mode", "key.invalid"),
            ("-dark", "key.invalid"),
            (".hidden", "key.invalid"),
            ("dark/mode", "key.invalid"),
            ("café", "key.invalid"),
            ("dark\n", "key.invalid"),
            (None, "key.invalid_type"),
            (42, "key.invalid_type"),
        ],
    )
    def test_refuses_non_slugs(self, value: object, code: str) -> None:
        """Anything else is refused with a precise code, never normalised."""
        with pytest.raises(ValidationError) as info:
            validate_slug(value)
        assert info.value.codes == (code,)

    def test_uses_the_given_field_name(self) -> None:
        """The field name in the error is the caller's."""
        with pytest.raises(ValidationError) as info:
            validate_slug("X", field="depends_on")
        assert info.value.fields == ("depends_on",)

    @settings(max_examples=200)
    @given(st.text(max_size=80))
    def test_arbitrary_text_is_accepted_exactly_when_it_is_a_slug(self, value: str) -> None:
        """Arbitrary text either passes unchanged (and is a slug) or raises ValidationError."""
        try:
            result = validate_slug(value)
        except ValidationError:
            assert SLUG_RE.fullmatch(value) is None
        else:
            assert result == value
            assert SLUG_RE.fullmatch(value) is not None

    @given(st.from_regex(SLUG_RE, fullmatch=True))
    def test_every_slug_passes(self, value: str) -> None:
        """Every string matching the documented grammar is accepted."""
        assert validate_slug(value) == value


class TestValidateHttpsUrl:
    @pytest.mark.parametrize(
        "value",
        [
            "https://example.com",
            "https://example.com/lab/feedback?feature=new-editor&x=%20#top",
            "https://docs.example.co.uk:8443/path",
            "HTTPS://Example.COM/",
            "https://[2001:db8::1]/x",
            "https://192.0.2.1/",
        ],
    )
    def test_accepts_https_urls(self, value: str) -> None:
        """Absolute https URLs with a host are accepted unchanged."""
        assert validate_https_url(value, field="docs_url") == value

    @pytest.mark.parametrize(
        ("value", "code"),
        [
            ("http://example.com", "docs_url.not_https"),
            ("javascript:alert(1)", "docs_url.not_https"),
            ("ftp://example.com", "docs_url.not_https"),
            ("//example.com/path", "docs_url.not_https"),
            ("example.com", "docs_url.not_https"),
            ("https://user:pw@example.com/", "docs_url.credentials"),
            ("https://user@example.com/", "docs_url.credentials"),
            ("https://exa mple.com", "docs_url.invalid_characters"),
            ("https://example.com/\n", "docs_url.invalid_characters"),
            (" https://example.com", "docs_url.invalid_characters"),
            ("https://example.com\\@evil.com", "docs_url.invalid_characters"),
            ("https://exämple.com", "docs_url.invalid_characters"),
            ("https://example.com/%zz", "docs_url.invalid_characters"),
            ("https://", "docs_url.invalid"),
            ("https:///path", "docs_url.invalid"),
            ("https://-bad-.com", "docs_url.invalid"),
            ("https://under_score.com", "docs_url.invalid"),
            ("https://example.com:99999/", "docs_url.invalid"),
            ("https://example.com:port/", "docs_url.invalid"),
            ("https://[not-ipv6]/", "docs_url.invalid"),
            ("https://[v1.fe]/", "docs_url.invalid"),
            ("https://" + "a" * 2048, "docs_url.too_long"),
            (None, "docs_url.invalid_type"),
            (b"https://example.com", "docs_url.invalid_type"),
        ],
    )
    def test_refuses_unsafe_urls(self, value: object, code: str) -> None:
        """Other schemes, credentials, whitespace, bad hosts and ports are refused."""
        with pytest.raises(ValidationError) as info:
            validate_https_url(value, field="docs_url")
        assert info.value.codes == (code,)

    @pytest.mark.parametrize(
        "value", ["http://localhost:8000/cb", "http://127.0.0.1/cb", "http://[::1]:9/cb"]
    )
    def test_loopback_http_only_when_allowed(self, value: str) -> None:
        """Plain http is accepted for loopback hosts only when the caller allows it."""
        assert validate_https_url(value, field="u", allow_loopback_http=True) == value
        with pytest.raises(ValidationError):
            validate_https_url(value, field="u")

    def test_loopback_exception_does_not_cover_other_hosts(self) -> None:
        """Allowing loopback http does not allow http to any other host."""
        with pytest.raises(ValidationError) as info:
            validate_https_url("http://example.com/", field="u", allow_loopback_http=True)
        assert info.value.codes == ("u.not_https",)

    def test_fragment_refused_when_asked(self) -> None:
        """A #fragment can be refused (OAuth endpoints and redirect URIs must not have one)."""
        with pytest.raises(ValidationError) as info:
            validate_https_url("https://example.com/cb#x", field="u", allow_fragment=False)
        assert info.value.codes == ("u.fragment",)

    @settings(max_examples=200)
    @given(st.one_of(st.text(max_size=100), st.text(max_size=60).map("https://".__add__)))
    def test_arbitrary_text_raises_only_validation_error(self, value: str) -> None:
        """Arbitrary text either passes unchanged as an https URL or raises ValidationError."""
        codes: tuple[str, ...] = ()
        try:
            result = validate_https_url(value, field="u")
        except ValidationError as error:
            codes = error.codes
        if codes:
            assert all(code.startswith("u.") for code in codes)
        else:
            assert result == value
            assert value.lower().startswith("https://")
            assert value.isascii()
            assert not any(c.isspace() for c in value)

    @given(
        st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9]{1,20}){0,3}", fullmatch=True),
        st.from_regex(r"(/[A-Za-z0-9._~-]{0,10}){0,4}", fullmatch=True),
    )
    def test_generated_https_urls_pass(self, host: str, path: str) -> None:
        """Well-formed https URLs built from valid hosts and paths are accepted."""
        url = f"https://{host}{path}"
        assert validate_https_url(url, field="u") == url


class TestValidateUserId:
    @pytest.mark.parametrize(
        ("value", "code"),
        [
            ("", "user_id.invalid"),
            ("   ", "user_id.invalid"),
            ("a\x00", "user_id.invalid"),
            (None, "user_id.invalid"),
            ("u" * 256, "user_id.too_long"),
        ],
    )
    def test_refuses_unusable_ids(self, value: object, code: str) -> None:
        """User ids are opaque but must be non-empty printable text of bounded length."""
        with pytest.raises(ValidationError) as info:
            validate_user_id(value)
        assert info.value.codes == (code,)


class TestErrorCollector:
    def test_collects_every_error_into_one_exception(self) -> None:
        """Several failing validators produce one ValidationError with all their errors."""
        errors = ErrorCollector()
        errors.capture(validate_slug, "X", field="key")
        errors.add("title", "required", "must not be empty")
        with pytest.raises(ValidationError) as info:
            errors.raise_if_any()
        assert info.value.codes == ("key.too_short", "title.required")

    def test_raises_nothing_when_empty(self) -> None:
        """With nothing collected, raise_if_any is a no-op and capture returns the value."""
        errors = ErrorCollector()
        assert errors.capture(validate_slug, "ok") == "ok"
        errors.raise_if_any()


class TestRolloutBucket:
    def test_is_sha256_of_key_and_user(self) -> None:
        """The bucket is the first 8 bytes of sha256("key:user"), big-endian, mod 10 000."""
        digest = hashlib.sha256(b"new-editor:user-42").digest()
        expected = int.from_bytes(digest[:8], "big") % 10_000
        assert rollout_bucket("new-editor", "user-42") == expected

    @given(st.from_regex(SLUG_RE, fullmatch=True), st.text(min_size=1, max_size=40))
    def test_is_stable_and_in_range(self, key: str, user_id: str) -> None:
        """The same key and user always give the same bucket, within range(10 000)."""
        bucket = rollout_bucket(key, user_id)
        assert bucket == rollout_bucket(key, user_id)
        assert 0 <= bucket < ROLLOUT_BUCKETS

    def test_differs_between_features(self) -> None:
        """Buckets are independent per feature: the same users are not always first."""
        ids = users(200)
        first = [rollout_bucket("feature-a", u) for u in ids]
        second = [rollout_bucket("feature-b", u) for u in ids]
        assert first != second


class TestAudience:
    def test_everyone_includes_every_user(self) -> None:
        """The default audience is everyone."""
        audience = Audience.everyone()
        assert audience.kind is AudienceKind.EVERYONE
        assert all(audience.includes("k1", u) for u in users(50))

    def test_allow_list_includes_only_listed_users(self) -> None:
        """An allow-list includes exactly the listed users."""
        audience = Audience.allow_list(["ana", "bruno"])
        assert audience.includes("k1", "ana")
        assert not audience.includes("k1", "carla")

    def test_single_user_id_string_is_one_user(self) -> None:
        """Passing a bare string lists that one user, not its characters."""
        assert Audience(kind=AudienceKind.ALLOW_LIST, user_ids="ana").user_ids == {"ana"}

    @pytest.mark.parametrize(("percent", "expected"), [(0, False), (100, True)])
    def test_rollout_extremes(self, percent: float, expected: bool) -> None:
        """A 0 % rollout includes nobody and a 100 % rollout includes everybody."""
        audience = Audience.rollout(percent)
        assert {audience.includes("k1", u) for u in users(300)} == {expected}

    @pytest.mark.parametrize("percent", [-0.01, 100.01, float("nan"), float("inf"), True, "50"])
    def test_rollout_percent_must_be_0_to_100(self, percent: object) -> None:
        """A percentage outside 0..100 (or not a number) is refused."""
        with pytest.raises(ValidationError) as info:
            Audience.rollout(percent)  # type: ignore[arg-type]
        assert info.value.codes == ("percent.out_of_range",)

    def test_non_iterable_user_ids_are_a_validation_error(self) -> None:
        """A non-iterable allow-list raises ValidationError, not TypeError."""
        with pytest.raises(ValidationError) as info:
            Audience.allow_list(5)  # type: ignore[arg-type]
        assert info.value.codes == ("user_ids.invalid_type",)

    def test_user_ids_only_for_allow_lists(self) -> None:
        """Listing users on a rollout or everyone audience is a mistake and is refused."""
        with pytest.raises(ValidationError) as info:
            Audience(kind=AudienceKind.ROLLOUT, percent=5, user_ids={"ana"})
        assert info.value.codes == ("user_ids.not_allowed",)

    def test_kind_accepts_its_string_value(self) -> None:
        """The kind may be given as its string value (as read from JSON)."""
        assert Audience(kind="rollout", percent=5).kind is AudienceKind.ROLLOUT  # type: ignore[arg-type]

    def test_rollout_uses_the_bucket_threshold(self) -> None:
        """A user is in a p % rollout exactly when their bucket is below p * 100."""
        for user_id in users(200):
            bucket = rollout_bucket("k1", user_id)
            assert Audience.rollout(12.5).includes("k1", user_id) is (bucket < 1250)

    @settings(max_examples=100)
    @given(
        st.from_regex(SLUG_RE, fullmatch=True),
        st.text(min_size=1, max_size=30),
        st.floats(0, 100),
    )
    def test_rollout_is_stable(self, key: str, user_id: str, percent: float) -> None:
        """The same user and feature get the same answer every time."""
        audience = Audience.rollout(percent)
        assert audience.includes(key, user_id) == Audience.rollout(percent).includes(key, user_id)

    @settings(max_examples=100)
    @given(
        st.from_regex(SLUG_RE, fullmatch=True),
        st.text(min_size=1, max_size=30),
        st.floats(0, 100),
        st.floats(0, 100),
    )
    def test_rollout_is_monotonic(self, key: str, user_id: str, p: float, q: float) -> None:
        """Raising the percentage only adds users: everyone in q % is in p % when q < p."""
        low, high = sorted((p, q))
        if Audience.rollout(low).includes(key, user_id):
            assert Audience.rollout(high).includes(key, user_id)

    def test_rollout_share_is_close_to_the_percentage(self) -> None:
        """Over 20 000 users, a 30 % rollout includes 30 % of them, within 1.5 points."""
        ids = [f"user-{i}" for i in range(20_000)]
        share = sum(Audience.rollout(30).includes("new-editor", u) for u in ids) / len(ids)
        assert 0.285 < share < 0.315

    @settings(max_examples=20, deadline=None)
    @given(st.from_regex(SLUG_RE, fullmatch=True), st.integers(1, 99))
    def test_rollout_share_holds_for_any_feature(self, key: str, percent: int) -> None:
        """For any key and percentage, the included share of 4 000 users is within 5 points."""
        ids = [f"u{i}" for i in range(4_000)]
        share = sum(Audience.rollout(percent).includes(key, u) for u in ids) / len(ids)
        assert abs(share - percent / 100) < 0.05


class TestTerms:
    def test_needs_a_url_or_a_text(self) -> None:
        """Terms with neither a url nor a text cannot be shown, so they are refused."""
        with pytest.raises(ValidationError) as info:
            Terms(version="1")
        assert info.value.codes == ("url.required",)

    def test_collects_every_problem(self) -> None:
        """A blank version and a non-https url are reported together."""
        with pytest.raises(ValidationError) as info:
            Terms(version=" ", url="http://example.com/terms")
        assert info.value.codes == ("version.required", "url.not_https")

    def test_text_may_span_lines(self) -> None:
        """Terms text may contain newlines."""
        assert Terms(version="2026-01", text="Line one.\nLine two.").text == "Line one.\nLine two."


class TestLabFeature:
    def test_defaults(self) -> None:
        """A feature needs only a key and a title; it is an experiment off by default."""
        f = LabFeature(key="new-editor", title="New editor")
        assert (f.stage, f.default_on, f.depends_on, f.audience) == (
            Stage.EXPERIMENT,
            False,
            (),
            Audience.everyone(),
        )

    def test_reports_every_problem_at_once(self) -> None:
        """All invalid fields are reported in one ValidationError."""
        with pytest.raises(ValidationError) as info:
            LabFeature(
                key="Bad Key",
                title="",
                stage="gamma",  # type: ignore[arg-type]
                feedback_url="http://example.com",
                docs_url="https://u:p@example.com",
                starts_at=datetime(2026, 1, 1),  # noqa: DTZ001 - naive on purpose
            )
        assert info.value.codes == (
            "key.invalid",
            "title.required",
            "stage.invalid",
            "feedback_url.not_https",
            "docs_url.credentials",
            "starts_at.naive",
        )

    def test_stage_accepts_its_string_value(self) -> None:
        """The stage may be given as its string value."""
        assert feature("ab", stage="beta").stage is Stage.BETA

    def test_datetimes_are_stored_in_utc(self) -> None:
        """Aware datetimes in any zone are converted to UTC."""
        plus2 = timezone(timedelta(hours=2))
        f = feature("ab", starts_at=datetime(2026, 1, 1, 12, tzinfo=plus2))
        assert f.starts_at == datetime(2026, 1, 1, 10, tzinfo=UTC)
        assert f.starts_at.tzinfo is UTC

    def test_window_must_not_be_empty(self) -> None:
        """ends_at must be later than starts_at."""
        with pytest.raises(ValidationError) as info:
            feature("ab", starts_at=START, ends_at=START)
        assert info.value.codes == ("ends_at.before_start",)

    def test_cannot_depend_on_itself(self) -> None:
        """A self-dependency is refused."""
        with pytest.raises(ValidationError) as info:
            feature("ab", depends_on=("ab",))
        assert info.value.codes == ("depends_on.self",)

    def test_dependencies_are_keys(self) -> None:
        """Each dependency must be a valid key."""
        with pytest.raises(ValidationError) as info:
            feature("ab", depends_on=("ok", "Not OK"))
        assert info.value.codes == ("depends_on.invalid",)

    def test_single_dependency_string_is_one_key(self) -> None:
        """A bare string names one dependency, and repeats collapse."""
        assert feature("ab", depends_on="cd").depends_on == ("cd",)
        assert feature("ab", depends_on=["cd", "ef", "cd"]).depends_on == ("cd", "ef")

    def test_non_iterable_dependencies_are_a_validation_error(self) -> None:
        """A non-iterable depends_on raises ValidationError, not TypeError."""
        with pytest.raises(ValidationError) as info:
            feature("ab", depends_on=5)
        assert info.value.codes == ("depends_on.invalid_type",)

    def test_flags_must_be_booleans(self) -> None:
        """default_on, kill_switch and graduated must be real booleans."""
        with pytest.raises(ValidationError) as info:
            feature("ab", default_on="yes", kill_switch=1)
        assert info.value.codes == ("default_on.invalid_type", "kill_switch.invalid_type")

    def test_is_immutable(self) -> None:
        """Features are frozen values."""
        f = feature("ab")
        with pytest.raises(AttributeError):
            f.title = "x"  # type: ignore[misc]


class TestOptIn:
    def test_validates_fields(self) -> None:
        """A choice needs a user id, a key and an aware time."""
        with pytest.raises(ValidationError) as info:
            OptIn(user_id="", key="X", enabled=True, at=datetime(2026, 1, 1))  # noqa: DTZ001
        assert info.value.codes == ("user_id.invalid", "key.too_short", "at.naive")


class TestLabRegistry:
    def test_register_and_get(self) -> None:
        """A registered feature can be read back by key."""
        registry = LabRegistry()
        f = feature("ab")
        registry.register(f)
        assert registry.get("ab") is f
        assert "ab" in registry
        assert len(registry) == 1

    def test_unknown_key_is_not_found(self) -> None:
        """Reading an unknown key raises NotFoundError instead of reading as "off"."""
        with pytest.raises(NotFoundError) as info:
            LabRegistry().get("new-edtior")
        assert (info.value.kind, info.value.key, info.value.code) == (
            "lab_feature",
            "new-edtior",
            "lab_feature.not_found",
        )

    def test_duplicate_key_already_exists(self) -> None:
        """Registering a key twice raises AlreadyExistsError."""
        registry = LabRegistry.of([feature("ab")])
        with pytest.raises(AlreadyExistsError) as info:
            registry.register(feature("ab", title="Other"))
        assert info.value.code == "lab_feature.already_exists"

    def test_unknown_dependency_is_refused(self) -> None:
        """A dependency on an unregistered feature is a ValidationError naming it."""
        registry = LabRegistry()
        with pytest.raises(ValidationError) as info:
            registry.register(feature("ab", depends_on=("cd",)))
        assert info.value.codes == ("depends_on.unknown",)
        assert info.value.errors[0].params == {"feature": "ab", "missing": ("cd",)}
        assert len(registry) == 0

    def test_register_all_accepts_any_order(self) -> None:
        """register_all resolves dependencies within the batch regardless of order."""
        registry = LabRegistry.of([feature("cd", depends_on=("ab",)), feature("ab")])
        assert registry.snapshot.order == ("ab", "cd")

    def test_cycles_are_refused(self) -> None:
        """A dependency cycle is a ValidationError that names the cycle; nothing is added."""
        registry = LabRegistry()
        with pytest.raises(ValidationError) as info:
            registry.register_all(
                [
                    feature("aa", depends_on=("bb",)),
                    feature("bb", depends_on=("cc",)),
                    feature("cc", depends_on=("aa",)),
                ],
            )
        assert info.value.codes == ("depends_on.cycle",)
        assert info.value.errors[0].params["cycle"] == ("aa", "bb", "cc", "aa")
        assert (len(registry), registry.revision) == (0, 0)

    def test_update_cannot_introduce_a_cycle(self) -> None:
        """Updating a feature into a cycle is refused and leaves the registry unchanged."""
        registry = LabRegistry.of([feature("aa"), feature("bb", depends_on=("aa",))])
        revision = registry.revision
        with pytest.raises(ValidationError) as info:
            registry.update(feature("aa", depends_on=("bb",)))
        assert info.value.codes == ("depends_on.cycle",)
        assert registry.revision == revision
        assert registry.get("aa").depends_on == ()

    def test_update_unknown_is_not_found(self) -> None:
        """Updating a feature that was never registered raises NotFoundError."""
        with pytest.raises(NotFoundError):
            LabRegistry().update(feature("ab"))

    def test_revision_increases_on_every_change(self) -> None:
        """Each registration and update bumps the revision; reads do not."""
        registry = LabRegistry()
        seen = [registry.revision]
        registry.register(feature("ab"))
        seen.append(registry.revision)
        registry.set_kill_switch("ab", on=True)
        seen.append(registry.revision)
        registry.set_rollout("ab", 10)
        seen.append(registry.revision)
        registry.set_graduated("ab")
        seen.append(registry.revision)
        registry.get("ab")
        list(registry)
        seen.append(registry.revision)
        assert seen == [0, 1, 2, 3, 4, 4]

    def test_failed_change_keeps_revision(self) -> None:
        """A refused change does not bump the revision."""
        registry = LabRegistry.of([feature("ab")])
        with pytest.raises(AlreadyExistsError):
            registry.register(feature("ab"))
        assert registry.revision == 1

    def test_host_updates_return_the_new_feature(self) -> None:
        """Kill switch, graduation and rollout updates return the updated feature."""
        registry = LabRegistry.of([feature("ab")])
        assert registry.set_kill_switch("ab", on=True).kill_switch
        assert not registry.set_kill_switch("ab", on=False).kill_switch
        assert registry.set_rollout("ab", 25).audience == Audience.rollout(25)
        assert registry.set_audience("ab", Audience.allow_list(["x"])).audience.user_ids == {"x"}
        assert registry.set_graduated("ab").graduated
        assert registry.get("ab").graduated

    def test_updating_unknown_key_is_not_found(self) -> None:
        """Host updates on an unknown key raise NotFoundError."""
        with pytest.raises(NotFoundError):
            LabRegistry().set_kill_switch("ab", on=True)

    def test_graduated_features_depend_only_on_graduated(self) -> None:
        """Graduating a feature whose dependency is still in the lab is refused."""
        registry = LabRegistry.of([feature("aa"), feature("bb", depends_on=("aa",))])
        with pytest.raises(ValidationError) as info:
            registry.set_graduated("bb")
        assert info.value.codes == ("depends_on.not_graduated",)
        registry.set_graduated("aa")
        assert registry.set_graduated("bb").graduated

    def test_remove(self) -> None:
        """A feature nobody depends on can be removed; one with dependants cannot."""
        registry = LabRegistry.of([feature("aa"), feature("bb", depends_on=("aa",))])
        with pytest.raises(ValidationError) as info:
            registry.remove("aa")
        assert info.value.codes == ("key.has_dependants",)
        registry.remove("bb")
        registry.remove("aa")
        assert len(registry) == 0
        with pytest.raises(NotFoundError):
            registry.remove("aa")

    def test_iterates_in_registration_order(self) -> None:
        """Iteration yields features in the order they were registered."""
        registry = LabRegistry.of([feature("zz"), feature("aa"), feature("mm")])
        assert [f.key for f in registry] == ["zz", "aa", "mm"]

    def test_order_puts_dependencies_first_and_keeps_registration_order(self) -> None:
        """The evaluation order respects dependencies and otherwise registration order."""
        registry = LabRegistry.of(
            [
                feature("f1"),
                feature("f2", depends_on=("f4",)),
                feature("f3", depends_on=("f2",)),
                feature("f4"),
            ],
        )
        assert registry.snapshot.order == ("f1", "f4", "f2", "f3")

    def test_snapshot_is_unaffected_by_later_changes(self) -> None:
        """A snapshot taken before an update keeps showing the old revision."""
        registry = LabRegistry.of([feature("ab")])
        before = registry.snapshot
        registry.set_kill_switch("ab", on=True)
        assert not before.features["ab"].kill_switch
        assert before.revision + 1 == registry.revision

    def test_next_change_after(self) -> None:
        """The registry tells when the next window starts or ends (for cache expiry)."""
        registry = LabRegistry.of(
            [
                feature("aa", starts_at=START + timedelta(hours=1)),
                feature("bb", ends_at=START + timedelta(hours=3)),
                feature("cc", ends_at=START + timedelta(hours=2), kill_switch=True),
            ],
        )
        assert registry.next_change_after(START) == START + timedelta(hours=1)
        assert registry.next_change_after(START + timedelta(hours=1)) == START + timedelta(hours=3)
        assert registry.next_change_after(START + timedelta(hours=3)) is None
        snapshot = registry.snapshot
        assert snapshot.next_change_after(START) == registry.next_change_after(START)

    def test_evaluate_reads_an_earlier_snapshot(self) -> None:
        """Evaluating a snapshot answers for that revision, not the registry's current one."""
        registry = LabRegistry.of([feature("ab", default_on=True)])
        before = registry.snapshot
        registry.set_kill_switch("ab", on=True)
        assert evaluate(before, USER, {}, START)["ab"].enabled is True
        assert evaluate(registry, USER, {}, START)["ab"].enabled is False

    def test_repr_names_keys_and_revision(self) -> None:
        """The repr shows the revision and the keys."""
        assert repr(LabRegistry.of([feature("ab")])) == "LabRegistry(revision=1, features=['ab'])"


def state_of(
    registry: LabRegistry,
    key: str,
    opt_ins: Mapping[str, OptIn] | None = None,
    *,
    now: datetime = START,
    user: str = USER,
) -> FeatureState:
    return evaluate(registry, user, opt_ins or {}, now)[key]


class TestEvaluate:
    @pytest.mark.parametrize(
        ("kwargs", "opt_ins", "enabled", "visible", "reason"),
        [
            ({}, {}, False, True, Reason.DISABLED_BY_DEFAULT),
            ({"default_on": True}, {}, True, True, Reason.ENABLED_BY_DEFAULT),
            ({}, {"ab": True}, True, True, Reason.ENABLED_BY_USER),
            ({"default_on": True}, {"ab": False}, False, True, Reason.DISABLED_BY_USER),
            ({"kill_switch": True}, {"ab": True}, False, False, Reason.KILLED),
            ({"kill_switch": True, "graduated": True}, {}, False, False, Reason.KILLED),
            ({"graduated": True}, {"ab": False}, True, False, Reason.GRADUATED),
            (
                {"graduated": True, "audience": Audience.allow_list([])},
                {},
                True,
                False,
                Reason.GRADUATED,
            ),
            (
                {"audience": Audience.allow_list(["other"])},
                {"ab": True},
                False,
                False,
                Reason.NOT_ELIGIBLE,
            ),
            (
                {"audience": Audience.allow_list([USER])},
                {"ab": True},
                True,
                True,
                Reason.ENABLED_BY_USER,
            ),
            ({"audience": Audience.rollout(0)}, {"ab": True}, False, False, Reason.NOT_ELIGIBLE),
            ({"audience": Audience.rollout(100)}, {"ab": True}, True, True, Reason.ENABLED_BY_USER),
            (
                {"starts_at": START + timedelta(seconds=1)},
                {"ab": True},
                False,
                False,
                Reason.NOT_STARTED,
            ),
            ({"starts_at": START}, {"ab": True}, True, True, Reason.ENABLED_BY_USER),
            ({"ends_at": START}, {"ab": True}, False, False, Reason.ENDED),
            (
                {"ends_at": START + timedelta(seconds=1)},
                {"ab": True},
                True,
                True,
                Reason.ENABLED_BY_USER,
            ),
        ],
    )
    def test_rules(
        self,
        kwargs: dict[str, object],
        opt_ins: dict[str, bool],
        enabled: bool,
        visible: bool,
        reason: Reason,
    ) -> None:
        """Each rule decides on, visible and reason as documented."""
        registry = LabRegistry.of([feature("ab", **kwargs)])
        state = state_of(registry, "ab", choices(*(opt(k, v) for k, v in opt_ins.items())))
        assert (state.enabled, state.visible, state.reason) == (enabled, visible, reason)

    def test_state_records_the_users_choice(self) -> None:
        """The state carries the user's explicit choice, or None without one."""
        registry = LabRegistry.of([feature("ab"), feature("cd")])
        states = evaluate(registry, USER, choices(opt("ab", enabled=False)), START)
        assert (states["ab"].choice, states["cd"].choice) == (False, None)

    def test_window_follows_the_clock(self, clock: FixedClock) -> None:
        """A feature turns on at starts_at and off at ends_at."""
        registry = LabRegistry.of(
            [
                feature(
                    "ab",
                    starts_at=START + timedelta(days=1),
                    ends_at=START + timedelta(days=2),
                    default_on=True,
                )
            ],
        )
        reasons = []
        for _ in range(3):
            reasons.append(state_of(registry, "ab", now=clock.now()).reason)
            clock.advance(days=1)
        assert reasons == [Reason.NOT_STARTED, Reason.ENABLED_BY_DEFAULT, Reason.ENDED]

    def test_kill_switch_applies_immediately(self) -> None:
        """Turning the kill switch on turns the feature off for users who opted in."""
        registry = LabRegistry.of([feature("ab")])
        opted = choices(opt("ab"))
        assert state_of(registry, "ab", opted).enabled
        registry.set_kill_switch("ab", on=True)
        assert state_of(registry, "ab", opted).reason is Reason.KILLED

    def test_terms_must_be_accepted(self) -> None:
        """Opting in without accepting the current terms leaves the feature off."""
        registry = LabRegistry.of([feature("ab", terms=Terms(version="2", text="Be nice."))])
        assert state_of(registry, "ab", choices(opt("ab"))).reason is Reason.NEEDS_TERMS
        assert state_of(registry, "ab", choices(opt("ab", terms="1"))).reason is Reason.NEEDS_TERMS
        assert state_of(registry, "ab", choices(opt("ab", terms="2"))).enabled

    def test_terms_apply_to_default_on_features(self) -> None:
        """A default-on feature with terms waits for the user to accept them."""
        registry = LabRegistry.of(
            [feature("ab", default_on=True, terms=Terms(version="1", text="T"))]
        )
        state = state_of(registry, "ab")
        assert (state.enabled, state.visible, state.reason) == (False, True, Reason.NEEDS_TERMS)

    def test_new_terms_version_turns_feature_off_until_accepted(self) -> None:
        """Publishing new terms turns the feature off for users who accepted older terms."""
        registry = LabRegistry.of([feature("ab", terms=Terms(version="1", text="T"))])
        opted = choices(opt("ab", terms="1"))
        assert state_of(registry, "ab", opted).enabled
        registry.update(feature("ab", terms=Terms(version="2", text="T2")))
        assert state_of(registry, "ab", opted).reason is Reason.NEEDS_TERMS

    def test_dependency_off_turns_dependants_off_transitively(self) -> None:
        """If a dependency is off, its dependants and their dependants are off too."""
        registry = LabRegistry.of(
            [feature("aa"), feature("bb", depends_on=("aa",)), feature("cc", depends_on=("bb",))],
        )
        states = evaluate(registry, USER, choices(opt("bb"), opt("cc")), START)
        assert states["bb"].reason is Reason.DEPENDS_ON
        assert states["bb"].blocked_by == ("aa",)
        assert states["cc"].reason is Reason.DEPENDS_ON
        assert states["cc"].blocked_by == ("bb",)
        assert not states["cc"].enabled

    def test_dependants_resume_when_dependency_is_on(self) -> None:
        """Once the dependency is on, the dependants follow their own choices again."""
        registry = LabRegistry.of(
            [feature("aa"), feature("bb", depends_on=("aa",)), feature("cc", depends_on=("bb",))],
        )
        states = evaluate(registry, USER, choices(opt("aa"), opt("bb"), opt("cc")), START)
        assert all(s.reason is Reason.ENABLED_BY_USER for s in states.values())

    def test_blocked_by_lists_every_dependency_that_is_off(self) -> None:
        """blocked_by names all the dependencies that are off, in declaration order."""
        registry = LabRegistry.of(
            [
                feature("aa"),
                feature("bb"),
                feature("cc"),
                feature("dd", depends_on=("aa", "bb", "cc")),
            ],
        )
        state = state_of(registry, "dd", choices(opt("bb"), opt("dd")))
        assert state.blocked_by == ("aa", "cc")

    def test_dependency_the_user_can_turn_on_keeps_dependant_visible(self) -> None:
        """A feature blocked by a dependency the user can enable stays in the Lab list."""
        registry = LabRegistry.of([feature("aa"), feature("bb", depends_on=("aa",))])
        assert state_of(registry, "bb").visible

    def test_dependency_the_user_cannot_have_hides_dependant(self) -> None:
        """A feature blocked by a dependency out of the user's reach is hidden."""
        registry = LabRegistry.of(
            [
                feature("aa", audience=Audience.allow_list(["other"])),
                feature("bb", depends_on=("aa",)),
            ],
        )
        state = state_of(registry, "bb", choices(opt("bb")))
        assert (state.enabled, state.visible, state.reason) == (False, False, Reason.DEPENDS_ON)

    def test_killed_dependency_turns_off_graduated_dependant(self) -> None:
        """Even a graduated feature goes off when its (graduated) dependency is killed."""
        registry = LabRegistry.of(
            [
                feature("aa", graduated=True, kill_switch=True),
                feature("bb", depends_on=("aa",), graduated=True),
            ],
        )
        state = state_of(registry, "bb")
        assert (state.enabled, state.visible, state.reason) == (False, False, Reason.DEPENDS_ON)

    def test_graduated_dependency_counts_as_on(self) -> None:
        """A graduated dependency is on, so its dependants are not blocked."""
        registry = LabRegistry.of([feature("aa", graduated=True), feature("bb", depends_on="aa")])
        assert state_of(registry, "bb", choices(opt("bb"))).enabled

    def test_rollout_audience_is_per_user(self) -> None:
        """Users in a 50 % rollout see the feature; the others do not, consistently."""
        registry = LabRegistry.of([feature("ab", audience=Audience.rollout(50), default_on=True)])
        for user_id in users(100):
            expected = rollout_bucket("ab", user_id) < 5000
            state = state_of(registry, "ab", user=user_id)
            assert (state.enabled, state.visible) == (expected, expected)

    def test_rollout_change_takes_effect(self) -> None:
        """Raising a rollout to 100 % offers the feature to users who were outside it."""
        registry = LabRegistry.of([feature("ab", audience=Audience.rollout(0), default_on=True)])
        assert state_of(registry, "ab").reason is Reason.NOT_ELIGIBLE
        registry.set_rollout("ab", 100)
        assert state_of(registry, "ab").reason is Reason.ENABLED_BY_DEFAULT

    def test_every_feature_is_present_in_dependency_order(self) -> None:
        """The result has one state per registered feature, dependencies first."""
        registry = LabRegistry.of([feature("bb", depends_on=("aa",)), feature("aa")])
        assert list(evaluate(registry, USER, {}, START)) == ["aa", "bb"]

    def test_choices_for_unknown_keys_are_ignored(self) -> None:
        """A stored choice for a feature the host removed does not break evaluation."""
        registry = LabRegistry.of([feature("ab")])
        assert set(evaluate(registry, USER, choices(opt("gone")), START)) == {"ab"}

    def test_result_is_read_only(self) -> None:
        """The returned mapping cannot be modified (it may be cached and shared)."""
        states = evaluate(LabRegistry.of([feature("ab")]), USER, {}, START)
        with pytest.raises(TypeError):
            states["ab"] = states["ab"]  # type: ignore[index]

    def test_choice_of_another_user_is_refused(self) -> None:
        """Passing another user's choices is a programming error, reported clearly."""
        registry = LabRegistry.of([feature("ab")])
        with pytest.raises(ValidationError) as info:
            evaluate(registry, USER, choices(opt("ab", user="someone-else")), START)
        assert info.value.codes == ("choices.wrong_user",)

    def test_naive_now_is_refused(self) -> None:
        """A naive 'now' raises ValidationError instead of a TypeError on comparison."""
        with pytest.raises(ValidationError) as info:
            evaluate(LabRegistry(), USER, {}, datetime(2026, 1, 1))  # noqa: DTZ001
        assert info.value.codes == ("now.naive",)


class TestCheckOptIn:
    def test_returns_the_choice_to_store(self) -> None:
        """Opting into an available feature returns an enabled OptIn stamped with now."""
        registry = LabRegistry.of([feature("ab")])
        choice = check_opt_in(registry, USER, "ab", {}, START)
        assert choice == OptIn(user_id=USER, key="ab", enabled=True, at=START)

    def test_accepting_current_terms(self) -> None:
        """Accepting the current terms version records it in the choice."""
        registry = LabRegistry.of(
            [feature("ab", terms=Terms(version="3", url="https://t.example/3"))]
        )
        choice = check_opt_in(registry, USER, "ab", {}, START, accept_terms_version="3")
        assert choice.terms_version_accepted == "3"
        assert state_of(registry, "ab", choices(choice)).enabled

    def test_previously_accepted_terms_are_kept(self) -> None:
        """Terms accepted earlier (still current) need not be accepted again."""
        registry = LabRegistry.of([feature("ab", terms=Terms(version="3", text="T"))])
        previous = opt("ab", enabled=False, terms="3")
        choice = check_opt_in(registry, USER, "ab", choices(previous), START)
        assert choice.terms_version_accepted == "3"

    @pytest.mark.parametrize("accepted", [None, "2"])
    def test_needs_current_terms(self, accepted: str | None) -> None:
        """Without accepting the current version, opting in is refused with that version."""
        registry = LabRegistry.of(
            [feature("ab", terms=Terms(version="3", url="https://t.example/3"))]
        )
        with pytest.raises(PolicyError) as info:
            check_opt_in(registry, USER, "ab", {}, START, accept_terms_version=accepted)
        assert info.value.code == "lab.needs_terms"
        assert info.value.params["terms_version"] == "3"
        assert info.value.params["terms_url"] == "https://t.example/3"

    def test_explains_which_dependency_is_off(self) -> None:
        """Opting into a feature whose dependency is off names the dependency."""
        registry = LabRegistry.of([feature("aa"), feature("bb", depends_on=("aa",))])
        with pytest.raises(PolicyError) as info:
            check_opt_in(registry, USER, "bb", {}, START)
        assert info.value.code == "lab.depends_on"
        assert info.value.params["dependency"] == "aa"
        assert info.value.params["dependencies"] == ("aa",)
        assert "aa" in info.value.message

    def test_allowed_once_dependency_is_on(self) -> None:
        """After opting into the dependency, opting into the dependant succeeds."""
        registry = LabRegistry.of([feature("aa"), feature("bb", depends_on=("aa",))])
        first = check_opt_in(registry, USER, "aa", {}, START)
        assert check_opt_in(registry, USER, "bb", choices(first), START).enabled

    @pytest.mark.parametrize(
        ("kwargs", "code"),
        [
            ({"kill_switch": True}, "lab.killed"),
            ({"graduated": True}, "lab.graduated"),
            ({"audience": Audience.allow_list(["other"])}, "lab.not_eligible"),
            ({"audience": Audience.rollout(0)}, "lab.not_eligible"),
            ({"starts_at": START + timedelta(hours=1)}, "lab.not_started"),
            ({"ends_at": START}, "lab.ended"),
        ],
    )
    def test_refuses_unavailable_features(self, kwargs: dict[str, object], code: str) -> None:
        """Features the user cannot have are refused with an explanatory code."""
        registry = LabRegistry.of([feature("ab", **kwargs)])
        with pytest.raises(PolicyError) as info:
            check_opt_in(registry, USER, "ab", {}, START)
        assert info.value.code == code
        assert info.value.params["feature"] == "ab"

    def test_unknown_feature_is_not_found(self) -> None:
        """Opting into a key that is not registered raises NotFoundError."""
        with pytest.raises(NotFoundError):
            check_opt_in(LabRegistry(), USER, "ab", {}, START)


class TestCheckOptOut:
    def test_returns_a_disabled_choice_keeping_terms(self) -> None:
        """Opting out returns a disabled OptIn that remembers accepted terms."""
        registry = LabRegistry.of([feature("ab", terms=Terms(version="1", text="T"))])
        choice = check_opt_out(registry, USER, "ab", choices(opt("ab", terms="1")), START)
        assert (choice.enabled, choice.terms_version_accepted, choice.at) == (False, "1", START)

    def test_allowed_while_killed(self) -> None:
        """A user may record opting out of a killed feature."""
        registry = LabRegistry.of([feature("ab", kill_switch=True)])
        assert not check_opt_out(registry, USER, "ab", {}, START).enabled

    def test_graduated_cannot_be_opted_out_of(self) -> None:
        """A graduated feature is on for everyone: opting out is refused."""
        registry = LabRegistry.of([feature("ab", graduated=True)])
        with pytest.raises(PolicyError) as info:
            check_opt_out(registry, USER, "ab", {}, START)
        assert info.value.code == "lab.graduated"

    def test_unknown_feature_is_not_found(self) -> None:
        """Opting out of an unregistered key raises NotFoundError."""
        with pytest.raises(NotFoundError):
            check_opt_out(LabRegistry(), USER, "ab", {}, START)


class TestDependantsOf:
    def test_lists_transitive_dependants_in_dependency_order(self) -> None:
        """Direct and indirect dependants are listed, each after its own dependencies."""
        registry = LabRegistry.of(
            [
                feature("aa"),
                feature("dd", depends_on=("cc",)),
                feature("cc", depends_on=("bb",)),
                feature("bb", depends_on=("aa",)),
                feature("ee"),
            ],
        )
        assert dependants_of(registry, "aa") == ("bb", "cc", "dd")
        assert dependants_of(registry, "cc") == ("dd",)
        assert dependants_of(registry, "ee") == ()

    def test_diamond_lists_each_dependant_once(self) -> None:
        """A feature reachable by two paths appears once."""
        registry = LabRegistry.of(
            [
                feature("aa"),
                feature("bb", depends_on="aa"),
                feature("cc", depends_on="aa"),
                feature("dd", depends_on=("bb", "cc")),
            ],
        )
        assert dependants_of(registry, "aa") == ("bb", "cc", "dd")

    def test_unknown_key_is_not_found(self) -> None:
        """Asking about an unregistered key raises NotFoundError."""
        with pytest.raises(NotFoundError):
            dependants_of(LabRegistry(), "aa")

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enspace_profile._clock import FixedClock
from enspace_profile._crypto.keyring import KeyRing
from enspace_profile._integrations.domain import Credentials, Provider, ProviderKind
from enspace_profile._integrations.oauth import (
    CODE_CHALLENGE_METHOD,
    DEFAULT_AUTHORIZATION_TTL,
    AuthorizationRedirect,
    AuthorizationRequest,
    OAuthGrant,
    authorization_url,
    code_challenge,
    new_code_verifier,
    open_authorization,
    seal_authorization,
    start_authorization,
    state_digest,
    validate_code_verifier,
    verifier_aad,
    verify_code_challenge,
    verify_state,
)
from enspace_profile._random import SeededRandom
from enspace_profile.exceptions import PolicyError, ValidationError

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REDIRECT = "https://app.example/integrations/callback"
UNRESERVED = re.compile(r"[A-Za-z0-9\-._~]+")
URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")

# RFC 7636 appendix B.
RFC_OCTETS = bytes(
    [
        116,
        24,
        223,
        180,
        151,
        153,
        224,
        37,
        79,
        250,
        96,
        125,
        216,
        173,
        187,
        186,
        22,
        212,
        37,
        77,
        105,
        214,
        191,
        240,
        91,
        88,
        5,
        88,
        83,
        132,
        141,
        121,
    ],
)
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def github(**kwargs) -> Provider:
    return Provider(
        key="github",
        name="GitHub",
        kind=ProviderKind.OAUTH2,
        available_scopes=("read:user", "repo", "user:email"),
        sign_in=True,
        authorize_url=kwargs.pop("authorize_url", "https://github.example/login/oauth/authorize"),
        token_url="https://github.example/login/oauth/access_token",
        **kwargs,
    )


def start(**kwargs) -> AuthorizationRequest:
    options = {
        "user_id": "u1",
        "redirect_uri": REDIRECT,
        "scopes": ("repo", "read:user"),
        "rng": SeededRandom(1),
        "now": NOW,
    }
    options.update(kwargs)
    provider = options.pop("provider", github())
    return start_authorization(provider, **options)


class TestPkce:
    def test_rfc7636_appendix_b_vector(self) -> None:
        """The RFC 7636 example verifier and challenge are reproduced exactly."""
        assert base64.urlsafe_b64encode(RFC_OCTETS).rstrip(b"=").decode() == RFC_VERIFIER
        assert code_challenge(RFC_VERIFIER) == RFC_CHALLENGE
        assert verify_code_challenge(RFC_VERIFIER, RFC_CHALLENGE)

    def test_wrong_verifier_does_not_verify(self) -> None:
        """A different verifier, or a tampered challenge, does not match."""
        assert not verify_code_challenge(RFC_VERIFIER[:-1] + "l", RFC_CHALLENGE)
        assert not verify_code_challenge(RFC_VERIFIER, RFC_CHALLENGE[:-1] + "A")
        assert not verify_code_challenge(RFC_VERIFIER, RFC_CHALLENGE + "=")

    @pytest.mark.parametrize(
        ("verifier", "challenge"),
        [("short", RFC_CHALLENGE), (RFC_VERIFIER, "é"), (RFC_VERIFIER, ""), ("x" * 129, "a")],
    )
    def test_malformed_input_is_a_mismatch(self, verifier: str, challenge: str) -> None:
        """Malformed verifiers or challenges are a mismatch, not an exception."""
        assert verify_code_challenge(verifier, challenge) is False

    @settings(max_examples=100)
    @given(st.text(max_size=150), st.text(max_size=60))
    def test_arbitrary_input_never_raises(self, verifier: str, challenge: str) -> None:
        """verify_code_challenge returns a bool for any text."""
        assert verify_code_challenge(verifier, challenge) in {True, False}

    @settings(max_examples=100)
    @given(st.integers(43, 128), st.integers(0, 2**32))
    def test_new_verifier_has_the_requested_length_and_alphabet(
        self, length: int, seed: int
    ) -> None:
        """Fresh verifiers are 43..128 unreserved characters and verify their challenge."""
        verifier = new_code_verifier(SeededRandom(seed), length=length)
        assert len(verifier) == length
        assert UNRESERVED.fullmatch(verifier)
        assert verify_code_challenge(verifier, code_challenge(verifier))

    def test_default_verifier_is_64_characters(self) -> None:
        """The default verifier has 64 characters (384 random bits)."""
        assert len(new_code_verifier(SeededRandom(0))) == 64

    def test_verifier_comes_from_the_random_source(self) -> None:
        """The same seed gives the same verifier, another seed another one."""
        assert new_code_verifier(SeededRandom(3)) == new_code_verifier(SeededRandom(3))
        assert new_code_verifier(SeededRandom(3)) != new_code_verifier(SeededRandom(4))

    @pytest.mark.parametrize("length", [42, 129, 0, True])
    def test_verifier_length_out_of_range(self, length: int) -> None:
        """Lengths outside 43..128 are refused."""
        with pytest.raises(ValidationError) as info:
            new_code_verifier(SeededRandom(0), length=length)
        assert info.value.codes == ("length.out_of_range",)

    @pytest.mark.parametrize("verifier", ["a" * 42, "a" * 129, "a" * 42 + "+", None])
    def test_code_challenge_refuses_invalid_verifiers(self, verifier: object) -> None:
        """code_challenge refuses verifiers outside the RFC grammar."""
        with pytest.raises(ValidationError) as info:
            code_challenge(verifier)  # type: ignore[arg-type]
        assert info.value.codes == ("code_verifier.invalid",)

    @settings(max_examples=200)
    @given(st.text(max_size=140))
    def test_validate_code_verifier_arbitrary_text(self, value: str) -> None:
        """Arbitrary text is accepted exactly when it matches the RFC grammar."""
        accepted = True
        try:
            validate_code_verifier(value)
        except ValidationError:
            accepted = False
        grammar = UNRESERVED.fullmatch(value) is not None and 43 <= len(value) <= 128
        assert accepted is grammar


class TestStartAuthorization:
    def test_creates_a_pending_request(self) -> None:
        """The request holds a random state, a verifier, sorted scopes and an expiry."""
        request = start()
        assert URL_SAFE.fullmatch(request.state)
        assert len(request.state) == 43  # 32 random bytes: 256 bits
        assert UNRESERVED.fullmatch(request.code_verifier)
        assert request.scopes == ("read:user", "repo")
        assert (request.user_id, request.provider, request.redirect_uri) == (
            "u1",
            "github",
            REDIRECT,
        )
        assert (request.created_at, request.expires_at) == (NOW, NOW + timedelta(minutes=10))

    def test_state_and_verifier_differ_between_requests(self) -> None:
        """Two flows from one random source get different states and verifiers."""
        rng = SeededRandom(9)
        first, second = start(rng=rng), start(rng=rng)
        assert first.state != second.state
        assert first.code_verifier != second.code_verifier

    def test_repr_hides_the_verifier_and_state(self) -> None:
        """Neither the code verifier nor the state appears in repr or str."""
        request = start()
        for text in (repr(request), str(request), repr([request])):
            assert request.code_verifier not in text
            assert request.state not in text
            assert "u1" in text

    def test_custom_ttl(self) -> None:
        """The time to live can be shortened."""
        assert start(ttl=timedelta(minutes=2)).expires_at == NOW + timedelta(minutes=2)

    def test_scope_string_is_split(self) -> None:
        """An OAuth scope string is accepted as well as an iterable."""
        assert start(scopes="repo user:email").scopes == ("repo", "user:email")

    def test_reports_every_problem(self) -> None:
        """A non-OAuth provider, bad user and redirect, unknown scopes and ttl come together."""
        hook = Provider(key="hook", name="Hook", kind=ProviderKind.WEBHOOK)
        with pytest.raises(ValidationError) as info:
            start(
                provider=hook,
                user_id="",
                redirect_uri="http://app.example/cb",
                scopes=("admin",),
                ttl=timedelta(hours=2),
            )
        assert info.value.codes == (
            "provider.not_oauth2",
            "user_id.invalid",
            "redirect_uri.not_https",
            "scopes.unknown",
            "ttl.out_of_range",
        )

    @pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-1), 600])
    def test_ttl_must_be_positive_and_bounded(self, ttl: object) -> None:
        """A zero, negative or non-timedelta ttl is refused."""
        with pytest.raises(ValidationError) as info:
            start(ttl=ttl)
        assert info.value.codes == ("ttl.out_of_range",)

    def test_naive_now_is_refused(self) -> None:
        """The current time must be timezone-aware."""
        with pytest.raises(ValidationError) as info:
            start(now=datetime(2026, 1, 1))  # noqa: DTZ001
        assert info.value.codes == ("now.naive",)

    @pytest.mark.parametrize(
        ("redirect_uri", "code"),
        [
            ("http://app.example/cb", "redirect_uri.not_https"),
            ("https://app.example/cb#frag", "redirect_uri.fragment"),
            ("https://u:p@app.example/cb", "redirect_uri.credentials"),
            ("javascript:alert(1)", "redirect_uri.not_https"),
        ],
    )
    def test_redirect_uri_must_be_safe(self, redirect_uri: str, code: str) -> None:
        """Redirect URIs must be https without fragment or credentials."""
        with pytest.raises(ValidationError) as info:
            start(redirect_uri=redirect_uri)
        assert info.value.codes == (code,)

    def test_loopback_redirect_may_use_http(self) -> None:
        """Local development may use an http loopback redirect (RFC 8252)."""
        assert start(redirect_uri="http://127.0.0.1:8765/cb").redirect_uri.startswith("http:")

    def test_request_checks_its_own_fields(self) -> None:
        """Building a request directly validates state, verifier and expiry."""
        with pytest.raises(ValidationError) as info:
            attrs.evolve(start(), state="short", code_verifier="x", expires_at=NOW)
        assert info.value.codes == ("state.invalid", "code_verifier.invalid")
        with pytest.raises(ValidationError) as info:
            attrs.evolve(start(), expires_at=NOW)
        assert info.value.codes == ("expires_at.before_start",)

    def test_code_challenge_property(self) -> None:
        """The request exposes the S256 challenge of its verifier."""
        request = start()
        assert request.code_challenge == code_challenge(request.code_verifier)


class TestAuthorizationUrl:
    def test_builds_the_query(self) -> None:
        """The URL carries every PKCE authorization-code parameter, properly encoded."""
        request = start()
        url = authorization_url(github(), request, client_id="client 1&2")
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc, parts.path) == (
            "https",
            "github.example",
            "/login/oauth/authorize",
        )
        assert parse_qs(parts.query, strict_parsing=True) == {
            "response_type": ["code"],
            "client_id": ["client 1&2"],
            "redirect_uri": [REDIRECT],
            "scope": ["read:user repo"],
            "state": [request.state],
            "code_challenge": [request.code_challenge],
            "code_challenge_method": ["S256"],
        }
        assert CODE_CHALLENGE_METHOD == "S256"

    def test_uses_form_encoding(self) -> None:
        """Spaces become '+', reserved characters are percent-encoded (RFC 6749 appendix B)."""
        url = authorization_url(github(), start(), client_id="a b")
        assert "scope=read%3Auser+repo" in url
        assert "client_id=a+b" in url
        assert "redirect_uri=https%3A%2F%2Fapp.example%2Fintegrations%2Fcallback" in url
        assert "code_verifier" not in url

    def test_keeps_an_existing_query(self) -> None:
        """Parameters already in the endpoint URL are kept, and ours are appended."""
        provider = github(authorize_url="https://login.example/authorize?tenant=acme")
        url = authorization_url(provider, start(provider=provider), client_id="c")
        query = parse_qs(urlsplit(url).query)
        assert query["tenant"] == ["acme"]
        assert query["response_type"] == ["code"]

    def test_no_scope_parameter_without_scopes(self) -> None:
        """When no scope is requested, the scope parameter is left out."""
        url = authorization_url(github(), start(scopes=()), client_id="c")
        assert "scope" not in parse_qs(urlsplit(url).query)

    def test_extra_params(self) -> None:
        """Provider-specific parameters are added, but cannot override ours."""
        request = start()
        url = authorization_url(
            github(), request, client_id="c", extra_params={"prompt": "consent"}
        )
        assert parse_qs(urlsplit(url).query)["prompt"] == ["consent"]
        with pytest.raises(ValidationError) as info:
            authorization_url(
                github(), request, client_id="c", extra_params={"state": "x", "scope": "all"}
            )
        assert info.value.codes == ("extra_params.reserved",)
        assert info.value.errors[0].params["reserved"] == ("scope", "state")

    def test_reports_every_problem(self) -> None:
        """A provider mismatch, a missing endpoint and a blank client id are reported together."""
        other = Provider(key="gitlab", name="GitLab", kind=ProviderKind.OAUTH2)
        with pytest.raises(ValidationError) as info:
            authorization_url(other, start(), client_id=" ")
        assert info.value.codes == (
            "provider.mismatch",
            "authorize_url.missing",
            "client_id.required",
        )


class TestVerifyState:
    def test_accepts_the_matching_callback(self) -> None:
        """The right state, from the same user, before expiry, passes."""
        request = start()
        verify_state(request, request.state, now=NOW + timedelta(minutes=9), user_id="u1")

    @pytest.mark.parametrize("presented", ["", "x" * 43, "é" * 43, "\ud800"])
    def test_state_mismatch(self, presented: str) -> None:
        """Any other state, including non-ASCII text, is a state mismatch."""
        with pytest.raises(PolicyError) as info:
            verify_state(start(), presented, now=NOW, user_id="u1")
        assert info.value.code == "integrations.oauth.state_mismatch"

    def test_state_mismatch_never_echoes_the_state(self) -> None:
        """The error does not contain the expected state."""
        request = start()
        with pytest.raises(PolicyError) as info:
            verify_state(request, "wrong", now=NOW, user_id="u1")
        assert request.state not in str(info.value)
        assert request.state not in repr(info.value.params)

    def test_wrong_user(self) -> None:
        """A callback completed by another signed-in user is refused."""
        request = start()
        with pytest.raises(PolicyError) as info:
            verify_state(request, request.state, now=NOW, user_id="u2")
        assert info.value.code == "integrations.oauth.wrong_user"

    def test_expired(self) -> None:
        """A callback at or after expires_at is refused as expired."""
        clock = FixedClock(NOW)
        request = start(now=clock.now())
        clock.advance(DEFAULT_AUTHORIZATION_TTL)
        with pytest.raises(PolicyError) as info:
            verify_state(request, request.state, now=clock.now(), user_id="u1")
        assert info.value.code == "integrations.oauth.expired"

    def test_state_is_checked_first(self) -> None:
        """A wrong state is reported as such even if the request is also expired."""
        request = start()
        with pytest.raises(PolicyError) as info:
            verify_state(request, "nope", now=NOW + timedelta(days=1), user_id="u2")
        assert info.value.code == "integrations.oauth.state_mismatch"

    def test_naive_now_is_refused(self) -> None:
        """The current time must be timezone-aware."""
        request = start()
        with pytest.raises(ValidationError):
            verify_state(request, request.state, now=datetime(2026, 1, 1), user_id="u1")  # noqa: DTZ001


class TestStateDigest:
    def test_is_stable_hex_and_hides_the_state(self) -> None:
        """The digest is a stable 64-hex-digit value that differs from the state."""
        request = start()
        digest = state_digest(request.state)
        assert digest == state_digest(request.state)
        assert re.fullmatch(r"[0-9a-f]{64}", digest)
        assert request.state not in digest
        assert state_digest(request.state + "x") != digest


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.generate(SeededRandom(3), "k1")


class TestPendingAuthorization:
    def test_stores_no_raw_state_and_a_sealed_verifier(self, ring: KeyRing) -> None:
        """What storage keeps has the state's digest and the verifier encrypted."""
        request = start()
        pending = seal_authorization(request, key_ring=ring)
        assert pending.state_digest == state_digest(request.state)
        assert (pending.user_id, pending.provider, pending.scopes) == (
            "u1",
            "github",
            ("read:user", "repo"),
        )
        assert (pending.created_at, pending.expires_at) == (request.created_at, request.expires_at)
        stored = repr(pending) + pending.code_verifier.to_bytes().hex()
        for secret in (request.state, request.code_verifier):
            assert secret not in stored
            assert secret.encode().hex() not in stored
        assert pending.code_verifier.key_id == "k1"

    def test_open_rebuilds_the_request(self, ring: KeyRing) -> None:
        """The presented state and the stored record give back the original request."""
        request = start()
        pending = seal_authorization(request, key_ring=ring)
        assert open_authorization(pending, state=request.state, key_ring=ring) == request

    @pytest.mark.parametrize("presented", ["", "other-state", "é", "x" * 600])
    def test_open_refuses_another_state(self, ring: KeyRing, presented: str) -> None:
        """A state that does not hash to the record's digest is a state mismatch."""
        pending = seal_authorization(start(), key_ring=ring)
        with pytest.raises(PolicyError) as info:
            open_authorization(pending, state=presented, key_ring=ring)
        assert info.value.code == "integrations.oauth.state_mismatch"

    def test_verifier_is_bound_to_its_record(self, ring: KeyRing) -> None:
        """A sealed verifier moved to another user's record does not decrypt there."""
        request = start()
        pending = seal_authorization(request, key_ring=ring)
        moved = attrs.evolve(pending, user_id="u2")
        with pytest.raises(ValidationError) as info:
            open_authorization(moved, state=request.state, key_ring=ring)
        assert info.value.codes == ("ciphertext.undecryptable",)

    def test_aad_is_unambiguous(self) -> None:
        """The verifier's associated data separates every part."""
        a = verifier_aad(user_id="u1", provider="gh", digest="ab")
        b = verifier_aad(user_id="u1g", provider="h", digest="ab")
        assert a != b
        assert a.startswith(b'["enspace_profile/integrations/oauth",1,')

    def test_validates_its_fields(self, ring: KeyRing) -> None:
        """A record with a malformed digest, user, provider or box is refused."""
        pending = seal_authorization(start(), key_ring=ring)
        with pytest.raises(ValidationError) as info:
            attrs.evolve(
                pending,
                state_digest="nope",
                user_id="",
                provider="Git Hub",
                code_verifier=b"raw",
            )
        assert info.value.codes == (
            "state_digest.invalid",
            "user_id.invalid",
            "provider.invalid",
            "code_verifier.invalid_type",
        )

    def test_is_expired(self, ring: KeyRing) -> None:
        """A pending request stops at its expiry time exactly."""
        pending = seal_authorization(start(), key_ring=ring)
        assert not pending.is_expired(NOW + DEFAULT_AUTHORIZATION_TTL - timedelta(microseconds=1))
        assert pending.is_expired(NOW + DEFAULT_AUTHORIZATION_TTL)


class TestGrantAndRedirect:
    def test_grant_validates_everything(self) -> None:
        """A grant with bad credentials, account id, label and scopes reports them all."""
        with pytest.raises(ValidationError) as info:
            OAuthGrant(
                credentials="token",  # type: ignore[arg-type]
                external_account_id="",
                external_account_label="x" * 201,
                granted_scopes=["ok", "bad scope"],
            )
        assert info.value.codes == (
            "credentials.invalid_type",
            "external_account_id.required",
            "external_account_label.too_long",
            "granted_scopes.invalid",
        )

    @pytest.mark.parametrize(
        ("scopes", "expected"),
        [(None, None), ("repo read:user", {"repo", "read:user"}), (["repo"], {"repo"})],
    )
    def test_grant_scopes(self, scopes: object, expected: set[str] | None) -> None:
        """Granted scopes are optional and accept a scope string or a list."""
        grant = OAuthGrant(
            credentials=Credentials(access_token="t"),
            external_account_id="1",
            granted_scopes=scopes,  # type: ignore[arg-type]
        )
        assert grant.granted_scopes == (None if expected is None else frozenset(expected))

    def test_redirect_repr_hides_the_url(self) -> None:
        """The redirect's URL (it carries the state) is not in repr."""
        request = start()
        redirect = AuthorizationRedirect(
            url=authorization_url(github(), request, client_id="cid"), request=request
        )
        assert request.state not in repr(redirect)
        assert redirect.expires_at == request.expires_at

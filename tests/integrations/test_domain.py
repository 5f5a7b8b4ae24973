from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from enspace_profile._clock import FixedClock
from enspace_profile._crypto.keyring import KeyRing
from enspace_profile._integrations.domain import (
    Connection,
    ConnectionStatus,
    Credentials,
    DisconnectPolicy,
    LastSignInMethodPolicy,
    Provider,
    ProviderCatalog,
    ProviderKind,
    SealedCredentials,
    credentials_aad,
    credentials_from_bytes,
    credentials_to_bytes,
    new_connection,
    safe_error_text,
    validate_scope,
)
from enspace_profile._random import SeededRandom
from enspace_profile.exceptions import (
    AlreadyExistsError,
    NotFoundError,
    PolicyError,
    ValidationError,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SCOPE_RE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
SECRETS = ("gho_ACCESS_secret_1234", "ghr_REFRESH_secret_5678", "key_API_secret_9012")


def oauth_provider(key: str = "github", *, sign_in: bool = True, **kwargs) -> Provider:
    return Provider(
        key=key,
        name=kwargs.pop("name", key.title()),
        kind=ProviderKind.OAUTH2,
        available_scopes=kwargs.pop("available_scopes", ("read:user", "repo", "gist")),
        sign_in=sign_in,
        authorize_url=kwargs.pop("authorize_url", f"https://{key}.example/oauth/authorize"),
        token_url=kwargs.pop("token_url", f"https://{key}.example/oauth/token"),
        **kwargs,
    )


def api_key_provider(key: str = "linear") -> Provider:
    return Provider(key=key, name=key.title(), kind=ProviderKind.API_KEY)


def connection(
    cid: str = "c1",
    *,
    provider: str = "github",
    user: str = "u1",
    status: ConnectionStatus = ConnectionStatus.CONNECTED,
) -> Connection:
    return Connection(
        id=cid,
        user_id=user,
        provider=provider,
        external_account_id=f"ext-{cid}",
        external_account_label="@ana",
        status=status,
        granted_scopes=("repo",),
        connected_at=NOW,
    )


@pytest.fixture
def catalog() -> ProviderCatalog:
    return ProviderCatalog.of(
        [
            oauth_provider("github"),
            oauth_provider("google"),
            oauth_provider("slack", sign_in=False),
            api_key_provider("linear"),
        ],
    )


class TestValidateScope:
    @pytest.mark.parametrize("value", ["repo", "read:user", "https://www.googleapis.com/auth/x"])
    def test_accepts_scope_tokens(self, value: str) -> None:
        """Printable ASCII scope tokens (RFC 6749) are accepted."""
        assert validate_scope(value) == value

    @pytest.mark.parametrize("value", ["", "two words", 'qu"ote', "back\\slash", "é", None])
    def test_refuses_other_text(self, value: object) -> None:
        """Spaces, quotes, backslashes, non-ASCII and non-strings are refused."""
        with pytest.raises(ValidationError) as info:
            validate_scope(value)
        assert info.value.codes == ("scopes.invalid",)

    @settings(max_examples=200)
    @given(st.text(max_size=40))
    def test_arbitrary_text_raises_only_validation_error(self, value: str) -> None:
        """Arbitrary text passes unchanged exactly when it is a scope token."""
        accepted = True
        try:
            validate_scope(value)
        except ValidationError:
            accepted = False
        assert accepted is (SCOPE_RE.fullmatch(value) is not None)


class TestProvider:
    def test_valid_oauth_provider(self) -> None:
        """An OAuth 2 provider keeps its endpoints and scopes in display order."""
        provider = oauth_provider(available_scopes=("repo", "gist", "repo"))
        assert provider.available_scopes == ("repo", "gist")
        assert provider.kind is ProviderKind.OAUTH2

    def test_reports_every_problem(self) -> None:
        """Every invalid field is reported in one ValidationError."""
        with pytest.raises(ValidationError) as info:
            Provider(
                key="Git Hub",
                name="",
                kind="smtp",  # type: ignore[arg-type]
                available_scopes=("ok", "not ok"),
                sign_in="yes",  # type: ignore[arg-type]
            )
        assert info.value.codes == (
            "key.invalid",
            "name.required",
            "kind.invalid",
            "available_scopes.invalid",
            "sign_in.invalid_type",
        )

    @pytest.mark.parametrize(
        ("field", "url", "code"),
        [
            ("authorize_url", "http://github.example/authorize", "authorize_url.not_https"),
            ("authorize_url", "https://github.example/authorize#x", "authorize_url.fragment"),
            ("token_url", "https://u:p@github.example/token", "token_url.credentials"),
        ],
    )
    def test_endpoints_are_safe_https(self, field: str, url: str, code: str) -> None:
        """OAuth endpoints must be https, without credentials or fragment."""
        with pytest.raises(ValidationError) as info:
            oauth_provider(**{field: url})
        assert info.value.codes == (code,)

    def test_endpoints_only_for_oauth2(self) -> None:
        """An API-key provider with OAuth endpoints is a configuration mistake."""
        with pytest.raises(ValidationError) as info:
            Provider(
                key="linear",
                name="Linear",
                kind=ProviderKind.API_KEY,
                authorize_url="https://linear.example/a",
            )
        assert info.value.codes == ("authorize_url.not_oauth2",)

    def test_kind_accepts_its_string_value(self) -> None:
        """The kind may be given as its string value (as read from configuration)."""
        assert Provider(key="hook", name="Hook", kind="webhook").kind is ProviderKind.WEBHOOK  # type: ignore[arg-type]

    @pytest.mark.parametrize("scopes", ["repo gist", ["repo", "gist"], ("gist", "repo", "gist")])
    def test_validate_scopes_accepts_string_or_iterable(self, scopes: object) -> None:
        """Scopes may be an OAuth scope string or an iterable; the result is a set."""
        assert oauth_provider().validate_scopes(scopes) == frozenset({"repo", "gist"})  # type: ignore[arg-type]

    def test_validate_scopes_lists_every_unknown_scope(self) -> None:
        """All unknown scopes are listed, sorted, in one error."""
        with pytest.raises(ValidationError) as info:
            oauth_provider().validate_scopes(["repo", "zeta", "admin"])
        assert info.value.codes == ("scopes.unknown",)
        assert info.value.errors[0].params == {"provider": "github", "unknown": ("admin", "zeta")}
        assert "admin, zeta" in info.value.message

    def test_validate_scopes_refuses_non_iterables(self) -> None:
        """A non-iterable scopes argument is a ValidationError, not a TypeError."""
        with pytest.raises(ValidationError) as info:
            oauth_provider().validate_scopes(42)  # type: ignore[arg-type]
        assert info.value.codes == ("scopes.invalid_type",)


class TestProviderCatalog:
    def test_get_and_iterate(self, catalog: ProviderCatalog) -> None:
        """Providers are found by key and iterated in registration order."""
        assert catalog.get("slack").name == "Slack"
        assert [p.key for p in catalog] == ["github", "google", "slack", "linear"]
        assert "github" in catalog
        assert len(catalog) == 4

    def test_unknown_provider_is_not_found(self, catalog: ProviderCatalog) -> None:
        """get on an unknown key raises NotFoundError; find returns None."""
        with pytest.raises(NotFoundError) as info:
            catalog.get("gitlab")
        assert info.value.code == "provider.not_found"
        assert catalog.find("gitlab") is None

    def test_duplicate_key_already_exists(self, catalog: ProviderCatalog) -> None:
        """Registering a provider key twice raises AlreadyExistsError."""
        with pytest.raises(AlreadyExistsError) as info:
            catalog.register(api_key_provider("github"))
        assert info.value.code == "provider.already_exists"

    def test_nothing_is_built_in(self) -> None:
        """A new catalog is empty: no provider is hard-wired."""
        assert list(ProviderCatalog()) == []

    def test_validate_scopes_by_key(self, catalog: ProviderCatalog) -> None:
        """validate_scopes checks against the named provider."""
        assert catalog.validate_scopes("github", "repo") == frozenset({"repo"})
        with pytest.raises(ValidationError):
            catalog.validate_scopes("github", "admin")
        with pytest.raises(NotFoundError):
            catalog.validate_scopes("gitlab", "repo")


class TestSafeErrorText:
    def test_redacts_known_secrets(self) -> None:
        """Every occurrence of a credential is replaced, longest first."""
        text = safe_error_text(
            f"bad token {SECRETS[0]} (refresh {SECRETS[1]}) {SECRETS[0]}", secrets=SECRETS
        )
        assert text == "bad token [redacted] (refresh [redacted]) [redacted]"

    def test_collapses_whitespace_and_controls(self) -> None:
        """Newlines, tabs and control characters become single spaces."""
        assert safe_error_text("  a\n\tb\x00c  ") == "a b c"

    def test_truncates_with_an_ellipsis(self) -> None:
        """Long messages are cut to the limit."""
        text = safe_error_text("x" * 1000, limit=50)
        assert len(text) == 50
        assert text.endswith("…")

    def test_ignores_empty_and_tiny_secrets(self) -> None:
        """None, empty and very short 'secrets' do not shred the message."""
        assert safe_error_text("a 500 error", secrets=[None, "", "a"]) == "a 500 error"

    @given(st.text(max_size=300), st.text(min_size=4, max_size=30))
    def test_never_contains_the_secret(self, message: str, secret: str) -> None:
        """Whatever the message, a known secret without whitespace never survives."""
        secret = "".join(secret.split()) or "SECRETX"
        if not secret.isprintable() or len(secret) < 4 or "[redacted]" in secret:
            return
        assert secret not in safe_error_text(f"{message}{secret}{message}", secrets=[secret])


class TestConnection:
    def test_valid_connection(self) -> None:
        """A connection is created connected, version 1, scopes as a set, in UTC."""
        plus2 = timezone(timedelta(hours=2))
        conn = attrs.evolve(
            connection(), connected_at=datetime(2026, 3, 1, 14, tzinfo=plus2), granted_scopes="a b"
        )
        assert conn.connected_at == NOW
        assert conn.granted_scopes == frozenset({"a", "b"})
        assert (conn.status, conn.version, conn.credentials_version) == (
            ConnectionStatus.CONNECTED,
            1,
            0,
        )

    def test_reports_every_problem(self) -> None:
        """Every invalid field is reported in one ValidationError."""
        with pytest.raises(ValidationError) as info:
            Connection(
                id="",
                user_id="",
                provider="Git Hub",
                external_account_id="",
                status="paused",  # type: ignore[arg-type]
                granted_scopes=("ok", "not ok"),
                connected_at=datetime(2026, 1, 1),  # noqa: DTZ001
                last_error="line\nbreak",
                version=0,
                credentials_version=-1,
            )
        assert info.value.codes == (
            "id.required",
            "user_id.invalid",
            "provider.invalid",
            "external_account_id.required",
            "status.invalid",
            "granted_scopes.invalid",
            "connected_at.naive",
            "last_error.invalid_characters",
            "version.invalid",
            "credentials_version.invalid",
        )

    def test_new_connection_has_a_random_id(self) -> None:
        """new_connection draws its id from the injected random source."""

        def make(seed: int) -> Connection:
            return new_connection(
                oauth_provider(),
                user_id="u1",
                external_account_id="42",
                external_account_label="@ana",
                granted_scopes="repo",
                rng=SeededRandom(seed),
                now=NOW,
            )

        first, again, other = make(1), make(1), make(2)
        assert first.id == again.id != other.id
        assert (first.provider, first.status, first.granted_scopes) == (
            "github",
            ConnectionStatus.CONNECTED,
            frozenset({"repo"}),
        )

    def test_record_sync_clears_the_error(self) -> None:
        """A successful call reconnects, clears the error and stamps last_sync_at."""
        clock = FixedClock(NOW)
        conn = connection().record_error("boom")
        synced = conn.record_sync(clock.advance(minutes=5))
        assert (synced.status, synced.last_error, synced.last_sync_at) == (
            ConnectionStatus.CONNECTED,
            None,
            NOW + timedelta(minutes=5),
        )

    def test_record_error_cleans_the_message(self) -> None:
        """The stored error is one short line without the credentials in use."""
        creds = Credentials(access_token=SECRETS[0])
        conn = connection().record_error(
            f"401 Unauthorized\n token={SECRETS[0]}" + " pad" * 200, credentials=creds
        )
        assert conn.status is ConnectionStatus.ERROR
        assert conn.last_error is not None
        assert SECRETS[0] not in conn.last_error
        assert conn.last_error.startswith("401 Unauthorized token=[redacted]")
        assert len(conn.last_error) <= 200

    def test_record_error_can_ask_for_reauthorization(self) -> None:
        """A refused grant marks the connection as needing reauthorization."""
        conn = connection().record_error("invalid_grant", needs_reauthorization=True)
        assert conn.status is ConnectionStatus.NEEDS_REAUTHORIZATION

    def test_reauthorized_reconnects_with_new_credentials(self) -> None:
        """Reauthorizing reconnects, replaces scopes and bumps the credentials version."""
        conn = connection(status=ConnectionStatus.REVOKED).reauthorized(granted_scopes="repo gist")
        assert conn.status is ConnectionStatus.CONNECTED
        assert conn.granted_scopes == frozenset({"repo", "gist"})
        assert conn.credentials_version == 1

    def test_credentials_rotated_bumps_credentials_version(self) -> None:
        """A token refresh increases credentials_version by one."""
        assert connection().credentials_rotated().credentials_rotated().credentials_version == 2

    @pytest.mark.parametrize(
        "transition",
        [
            lambda c: c.record_sync(NOW),
            lambda c: c.record_error("x"),
            lambda c: c.credentials_rotated(),
        ],
    )
    def test_revoked_connection_is_terminal(self, transition) -> None:
        """A revoked connection cannot sync, fail or refresh until reauthorized."""
        conn = connection().revoked()
        assert conn.status is ConnectionStatus.REVOKED
        with pytest.raises(PolicyError) as info:
            transition(conn)
        assert info.value.code == "integrations.revoked"

    def test_transitions_keep_the_read_version(self) -> None:
        """Transitions leave version alone: storage compares and increments it."""
        conn = attrs.evolve(connection(), version=7)
        assert conn.record_sync(NOW).version == 7
        assert conn.record_error("x").version == 7
        assert conn.revoked().version == 7


class TestCredentials:
    def test_repr_names_only_fields_that_are_set(self) -> None:
        """repr and str show which secrets are set, never their values."""
        creds = Credentials(access_token=SECRETS[0], refresh_token=SECRETS[1], expires_at=NOW)
        for text in (repr(creds), str(creds), f"{creds!r:}", repr([creds])):
            assert SECRETS[0] not in text
            assert SECRETS[1] not in text
        assert repr(creds) == (
            "Credentials(access_token=<set>, refresh_token=<set>, "
            "expires_at=2026-03-01T12:00:00+00:00)"
        )

    def test_set_fields_and_secret_values(self) -> None:
        """set_fields names the secrets present; secret_values returns them for redaction."""
        creds = Credentials(api_key=SECRETS[2])
        assert creds.set_fields == ("api_key",)
        assert creds.secret_values() == (SECRETS[2],)

    def test_needs_at_least_one_secret(self) -> None:
        """Credentials with no secret at all are refused."""
        with pytest.raises(ValidationError) as info:
            Credentials(expires_at=NOW)
        assert info.value.codes == ("credentials.empty",)

    @pytest.mark.parametrize("bad", ["", " padded ", "new\nline", "x" * 16_385])
    def test_invalid_secret_is_not_echoed(self, bad: str) -> None:
        """An unusable secret is refused without its value appearing in the error."""
        with pytest.raises(ValidationError) as info:
            Credentials(access_token=bad, refresh_token=SECRETS[1] + "\x00")
        assert info.value.codes == ("access_token.invalid", "refresh_token.invalid")
        assert SECRETS[1] not in str(info.value)
        assert all(SECRETS[1] not in repr(e) for e in info.value.errors)

    def test_naive_expiry_refused(self) -> None:
        """expires_at must be timezone-aware."""
        with pytest.raises(ValidationError) as info:
            Credentials(api_key="k", expires_at=datetime(2026, 1, 1))  # noqa: DTZ001
        assert info.value.codes == ("expires_at.naive",)

    @pytest.mark.parametrize(
        ("expires_in", "expired"),
        [
            (None, False),
            (timedelta(minutes=5), False),
            (timedelta(seconds=30), True),
            (timedelta(0), True),
            (timedelta(minutes=-1), True),
        ],
    )
    def test_is_expired_with_leeway(self, expires_in: timedelta | None, expired: bool) -> None:
        """A token within a minute of its expiry counts as expired; no expiry never expires."""
        expires_at = None if expires_in is None else NOW + expires_in
        assert Credentials(access_token="t", expires_at=expires_at).is_expired(NOW) is expired


def _valid_or_none(**kwargs) -> Credentials | None:
    try:
        return Credentials(**kwargs)
    except ValidationError:
        return None


class TestCredentialsSerialisation:
    def test_json_of_the_set_fields(self) -> None:
        """The plaintext is compact JSON of the fields that are set, plus a format version."""
        creds = Credentials(access_token="a1", expires_at=NOW)
        assert json.loads(credentials_to_bytes(creds)) == {
            "v": 1,
            "access_token": "a1",
            "expires_at": "2026-03-01T12:00:00+00:00",
        }

    @settings(max_examples=100)
    @given(
        st.builds(
            _valid_or_none,
            access_token=st.one_of(st.none(), st.text(min_size=1, max_size=60)),
            refresh_token=st.one_of(st.none(), st.text(min_size=1, max_size=60)),
            api_key=st.one_of(st.none(), st.text(min_size=1, max_size=60)),
            expires_at=st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))),
        ),
    )
    def test_round_trip(self, creds: Credentials | None) -> None:
        """Any valid credentials survive to_bytes / from_bytes unchanged."""
        if creds is not None:
            assert credentials_from_bytes(credentials_to_bytes(creds)) == creds

    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b"\xff\xfe",
            b"[]",
            b'{"v": 2, "access_token": "a"}',
            b'{"v": 1}',
            b'{"v": 1, "access_token": "a", "password": "x"}',
            b'{"v": 1, "access_token": 5}',
            b'{"v": 1, "access_token": "a", "expires_at": "yesterday"}',
            b'{"v": 1, "access_token": "a", "expires_at": "2026-01-01T00:00:00"}',
        ],
    )
    def test_corrupt_data_is_a_validation_error(self, data: bytes) -> None:
        """Unreadable plaintext raises credentials.corrupt without chaining the parser error."""
        with pytest.raises(ValidationError) as info:
            credentials_from_bytes(data)
        assert info.value.codes == ("credentials.corrupt",)
        assert info.value.__cause__ is None
        assert info.value.__suppress_context__ or info.value.__context__ is None

    def test_corrupt_error_never_echoes_the_plaintext(self) -> None:
        """Even a near-valid blob's content does not appear in the error."""
        data = b'{"v": 1, "access_token": "' + SECRETS[0].encode() + b'", "x": 1}'
        with pytest.raises(ValidationError) as info:
            credentials_from_bytes(data)
        assert SECRETS[0] not in str(info.value)

    @settings(max_examples=200)
    @given(st.binary(max_size=200))
    def test_arbitrary_bytes_raise_only_validation_error(self, data: bytes) -> None:
        """Arbitrary bytes either decode into Credentials or raise ValidationError."""
        try:
            result = credentials_from_bytes(data)
        except ValidationError:
            return
        assert isinstance(result, Credentials)


class TestCredentialsAad:
    def test_is_deterministic_and_unambiguous(self) -> None:
        """The same context gives the same bytes; shifting a separator gives other bytes."""
        one = credentials_aad(user_id="u1", provider="github", connection_id="c1")
        assert one == credentials_aad(user_id="u1", provider="github", connection_id="c1")
        assert credentials_aad(user_id="a,b", provider="cc", connection_id="c1") != (
            credentials_aad(user_id="a", provider="b,cc", connection_id="c1")
        )

    @pytest.mark.parametrize(
        "other",
        [
            {"user_id": "u2", "provider": "github", "connection_id": "c1"},
            {"user_id": "u1", "provider": "gitlab", "connection_id": "c1"},
            {"user_id": "u1", "provider": "github", "connection_id": "c2"},
            {"user_id": "u1", "provider": "github", "connection_id": "c1", "field": "webhook"},
        ],
    )
    def test_ciphertext_cannot_be_moved_to_another_context(self, other: dict[str, str]) -> None:
        """AES-GCM under this aad refuses to decrypt a blob moved to another row or field."""
        key = AESGCM.generate_key(bit_length=256)
        nonce = SeededRandom(1).token_bytes(12)
        plaintext = credentials_to_bytes(Credentials(access_token=SECRETS[0]))
        aad = credentials_aad(user_id="u1", provider="github", connection_id="c1")
        blob = AESGCM(key).encrypt(nonce, plaintext, aad)
        assert AESGCM(key).decrypt(nonce, blob, aad) == plaintext
        with pytest.raises(InvalidTag):
            AESGCM(key).decrypt(nonce, blob, credentials_aad(**other))


class TestLastSignInMethodPolicy:
    def test_is_a_disconnect_policy(self) -> None:
        """The default policy satisfies the DisconnectPolicy protocol."""
        policy: DisconnectPolicy = LastSignInMethodPolicy()
        assert policy is not None

    def test_refuses_removing_the_only_sign_in_method(self, catalog: ProviderCatalog) -> None:
        """The last sign-in connection cannot be removed when nothing else signs in."""
        conn = connection()
        with pytest.raises(PolicyError) as info:
            LastSignInMethodPolicy().check_disconnect(
                conn, other_connections=[conn], catalog=catalog, other_sign_in_methods=0
            )
        assert info.value.code == "integrations.last_sign_in_method"
        assert info.value.params["provider"] == "github"

    @pytest.mark.parametrize(
        ("removed", "others", "methods", "allowed"),
        [
            # A password (or passkey) remains: allowed.
            ("github", [], 1, True),
            # Another sign-in connection remains: allowed.
            ("github", [("c2", "google", ConnectionStatus.CONNECTED)], 0, True),
            # A second account at the same provider also signs in: allowed.
            ("github", [("c2", "github", ConnectionStatus.NEEDS_REAUTHORIZATION)], 0, True),
            # The other connection was revoked: it does not count.
            ("github", [("c2", "google", ConnectionStatus.REVOKED)], 0, False),
            # The other connection is not a sign-in provider: it does not count.
            ("github", [("c2", "slack", ConnectionStatus.CONNECTED)], 0, False),
            # The other connection belongs to another user: it does not count.
            ("github", [("c2", "google", ConnectionStatus.CONNECTED, "u2")], 0, False),
            # The removed connection is not a sign-in method: always allowed.
            ("slack", [], 0, True),
            ("linear", [], 0, True),
            # The provider was removed from the catalog: not a sign-in method.
            ("gitlab", [], 0, True),
            # A revoked connection cannot sign anyone in: always allowed.
            ("github-revoked", [], 0, True),
        ],
    )
    def test_rules(
        self,
        catalog: ProviderCatalog,
        removed: str,
        others: list[tuple],
        methods: int,
        allowed: bool,
    ) -> None:
        """Removal is refused only when it would leave the user no way to sign in."""
        if removed == "github-revoked":
            conn = connection(status=ConnectionStatus.REVOKED)
        else:
            conn = connection(provider=removed)
        other_connections = [conn] + [
            connection(o[0], provider=o[1], status=o[2], user=o[3] if len(o) > 3 else "u1")
            for o in others
        ]
        refused: PolicyError | None = None
        try:
            LastSignInMethodPolicy().check_disconnect(
                conn,
                other_connections=other_connections,
                catalog=catalog,
                other_sign_in_methods=methods,
            )
        except PolicyError as error:
            refused = error
        assert (refused is None) is allowed

    @pytest.mark.parametrize("count", [-1, True, "1"])
    def test_count_must_be_a_non_negative_integer(
        self, catalog: ProviderCatalog, count: object
    ) -> None:
        """A negative or non-integer count of other methods is a ValidationError."""
        with pytest.raises(ValidationError) as info:
            LastSignInMethodPolicy().check_disconnect(
                connection(), other_connections=[], catalog=catalog, other_sign_in_methods=count
            )  # type: ignore[arg-type]
        assert info.value.codes == ("other_sign_in_methods.invalid",)


class TestProviderCredentials:
    def test_client_id_only_for_oauth2(self) -> None:
        """An OAuth 2 provider may carry its public client id; other kinds may not."""
        assert oauth_provider(client_id="Iv1.abc").client_id == "Iv1.abc"
        with pytest.raises(ValidationError) as info:
            Provider(key="linear", name="Linear", kind=ProviderKind.API_KEY, client_id="x")
        assert info.value.codes == ("client_id.not_oauth2",)
        with pytest.raises(ValidationError) as info:
            oauth_provider(client_id="bad\nid")
        assert info.value.codes == ("client_id.invalid_characters",)

    @pytest.mark.parametrize(
        ("kind", "credentials", "accepted"),
        [
            (ProviderKind.OAUTH2, Credentials(access_token="a"), True),
            (ProviderKind.OAUTH2, Credentials(access_token="a", refresh_token="r"), True),
            (ProviderKind.OAUTH2, Credentials(refresh_token="r"), False),
            (ProviderKind.OAUTH2, Credentials(api_key="k"), False),
            (ProviderKind.API_KEY, Credentials(api_key="k"), True),
            (ProviderKind.API_KEY, Credentials(access_token="a"), False),
            (ProviderKind.WEBHOOK, Credentials(webhook_url="https://hooks.example/x"), True),
            (ProviderKind.WEBHOOK, Credentials(api_key="signing-secret"), True),
            (ProviderKind.WEBHOOK, Credentials(access_token="a"), False),
        ],
    )
    def test_check_credentials_by_kind(
        self, kind: ProviderKind, credentials: Credentials, accepted: bool
    ) -> None:
        """Each kind needs its own secret: a token, an API key, or a webhook URL or secret."""
        provider = Provider(key="svc", name="Svc", kind=kind)
        try:
            assert provider.check_credentials(credentials) is credentials
            refused = None
        except ValidationError as error:
            refused = error
        assert (refused is None) is accepted
        if refused is not None:
            assert refused.codes == ("credentials.missing_for_kind",)
            assert refused.errors[0].params["accepted"] == provider.accepted_credentials

    def test_check_credentials_needs_credentials(self) -> None:
        """Anything but a Credentials object is refused."""
        with pytest.raises(ValidationError) as info:
            api_key_provider().check_credentials({"api_key": "k"})  # type: ignore[arg-type]
        assert info.value.codes == ("credentials.invalid_type",)


class TestWebhookUrl:
    def test_is_a_secret(self) -> None:
        """A webhook URL is a secret field: hidden in repr, redacted, serialised."""
        url = "https://hooks.slack.example/services/T0/B0/SECRET123"
        creds = Credentials(webhook_url=url)
        assert repr(creds) == "Credentials(webhook_url=<set>)"
        assert creds.secret_values() == (url,)
        assert credentials_from_bytes(credentials_to_bytes(creds)) == creds

    @pytest.mark.parametrize(
        ("url", "code"),
        [
            ("http://hooks.example/SECRET123", "webhook_url.not_https"),
            ("https://user:SECRET123@hooks.example/", "webhook_url.credentials"),
            ("https://hooks.example/SECRET123#frag", "webhook_url.fragment"),
            ("javascript:SECRET123", "webhook_url.not_https"),
        ],
    )
    def test_must_be_safe_https(self, url: str, code: str) -> None:
        """Only https URLs without user info or fragment; the URL is never echoed."""
        with pytest.raises(ValidationError) as info:
            Credentials(webhook_url=url)
        assert info.value.codes == (code,)
        assert "SECRET123" not in str(info.value)
        assert all("SECRET123" not in repr(e) for e in info.value.errors)

    @settings(max_examples=150)
    @given(st.text(max_size=80))
    def test_arbitrary_text_never_echoed(self, text: str) -> None:
        """Any text either is a valid webhook URL or raises a ValidationError without it."""
        secret = "Zq9" + text + "Zq9"
        refused: ValidationError | None = None
        try:
            Credentials(webhook_url="https://hooks.example/" + secret)
        except ValidationError as error:
            refused = error
        assert refused is None or secret not in str(refused)


class TestWithStatus:
    @pytest.mark.parametrize(
        ("status", "error", "expected_error"),
        [
            ("connected", "ignored", None),
            ("error", "boom\n  again", "boom again"),
            ("needs_reauthorization", None, None),
            ("revoked", "app uninstalled", "app uninstalled"),
        ],
    )
    def test_sets_status_and_cleaned_error(
        self, status: str, error: str | None, expected_error: str | None
    ) -> None:
        """The status is set; the error is cleaned, and cleared for connected."""
        conn = attrs.evolve(connection(), last_error="old")
        changed = conn.with_status(status, error=error)
        assert changed.status is ConnectionStatus(status)
        assert changed.last_error == expected_error
        assert (changed.version, changed.last_sync_at) == (conn.version, conn.last_sync_at)

    def test_redacts_the_credentials(self) -> None:
        """The connection's secrets never reach last_error."""
        creds = Credentials(access_token=SECRETS[0])
        changed = connection().with_status("error", error=f"x {SECRETS[0]}", credentials=creds)
        assert changed.last_error == "x [redacted]"

    @pytest.mark.parametrize("status", ["connected", "error", "needs_reauthorization"])
    def test_revoked_is_left_only_by_reauthorizing(self, status: str) -> None:
        """A revoked connection refuses every status but revoked."""
        conn = connection(status=ConnectionStatus.REVOKED)
        with pytest.raises(PolicyError) as info:
            conn.with_status(status)
        assert info.value.code == "integrations.revoked"
        assert conn.with_status("revoked").status is ConnectionStatus.REVOKED
        assert conn.reauthorized(granted_scopes=()).status is ConnectionStatus.CONNECTED

    def test_unknown_status(self) -> None:
        """An unknown status is a ValidationError listing the allowed ones."""
        with pytest.raises(ValidationError) as info:
            connection().with_status("paused")
        assert info.value.codes == ("status.invalid",)


class TestSealedCredentials:
    def test_aad_matches_credentials_aad(self) -> None:
        """The record rebuilds the associated data its box was sealed with."""
        ring = KeyRing.generate(SeededRandom(1), "k1")
        aad = credentials_aad(user_id="u1", provider="github", connection_id="c1")
        box = ring.seal(b"x", aad=aad)
        record = SealedCredentials(connection_id="c1", user_id="u1", provider="github", box=box)
        assert record.aad == aad
        assert ring.open(record.box, aad=record.aad) == b"x"

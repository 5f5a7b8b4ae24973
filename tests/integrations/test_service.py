from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import attrs
import pytest

from enspace_profile import (
    AuditEvent,
    AuthContext,
    AuthorizationRequest,
    Connection,
    ConnectionStatus,
    Credentials,
    EncryptionKey,
    FixedClock,
    KeyRing,
    MemoryStorage,
    OAuthGrant,
    Provider,
    ProviderCatalog,
    ProviderKind,
    ReauthPolicy,
    ReauthRule,
    SeededRandom,
    SensitiveAction,
    SQLiteStorage,
    UserPanel,
    converter,
)
from enspace_profile._integrations.oauth import code_challenge
from enspace_profile.exceptions import (
    CapabilityError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PolicyError,
    ReauthenticationRequired,
    ValidationError,
)
from enspace_profile.typing import Storage, SupportsIntegrations

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
REDIRECT = "https://app.example/integrations/github/callback"
ACCESS = "gho_ACCESS_0123456789abcdef"
REFRESH = "ghr_REFRESH_0123456789abcdef"
API_KEY = "lin_api_KEY_0123456789abcdef"
WEBHOOK = "https://hooks.slack.example/services/T0/B0/SECRETxyz0123456789"
SECRETS = (ACCESS, REFRESH, API_KEY, WEBHOOK)


def github() -> Provider:
    return Provider(
        key="github",
        name="GitHub",
        kind=ProviderKind.OAUTH2,
        available_scopes=("read:user", "user:email", "repo"),
        sign_in=True,
        authorize_url="https://github.example/login/oauth/authorize",
        token_url="https://github.example/login/oauth/access_token",
        client_id="Iv1.0123456789abcdef",
    )


def catalog() -> ProviderCatalog:
    return ProviderCatalog.of(
        [
            github(),
            Provider(
                key="gitlab",
                name="GitLab",
                kind=ProviderKind.OAUTH2,
                available_scopes=("read_user",),
                sign_in=True,
                authorize_url="https://gitlab.example/oauth/authorize",
                token_url="https://gitlab.example/oauth/token",
            ),
            Provider(key="linear", name="Linear", kind=ProviderKind.API_KEY),
            Provider(key="slack", name="Slack", kind=ProviderKind.WEBHOOK),
        ]
    )


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    s: Storage = (
        MemoryStorage() if request.param == "memory" else SQLiteStorage(tmp_path / "panel.db")
    )
    yield s
    s.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.generate(SeededRandom(1), "2026-01")


@pytest.fixture
def events() -> list[AuditEvent]:
    return []


@pytest.fixture
def make_panel(
    storage: Storage, clock: FixedClock, ring: KeyRing, events: list[AuditEvent]
) -> Callable[..., UserPanel]:
    def make(**options: object) -> UserPanel:
        settings: dict[str, object] = {
            "storage": storage,
            "clock": clock,
            "rng": SeededRandom(7),
            "key_ring": ring,
            "providers": catalog(),
            "notifier": events.append,
        }
        settings.update(options)
        return UserPanel(**settings)  # type: ignore[arg-type]

    return make


@pytest.fixture
def panel(make_panel: Callable[..., UserPanel]) -> UserPanel:
    return make_panel()


def auth(user_id: str = "u1", *, age: timedelta = timedelta(minutes=1)) -> AuthContext:
    return AuthContext(user_id=user_id, authenticated_at=T0 - age, factors={"password"})


def connect_linear(panel: UserPanel, user_id: str = "u1", **kwargs: object) -> Connection:
    options: dict[str, object] = {
        "credentials": Credentials(api_key=API_KEY),
        "external_account_id": "team-1",
        "external_account_label": "Acme workspace",
    }
    options.update(kwargs)
    return panel.integrations.connect(user_id, "linear", auth=auth(user_id), **options)  # type: ignore[arg-type]


def connect_github(
    panel: UserPanel, user_id: str = "u1", account: str = "1001", **kwargs: object
) -> Connection:
    options: dict[str, object] = {
        "credentials": Credentials(
            access_token=ACCESS, refresh_token=REFRESH, expires_at=T0 + timedelta(hours=8)
        ),
        "external_account_id": account,
        "external_account_label": "@ada",
        "granted_scopes": ("read:user",),
    }
    options.update(kwargs)
    return panel.integrations.connect(user_id, "github", auth=auth(user_id), **options)  # type: ignore[arg-type]


@attrs.define
class FakeGitHub:
    """Stands in for the host's token exchange: records what it was sent."""

    seen: list[AuthorizationRequest] = attrs.Factory(list)
    account: str = "1001"
    scopes: tuple[str, ...] | None = None
    fail: bool = False

    def __call__(self, request: AuthorizationRequest) -> OAuthGrant:
        self.seen.append(request)
        if self.fail:
            raise RuntimeError("token endpoint said 500")
        return OAuthGrant(
            credentials=Credentials(access_token=ACCESS, refresh_token=REFRESH),
            external_account_id=self.account,
            external_account_label="@ada",
            granted_scopes=self.scopes,
        )


def begin(
    panel: UserPanel, user_id: str = "u1", *, context: AuthContext | None = None, **kwargs: object
) -> tuple[str, str]:
    """Start an OAuth flow; return (url, state)."""
    options: dict[str, object] = {"redirect_uri": REDIRECT, "scopes": "read:user repo"}
    options.update(kwargs)
    redirect = panel.integrations.begin_authorization(
        user_id,
        "github",
        auth=context or auth(user_id),
        **options,  # type: ignore[arg-type]
    )
    return redirect.url, parse_qs(urlsplit(redirect.url).query)["state"][0]


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


class TestConnect:
    def test_connects_an_api_key(self, panel: UserPanel) -> None:
        """A direct connection is stored connected, at the current time, readable back."""
        conn = connect_linear(panel)
        assert conn.provider == "linear"
        assert conn.status is ConnectionStatus.CONNECTED
        assert (conn.connected_at, conn.version, conn.credentials_version) == (T0, 1, 0)
        assert conn.external_account_label == "Acme workspace"
        assert panel.integrations.get("u1", conn.id) == conn
        assert list(panel.integrations.list("u1")) == [conn]
        assert panel.integrations.read_credentials("u1", conn.id).credentials.api_key == API_KEY

    def test_webhook_url_is_a_webhook_credential(self, panel: UserPanel) -> None:
        """A webhook provider accepts a secret webhook URL and gives it back to the worker."""
        conn = panel.integrations.connect(
            "u1",
            "slack",
            auth=auth(),
            credentials=Credentials(webhook_url=WEBHOOK),
            external_account_id="T0/C42",
            external_account_label="#deploys",
        )
        read = panel.integrations.read_credentials("u1", conn.id)
        assert read.credentials.webhook_url == WEBHOOK

    @pytest.mark.parametrize(
        ("provider", "credentials"),
        [
            ("linear", Credentials(access_token=ACCESS)),
            ("github", Credentials(api_key=API_KEY)),
            ("slack", Credentials(refresh_token=REFRESH)),
        ],
    )
    def test_credentials_must_fit_the_kind(
        self, panel: UserPanel, provider: str, credentials: Credentials
    ) -> None:
        """Credentials a provider's kind cannot use are refused, naming what it accepts."""
        with pytest.raises(ValidationError) as info:
            panel.integrations.connect(
                "u1", provider, auth=auth(), credentials=credentials, external_account_id="x"
            )
        assert info.value.codes == ("credentials.missing_for_kind",)
        assert_no_secret(str(info.value))
        assert list(panel.integrations.list("u1")) == []

    def test_reports_every_problem_at_once(self, panel: UserPanel) -> None:
        """Bad credentials and bad account fields are reported in one ValidationError."""
        with pytest.raises(ValidationError) as info:
            panel.integrations.connect(
                "u1",
                "linear",
                auth=auth(),
                credentials=Credentials(access_token=ACCESS),
                external_account_id="",
                external_account_label="x" * 201,
            )
        assert set(info.value.fields) == {
            "credentials",
            "external_account_id",
            "external_account_label",
        }

    def test_unknown_provider_is_not_found(self, panel: UserPanel) -> None:
        """Connecting a provider the host does not offer raises provider.not_found."""
        with pytest.raises(NotFoundError) as info:
            panel.integrations.connect(
                "u1",
                "dropbox",
                auth=auth(),
                credentials=Credentials(api_key=API_KEY),
                external_account_id="x",
            )
        assert info.value.code == "provider.not_found"

    @pytest.mark.parametrize(
        "context",
        [
            auth(age=timedelta(minutes=11)),
            auth("someone-else"),
            AuthContext(user_id="u1", authenticated_at=T0 + timedelta(hours=1), factors={"pw"}),
        ],
    )
    def test_needs_a_recent_authentication(self, panel: UserPanel, context: AuthContext) -> None:
        """Connecting with a stale, foreign or future authentication is refused, storing nothing."""
        with pytest.raises(ReauthenticationRequired) as info:
            panel.integrations.connect(
                "u1",
                "linear",
                auth=context,
                credentials=Credentials(api_key=API_KEY),
                external_account_id="team-1",
            )
        assert info.value.action == SensitiveAction.CONNECT_INTEGRATION.value
        assert list(panel.integrations.list("u1")) == []

    def test_reauth_policy_is_the_panels(self, make_panel: Callable[..., UserPanel]) -> None:
        """A host-tightened rule for connecting applies (same policy object as tokens)."""
        strict = ReauthPolicy().with_overrides(
            {SensitiveAction.CONNECT_INTEGRATION: ReauthRule(factors=[{"password", "totp"}])}
        )
        panel = make_panel(reauth_policy=strict)
        with pytest.raises(ReauthenticationRequired):
            connect_linear(panel)
        assert panel.integrations.reauth_policy is panel.reauth_policy

    def test_reconnecting_an_account_replaces_its_credentials(self, panel: UserPanel) -> None:
        """Connecting the same account again keeps the connection, renews credentials and scopes."""
        first = connect_github(panel)
        panel.integrations.record_error("u1", first.id, "401", needs_reauthorization=True)
        again = connect_github(
            panel,
            credentials=Credentials(access_token="gho_NEW_token_value"),
            granted_scopes="read:user repo",
            external_account_label="@ada-l",
        )
        assert again.id == first.id
        assert again.connected_at == first.connected_at
        assert again.status is ConnectionStatus.CONNECTED
        assert again.last_error is None
        assert again.granted_scopes == {"read:user", "repo"}
        assert again.external_account_label == "@ada-l"
        assert (again.version, again.credentials_version) == (3, 1)
        read = panel.integrations.read_credentials("u1", first.id)
        assert read.credentials == Credentials(access_token="gho_NEW_token_value")
        assert len(panel.integrations.list("u1")) == 1

    def test_several_accounts_of_one_provider(self, panel: UserPanel, clock: FixedClock) -> None:
        """A user may connect two accounts of the same provider; they list oldest first."""
        clock.advance(minutes=1)
        a = connect_github(panel, account="1")
        clock.set(T0)
        b = connect_github(panel, account="2")
        assert (a.connected_at, b.connected_at) == (T0 + timedelta(minutes=1), T0)
        assert a.id != b.id
        assert [c.id for c in panel.integrations.list("u1", provider="github")] == [b.id, a.id]

    def test_connect_is_audited_without_secrets(
        self, panel: UserPanel, events: list[AuditEvent]
    ) -> None:
        """Connecting writes one integration.connected event, delivered after commit."""
        conn = connect_github(panel)
        (event,) = panel.integrations.history("u1")
        assert events == [event]
        assert (event.kind, event.subject, event.version) == (
            "integration.connected",
            conn.id,
            1,
        )
        assert event.details["provider"] == "github"
        assert event.details["reconnected"] is False
        assert event.details["credentials"] == ["access_token", "refresh_token"]
        assert event.details["key_id"] == "2026-01"
        assert_no_secret(repr(event))

    def test_users_are_isolated(self, panel: UserPanel) -> None:
        """One user's connection id is unknown to another user."""
        conn = connect_linear(panel)
        with pytest.raises(NotFoundError) as info:
            panel.integrations.get("u2", conn.id)
        assert info.value.code == "connection.not_found"
        with pytest.raises(NotFoundError):
            panel.integrations.read_credentials("u2", conn.id)
        assert list(panel.integrations.list("u2")) == []


class TestOAuth:
    def test_begin_builds_the_authorization_url(self, panel: UserPanel) -> None:
        """The URL carries the client id, redirect, scopes, state and an S256 challenge."""
        redirect = panel.integrations.begin_authorization(
            "u1", "github", auth=auth(), redirect_uri=REDIRECT, scopes=["repo", "read:user"]
        )
        query = parse_qs(urlsplit(redirect.url).query)
        assert redirect.url.startswith("https://github.example/login/oauth/authorize?")
        assert query["client_id"] == ["Iv1.0123456789abcdef"]
        assert query["redirect_uri"] == [REDIRECT]
        assert query["scope"] == ["read:user repo"]
        assert query["state"] == [redirect.request.state]
        assert query["code_challenge_method"] == ["S256"]
        assert query["code_challenge"] == [code_challenge(redirect.request.code_verifier)]
        assert redirect.expires_at == T0 + timedelta(minutes=10)
        assert redirect.request.state not in repr(redirect)

    def test_complete_stores_the_connection(self, panel: UserPanel) -> None:
        """The callback exchanges the code with the PKCE verifier and stores the connection."""
        url, state = begin(panel)
        exchange = FakeGitHub()
        conn = panel.integrations.complete_authorization("u1", state=state, exchange=exchange)
        (request,) = exchange.seen
        challenge = parse_qs(urlsplit(url).query)["code_challenge"][0]
        assert request.state == state
        assert code_challenge(request.code_verifier) == challenge
        assert conn.granted_scopes == {"read:user", "repo"}
        assert conn.external_account_id == "1001"
        read = panel.integrations.read_credentials("u1", conn.id)
        assert read.credentials.access_token == ACCESS
        (event,) = panel.integrations.history("u1")
        assert event.details["via"] == "oauth"

    def test_granted_scopes_come_from_the_provider(self, panel: UserPanel) -> None:
        """When the provider reports narrower scopes, those are stored."""
        _, state = begin(panel)
        exchange = FakeGitHub(scopes=("read:user",))
        conn = panel.integrations.complete_authorization("u1", state=state, exchange=exchange)
        assert conn.granted_scopes == {"read:user"}

    def test_state_works_once(self, panel: UserPanel) -> None:
        """Replaying a callback is refused without calling the token endpoint again."""
        _, state = begin(panel)
        exchange = FakeGitHub()
        panel.integrations.complete_authorization("u1", state=state, exchange=exchange)
        with pytest.raises(PolicyError) as info:
            panel.integrations.complete_authorization("u1", state=state, exchange=exchange)
        assert info.value.code == "integrations.oauth.unknown_state"
        assert len(exchange.seen) == 1

    def test_concurrent_callbacks_connect_once(self, panel: UserPanel) -> None:
        """Two simultaneous callbacks with one state: one connects, the other is refused."""
        _, state = begin(panel)
        exchange = FakeGitHub()
        start = threading.Barrier(2)
        outcomes: list[object] = []

        def callback() -> None:
            start.wait()
            try:
                outcomes.append(
                    panel.integrations.complete_authorization("u1", state=state, exchange=exchange)
                )
            except PolicyError as exc:
                outcomes.append(exc.code)

        threads = [threading.Thread(target=callback) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(map(type, outcomes), key=str) == sorted([Connection, str], key=str)
        assert "integrations.oauth.unknown_state" in outcomes
        assert len(exchange.seen) == 1

    def test_expired_state_is_refused_and_consumed(
        self, panel: UserPanel, clock: FixedClock
    ) -> None:
        """A callback after the TTL is refused as expired, and the state is gone afterwards."""
        _, state = begin(panel)
        clock.advance(minutes=10)
        exchange = FakeGitHub()
        with pytest.raises(PolicyError) as info:
            panel.integrations.complete_authorization("u1", state=state, exchange=exchange)
        assert info.value.code == "integrations.oauth.expired"
        clock.set(T0)
        with pytest.raises(PolicyError) as again:
            panel.integrations.complete_authorization("u1", state=state, exchange=exchange)
        assert again.value.code == "integrations.oauth.unknown_state"
        assert exchange.seen == []

    def test_just_before_expiry_is_accepted(self, panel: UserPanel, clock: FixedClock) -> None:
        """A callback a microsecond before the TTL ends still connects."""
        _, state = begin(panel)
        clock.advance(timedelta(minutes=10) - timedelta(microseconds=1))
        panel.integrations.complete_authorization("u1", state=state, exchange=FakeGitHub())

    def test_another_user_cannot_complete(self, panel: UserPanel) -> None:
        """A callback signed in as another user is refused and burns the state."""
        _, state = begin(panel)
        with pytest.raises(PolicyError) as info:
            panel.integrations.complete_authorization("u2", state=state, exchange=FakeGitHub())
        assert info.value.code == "integrations.oauth.wrong_user"
        with pytest.raises(PolicyError):
            panel.integrations.complete_authorization("u1", state=state, exchange=FakeGitHub())
        assert list(panel.integrations.list("u2")) == []

    @pytest.mark.parametrize("state", ["", "forged-state-value-0123456789", "x" * 600, 42])
    def test_unknown_state_is_refused(self, panel: UserPanel, state: object) -> None:
        """A state we never issued is refused with one uniform code."""
        begin(panel)
        with pytest.raises(PolicyError) as info:
            panel.integrations.complete_authorization(
                "u1",
                state=state,  # type: ignore[arg-type]
                exchange=FakeGitHub(),
            )
        assert info.value.code == "integrations.oauth.unknown_state"

    def test_failed_exchange_stores_nothing_and_burns_the_state(self, panel: UserPanel) -> None:
        """If the host's exchange fails, no connection is made and the state cannot be reused."""
        _, state = begin(panel)
        with pytest.raises(RuntimeError):
            panel.integrations.complete_authorization(
                "u1", state=state, exchange=FakeGitHub(fail=True)
            )
        assert list(panel.integrations.list("u1")) == []
        with pytest.raises(PolicyError):
            panel.integrations.complete_authorization("u1", state=state, exchange=FakeGitHub())

    def test_exchange_must_return_a_grant(self, panel: UserPanel) -> None:
        """An exchange that returns something else is a ValidationError, nothing stored."""
        _, state = begin(panel)
        with pytest.raises(ValidationError) as info:
            panel.integrations.complete_authorization(
                "u1",
                state=state,
                exchange=lambda _request: {"access_token": ACCESS},  # type: ignore[arg-type,return-value]
            )
        assert info.value.codes == ("grant.invalid_type",)
        assert_no_secret(str(info.value))

    def test_begin_needs_a_recent_authentication(self, panel: UserPanel) -> None:
        """Starting the flow is the sensitive step: a stale session is refused."""
        with pytest.raises(ReauthenticationRequired):
            panel.integrations.begin_authorization(
                "u1", "github", auth=auth(age=timedelta(hours=1)), redirect_uri=REDIRECT
            )

    def test_begin_reports_every_problem(self, panel: UserPanel) -> None:
        """A non-OAuth provider, unknown scopes and a bad redirect are reported together."""
        with pytest.raises(ValidationError) as info:
            panel.integrations.begin_authorization(
                "u1", "linear", auth=auth(), redirect_uri="http://evil.example/", scopes="admin"
            )
        assert set(info.value.codes) == {
            "provider.not_oauth2",
            "scopes.unknown",
            "redirect_uri.not_https",
        }

    def test_client_id_is_needed(self, panel: UserPanel) -> None:
        """A provider without a client id needs one per call."""
        with pytest.raises(ValidationError) as info:
            panel.integrations.begin_authorization(
                "u1", "gitlab", auth=auth(), redirect_uri=REDIRECT
            )
        assert info.value.codes == ("client_id.required",)
        redirect = panel.integrations.begin_authorization(
            "u1", "gitlab", auth=auth(), redirect_uri=REDIRECT, client_id="gl-client"
        )
        assert "client_id=gl-client" in redirect.url

    def test_expired_requests_are_purged(self, panel: UserPanel, clock: FixedClock) -> None:
        """Expired pending requests are deleted by the purge job and by the next begin."""
        begin(panel)
        begin(panel)
        clock.advance(minutes=11)
        assert panel.integrations.purge_expired_authorizations() == 2
        fresh = AuthContext(user_id="u1", authenticated_at=clock.now(), factors={"password"})
        begin(panel, context=fresh)
        clock.advance(minutes=10)
        begin(panel, context=fresh)  # purges the first on the way
        assert panel.integrations.purge_expired_authorizations() == 0
        clock.advance(minutes=10)
        assert panel.integrations.purge_expired_authorizations() == 1


class TestStatus:
    def test_record_error_redacts_the_credentials(
        self, panel: UserPanel, events: list[AuditEvent]
    ) -> None:
        """The stored error text never contains the connection's own secrets."""
        conn = connect_github(panel)
        updated = panel.integrations.record_error(
            "u1", conn.id, f"401 Bad credentials for token {ACCESS}\r\nretry", actor="worker"
        )
        assert updated.status is ConnectionStatus.ERROR
        assert updated.last_error == "401 Bad credentials for token [redacted] retry"
        assert updated.version == 2
        assert events[-1].kind == "integration.status_changed"
        assert events[-1].actor == "worker"
        assert [(c.old, c.new) for c in events[-1].changes] == [("connected", "error")]

    def test_needs_reauthorization(self, panel: UserPanel) -> None:
        """A refused grant marks the connection as needing re-authorisation."""
        conn = connect_github(panel)
        updated = panel.integrations.record_error(
            "u1", conn.id, "invalid_grant", needs_reauthorization=True
        )
        assert updated.status is ConnectionStatus.NEEDS_REAUTHORIZATION
        assert panel.integrations.get("u1", conn.id) == updated

    def test_record_sync(
        self, panel: UserPanel, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """A successful call reconnects, clears the error and stamps the last sync."""
        conn = connect_github(panel)
        panel.integrations.record_error("u1", conn.id, "timeout")
        clock.advance(minutes=3)
        synced = panel.integrations.record_sync("u1", conn.id)
        assert synced.status is ConnectionStatus.CONNECTED
        assert synced.last_error is None
        assert synced.last_sync_at == T0 + timedelta(minutes=3)
        count = len(events)
        clock.advance(minutes=3)
        again = panel.integrations.record_sync("u1", conn.id)
        assert again.last_sync_at == T0 + timedelta(minutes=6)
        assert len(events) == count  # same status: not audited

    def test_unchanged_status_is_not_written(self, panel: UserPanel) -> None:
        """Setting the status a connection already has changes nothing."""
        conn = connect_github(panel)
        same = panel.integrations.update_status("u1", conn.id, "connected")
        assert same == conn
        assert len(panel.integrations.history("u1")) == 1

    def test_revoked_deletes_the_credentials(self, panel: UserPanel) -> None:
        """A revoked connection keeps its row for the tab but loses its credentials."""
        conn = connect_github(panel)
        revoked = panel.integrations.update_status(
            "u1", conn.id, ConnectionStatus.REVOKED, error="app uninstalled"
        )
        assert revoked.status is ConnectionStatus.REVOKED
        assert revoked.last_error == "app uninstalled"
        with pytest.raises(NotFoundError) as info:
            panel.integrations.read_credentials("u1", conn.id)
        assert info.value.code == "credentials.not_found"

    def test_revoked_only_leaves_by_connecting_again(self, panel: UserPanel) -> None:
        """A revoked connection refuses status changes and refreshes; connecting again works."""
        conn = connect_github(panel)
        panel.integrations.update_status("u1", conn.id, "revoked")
        for attempt in (
            lambda: panel.integrations.record_sync("u1", conn.id),
            lambda: panel.integrations.update_status("u1", conn.id, "error", error="x"),
            lambda: panel.integrations.rotate_credentials(
                "u1",
                conn.id,
                Credentials(access_token="gho_x"),
                expected_credentials_version=conn.credentials_version,
            ),
        ):
            with pytest.raises(PolicyError) as info:
                attempt()
            assert info.value.code == "integrations.revoked"
        again = connect_github(panel)
        assert again.status is ConnectionStatus.CONNECTED
        assert panel.integrations.read_credentials("u1", conn.id).credentials.access_token == ACCESS

    def test_stale_expected_version_conflicts(self, panel: UserPanel) -> None:
        """A status change based on an old version raises ConflictError and changes nothing."""
        conn = connect_github(panel)
        panel.integrations.record_error("u1", conn.id, "timeout")
        with pytest.raises(ConflictError) as info:
            panel.integrations.update_status(
                "u1", conn.id, "connected", expected_version=conn.version
            )
        assert (info.value.expected_version, info.value.current_version) == (1, 2)
        assert panel.integrations.get("u1", conn.id).status is ConnectionStatus.ERROR

    @pytest.mark.parametrize(
        ("status", "version", "code"),
        [("paused", None, "status.invalid"), ("error", -1, "expected_version.invalid")],
    )
    def test_invalid_input(
        self, panel: UserPanel, status: str, version: int | None, code: str
    ) -> None:
        """An unknown status or a negative version is a ValidationError."""
        conn = connect_github(panel)
        with pytest.raises(ValidationError) as info:
            panel.integrations.update_status("u1", conn.id, status, expected_version=version)
        assert info.value.codes == (code,)

    def test_unknown_connection(self, panel: UserPanel) -> None:
        """Status updates on a missing or foreign connection raise connection.not_found."""
        conn = connect_github(panel)
        for user, cid in (("u1", "missing"), ("u2", conn.id)):
            with pytest.raises(NotFoundError):
                panel.integrations.record_sync(user, cid)


class TestCredentials:
    def test_read_credentials_hides_them_in_repr(self, panel: UserPanel) -> None:
        """The worker's view names which secrets are set, never their values."""
        conn = connect_github(panel)
        read = panel.integrations.read_credentials("u1", conn.id)
        assert read.credentials.refresh_token == REFRESH
        assert read.credentials_version == 0
        assert read.key_id == "2026-01"
        assert_no_secret(repr(read))
        assert_no_secret(str(read))

    def test_rotate_replaces_and_audits(self, panel: UserPanel, events: list[AuditEvent]) -> None:
        """Rotation stores the new secrets, bumps credentials_version and is audited safely."""
        conn = connect_github(panel)
        new = Credentials(access_token="gho_ROTATED_aaaaaaaa", refresh_token="ghr_ROTATED_bbbb")
        rotated = panel.integrations.rotate_credentials(
            "u1",
            conn.id,
            new,
            expected_credentials_version=0,
            granted_scopes=["read:user", "repo"],
            actor="worker:refresh",
        )
        assert (rotated.version, rotated.credentials_version) == (2, 1)
        assert rotated.granted_scopes == {"read:user", "repo"}
        assert panel.integrations.read_credentials("u1", conn.id).credentials == new
        event = events[-1]
        assert (event.kind, event.actor) == ("integration.credentials_rotated", "worker:refresh")
        assert event.details["credentials_version"] == 1
        assert "ROTATED" not in repr(event)

    def test_stale_credentials_version_conflicts(self, panel: UserPanel) -> None:
        """A refresh based on credentials someone already replaced is refused, unchanged."""
        conn = connect_github(panel)
        panel.integrations.rotate_credentials(
            "u1", conn.id, Credentials(access_token="gho_first"), expected_credentials_version=0
        )
        with pytest.raises(ConflictError) as info:
            panel.integrations.rotate_credentials(
                "u1",
                conn.id,
                Credentials(access_token="gho_second"),
                expected_credentials_version=0,
            )
        assert info.value.code == "connection.credentials.conflict"
        assert (info.value.expected_version, info.value.current_version) == (0, 1)
        read = panel.integrations.read_credentials("u1", conn.id)
        assert read.credentials.access_token == "gho_first"

    def test_status_changes_do_not_conflict_with_a_refresh(self, panel: UserPanel) -> None:
        """A sync recorded between reading and refreshing does not make the refresh fail."""
        conn = connect_github(panel)
        read = panel.integrations.read_credentials("u1", conn.id)
        panel.integrations.record_sync("u1", conn.id)
        panel.integrations.rotate_credentials(
            "u1",
            conn.id,
            Credentials(access_token="gho_refreshed"),
            expected_credentials_version=read.credentials_version,
        )

    def test_two_workers_refreshing_at_once(self, panel: UserPanel) -> None:
        """Two workers refresh one connection at once: one wins, the other gets ConflictError."""
        conn = connect_github(panel)
        read = panel.integrations.read_credentials("u1", conn.id)
        start = threading.Barrier(2)
        outcomes: dict[str, object] = {}

        def worker(name: str) -> None:
            start.wait()
            try:
                panel.integrations.rotate_credentials(
                    "u1",
                    conn.id,
                    Credentials(access_token=f"gho_from_{name}"),
                    expected_credentials_version=read.credentials_version,
                )
                outcomes[name] = "stored"
            except ConflictError as exc:
                outcomes[name] = exc

        threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [n for n, o in outcomes.items() if o == "stored"]
        losers = [o for o in outcomes.values() if isinstance(o, ConflictError)]
        assert len(winners) == 1
        assert len(losers) == 1
        stored = panel.integrations.read_credentials("u1", conn.id)
        assert stored.credentials.access_token == f"gho_from_{winners[0]}"
        assert stored.credentials_version == 1

    def test_rotation_checks_the_kind(self, panel: UserPanel) -> None:
        """A refresh must still fit the provider's kind."""
        conn = connect_linear(panel)
        with pytest.raises(ValidationError) as info:
            panel.integrations.rotate_credentials(
                "u1", conn.id, Credentials(access_token=ACCESS), expected_credentials_version=0
            )
        assert info.value.codes == ("credentials.missing_for_kind",)

    def test_ciphertext_is_bound_to_its_connection(self, panel: UserPanel) -> None:
        """A ciphertext copied onto another connection's row does not decrypt there."""
        a = connect_github(panel, account="1")
        b = connect_github(panel, account="2")
        with panel.storage.transaction() as tx:
            assert isinstance(tx, SupportsIntegrations)
            box = tx.integrations.get_credentials("u1", a.id)
            assert box is not None
            tx.integrations.put_credentials("u1", b.id, box)
        with pytest.raises(ValidationError) as info:
            panel.integrations.read_credentials("u1", b.id)
        assert info.value.codes == ("ciphertext.undecryptable",)


class TestKeyRotation:
    def test_reencrypts_under_the_newest_key(
        self, make_panel: Callable[..., UserPanel], ring: KeyRing
    ) -> None:
        """After adding a key, re-encryption moves every blob to it; old keys can then go."""
        old_panel = make_panel()
        ids = [connect_github(old_panel, user, account=user).id for user in ("u1", "u2", "u3")]
        new_key = EncryptionKey.generate(SeededRandom(99), "2026-07")
        panel = make_panel(key_ring=ring.with_current(new_key))
        report = panel.integrations.reencrypt_credentials(batch_size=2)
        assert (report.key_id, report.reencrypted, report.failed) == ("2026-07", 3, ())
        only_new = make_panel(key_ring=KeyRing([new_key]))
        for user, cid in zip(("u1", "u2", "u3"), ids, strict=True):
            read = only_new.integrations.read_credentials(user, cid)
            assert (read.key_id, read.credentials.access_token) == ("2026-07", ACCESS)
            assert read.connection.credentials_version == 0
        assert panel.integrations.reencrypt_credentials().reencrypted == 0

    def test_one_user_at_a_time(self, make_panel: Callable[..., UserPanel], ring: KeyRing) -> None:
        """Re-encryption can be limited to one user."""
        old_panel = make_panel()
        a = connect_github(old_panel, "u1")
        b = connect_github(old_panel, "u2")
        panel = make_panel(
            key_ring=ring.with_current(EncryptionKey.generate(SeededRandom(3), "k2"))
        )
        assert panel.integrations.reencrypt_credentials(user_id="u1").reencrypted == 1
        assert panel.integrations.read_credentials("u1", a.id).key_id == "k2"
        assert panel.integrations.read_credentials("u2", b.id).key_id == "2026-01"

    def test_unreadable_blobs_are_reported_not_lost(
        self, make_panel: Callable[..., UserPanel], ring: KeyRing
    ) -> None:
        """Blobs sealed by a key no longer in the ring are reported and left untouched."""
        lost = make_panel(key_ring=KeyRing.generate(SeededRandom(5), "lost"))
        orphan = connect_github(lost, "u1", account="9")
        fine = connect_github(make_panel(rng=SeededRandom(8)), "u2")
        panel = make_panel(
            key_ring=ring.with_current(EncryptionKey.generate(SeededRandom(6), "k3"))
        )
        report = panel.integrations.reencrypt_credentials(batch_size=1)
        assert (report.reencrypted, report.failed) == (1, (orphan.id,))
        assert lost.integrations.read_credentials("u1", orphan.id).key_id == "lost"
        assert panel.integrations.read_credentials("u2", fine.id).key_id == "k3"

    @pytest.mark.parametrize("size", [0, 10_001, True])
    def test_batch_size_is_bounded(self, panel: UserPanel, size: int) -> None:
        """The batch size is 1 to 10 000."""
        with pytest.raises(ValidationError) as info:
            panel.integrations.reencrypt_credentials(batch_size=size)
        assert info.value.codes == ("batch_size.out_of_range",)


class TestDisconnect:
    def test_removes_connection_and_credentials(
        self, panel: UserPanel, events: list[AuditEvent]
    ) -> None:
        """Disconnecting deletes the connection and its credentials, and is audited."""
        conn = connect_linear(panel)
        removed = panel.integrations.disconnect("u1", conn.id, auth=auth(), actor="u1")
        assert removed == conn
        assert list(panel.integrations.list("u1")) == []
        with pytest.raises(NotFoundError):
            panel.integrations.read_credentials("u1", conn.id)
        with panel.storage.transaction(write=False) as tx:
            assert isinstance(tx, SupportsIntegrations)
            assert list(tx.integrations.list_credentials()) == []
        assert events[-1].kind == "integration.disconnected"
        assert events[-1].subject == conn.id

    def test_needs_a_recent_authentication(self, panel: UserPanel) -> None:
        """Disconnecting with a stale session is refused and removes nothing."""
        conn = connect_linear(panel)
        with pytest.raises(ReauthenticationRequired) as info:
            panel.integrations.disconnect("u1", conn.id, auth=auth(age=timedelta(hours=2)))
        assert info.value.action == SensitiveAction.DISCONNECT_INTEGRATION.value
        assert len(panel.integrations.list("u1")) == 1

    def test_refuses_the_last_sign_in_method(self, panel: UserPanel) -> None:
        """The only sign-in connection of a user without a password cannot be removed."""
        conn = connect_github(panel)
        with pytest.raises(PolicyError) as info:
            panel.integrations.disconnect("u1", conn.id, auth=auth())
        assert info.value.code == "integrations.last_sign_in_method"
        assert panel.integrations.read_credentials("u1", conn.id).credentials.access_token == ACCESS

    def test_a_password_from_the_security_tab_counts(self, clock: FixedClock) -> None:
        """By default the panel asks the Security tab: a user with a password may disconnect."""
        from enspace_profile import Argon2idHasher, PasswordHash

        storage = MemoryStorage()
        panel = UserPanel(
            storage=storage,
            clock=clock,
            rng=SeededRandom(7),
            key_ring=KeyRing.generate(SeededRandom(1), "k1"),
            providers=catalog(),
            password_hash=PasswordHash([Argon2idHasher(memory_cost=1024, iterations=1)]),
        )
        conn = connect_github(panel)
        assert panel.security.sign_in_methods("u1") == 0
        panel.security.set_password("u1", "correct horse battery staple", auth=auth())
        assert panel.security.sign_in_methods("u1") == 1
        panel.integrations.disconnect("u1", conn.id, auth=auth())
        assert panel.integrations.list("u1") == []

    @pytest.mark.parametrize(
        "setup",
        ["password_given", "callback", "second_github", "gitlab", "revoked"],
    )
    def test_allowed_when_another_way_to_sign_in_exists(
        self, make_panel: Callable[..., UserPanel], setup: str
    ) -> None:
        """A sign-in connection may go when another method exists (or it cannot sign in)."""
        panel = make_panel(sign_in_methods=(lambda _user: 1) if setup == "callback" else None)
        conn = connect_github(panel)
        if setup == "second_github":
            connect_github(panel, account="2002")
        elif setup == "gitlab":
            panel.integrations.connect(
                "u1",
                "gitlab",
                auth=auth(),
                credentials=Credentials(access_token="glpat-x"),
                external_account_id="77",
            )
        elif setup == "revoked":
            panel.integrations.update_status("u1", conn.id, "revoked")
        panel.integrations.disconnect(
            "u1",
            conn.id,
            auth=auth(),
            other_sign_in_methods=1 if setup == "password_given" else None,
        )
        assert conn.id not in [c.id for c in panel.integrations.list("u1")]

    def test_host_policy_hook(self, make_panel: Callable[..., UserPanel]) -> None:
        """A host's disconnect policy is consulted with the user's connections."""
        seen: list[tuple[str, int, int]] = []

        class KeepLinear:
            def check_disconnect(
                self,
                connection: Connection,
                *,
                other_connections: object,
                catalog: ProviderCatalog,
                other_sign_in_methods: int,
            ) -> None:
                seen.append(
                    (connection.provider, len(list(other_connections)), other_sign_in_methods)  # type: ignore[call-overload]
                )
                if connection.provider == "linear":
                    raise PolicyError("billing needs Linear", code="host.keep_linear")

        panel = make_panel(disconnect_policy=KeepLinear(), sign_in_methods=lambda _u: 4)
        conn = connect_linear(panel)
        with pytest.raises(PolicyError) as info:
            panel.integrations.disconnect("u1", conn.id, auth=auth())
        assert info.value.code == "host.keep_linear"
        assert seen == [("linear", 1, 4)]

    def test_revoke_callback_gets_the_last_credentials(self, panel: UserPanel) -> None:
        """The host can revoke the tokens at the provider after the removal committed."""
        conn = connect_github(panel, account="1")
        connect_github(panel, account="2")
        revoked: list[tuple[str, str | None, int]] = []

        def revoke(connection: Connection, credentials: Credentials) -> None:
            remaining = len(panel.integrations.list("u1"))
            revoked.append((connection.id, credentials.access_token, remaining))

        panel.integrations.disconnect("u1", conn.id, auth=auth(), revoke=revoke)
        assert revoked == [(conn.id, ACCESS, 1)]

    def test_failing_revoke_is_logged_not_raised(
        self, panel: UserPanel, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A revoke callback that fails does not undo or fail the disconnect."""
        conn = connect_linear(panel)

        def revoke(_connection: Connection, _credentials: Credentials) -> None:
            raise RuntimeError("provider down")

        with caplog.at_level(logging.ERROR, logger="enspace_profile.integrations"):
            panel.integrations.disconnect("u1", conn.id, auth=auth(), revoke=revoke)
        assert list(panel.integrations.list("u1")) == []
        assert "revoking the credentials" in caplog.text
        assert_no_secret(caplog.text)

    def test_unknown_connection(self, panel: UserPanel) -> None:
        """Disconnecting a missing or foreign connection raises connection.not_found."""
        conn = connect_linear(panel)
        with pytest.raises(NotFoundError):
            panel.integrations.disconnect("u2", conn.id, auth=auth("u2"))


class TestConfiguration:
    def test_panel_constructs_without_a_key_ring(
        self, make_panel: Callable[..., UserPanel]
    ) -> None:
        """Without a key ring the tab lists, but credential work raises ConfigurationError."""
        panel = make_panel(key_ring=None)
        assert list(panel.integrations.list("u1")) == []
        calls: list[Callable[[], object]] = [
            lambda: connect_linear(panel),
            lambda: begin(panel),
            lambda: panel.integrations.complete_authorization(
                "u1", state="s" * 43, exchange=FakeGitHub()
            ),
            lambda: panel.integrations.read_credentials("u1", "c"),
            lambda: panel.integrations.rotate_credentials(
                "u1", "c", Credentials(api_key="k"), expected_credentials_version=0
            ),
            panel.integrations.reencrypt_credentials,
        ]
        for call in calls:
            with pytest.raises(ConfigurationError) as info:
                call()
            assert info.value.option == "key_ring"
            assert info.value.code == "configuration.missing_option"
            assert "key_ring" in str(info.value)

    def test_default_catalog_is_empty(self, storage: Storage) -> None:
        """No provider is built in."""
        panel = UserPanel(storage=storage)
        assert len(panel.integrations.providers) == 0

    def test_storage_without_integrations(self, clock: FixedClock, ring: KeyRing) -> None:
        """A storage lacking the integrations repository raises CapabilityError when used."""

        class Bare:
            def __init__(self) -> None:
                self.inner = MemoryStorage()

            @contextmanager
            def transaction(self, *, write: bool = True) -> Iterator[object]:
                with self.inner.transaction(write=write) as tx:
                    yield attrs.make_class("Tx", ["profiles", "audit"])(tx.profiles, tx.audit)

            def close(self) -> None:
                self.inner.close()

        panel = UserPanel(storage=Bare(), clock=clock, key_ring=ring, providers=catalog())  # type: ignore[arg-type]
        with pytest.raises(CapabilityError) as info:
            panel.integrations.list("u1")
        assert info.value.capability == "integrations"


class TestNoSecretLeaks:
    def _exercise(self, panel: UserPanel) -> list[str]:
        """Use every path that handles a secret; return the OAuth secrets it produced."""
        conn = connect_github(panel, account="1")
        connect_linear(panel)
        panel.integrations.connect(
            "u1",
            "slack",
            auth=auth(),
            credentials=Credentials(webhook_url=WEBHOOK),
            external_account_id="T0",
        )
        panel.integrations.record_error("u1", conn.id, f"bad token {ACCESS} / {REFRESH}")
        panel.integrations.rotate_credentials(
            "u1",
            conn.id,
            Credentials(access_token=ACCESS + "2", refresh_token=REFRESH + "2"),
            expected_credentials_version=0,
        )
        _, state = begin(panel)
        pending = panel.integrations.begin_authorization(
            "u1", "github", auth=auth(), redirect_uri=REDIRECT
        ).request
        panel.integrations.complete_authorization(
            "u1", state=state, exchange=FakeGitHub(account="2")
        )
        return [state, pending.state, pending.code_verifier]

    def test_sqlite_file_holds_no_secret(
        self, tmp_path: Path, clock: FixedClock, ring: KeyRing
    ) -> None:
        """No credential, OAuth state or PKCE verifier appears in the SQLite files' bytes."""
        path = tmp_path / "leak.db"
        events: list[AuditEvent] = []
        with UserPanel(
            storage=SQLiteStorage(path),
            clock=clock,
            rng=SeededRandom(3),
            key_ring=ring,
            providers=catalog(),
            notifier=events.append,
        ) as panel:
            oauth_secrets = self._exercise(panel)
        files = list(tmp_path.glob("leak.db*"))
        assert path in files
        data = b"".join(f.read_bytes() for f in files)
        assert b"integration_credentials" in data  # the schema is there: we read the right file
        for secret in (*SECRETS, ACCESS + "2", *oauth_secrets):
            assert secret.encode() not in data
            for event in events:
                assert secret not in repr(event)

    def test_no_secret_in_reprs_events_or_errors(
        self, panel: UserPanel, events: list[AuditEvent]
    ) -> None:
        """Connections, events, the panel and errors never show a secret."""
        oauth_secrets = self._exercise(panel)
        texts = [repr(panel), repr(panel.integrations)]
        texts += [repr(c) for c in panel.integrations.list("u1")]
        texts += [repr(e) for e in events]
        texts += [repr(e) for e in panel.integrations.history("u1")]
        texts += [
            repr(panel.integrations.read_credentials("u1", c.id))
            for c in panel.integrations.list("u1")
        ]
        for text in texts:
            assert_no_secret(text)
            for secret in oauth_secrets:
                assert secret not in text


class TestSerialisation:
    def test_connections_round_trip_through_the_converter(self, panel: UserPanel) -> None:
        """A connection becomes a JSON-ready dict (no secret in it) and back, unchanged."""
        conn = panel.integrations.record_error("u1", connect_github(panel).id, "timeout")
        data = converter.unstructure(conn)
        assert data["status"] == "error"
        assert data["granted_scopes"] == ["read:user"]
        assert data["connected_at"] == T0.isoformat()
        assert_no_secret(repr(data))
        assert converter.structure(data, Connection) == conn

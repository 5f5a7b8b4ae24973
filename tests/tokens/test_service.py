import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enspace_profile import (
    KEEP,
    AuditEvent,
    AuthContext,
    CreatedToken,
    ExpiryPolicy,
    FixedClock,
    MemoryStorage,
    Pepper,
    Principal,
    Scope,
    ScopeCatalog,
    SeededRandom,
    SQLiteStorage,
    TokenService,
    TokenStatus,
    UserPanel,
    describe_rejection,
)
from enspace_profile.exceptions import (
    AlreadyExistsError,
    CapabilityError,
    ConfigurationError,
    ExpiredTokenError,
    InsufficientScopeError,
    LimitExceededError,
    MalformedTokenError,
    NotFoundError,
    PolicyError,
    ReauthenticationRequired,
    RevokedTokenError,
    StorageBusyError,
    TokenChecksumError,
    TokenError,
    UnknownTokenError,
    ValidationError,
)
from enspace_profile.typing import Storage

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PEPPER = Pepper(id="2026-01", secret=b"p" * 32)
NEW_PEPPER = Pepper(id="2026-07", secret=b"q" * 32)
CATALOG = ScopeCatalog(
    scopes=[
        Scope(name="repo:read", description="Read repositories"),
        Scope(name="repo:write", description="Push to repositories"),
        Scope(name="user.email", description="Read your email address"),
    ]
)


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    s: Storage = MemoryStorage() if request.param == "memory" else SQLiteStorage(tmp_path / "t.db")
    yield s
    s.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def events() -> list[AuditEvent]:
    return []


def make_panel(
    storage: Storage, clock: FixedClock, events: list[AuditEvent], **options: Any
) -> UserPanel:
    options.setdefault("token_peppers", [PEPPER])
    options.setdefault("scopes", CATALOG)
    return UserPanel(
        storage=storage, clock=clock, rng=SeededRandom(7), notifier=events.append, **options
    )


@pytest.fixture
def panel(storage: Storage, clock: FixedClock, events: list[AuditEvent]) -> UserPanel:
    return make_panel(storage, clock, events)


@pytest.fixture
def tokens(panel: UserPanel) -> TokenService:
    return panel.tokens


def fresh(clock: FixedClock, user_id: str = "u1", *, age: timedelta = timedelta(0)) -> AuthContext:
    return AuthContext(user_id=user_id, authenticated_at=clock.now() - age, factors={"password"})


def create(
    tokens: TokenService, clock: FixedClock, name: str = "CI", user_id: str = "u1", **options: Any
) -> CreatedToken:
    options.setdefault("scopes", ["repo:read"])
    return tokens.create(user_id, auth=fresh(clock, user_id), name=name, **options)


class TestCreate:
    def test_returns_the_secret_once_with_a_stored_token(
        self, tokens: TokenService, clock: FixedClock
    ) -> None:
        """Creating returns the token and its secret; only a hint of it is stored."""
        created = create(tokens, clock, description="deploys", scopes=["repo:read", "repo:write"])
        token = created.token
        assert created.secret.startswith("esp_")
        assert len(created.secret) == 40
        assert token.hint == f"esp_…{created.secret[-4:]}"
        assert (token.user_id, token.name, token.description) == ("u1", "CI", "deploys")
        assert token.scopes == {"repo:read", "repo:write"}
        assert token.created_at == T0
        assert token.family_id == token.id
        assert token.status(T0) is TokenStatus.ACTIVE
        assert tokens.get("u1", token.id) == token
        assert created.secret not in repr(created)

    def test_default_expiry_is_the_policy_default(
        self, tokens: TokenService, clock: FixedClock
    ) -> None:
        """Without a choice the token expires after the policy's default 30 days."""
        assert create(tokens, clock).token.expires_at == T0 + timedelta(days=30)

    @pytest.mark.parametrize(
        ("expires", "expected"),
        [
            (7, T0 + timedelta(days=7)),
            ("90d", T0 + timedelta(days=90)),
            (T0 + timedelta(days=200), T0 + timedelta(days=200)),
            ("2026-06-01T00:00:00+00:00", datetime(2026, 6, 1, tzinfo=UTC)),
        ],
    )
    def test_presets_and_custom_dates(
        self, tokens: TokenService, clock: FixedClock, expires: object, expected: datetime
    ) -> None:
        """Presets, day counts and custom dates within the maximum are accepted."""
        assert create(tokens, clock, expires=expires).token.expires_at == expected

    def test_date_beyond_the_maximum_is_refused_clearly(
        self, tokens: TokenService, clock: FixedClock
    ) -> None:
        """An expiry past 366 days raises a clear error naming the latest allowed date."""
        with pytest.raises(ValidationError) as info:
            create(tokens, clock, expires=T0 + timedelta(days=367))
        (error,) = info.value.errors
        assert error.code == "expires_at.beyond_maximum"
        assert error.params["latest"] == (T0 + timedelta(days=366)).isoformat()
        assert tokens.list("u1") == []

    def test_no_expiry_needs_the_policy(
        self, storage: Storage, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """ "No expiration" is refused by default and flagged in listings where allowed."""
        strict = make_panel(storage, clock, events).tokens
        with pytest.raises(ValidationError) as info:
            create(strict, clock, expires=None)
        assert info.value.codes == ("expires_at.required",)
        lax = make_panel(storage, clock, events, expiry_policy=ExpiryPolicy(allow_no_expiry=True))
        token = create(lax.tokens, clock, expires=None).token
        assert token.expires_at is None
        assert [t.never_expires for t in lax.tokens.list("u1")] == [True]

    def test_every_invalid_field_is_reported_at_once(
        self, tokens: TokenService, clock: FixedClock
    ) -> None:
        """Name, description, scopes and expiry errors come in one ValidationError."""
        with pytest.raises(ValidationError) as info:
            tokens.create(
                "u1",
                auth=fresh(clock),
                name="  ",
                description="x" * 501,
                scopes=["repo:read", "admin", "sudo"],
                expires=400,
            )
        assert set(info.value.codes) == {
            "name.required",
            "description.too_long",
            "scopes.unknown",
            "expires_at.beyond_maximum",
        }
        unknown = next(e for e in info.value.errors if e.code == "scopes.unknown")
        assert unknown.params["unknown"] == ["admin", "sudo"]

    def test_names_are_unique_among_a_users_live_tokens(
        self, tokens: TokenService, clock: FixedClock
    ) -> None:
        """A second live token of a name is refused; other users' and revoked ones don't count."""
        first = create(tokens, clock, name="CI")
        with pytest.raises(AlreadyExistsError) as info:
            create(tokens, clock, name="CI")
        assert info.value.field == "name"
        create(tokens, clock, name="CI", user_id="u2")
        tokens.revoke("u1", first.token.id)
        assert create(tokens, clock, name="CI").token.name == "CI"

    def test_stale_authentication_is_refused(self, tokens: TokenService, clock: FixedClock) -> None:
        """Creating needs an authentication from the last 10 minutes, and says so."""
        with pytest.raises(ReauthenticationRequired) as info:
            tokens.create(
                "u1",
                auth=fresh(clock, age=timedelta(minutes=11)),
                name="CI",
                scopes=["repo:read"],
            )
        assert info.value.action == "tokens.create"
        assert info.value.max_age == timedelta(minutes=10)
        assert tokens.list("u1") == []
        create(tokens, clock)  # 10 minutes is recent enough

    def test_another_users_session_is_refused(
        self, tokens: TokenService, clock: FixedClock
    ) -> None:
        """A session of one user never creates a token for another."""
        with pytest.raises(ReauthenticationRequired):
            tokens.create("u1", auth=fresh(clock, "u2"), name="CI", scopes=["repo:read"])

    def test_per_user_cap(
        self, storage: Storage, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """A user may hold at most the cap of live tokens; revoking frees a slot."""
        tokens = make_panel(storage, clock, events, max_tokens_per_user=2).tokens
        first = create(tokens, clock, name="a")
        create(tokens, clock, name="b")
        with pytest.raises(LimitExceededError) as info:
            create(tokens, clock, name="c")
        assert (info.value.code, info.value.limit) == ("tokens.limit_exceeded", 2)
        create(tokens, clock, name="other user", user_id="u2")
        tokens.revoke("u1", first.token.id)
        create(tokens, clock, name="c")

    def test_cap_holds_under_concurrent_creation(
        self, storage: Storage, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """Eight threads creating tokens for one user at once never exceed the cap."""
        cap, threads, attempts = 10, 8, 4
        tokens = make_panel(storage, clock, events, max_tokens_per_user=cap).tokens
        start = threading.Barrier(threads)
        created: list[str] = []
        refused: list[BaseException] = []
        unexpected: list[BaseException] = []

        def work(n: int) -> None:
            start.wait()
            for k in range(attempts):
                try:
                    created.append(create(tokens, clock, name=f"t{n}-{k}").token.id)
                except LimitExceededError as exc:
                    refused.append(exc)
                except BaseException as exc:
                    unexpected.append(exc)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert unexpected == []
        assert len(created) == cap
        assert len(refused) == threads * attempts - cap
        assert len(tokens.list("u1")) == cap

    def test_creation_is_audited_without_the_secret(
        self, tokens: TokenService, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """A token.created event names the token by id and hint, never by secret."""
        created = create(tokens, clock)
        (event,) = events
        assert (event.kind, event.user_id, event.subject) == (
            "token.created",
            "u1",
            created.token.id,
        )
        assert event.details["hint"] == created.token.hint
        assert event.details["scopes"] == ["repo:read"]
        assert created.secret not in repr(event)


class TestReadAndEdit:
    def test_list_is_newest_first_with_hints(self, tokens: TokenService, clock: FixedClock) -> None:
        """The list shows every token of the user, newest first, revoked ones included."""
        a = create(tokens, clock, name="a").token
        clock.advance(minutes=1)
        b = create(tokens, clock, name="b").token
        clock.advance(minutes=1)
        c = create(tokens, clock, name="c").token
        tokens.revoke("u1", b.id)
        create(tokens, clock, name="elsewhere", user_id="u2")
        listed = tokens.list("u1")
        assert [t.id for t in listed] == [c.id, b.id, a.id]
        assert [t.status(clock.now()) for t in listed] == [
            TokenStatus.ACTIVE,
            TokenStatus.REVOKED,
            TokenStatus.ACTIVE,
        ]
        assert all(t.hint.startswith("esp_…") for t in listed)

    def test_get_refuses_other_users_tokens(self, tokens: TokenService, clock: FixedClock) -> None:
        """A token id of another user reads as not found."""
        token = create(tokens, clock).token
        with pytest.raises(NotFoundError) as info:
            tokens.get("u2", token.id)
        assert info.value.code == "token.not_found"
        with pytest.raises(NotFoundError):
            tokens.get("u1", "no-such-id")

    def test_update_name_and_description(
        self, tokens: TokenService, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """Renaming and describing are applied and audited with old and new values."""
        token = create(tokens, clock).token
        updated = tokens.update("u1", token.id, name=" Deploy ", description="prod", actor="admin")
        assert (updated.name, updated.description) == ("Deploy", "prod")
        assert tokens.get("u1", token.id) == updated
        event = events[-1]
        assert (event.kind, event.actor) == ("token.updated", "admin")
        assert [(c.field, c.old, c.new) for c in event.changes] == [
            ("name", "CI", "Deploy"),
            ("description", "", "prod"),
        ]

    def test_update_without_change_writes_nothing(
        self, tokens: TokenService, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """An update to the same values returns the token and writes no event."""
        token = create(tokens, clock).token
        assert tokens.update("u1", token.id, name="CI") == token
        assert tokens.update("u1", token.id) == token
        assert [e.kind for e in events] == ["token.created"]

    def test_update_refusals(self, tokens: TokenService, clock: FixedClock) -> None:
        """Invalid values, taken names and foreign tokens are refused."""
        a = create(tokens, clock, name="a").token
        create(tokens, clock, name="b")
        with pytest.raises(ValidationError) as info:
            tokens.update("u1", a.id, name="", description="\u202e")
        assert set(info.value.codes) == {"name.required", "description.invalid_characters"}
        with pytest.raises(AlreadyExistsError):
            tokens.update("u1", a.id, name="b")
        with pytest.raises(NotFoundError):
            tokens.update("u2", a.id, name="c")
        assert tokens.get("u1", a.id) == a

    def test_description_can_be_cleared(self, tokens: TokenService, clock: FixedClock) -> None:
        """description=None clears it; KEEP leaves it."""
        token = create(tokens, clock, description="notes").token
        assert tokens.update("u1", token.id, description=KEEP).description == "notes"
        assert tokens.update("u1", token.id, description=None).description == ""


class TestRevoke:
    def test_revoked_token_stops_working_at_once(
        self, tokens: TokenService, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """After revoking, the token is refused as revoked; revoking again changes nothing."""
        created = create(tokens, clock)
        tokens.authenticate(created.secret)
        revoked = tokens.revoke("u1", created.token.id, actor="admin-1", reason="leaked")
        assert (revoked.revoked_at, revoked.revoked_reason) == (T0, "leaked")
        with pytest.raises(RevokedTokenError) as info:
            tokens.authenticate(created.secret)
        assert info.value.token_id == created.token.id
        clock.advance(minutes=5)
        assert tokens.revoke("u1", created.token.id) == revoked
        assert [e.kind for e in events] == ["token.created", "token.revoked"]
        assert events[-1].actor == "admin-1"

    @pytest.mark.parametrize("reason", ["", "x" * 65])
    def test_reason_must_be_short_text(
        self, tokens: TokenService, clock: FixedClock, reason: str
    ) -> None:
        """An empty or overlong reason is refused."""
        token = create(tokens, clock).token
        with pytest.raises(ValidationError):
            tokens.revoke("u1", token.id, reason=reason)

    def test_foreign_token_is_not_found(self, tokens: TokenService, clock: FixedClock) -> None:
        """Nobody revokes another user's token."""
        token = create(tokens, clock).token
        with pytest.raises(NotFoundError):
            tokens.revoke("u2", token.id)
        assert tokens.get("u1", token.id).revoked_at is None


class TestRegenerate:
    def test_new_secret_same_settings_old_secret_dead(
        self, tokens: TokenService, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """The new secret works at once, the old one is unknown, settings are kept."""
        created = create(tokens, clock, expires=7, description="d", scopes=["user.email"])
        tokens.authenticate(created.secret, ip="192.0.2.1")
        clock.advance(days=2)
        again = tokens.regenerate("u1", created.token.id, auth=fresh(clock))
        new = again.token
        assert again.secret != created.secret
        assert (new.id, new.name, new.description, new.scopes) == (
            created.token.id,
            "CI",
            "d",
            frozenset({"user.email"}),
        )
        assert new.created_at == clock.now()
        assert new.expires_at == clock.now() + timedelta(days=7)
        assert (new.last_used_at, new.last_used_ip) == (None, None)
        assert tokens.authenticate(again.secret).token_id == new.id
        with pytest.raises(UnknownTokenError):
            tokens.authenticate(created.secret)
        assert events[-1].kind == "token.regenerated"
        assert events[-1].details["previous_hint"] == created.token.hint

    def test_expired_tokens_can_be_regenerated(
        self, tokens: TokenService, clock: FixedClock
    ) -> None:
        """Regenerating brings an expired token back with a new expiry."""
        created = create(tokens, clock, expires=7)
        clock.advance(days=8)
        with pytest.raises(ExpiredTokenError):
            tokens.authenticate(created.secret)
        again = tokens.regenerate("u1", created.token.id, auth=fresh(clock), expires=30)
        assert again.token.expires_at == clock.now() + timedelta(days=30)
        assert tokens.authenticate(again.secret).user_id == "u1"

    def test_revoked_tokens_cannot(self, tokens: TokenService, clock: FixedClock) -> None:
        """A revoked token stays dead."""
        token = create(tokens, clock).token
        tokens.revoke("u1", token.id)
        with pytest.raises(PolicyError) as info:
            tokens.regenerate("u1", token.id, auth=fresh(clock))
        assert info.value.code == "token.revoked"

    def test_needs_recent_authentication(self, tokens: TokenService, clock: FixedClock) -> None:
        """Regenerating is a sensitive action."""
        token = create(tokens, clock).token
        clock.advance(minutes=11)
        with pytest.raises(ReauthenticationRequired) as info:
            tokens.regenerate("u1", token.id, auth=fresh(clock, age=timedelta(minutes=11)))
        assert info.value.action == "tokens.regenerate"
        assert tokens.get("u1", token.id) == token

    def test_never_expiring_lifetime_is_kept_only_if_still_allowed(
        self, storage: Storage, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """A token without expiry regenerates without expiry, unless the policy changed."""
        lax = make_panel(storage, clock, events, expiry_policy=ExpiryPolicy(allow_no_expiry=True))
        created = create(lax.tokens, clock, expires=None)
        assert lax.tokens.regenerate("u1", created.token.id, auth=fresh(clock)).token.never_expires
        strict = make_panel(storage, clock, events).tokens
        with pytest.raises(ValidationError):
            strict.regenerate("u1", created.token.id, auth=fresh(clock))


class TestRotate:
    def test_rotation_replaces_the_token_in_its_family(
        self, tokens: TokenService, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """Rotating revokes the old token and creates a new one with the same settings."""
        old = create(tokens, clock, expires=30).token
        clock.advance(days=1)
        rotated = tokens.rotate("u1", old.id, auth=fresh(clock))
        new = rotated.token
        assert new.id != old.id
        assert (new.family_id, new.name, new.scopes) == (old.id, old.name, old.scopes)
        assert new.expires_at == clock.now() + timedelta(days=30)
        stored_old = tokens.get("u1", old.id)
        assert (stored_old.revoked_reason, stored_old.rotated_to) == ("rotated", new.id)
        assert tokens.authenticate(rotated.secret).token_id == new.id
        assert events[-1].kind == "token.rotated"
        assert events[-1].details["rotated_to"] == new.id

    def test_presenting_a_rotated_away_token_revokes_the_family(
        self, tokens: TokenService, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """Reuse detection: the old token of a chain revokes every live token of the family."""
        first = create(tokens, clock)
        second = tokens.rotate("u1", first.token.id, auth=fresh(clock))
        third = tokens.rotate("u1", second.token.id, auth=fresh(clock))
        unrelated = create(tokens, clock, name="other")
        clock.advance(hours=1)
        with pytest.raises(RevokedTokenError):
            tokens.authenticate(first.secret)
        with pytest.raises(RevokedTokenError):
            tokens.authenticate(third.secret)
        assert tokens.get("u1", third.token.id).revoked_reason == "reuse_detected"
        assert tokens.authenticate(unrelated.secret).token_id == unrelated.token.id
        reuse = [e for e in events if e.kind == "token.reuse_detected"]
        assert len(reuse) == 1
        assert reuse[0].subject == first.token.id
        assert reuse[0].details["revoked"] == [third.token.id]
        with pytest.raises(RevokedTokenError):  # again: nothing left to revoke, no new event
            tokens.authenticate(second.secret)
        assert len([e for e in events if e.kind == "token.reuse_detected"]) == 1

    @pytest.mark.parametrize("state", ["revoked", "expired"])
    def test_only_active_tokens_rotate(
        self, tokens: TokenService, clock: FixedClock, state: str
    ) -> None:
        """Rotating a revoked or expired token is refused with its state as the code."""
        token = create(tokens, clock, expires=7).token
        if state == "revoked":
            tokens.revoke("u1", token.id)
        else:
            clock.advance(days=7)
        with pytest.raises(PolicyError) as info:
            tokens.rotate("u1", token.id, auth=fresh(clock))
        assert info.value.code == f"token.{state}"

    def test_rotation_at_the_cap_works(
        self, storage: Storage, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """Rotation keeps the number of live tokens, so it works for a user at the cap."""
        tokens = make_panel(storage, clock, events, max_tokens_per_user=1).tokens
        token = create(tokens, clock).token
        tokens.rotate("u1", token.id, auth=fresh(clock))
        assert len([t for t in tokens.list("u1") if t.revoked_at is None]) == 1

    def test_needs_recent_authentication(self, tokens: TokenService, clock: FixedClock) -> None:
        """Rotating is a sensitive action."""
        token = create(tokens, clock).token
        with pytest.raises(ReauthenticationRequired) as info:
            tokens.rotate("u1", token.id, auth=fresh(clock, age=timedelta(hours=1)))
        assert info.value.action == "tokens.rotate"


class TestAuthenticate:
    def test_valid_token_gives_its_principal(self, tokens: TokenService, clock: FixedClock) -> None:
        """A valid token authenticates as its owner with its scopes."""
        created = create(tokens, clock, scopes=["repo:read", "user.email"])
        principal = tokens.authenticate(created.secret)
        assert principal == Principal(
            user_id="u1", token_id=created.token.id, scopes={"repo:read", "user.email"}
        )

    @pytest.mark.parametrize(
        ("raw", "error", "code"),
        [
            ("", MalformedTokenError, "token.malformed"),
            (None, MalformedTokenError, "token.malformed"),
            ("ghp_" + "a" * 36, MalformedTokenError, "token.malformed"),
            ("esp_" + "a" * 36, TokenChecksumError, "token.bad_checksum"),
            ("x" * 10_000, MalformedTokenError, "token.malformed"),
        ],
    )
    def test_bad_input_is_refused_offline(
        self, tokens: TokenService, raw: object, error: type[TokenError], code: str
    ) -> None:
        """Malformed strings and bad checksums are refused with precise codes."""
        with pytest.raises(error) as info:
            tokens.authenticate(raw)
        assert describe_rejection(info.value) == (code, "invalid token")

    def test_malformed_input_makes_no_storage_call(
        self, storage: Storage, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """Shape and checksum errors are decided before any storage access."""
        counting = CountingStorage(storage)
        tokens = make_panel(counting, clock, events).tokens  # type: ignore[arg-type]
        for raw in ["", "nope", "esp_" + "a" * 36, "esp_" + "é" * 36, 42, b"esp_x"]:
            with pytest.raises(TokenError):
                tokens.authenticate(raw)
        assert counting.calls == 0

    def test_unknown_token(self, tokens: TokenService) -> None:
        """A well-formed token that was never issued is unknown."""
        secret = tokens.token_format.generate(SeededRandom(99))
        with pytest.raises(UnknownTokenError) as info:
            tokens.authenticate(secret)
        assert info.value.public_message == "invalid token"

    def test_expiry_is_exact(self, tokens: TokenService, clock: FixedClock) -> None:
        """A token works until the microsecond before its expiry and not at it."""
        created = create(tokens, clock, expires=7)
        clock.set(T0 + timedelta(days=7) - timedelta(microseconds=1))
        tokens.authenticate(created.secret)
        clock.advance(microseconds=1)
        with pytest.raises(ExpiredTokenError) as info:
            tokens.authenticate(created.secret)
        assert info.value.token_id == created.token.id

    def test_last_use_is_recorded_at_most_once_per_interval(
        self, tokens: TokenService, clock: FixedClock
    ) -> None:
        """Last use (time, IP, agent) is written on first use, then once per 10 minutes."""
        created = create(tokens, clock)
        token_id = created.token.id
        tokens.authenticate(created.secret, ip="192.0.2.1", user_agent="curl/8")
        first = tokens.get("u1", token_id)
        assert (first.last_used_at, first.last_used_ip, first.last_used_user_agent) == (
            T0,
            "192.0.2.1",
            "curl/8",
        )
        clock.advance(minutes=9, seconds=59)
        tokens.authenticate(created.secret, ip="192.0.2.2", user_agent="other")
        assert tokens.get("u1", token_id) == first
        clock.advance(seconds=1)
        tokens.authenticate(created.secret, ip="192.0.2.3")
        later = tokens.get("u1", token_id)
        assert (later.last_used_at, later.last_used_ip) == (T0 + timedelta(minutes=10), "192.0.2.3")

    def test_interval_is_configurable(
        self, storage: Storage, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """With an interval of zero every use is recorded."""
        tokens = make_panel(storage, clock, events, token_last_used_interval=timedelta(0)).tokens
        created = create(tokens, clock)
        for n in range(3):
            clock.advance(microseconds=1)
            tokens.authenticate(created.secret, ip=f"192.0.2.{n}")
            assert tokens.get("u1", created.token.id).last_used_ip == f"192.0.2.{n}"

    def test_long_client_values_are_cut(self, tokens: TokenService, clock: FixedClock) -> None:
        """IP and user agent are stored cut to 64 and 512 characters."""
        created = create(tokens, clock)
        tokens.authenticate(created.secret, ip="1" * 100, user_agent="a" * 1000)
        token = tokens.get("u1", created.token.id)
        assert (len(token.last_used_ip or ""), len(token.last_used_user_agent or "")) == (64, 512)

    def test_failing_last_use_write_does_not_fail_the_request(
        self,
        storage: Storage,
        clock: FixedClock,
        events: list[AuditEvent],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """If "last used" cannot be written the token still authenticates; a warning is logged."""
        created = create(make_panel(storage, clock, events).tokens, clock)
        busy = BusyWritesStorage(storage)
        tokens = make_panel(busy, clock, events).tokens  # type: ignore[arg-type]
        with caplog.at_level(logging.WARNING, logger="enspace_profile.tokens"):
            assert tokens.authenticate(created.secret).user_id == "u1"
        assert "could not record the use" in caplog.text

    def test_rejections_are_logged_precisely_without_the_token(
        self, tokens: TokenService, clock: FixedClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The log names the precise reason and token id; clients get one uniform message."""
        created = create(tokens, clock, expires=7)
        clock.advance(days=8)
        with (
            caplog.at_level(logging.DEBUG, logger="enspace_profile"),
            pytest.raises(ExpiredTokenError) as info,
        ):
            tokens.authenticate(created.secret)
        assert "token.expired" in caplog.text
        assert created.token.id in caplog.text
        assert created.secret not in caplog.text
        assert str(info.value) != info.value.public_message == "invalid token"

    def test_storage_without_fast_lookup_works_the_same(
        self, storage: Storage, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """Adapters without token_lookup are served through a read-only transaction."""
        plain = TransactionsOnly(storage)
        tokens = make_panel(plain, clock, events).tokens  # type: ignore[arg-type]
        created = create(tokens, clock, expires=7)
        assert tokens.authenticate(created.secret).token_id == created.token.id
        with pytest.raises(UnknownTokenError):
            tokens.authenticate(tokens.token_format.generate(SeededRandom(3)))
        clock.advance(days=7)
        with pytest.raises(ExpiredTokenError):
            tokens.authenticate(created.secret)

    def test_storage_without_tokens_raises_capability_error(
        self, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """A storage whose transactions have no token repository says so when used."""
        tokens = make_panel(NoTokensStorage(MemoryStorage()), clock, events).tokens  # type: ignore[arg-type]
        with pytest.raises(CapabilityError):
            create(tokens, clock)

    def test_require_scopes(self, tokens: TokenService, clock: FixedClock) -> None:
        """The scope helper refuses missing scopes and catches misspelt ones in host code."""
        principal = tokens.authenticate(create(tokens, clock, scopes=["repo:read"]).secret)
        tokens.require_scopes(principal, "repo:read")
        tokens.require_scopes(principal)
        with pytest.raises(InsufficientScopeError) as info:
            tokens.require_scopes(principal, "repo:read", "repo:write")
        assert info.value.missing == ("repo:write",)
        with pytest.raises(ValidationError):
            tokens.require_scopes(principal, "repo:raed")


class TestPepperRotation:
    def test_tokens_survive_a_pepper_rotation_and_are_rekeyed(
        self, storage: Storage, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """After adding a new pepper, old tokens still work and move to the new pepper."""
        created = create(make_panel(storage, clock, events).tokens, clock)
        rotated = make_panel(storage, clock, events, token_peppers=[NEW_PEPPER, PEPPER]).tokens
        assert rotated.authenticate(created.secret).token_id == created.token.id
        assert rotated.get("u1", created.token.id).pepper_id == NEW_PEPPER.id
        only_new = make_panel(storage, clock, events, token_peppers=[NEW_PEPPER]).tokens
        assert only_new.authenticate(created.secret).token_id == created.token.id

    def test_tokens_not_rekeyed_before_the_old_pepper_goes_are_unknown(
        self, storage: Storage, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """Removing a pepper ends the tokens still stored under it."""
        created = create(make_panel(storage, clock, events).tokens, clock)
        only_new = make_panel(storage, clock, events, token_peppers=[NEW_PEPPER]).tokens
        with pytest.raises(UnknownTokenError):
            only_new.authenticate(created.secret)

    def test_new_tokens_use_the_current_pepper(
        self, storage: Storage, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """Tokens created after the rotation are stored under the first pepper."""
        rotated = make_panel(storage, clock, events, token_peppers=[NEW_PEPPER, PEPPER]).tokens
        assert create(rotated, clock).token.pepper_id == NEW_PEPPER.id


class TestHostJobs:
    def test_expiring_within(self, tokens: TokenService, clock: FixedClock) -> None:
        """Live tokens of all users expiring within N days, soonest first."""
        soon = create(tokens, clock, name="soon", expires=3).token
        other = create(tokens, clock, name="other", user_id="u2", expires=7).token
        create(tokens, clock, name="later", expires=30)
        gone = create(tokens, clock, name="gone", expires=2).token
        tokens.revoke("u1", gone.id)
        assert [t.id for t in tokens.expiring_within(7)] == [soon.id, other.id]
        assert [t.id for t in tokens.expiring_within(timedelta(days=7), limit=1)] == [soon.id]
        clock.advance(days=4)
        assert [t.id for t in tokens.expiring_within(1)] == []

    @pytest.mark.parametrize("days", [-1, True, "7", 1.5])
    def test_expiring_within_refuses_bad_windows(self, tokens: TokenService, days: Any) -> None:
        """Negative or non-integer day counts are refused."""
        with pytest.raises(ValidationError):
            tokens.expiring_within(days)

    def test_prune(self, tokens: TokenService, clock: FixedClock, events: list[AuditEvent]) -> None:
        """Expired, revoked and unused tokens older than a year are deleted and audited."""
        expired = create(tokens, clock, name="expired", expires=7).token
        revoked = create(tokens, clock, name="revoked", expires=366).token
        tokens.revoke("u1", revoked.id)
        unused = create(tokens, clock, name="unused", expires=366).token
        used = create(tokens, clock, name="used", expires=366)
        clock.advance(days=365)
        tokens.authenticate(used.secret)
        clock.advance(days=1)
        assert tokens.prune(limit=2) == 2
        assert tokens.prune() == 1
        assert tokens.prune() == 0
        assert [t.id for t in tokens.list("u1")] == [used.token.id]
        pruned = {e.subject for e in events if e.kind == "token.pruned"}
        assert pruned == {expired.id, revoked.id, unused.id}

    def test_prune_window_is_configurable(self, tokens: TokenService, clock: FixedClock) -> None:
        """older_than=0 removes every dead token now; negative windows are refused."""
        token = create(tokens, clock).token
        tokens.revoke("u1", token.id)
        clock.advance(microseconds=1)
        assert tokens.prune(older_than=timedelta(0)) == 1
        with pytest.raises(ValidationError):
            tokens.prune(older_than=timedelta(days=-1))


class TestSecretsStaySecret:
    def test_database_file_holds_no_secret(
        self, tmp_path: Path, clock: FixedClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """After the whole lifecycle, no secret is in the SQLite files, reprs, events or logs."""
        events: list[AuditEvent] = []
        storage = SQLiteStorage(tmp_path / "secrets.db")
        tokens = make_panel(storage, clock, events).tokens
        secrets: list[str] = []
        rendered: list[str] = []
        with caplog.at_level(logging.DEBUG):
            for n in range(5):
                created = create(tokens, clock, name=f"t{n}")
                secrets.append(created.secret)
                rendered += [repr(created), str(created), repr(created.token)]
                tokens.authenticate(created.secret, ip="192.0.2.1")
            again = tokens.regenerate("u1", created.token.id, auth=fresh(clock))
            rotated = tokens.rotate("u1", again.token.id, auth=fresh(clock))
            secrets += [again.secret, rotated.secret]
            with contextlib.suppress(TokenError):
                tokens.authenticate(again.secret)
            for raw in secrets:
                with contextlib.suppress(TokenError):
                    rendered.append(repr(tokens.authenticate(raw)))
            rendered += [repr(t) for t in tokens.list("u1")]
            rendered += [repr(e) for e in events]
            rendered += [repr(tokens), repr(storage)]
        storage.close()
        blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
        text = "\n".join(rendered) + caplog.text
        for secret in secrets:
            body = secret[4:-4]  # the random part, without prefix and the hinted tail
            assert body.encode() not in blob
            assert body not in text

    @settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(raw=st.one_of(st.text(max_size=300), st.binary(max_size=64), st.none(), st.integers()))
    def test_arbitrary_input_raises_only_token_errors(self, raw: object) -> None:
        """Whatever a client sends, authenticate raises a TokenError (never anything else)."""
        tokens = ARBITRARY_PANEL.tokens
        with pytest.raises(TokenError):
            tokens.authenticate(raw)

    @settings(max_examples=100)
    @given(position=st.integers(min_value=0, max_value=39), replacement=st.characters())
    def test_a_changed_character_never_authenticates(self, position: int, replacement: str) -> None:
        """Changing any one character of a valid token is refused (mostly by the checksum)."""
        raw = ARBITRARY_SECRET
        changed = raw[:position] + replacement + raw[position + 1 :]
        if changed == raw:
            return
        with pytest.raises(TokenError) as info:
            ARBITRARY_PANEL.tokens.authenticate(changed)
        assert isinstance(info.value, (MalformedTokenError, TokenChecksumError))


ARBITRARY_CLOCK = FixedClock(T0)
ARBITRARY_PANEL = make_panel(MemoryStorage(), ARBITRARY_CLOCK, [])
ARBITRARY_SECRET = create(ARBITRARY_PANEL.tokens, ARBITRARY_CLOCK).secret


class TestPanel:
    def test_without_peppers_the_panel_works_but_tokens_say_why_not(
        self, clock: FixedClock
    ) -> None:
        """Hosts without tokens are unaffected; using panel.tokens names the missing option."""
        panel = UserPanel(storage=MemoryStorage(), clock=clock)
        panel.profile.create("u1", first_name="Ada")
        with pytest.raises(ConfigurationError) as info:
            _ = panel.tokens
        assert info.value.option == "token_peppers"

    def test_default_scopes(self, clock: FixedClock) -> None:
        """Without a catalog the panel offers api:read and api:write."""
        panel = UserPanel(storage=MemoryStorage(), clock=clock, token_peppers=[PEPPER])
        assert panel.tokens.scopes.names == {"api:read", "api:write"}

    def test_invalid_options_are_refused(self, clock: FixedClock) -> None:
        """A non-positive cap or a negative interval is refused at construction."""
        with pytest.raises(ValidationError):
            UserPanel(storage=MemoryStorage(), token_peppers=[PEPPER], max_tokens_per_user=0)
        with pytest.raises(ValidationError):
            UserPanel(
                storage=MemoryStorage(),
                token_peppers=[PEPPER],
                token_last_used_interval=timedelta(seconds=-1),
            )


# ----------------------------------------------------------------------------- storage proxies


class CountingStorage:
    """Counts every call that reaches the storage."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.calls = 0

    def transaction(self, *, write: bool = True) -> Any:
        self.calls += 1
        return self.inner.transaction(write=write)

    def token_lookup(self) -> Callable[[bytes], Any]:
        lookup = self.inner.token_lookup()  # type: ignore[attr-defined]

        def counted(digest: bytes) -> Any:
            self.calls += 1
            return lookup(digest)

        return counted

    def close(self) -> None:
        self.inner.close()


class TransactionsOnly:
    """A storage without the optional token_lookup capability."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    def transaction(self, *, write: bool = True) -> Any:
        return self.inner.transaction(write=write)

    def close(self) -> None:
        self.inner.close()


class BusyWritesStorage(TransactionsOnly):
    """Reads work; every write transaction fails as if the database stayed locked."""

    def transaction(self, *, write: bool = True) -> Any:
        if write:
            raise StorageBusyError("locked")
        return self.inner.transaction(write=write)

    def token_lookup(self) -> Callable[[bytes], Any]:
        return self.inner.token_lookup()  # type: ignore[attr-defined, no-any-return]


@attrs.define
class _BareTransaction:
    profiles: Any
    audit: Any


class NoTokensStorage(TransactionsOnly):
    """Transactions that lack a token repository (an adapter written before the Dev tab)."""

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Any]:
        with self.inner.transaction(write=write) as tx:
            yield _BareTransaction(profiles=tx.profiles, audit=tx.audit)

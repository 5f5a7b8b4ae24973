"""Contract tests for ``TokenRepository`` and ``SupportsTokenLookup`` (Dev tab).

Skipped for storages whose transactions lack a ``tokens`` repository.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from enspace_profile._tokens.domain import AccessToken, Principal, TokenCredential, to_micros
from enspace_profile.exceptions import AlreadyExistsError, NotFoundError, StorageError
from enspace_profile.typing import (
    Storage,
    SupportsTokenLookup,
    SupportsTokens,
    TokenRepository,
)

__all__ = ["TokenRepositoryContract", "make_token"]

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def make_token(n: int, user_id: str = "user-1", **overrides: Any) -> AccessToken:
    """Return the ``n``-th token of a user for contract tests; ``overrides`` replace fields.

    Its digest is derived from its id, so two tokens made here never share one.
    """
    token_id = f"{user_id}-token-{n}"
    token = AccessToken(
        id=token_id,
        user_id=user_id,
        name=f"Token {n}",
        scopes={"repo:read"},
        created_at=T0 + timedelta(minutes=n),
        expires_at=T0 + timedelta(days=30, minutes=n),
        family_id=token_id,
        pepper_id="p1",
        digest=hashlib.sha256(token_id.encode()).digest(),
        hint=f"esp_…{n:04d}"[-9:],
    )
    return attrs.evolve(token, **overrides)


class _Base:
    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        """Override: yield a new, empty storage and close it afterwards."""
        pytest.fail("subclass the contract and provide a `storage` fixture")


@contextmanager
def _tokens(storage: Storage, *, write: bool = True) -> Iterator[TokenRepository]:
    """Open a transaction and yield its token repository (skip if there is none)."""
    with storage.transaction(write=write) as tx:
        if not isinstance(tx, SupportsTokens):
            pytest.skip("storage has no token repository")
        yield tx.tokens


def _add(storage: Storage, *tokens: AccessToken) -> None:
    with _tokens(storage) as repo:
        for token in tokens:
            repo.add(token)


def _get(storage: Storage, token_id: str) -> AccessToken | None:
    with _tokens(storage, write=False) as repo:
        return repo.get(token_id)


class TokenRepositoryContract(_Base):
    """Tokens: digests, live names, families, throttled last use, expiry queries, pruning."""

    cap_threads = 8
    cap = 20

    # -- reading and writing -------------------------------------------------------

    def test_get_missing_returns_none(self, storage: Storage) -> None:
        """Unknown ids and digests read back as None."""
        with _tokens(storage, write=False) as repo:
            assert repo.get("nope") is None
            assert repo.get_by_digest(b"\0" * 32) is None

    @pytest.mark.parametrize(
        "when",
        [
            datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC),
            datetime(2038, 1, 19, 3, 14, 8, 999999, tzinfo=UTC),
            datetime(2200, 2, 28, 23, 59, 59, 123457, tzinfo=UTC),
            datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        ],
    )
    def test_every_field_round_trips(self, storage: Storage, when: datetime) -> None:
        """A stored token reads back equal, field for field, times to the microsecond."""
        token = make_token(
            1,
            name="Déploiement «prod» 🚀",
            description="line one\nline two",
            scopes={"repo:read", "repo:write", "user.email"},
            created_at=when - timedelta(days=1),
            expires_at=when,
            last_used_at=when - timedelta(microseconds=1),
            last_used_ip="2001:db8::1",
            last_used_user_agent="curl/8.5.0",
            revoked_at=when - timedelta(hours=1),
            revoked_reason="rotated",
            family_id="user-1-token-0",
            rotated_to="user-1-token-2",
            pepper_id="2026-01",
        )
        _add(storage, token)
        with _tokens(storage, write=False) as repo:
            assert repo.get(token.id) == token
            assert repo.get_by_digest(token.digest) == token

    def test_never_expiring_and_unused_round_trip(self, storage: Storage) -> None:
        """Absent expiry, use and scopes are stored as absent, not as zero values."""
        token = make_token(1, expires_at=None, scopes=frozenset(), description="")
        _add(storage, token)
        assert _get(storage, token.id) == token

    def test_list_is_newest_first_with_revoked_ones(self, storage: Storage) -> None:
        """A user's tokens list newest first (ties by id, descending), revoked included."""
        old = make_token(1)
        tie_a = make_token(2, id="user-1-token-a", created_at=T0 + timedelta(hours=1))
        tie_b = make_token(3, id="user-1-token-b", created_at=T0 + timedelta(hours=1))
        revoked = make_token(4, revoked_at=T0, revoked_reason="user")
        _add(storage, old, tie_a, revoked, tie_b)
        with _tokens(storage, write=False) as repo:
            assert list(repo.list_for_user("user-1")) == [tie_b, tie_a, revoked, old]
            assert list(repo.list_for_user("nobody")) == []

    def test_duplicate_id_or_digest_is_refused(self, storage: Storage) -> None:
        """Ids and digests are unique across all users."""
        _add(storage, make_token(1))
        with pytest.raises(AlreadyExistsError):
            _add(storage, make_token(1, name="Other"))
        with pytest.raises(AlreadyExistsError):
            _add(storage, make_token(2, user_id="u2", digest=make_token(1).digest))

    def test_live_names_are_unique_per_user(self, storage: Storage) -> None:
        """A live name is refused for the same user (field "name"), allowed for others."""
        _add(storage, make_token(1, name="CI"), make_token(1, user_id="u2", name="CI"))
        with pytest.raises(AlreadyExistsError) as info:
            _add(storage, make_token(2, name="CI"))
        assert info.value.field == "name"
        assert _get(storage, "user-1-token-2") is None

    def test_revoking_frees_the_name(self, storage: Storage) -> None:
        """Once a token is revoked, a new live token may take its name."""
        first = make_token(1, name="CI")
        _add(storage, first)
        with _tokens(storage) as repo:
            repo.update(first.revoke(T0, reason="user"))
            repo.add(make_token(2, name="CI"))
            assert repo.count_live("user-1") == 1

    def test_update_replaces_digest_and_fields(self, storage: Storage) -> None:
        """Update replaces the row by id; the old digest no longer finds it."""
        token = make_token(1)
        _add(storage, token)
        new = attrs.evolve(
            token, name="Renamed", digest=b"\x01" * 32, pepper_id="p2", hint="esp_…zzzz"
        )
        with _tokens(storage) as repo:
            repo.update(new)
        with _tokens(storage, write=False) as repo:
            assert repo.get(token.id) == new
            assert repo.get_by_digest(new.digest) == new
            assert repo.get_by_digest(token.digest) is None

    def test_update_conflicts(self, storage: Storage) -> None:
        """Update refuses a missing id, another token's digest, another live token's name."""
        a, b = make_token(1, name="A"), make_token(2, name="B")
        _add(storage, a, b)
        with pytest.raises(NotFoundError), _tokens(storage) as repo:
            repo.update(make_token(3))
        with pytest.raises(AlreadyExistsError), _tokens(storage) as repo:
            repo.update(attrs.evolve(a, digest=b.digest))
        with pytest.raises(AlreadyExistsError) as info, _tokens(storage) as repo:
            repo.update(attrs.evolve(a, name="B"))
        assert info.value.field == "name"
        assert _get(storage, a.id) == a

    def test_count_live_counts_expired_but_not_revoked(self, storage: Storage) -> None:
        """The cap counts every token that is not revoked, expired ones included."""
        _add(
            storage,
            make_token(1),
            make_token(2, expires_at=T0 - timedelta(days=1), created_at=T0 - timedelta(days=9)),
            make_token(3, revoked_at=T0, revoked_reason="user"),
            make_token(1, user_id="u2"),
        )
        with _tokens(storage, write=False) as repo:
            assert repo.count_live("user-1") == 2
            assert repo.count_live("u2") == 1
            assert repo.count_live("nobody") == 0

    # -- families ------------------------------------------------------------------------

    def test_revoke_family_revokes_only_live_members(self, storage: Storage) -> None:
        """A family's live tokens are revoked and returned oldest first; others untouched."""
        root = make_token(1, revoked_at=T0, revoked_reason="rotated", rotated_to="user-1-token-2")
        child = make_token(2, family_id=root.id, name="Token 1")
        grandchild = make_token(3, family_id=root.id, name="Token 1b")
        stranger = make_token(4)
        _add(storage, root, child, grandchild, stranger)
        later = T0 + timedelta(days=1)
        with _tokens(storage) as repo:
            revoked = repo.revoke_family(root.id, at=later, reason="reuse_detected")
        assert [t.id for t in revoked] == [child.id, grandchild.id]
        assert all(t.revoked_at == later for t in revoked)
        assert all(t.revoked_reason == "reuse_detected" for t in revoked)
        with _tokens(storage) as repo:
            assert repo.get(root.id) == root
            assert repo.get(stranger.id) == stranger
            assert repo.get(child.id) == revoked[0]
            assert list(repo.revoke_family(root.id, at=later, reason="again")) == []

    # -- last use ------------------------------------------------------------------------

    def test_record_use_is_throttled(self, storage: Storage) -> None:
        """Last use is written when none or an older one is stored, and skipped otherwise."""
        token = make_token(1)
        _add(storage, token)
        first = T0 + timedelta(hours=1)
        with _tokens(storage) as repo:
            assert repo.record_use(
                token.id, at=first, ip="192.0.2.1", user_agent="a", if_last_used_before=first
            )
            assert not repo.record_use(
                token.id,
                at=first + timedelta(minutes=5),
                ip="192.0.2.2",
                user_agent="b",
                if_last_used_before=first,
            )
            assert not repo.record_use(
                "missing", at=first, ip=None, user_agent=None, if_last_used_before=first
            )
        stored = _get(storage, token.id)
        assert stored is not None
        assert (stored.last_used_at, stored.last_used_ip, stored.last_used_user_agent) == (
            first,
            "192.0.2.1",
            "a",
        )
        later = first + timedelta(minutes=10)
        with _tokens(storage) as repo:
            assert repo.record_use(
                token.id, at=later, ip=None, user_agent=None, if_last_used_before=later
            )
        assert _get(storage, token.id) == token.record_use(later)

    # -- queries for the host ----------------------------------------------------------

    def test_expiring_between(self, storage: Storage) -> None:
        """Live tokens of all users expiring in (start, end], soonest first, limited."""
        start, end = T0, T0 + timedelta(days=7)
        at_start = make_token(1, expires_at=start)
        soon = make_token(2, expires_at=start + timedelta(days=1))
        at_end = make_token(3, expires_at=end)
        later = make_token(4, expires_at=end + timedelta(microseconds=1))
        never = make_token(5, expires_at=None)
        revoked = make_token(6, expires_at=start + timedelta(days=2), revoked_at=T0)
        other = make_token(1, user_id="u2", expires_at=start + timedelta(days=3))
        _add(storage, at_start, soon, at_end, later, never, revoked, other)
        with _tokens(storage, write=False) as repo:
            assert list(repo.expiring_between(start, end)) == [soon, other, at_end]
            assert list(repo.expiring_between(start, end, limit=2)) == [soon, other]

    def test_prune_deletes_stale_tokens_oldest_first(self, storage: Storage) -> None:
        """Expired, revoked or unused before the cutoff are deleted and returned; others stay."""
        cutoff = T0 + timedelta(days=400)
        fresh = cutoff + timedelta(days=1)
        expired = make_token(1, expires_at=cutoff - timedelta(seconds=1), last_used_at=fresh)
        revoked = make_token(2, revoked_at=cutoff - timedelta(seconds=1), last_used_at=fresh)
        never_used = make_token(3, expires_at=None)
        unused = make_token(4, expires_at=None, last_used_at=cutoff - timedelta(seconds=1))
        used = make_token(5, expires_at=None, last_used_at=cutoff)
        young = make_token(6, expires_at=None, created_at=cutoff)
        _add(storage, used, unused, never_used, revoked, expired, young)
        with _tokens(storage) as repo:
            assert list(repo.prune(cutoff, limit=2)) == [expired, revoked]
            assert list(repo.prune(cutoff)) == [never_used, unused]
            assert list(repo.prune(cutoff)) == []
        with _tokens(storage, write=False) as repo:
            assert list(repo.list_for_user("user-1")) == [young, used]
            assert repo.get_by_digest(expired.digest) is None

    # -- transactions ------------------------------------------------------------------

    def test_writes_roll_back(self, storage: Storage) -> None:
        """A failed transaction leaves no added, updated, revoked or touched token behind."""
        kept = make_token(1)
        _add(storage, kept)

        class Boom(Exception):
            pass

        with pytest.raises(Boom), _tokens(storage) as repo:
            repo.add(make_token(2))
            repo.update(attrs.evolve(kept, name="Changed", digest=b"\x02" * 32))
            repo.record_use(kept.id, at=T0, ip=None, user_agent=None, if_last_used_before=T0)
            repo.revoke_family(kept.id, at=T0, reason="user")
            raise Boom
        with _tokens(storage, write=False) as repo:
            assert repo.get("user-1-token-2") is None
            assert repo.get(kept.id) == kept
            assert repo.get_by_digest(kept.digest) == kept
            assert repo.count_live("user-1") == 1

    def test_read_only_transaction_refuses_writes(self, storage: Storage) -> None:
        """Writing tokens in a read-only transaction raises StorageError."""
        with pytest.raises(StorageError), _tokens(storage, write=False) as repo:
            repo.add(make_token(1))
        assert _get(storage, "user-1-token-1") is None

    def test_users_are_isolated(self, storage: Storage) -> None:
        """One user's list, count and family revocation never touch another user's tokens."""
        mine, theirs = make_token(1), make_token(1, user_id="u2")
        _add(storage, mine, theirs)
        with _tokens(storage) as repo:
            repo.revoke_family(mine.id, at=T0, reason="user")
            assert [t.id for t in repo.list_for_user("u2")] == [theirs.id]
            assert repo.count_live("u2") == 1
            assert repo.get(theirs.id) == theirs

    def test_concurrent_creation_never_exceeds_the_cap(self, storage: Storage) -> None:
        """Threads that count then add inside write transactions never pass the cap."""
        with _tokens(storage, write=False):
            pass  # skips here if unsupported
        start = threading.Barrier(self.cap_threads)
        errors: list[BaseException] = []
        counter = iter(range(10_000))
        counter_lock = threading.Lock()

        def work() -> None:
            try:
                start.wait()
                while True:
                    with counter_lock:
                        n = next(counter)
                    with _tokens(storage) as repo:
                        if repo.count_live("user-1") >= self.cap:
                            return
                        repo.add(make_token(n))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        workers = [threading.Thread(target=work) for _ in range(self.cap_threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        with _tokens(storage, write=False) as repo:
            assert repo.count_live("user-1") == self.cap
            assert len(repo.list_for_user("user-1")) == self.cap

    # -- the hot-path lookup (optional) --------------------------------------------------

    def _lookup(self, storage: Storage) -> Callable[[bytes], TokenCredential | None]:
        with _tokens(storage, write=False):
            pass
        if not isinstance(storage, SupportsTokenLookup):
            pytest.skip("storage has no transaction-free token lookup")
        return storage.token_lookup()

    def test_lookup_returns_committed_credentials(self, storage: Storage) -> None:
        """The token lookup finds committed tokens and reflects later commits."""
        lookup = self._lookup(storage)
        expires = T0 + timedelta(days=7)
        token = make_token(1, last_used_at=T0, scopes={"b", "a"}, expires_at=expires)
        assert lookup(token.digest) is None
        _add(storage, token)
        credential = lookup(token.digest)
        assert credential == TokenCredential(
            principal=Principal(user_id="user-1", token_id=token.id, scopes={"a", "b"}),
            valid_until_us=to_micros(expires),
            last_used_us=to_micros(T0),
            pepper_id="p1",
            digest=token.digest,
        )
        later = T0 + timedelta(days=1)
        rekeyed = attrs.evolve(token, digest=b"\x03" * 32, revoked_at=later, last_used_at=later)
        with _tokens(storage) as repo:
            repo.update(rekeyed)
        assert lookup(token.digest) is None
        moved = lookup(rekeyed.digest)
        assert moved is not None
        assert (moved.valid_until_us, moved.last_used_us) == (to_micros(later),) * 2

    def test_lookup_never_sees_rolled_back_writes(self, storage: Storage) -> None:
        """A token added in a rolled-back transaction is never found."""
        lookup = self._lookup(storage)
        token = make_token(1)
        with pytest.raises(RuntimeError), _tokens(storage) as repo:
            repo.add(token)
            raise RuntimeError
        assert lookup(token.digest) is None

    def test_lookup_after_prune_finds_nothing(self, storage: Storage) -> None:
        """A pruned token's digest no longer resolves."""
        lookup = self._lookup(storage)
        token = make_token(1, expires_at=T0)
        _add(storage, token)
        with _tokens(storage) as repo:
            repo.prune(T0 + timedelta(days=1))
        assert lookup(token.digest) is None

    def test_lookup_after_close_raises_storage_error(self, storage: Storage) -> None:
        """A lookup function kept past close() raises StorageError instead of reading."""
        lookup = self._lookup(storage)
        token = make_token(1)
        _add(storage, token)
        assert lookup(token.digest) is not None
        storage.close()
        with pytest.raises(StorageError):
            lookup(token.digest)

    def test_lookup_inside_a_transaction_on_the_same_thread_is_refused_or_committed(
        self, storage: Storage
    ) -> None:
        """A lookup never returns what the caller's own open transaction has not committed."""
        lookup = self._lookup(storage)
        token = make_token(1)
        with _tokens(storage) as repo:
            repo.add(token)
            try:
                found = lookup(token.digest)
            except StorageError:
                found = None
            assert found is None

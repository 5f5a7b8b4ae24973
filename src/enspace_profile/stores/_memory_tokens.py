"""The in-memory token repository (part of :class:`~enspace_profile.MemoryStorage`).

Besides the tokens themselves it keeps a *published* map from digest to
:class:`~enspace_profile.TokenCredential`, rebuilt for the tokens a transaction touched
when (and only when) it commits. ``MemoryStorage.token_lookup()`` reads that map without
taking the storage lock: a single ``dict.get`` is atomic, and nothing uncommitted is
ever in it. That is what keeps ``authenticate`` close to a bare dictionary lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from enspace_profile._tokens.domain import AccessToken, TokenCredential
from enspace_profile.exceptions import AlreadyExistsError, NotFoundError

if TYPE_CHECKING:
    from enspace_profile.stores.memory import Journal

__all__ = ["MemoryTokens", "TokenTables"]


@attrs.define
class TokenTables:
    """The token state of one MemoryStorage.

    Attributes:
        by_id: Every token by id.
        id_by_digest: The digest index.
        ids_by_user: Each user's token ids (dicts used as ordered sets).
        ids_by_family: Each family's token ids, except its root (whose id is the
            family id): most tokens are roots of a family of one, and a set each
            would double the memory per token.
        live_names: ``(user_id, name)`` of every live token, to its id.
        credentials: Committed credentials by digest; read without the lock.
    """

    by_id: dict[str, AccessToken] = attrs.Factory(dict)
    id_by_digest: dict[bytes, str] = attrs.Factory(dict)
    ids_by_user: dict[str, dict[str, None]] = attrs.Factory(dict)
    ids_by_family: dict[str, dict[str, None]] = attrs.Factory(dict)
    live_names: dict[tuple[str, str], str] = attrs.Factory(dict)
    credentials: dict[bytes, TokenCredential] = attrs.Factory(dict)


def _newest_first(token: AccessToken) -> tuple[datetime, str]:
    return (token.created_at, token.id)


def _is_stale(token: AccessToken, cutoff: datetime) -> bool:
    return (
        (token.expires_at is not None and token.expires_at < cutoff)
        or (token.revoked_at is not None and token.revoked_at < cutoff)
        or (token.last_used_at or token.created_at) < cutoff
    )


class MemoryTokens:
    """Tokens in memory (implements ``TokenRepository``)."""

    __slots__ = ("_j", "_t", "_touched")

    def __init__(self, tables: TokenTables, journal: Journal) -> None:
        self._t = tables
        self._j = journal
        # Token id -> its digest before this transaction changed it (None: new token).
        self._touched: dict[str, bytes | None] = {}

    # -- reads -----------------------------------------------------------------------

    def get(self, token_id: str) -> AccessToken | None:
        return self._t.by_id.get(token_id)

    def get_by_digest(self, digest: bytes) -> AccessToken | None:
        token_id = self._t.id_by_digest.get(digest)
        return None if token_id is None else self._t.by_id[token_id]

    def list_for_user(self, user_id: str) -> Sequence[AccessToken]:
        by_id = self._t.by_id
        tokens = [by_id[i] for i in self._t.ids_by_user.get(user_id, ())]
        tokens.sort(key=_newest_first, reverse=True)
        return tokens

    def count_live(self, user_id: str) -> int:
        by_id = self._t.by_id
        return sum(by_id[i].revoked_at is None for i in self._t.ids_by_user.get(user_id, ()))

    def expiring_between(
        self,
        start: datetime,
        end: datetime,
        *,
        limit: int | None = None,
    ) -> Sequence[AccessToken]:
        found = [
            t
            for t in self._t.by_id.values()
            if t.revoked_at is None and t.expires_at is not None and start < t.expires_at <= end
        ]
        found.sort(key=lambda t: (t.expires_at, t.id))
        return found if limit is None else found[: max(limit, 0)]

    # -- writes ----------------------------------------------------------------------

    def add(self, token: AccessToken) -> None:
        t = self._t
        if token.id in t.by_id or token.digest in t.id_by_digest:
            raise AlreadyExistsError("token", token.id)
        if token.revoked_at is None and (token.user_id, token.name) in t.live_names:
            raise AlreadyExistsError("token", token.name, field="name")
        self._touch(token.id, None)
        self._index(token)

    def update(self, token: AccessToken) -> None:
        t = self._t
        old = t.by_id.get(token.id)
        if old is None:
            raise NotFoundError("token", token.id)
        if t.id_by_digest.get(token.digest, token.id) != token.id:
            raise AlreadyExistsError("token", token.id)
        if t.live_names.get((token.user_id, token.name), token.id) != token.id and (
            token.revoked_at is None
        ):
            raise AlreadyExistsError("token", token.name, field="name")
        self._replace(old, token)

    def record_use(
        self,
        token_id: str,
        *,
        at: datetime,
        ip: str | None,
        user_agent: str | None,
        if_last_used_before: datetime,
    ) -> bool:
        old = self._t.by_id.get(token_id)
        if old is None or (
            old.last_used_at is not None and old.last_used_at >= if_last_used_before
        ):
            return False
        self._replace(old, old.record_use(at, ip=ip, user_agent=user_agent))
        return True

    def revoke_family(self, family_id: str, *, at: datetime, reason: str) -> Sequence[AccessToken]:
        by_id = self._t.by_id
        members = [by_id[i] for i in self._t.ids_by_family.get(family_id, ())]
        root = by_id.get(family_id)
        if root is not None and root.family_id == family_id:
            members.append(root)
        members.sort(key=_newest_first)
        revoked: list[AccessToken] = []
        for old in members:
            if old.revoked_at is None:
                new = old.revoke(at, reason=reason)
                self._replace(old, new)
                revoked.append(new)
        return revoked

    def prune(self, cutoff: datetime, *, limit: int | None = None) -> Sequence[AccessToken]:
        stale = sorted(
            (t for t in self._t.by_id.values() if _is_stale(t, cutoff)),
            key=_newest_first,
        )
        if limit is not None:
            stale = stale[: max(limit, 0)]
        for token in stale:
            self._touch(token.id, token.digest)
            self._unindex(token)
        return stale

    # -- index maintenance -------------------------------------------------------------

    def _replace(self, old: AccessToken, new: AccessToken) -> None:
        self._touch(old.id, old.digest)
        self._unindex(old)
        self._index(new)

    def _index(self, token: AccessToken) -> None:
        t, j = self._t, self._j
        j.put(t.by_id, token.id, token)
        j.put(t.id_by_digest, token.digest, token.id)
        j.put(self._group(t.ids_by_user, token.user_id), token.id, None)
        if token.family_id != token.id:
            j.put(self._group(t.ids_by_family, token.family_id), token.id, None)
        if token.revoked_at is None:
            j.put(t.live_names, (token.user_id, token.name), token.id)

    def _unindex(self, token: AccessToken) -> None:
        t, j = self._t, self._j
        j.pop(t.by_id, token.id)
        j.pop(t.id_by_digest, token.digest)
        self._ungroup(t.ids_by_user, token.user_id, token.id)
        if token.family_id != token.id:
            self._ungroup(t.ids_by_family, token.family_id, token.id)
        if t.live_names.get((token.user_id, token.name)) == token.id:
            j.pop(t.live_names, (token.user_id, token.name))

    def _group(self, groups: dict[str, dict[str, None]], key: str) -> dict[str, None]:
        members = groups.get(key)
        if members is None:
            members = {}
            self._j.put(groups, key, members)
        return members

    def _ungroup(self, groups: dict[str, dict[str, None]], key: str, token_id: str) -> None:
        members = groups.get(key)
        if members is not None:
            self._j.pop(members, token_id)
            if not members:
                self._j.pop(groups, key)

    # -- publication at commit ---------------------------------------------------------

    def _touch(self, token_id: str, committed_digest: bytes | None) -> None:
        if not self._touched:
            self._j.on_commit(self._publish)
        self._touched.setdefault(token_id, committed_digest)

    def _publish(self) -> None:
        """Bring the lock-free credential map in line with the committed tokens."""
        t = self._t
        credentials = t.credentials
        touched, self._touched = self._touched, {}
        current = {token_id: t.by_id.get(token_id) for token_id in touched}
        for token_id, old_digest in touched.items():
            new = current[token_id]
            if old_digest is not None and (new is None or new.digest != old_digest):
                credentials.pop(old_digest, None)
        for new in current.values():
            if new is not None:
                credentials[new.digest] = TokenCredential.for_token(new)

"""Storage ports: the Protocols a storage adapter implements.

A :class:`Storage` opens transactions (units of work). A transaction exposes one
repository per aggregate as an attribute. The core ports are :class:`ProfileRepository`
and :class:`AuditLog`; every other tab adds its repository as a **separate** Protocol
(``SupportsTokens``, ...), so a third-party adapter written against an older release
keeps type-checking and working: a tab whose repository the adapter lacks raises
:class:`~enspace_profile.exceptions.CapabilityError` when used, and the contract suite
skips its tests.

Rules every adapter follows (the contract suite in :mod:`enspace_profile.testing`
checks them):

* Repositories take and return frozen domain objects, never rows or dicts.
* A transaction commits when its ``with`` block exits normally and rolls back on any
  exception; nothing written inside a rolled-back transaction is visible afterwards.
* Write transactions are serialisable with respect to each other (SQLite: one writer
  at a time; memory: one lock; PostgreSQL: a write transaction locks the rows, and
  the user's sets of rows, that it reads).
* Driver errors never escape: duplicates become
  :class:`~enspace_profile.exceptions.AlreadyExistsError`, stale versions
  :class:`~enspace_profile.exceptions.ConflictError`, anything else
  :class:`~enspace_profile.exceptions.StorageError`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol, runtime_checkable

import attrs

from enspace_profile._audit import AuditEvent
from enspace_profile._crypto.keyring import SealedBox
from enspace_profile._integrations.domain import Connection, SealedCredentials
from enspace_profile._integrations.oauth import PendingAuthorization
from enspace_profile._lab.domain import OptIn
from enspace_profile._profile.domain import Profile
from enspace_profile._security.domain import AccountCredentials, Session
from enspace_profile._security.lockout import FailureState
from enspace_profile._tokens.domain import AccessToken, TokenCredential

__all__ = [
    "AuditLog",
    "Blob",
    "BlobRepository",
    "CredentialRepository",
    "IntegrationRepository",
    "LabRepository",
    "ProfileRepository",
    "SessionRepository",
    "Storage",
    "SupportsBlobs",
    "SupportsCredentials",
    "SupportsIntegrations",
    "SupportsLab",
    "SupportsSessions",
    "SupportsThrottle",
    "SupportsTokenLookup",
    "SupportsTokens",
    "ThrottleRepository",
    "TokenRepository",
    "Transaction",
]


class ProfileRepository(Protocol):
    """Profiles, keyed by user id."""

    def get(self, user_id: str) -> Profile | None:
        """Return the profile, or ``None`` if there is none."""
        ...

    def add(self, profile: Profile) -> None:
        """Insert a new profile.

        Raises:
            AlreadyExistsError: if a profile with this user id exists.
        """
        ...

    def update(self, profile: Profile, *, expected_version: int) -> None:
        """Replace the stored profile if its version is still ``expected_version``.

        Raises:
            NotFoundError: if there is no profile for ``profile.user_id``.
            ConflictError: if the stored version differs (``current_version`` set).
        """
        ...

    def delete(self, user_id: str) -> bool:
        """Delete the profile; return whether one existed."""
        ...


class AuditLog(Protocol):
    """Append-only audit events, read back in the order they were appended."""

    def append(self, event: AuditEvent) -> None:
        """Append one event (ids are unique; a duplicate raises ``AlreadyExistsError``)."""
        ...

    def list_for_user(
        self,
        user_id: str,
        *,
        kinds: Collection[str] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Sequence[AuditEvent]:
        """Return the user's events in append order (or newest first).

        Args:
            user_id: Whose events.
            kinds: Only events of these kinds (``None``: all).
            limit: At most this many (after ordering).
            newest_first: Reverse the order.
        """
        ...


@attrs.frozen(kw_only=True)
class Blob:
    """Stored bytes, content-addressed by their SHA-256.

    Attributes:
        sha256: Hex digest of ``data`` (the key).
        media_type: E.g. ``image/png``.
        data: The bytes.
    """

    sha256: str
    media_type: str
    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")


class BlobRepository(Protocol):
    """Reference-counted, content-addressed bytes (profile pictures).

    The same content is stored once however many owners hold it; it is deleted when
    the last reference is released, so nothing is left orphaned.
    """

    def acquire(self, blob: Blob) -> None:
        """Store ``blob`` if new, and add one reference to it."""
        ...

    def release(self, sha256: str) -> None:
        """Drop one reference; delete the bytes when none is left. Unknown keys are ignored."""
        ...

    def get(self, sha256: str) -> Blob | None:
        """Return the blob, or ``None``."""
        ...

    def references(self, sha256: str) -> int:
        """Return how many references the blob has (0 if absent)."""
        ...


class Transaction(Protocol):
    """One unit of work: every repository it exposes shares its transaction."""

    @property
    def profiles(self) -> ProfileRepository:
        """The profiles repository."""
        ...

    @property
    def audit(self) -> AuditLog:
        """The audit log."""
        ...


@runtime_checkable
class SupportsBlobs(Protocol):
    """A transaction that also stores blobs (needed for profile pictures)."""

    @property
    def blobs(self) -> BlobRepository:
        """The blob repository."""
        ...


class LabRepository(Protocol):
    """Each user's lab choices (opt in / opt out), plus a cheap change marker.

    One :class:`~enspace_profile.OptIn` per user and feature key: storing a new
    choice replaces the previous one. :meth:`revision` lets a process that caches
    evaluated lab states notice changes made by other processes cheaply.
    """

    def list_for_user(self, user_id: str) -> Sequence[OptIn]:
        """Return the user's choices, ordered by feature key (empty if none)."""
        ...

    def put(self, choice: OptIn) -> None:
        """Store ``choice``, replacing the user's previous choice for the same key."""
        ...

    def delete_for_user(self, user_id: str) -> int:
        """Delete every choice of the user; return how many there were."""
        ...

    def revision(self) -> int:
        """Return the change marker: it increases with every write to any user's choices.

        Two reads in which it is equal saw the same choices for every user.
        """
        ...

    def changed_since(self, revision: int, *, limit: int) -> Sequence[str]:
        """Return the users whose choices were written after ``revision``.

        Args:
            revision: A value :meth:`revision` returned earlier.
            limit: Return at most this many user ids (the ones written first); a
                caller seeing ``limit`` ids treats it as "too many to list".
        """
        ...


@runtime_checkable
class SupportsLab(Protocol):
    """A transaction that also stores lab choices (needed for the Lab tab)."""

    @property
    def lab(self) -> LabRepository:
        """The lab choices repository."""
        ...


class IntegrationRepository(Protocol):
    """Integration connections, their encrypted credentials, and pending OAuth requests.

    A connection is keyed by its id and unique per ``(user_id, provider,
    external_account_id)``. Every read and write names the user: one user's id
    never reaches another user's connection. Credentials are opaque
    :class:`~enspace_profile._crypto.keyring.SealedBox` values (AES-GCM ciphertext and
    the id of the key that sealed it); the repository never sees plaintext. Pending
    OAuth authorizations are keyed by the SHA-256 of their state and taken (read
    and deleted) in one step, so each can be used once.
    """

    def add(self, connection: Connection) -> None:
        """Insert a new connection (without credentials).

        Raises:
            AlreadyExistsError: if the id, or the user's account at that provider, exists.
        """
        ...

    def get(self, user_id: str, connection_id: str) -> Connection | None:
        """Return the user's connection with this id, or ``None``."""
        ...

    def find_account(
        self, user_id: str, provider: str, external_account_id: str
    ) -> Connection | None:
        """Return the user's connection to this account at this provider, or ``None``."""
        ...

    def list_for_user(self, user_id: str, *, provider: str | None = None) -> Sequence[Connection]:
        """Return the user's connections ordered by ``connected_at``, then ``id``.

        Args:
            user_id: Whose connections.
            provider: Only connections to this provider (``None``: all).
        """
        ...

    def update(self, connection: Connection, *, expected_version: int) -> None:
        """Replace the stored connection if its version is still ``expected_version``.

        Raises:
            NotFoundError: if the user has no connection with ``connection.id``.
            ConflictError: if the stored version differs (``current_version`` set).
        """
        ...

    def delete(self, user_id: str, connection_id: str) -> bool:
        """Delete the connection and its credentials; return whether it existed."""
        ...

    def get_credentials(self, user_id: str, connection_id: str) -> SealedBox | None:
        """Return the connection's encrypted credentials, or ``None``."""
        ...

    def put_credentials(self, user_id: str, connection_id: str, box: SealedBox) -> None:
        """Store (or replace) the connection's encrypted credentials.

        Raises:
            NotFoundError: if the user has no connection with this id.
        """
        ...

    def delete_credentials(self, user_id: str, connection_id: str) -> bool:
        """Delete the connection's credentials; return whether there were any."""
        ...

    def list_credentials(
        self,
        *,
        user_id: str | None = None,
        exclude_key_id: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> Sequence[SealedCredentials]:
        """Return stored credentials ordered by connection id (for key rotation jobs).

        Args:
            user_id: Only this user's (``None``: every user's).
            exclude_key_id: Leave out boxes sealed by this key (the current one).
            after: Only connection ids greater than this (keyset paging).
            limit: At most this many.
        """
        ...

    def add_pending(self, pending: PendingAuthorization) -> None:
        """Store a pending OAuth authorization under its ``state_digest``.

        Raises:
            AlreadyExistsError: if the digest is already stored.
        """
        ...

    def take_pending(self, state_digest: str) -> PendingAuthorization | None:
        """Delete and return the pending authorization with this digest, or ``None``.

        Atomic: of two transactions taking the same digest, exactly one gets it.
        """
        ...

    def delete_expired_pending(self, now: datetime) -> int:
        """Delete pending authorizations with ``expires_at <= now``; return how many."""
        ...


@runtime_checkable
class SupportsIntegrations(Protocol):
    """A transaction that also stores integrations (needed for the Integrations tab)."""

    @property
    def integrations(self) -> IntegrationRepository:
        """The integrations repository."""
        ...


class CredentialRepository(Protocol):
    """Each user's sign-in credentials (Security tab): one ``AccountCredentials`` per user.

    The record holds only protected secrets: a password hash, a sealed TOTP secret,
    recovery code hashes. ``version`` works like a profile's: ``add`` stores version 1,
    ``update`` replaces the record only if the stored version is ``expected_version``.
    """

    def get(self, user_id: str) -> AccountCredentials | None:
        """Return the user's credentials, or ``None`` if none were stored."""
        ...

    def add(self, credentials: AccountCredentials) -> None:
        """Insert a new record.

        Raises:
            AlreadyExistsError: if the user already has one.
        """
        ...

    def update(self, credentials: AccountCredentials, *, expected_version: int) -> None:
        """Replace the stored record if its version is still ``expected_version``.

        Raises:
            NotFoundError: if there is no record for ``credentials.user_id``.
            ConflictError: if the stored version differs (``current_version`` set).
        """
        ...

    def delete(self, user_id: str) -> bool:
        """Delete the record; return whether one existed."""
        ...

    def list_user_ids(self, *, after: str | None = None, limit: int = 100) -> Sequence[str]:
        """Return user ids with a record, in ascending code point order, for batch jobs.

        Args:
            after: Only ids greater than this (the last id of the previous page).
            limit: At most this many.
        """
        ...


@runtime_checkable
class SupportsCredentials(Protocol):
    """A transaction that also stores credentials (needed for the Security tab)."""

    @property
    def credentials(self) -> CredentialRepository:
        """The credential repository."""
        ...


class ThrottleRepository(Protocol):
    """Failed-attempt counters for brute-force throttling, keyed by user id and scope.

    The service reads, decides and writes inside **one write transaction**, so with
    serialisable write transactions the read-modify-write is atomic, across processes
    too.
    """

    def get(self, user_id: str, scope: str) -> FailureState:
        """Return the stored state, or a clean ``FailureState()`` if there is none."""
        ...

    def put(self, user_id: str, scope: str, state: FailureState) -> None:
        """Store ``state`` (a clean state may simply delete the entry)."""
        ...


@runtime_checkable
class SupportsThrottle(Protocol):
    """A transaction that also stores failure counters (needed to verify credentials)."""

    @property
    def throttle(self) -> ThrottleRepository:
        """The throttle repository."""
        ...


class SessionRepository(Protocol):
    """The session registry the host feeds ("where you're signed in")."""

    def get(self, session_id: str) -> Session | None:
        """Return the session, or ``None``."""
        ...

    def add(self, session: Session) -> None:
        """Register a new session.

        Raises:
            AlreadyExistsError: if the session id is registered already.
        """
        ...

    def update(self, session: Session) -> None:
        """Replace a registered session (same id).

        Raises:
            NotFoundError: if it is not registered.
        """
        ...

    def delete(self, session_id: str) -> bool:
        """Remove a session; return whether it was registered."""
        ...

    def list_for_user(self, user_id: str) -> Sequence[Session]:
        """Return the user's sessions, most recently seen first (ties: by session id)."""
        ...


@runtime_checkable
class SupportsSessions(Protocol):
    """A transaction that also keeps the session registry (Security tab's session list)."""

    @property
    def sessions(self) -> SessionRepository:
        """The session repository."""
        ...


class TokenRepository(Protocol):
    """Personal access tokens (Dev tab), stored by digest; the secret is never stored.

    A token is *live* while it is not revoked (an expired token is still live: it is
    listed and may be regenerated). Among a user's live tokens names are unique.
    """

    def add(self, token: AccessToken) -> None:
        """Insert a new token.

        Raises:
            AlreadyExistsError: if the id or the digest exists, or the user has a live
                token of that name (then ``field == "name"``).
        """
        ...

    def get(self, token_id: str) -> AccessToken | None:
        """Return the token with this id, or ``None``."""
        ...

    def get_by_digest(self, digest: bytes) -> AccessToken | None:
        """Return the token whose stored digest is ``digest`` (an indexed lookup), or ``None``."""
        ...

    def list_for_user(self, user_id: str) -> Sequence[AccessToken]:
        """Return all the user's tokens, revoked ones included, newest first.

        Order: ``created_at`` descending, ties by ``id`` descending.
        """
        ...

    def count_live(self, user_id: str) -> int:
        """Return how many of the user's tokens are not revoked (for the per-user cap)."""
        ...

    def update(self, token: AccessToken) -> None:
        """Replace the stored token with the same id (digest and pepper may change).

        Raises:
            NotFoundError: if there is no token with this id.
            AlreadyExistsError: if the new digest belongs to another token, or another
                live token of the user has the new name (``field == "name"``).
        """
        ...

    def record_use(
        self,
        token_id: str,
        *,
        at: datetime,
        ip: str | None,
        user_agent: str | None,
        if_last_used_before: datetime,
    ) -> bool:
        """Set the "last used" fields, unless a use at or after ``if_last_used_before`` is stored.

        This is the throttled write behind "last used": callers pass ``at - interval``
        so that concurrent requests write at most once per interval.

        Returns:
            Whether the token was updated (``False`` also if it does not exist).
        """
        ...

    def revoke_family(self, family_id: str, *, at: datetime, reason: str) -> Sequence[AccessToken]:
        """Revoke every live token of a family (rotation chain) at ``at``.

        Returns:
            The tokens this call revoked, as stored afterwards (oldest first).
        """
        ...

    def expiring_between(
        self,
        start: datetime,
        end: datetime,
        *,
        limit: int | None = None,
    ) -> Sequence[AccessToken]:
        """Return live tokens of all users with ``start < expires_at <= end``.

        Order: ``expires_at`` ascending, ties by ``id``; at most ``limit`` of them.
        """
        ...

    def prune(self, cutoff: datetime, *, limit: int | None = None) -> Sequence[AccessToken]:
        """Delete stale tokens; return them, oldest (``created_at``, then ``id``) first.

        Stale: expired, revoked, or last used (never used: created) before ``cutoff``.
        With ``limit``, only the oldest ``limit`` stale tokens are deleted.
        """
        ...


@runtime_checkable
class SupportsTokens(Protocol):
    """A transaction that also stores personal access tokens (needed for the Dev tab)."""

    @property
    def tokens(self) -> TokenRepository:
        """The token repository."""
        ...


@runtime_checkable
class SupportsTokenLookup(Protocol):
    """A storage that can find a token by digest without a transaction (optional, for speed).

    ``panel.tokens.authenticate`` runs on every API call. Through a transaction it
    costs a ``BEGIN``/``COMMIT`` pair and several objects; storages offering this
    capability answer with one read instead. Without it the service falls back to a
    read-only transaction and :meth:`TokenRepository.get_by_digest`.
    """

    def token_lookup(self) -> Callable[[bytes], TokenCredential | None]:
        """Return a function ``digest -> credential or None`` (the service fetches it once).

        The function sees only committed data and is safe to call from any thread.
        Inside a transaction of the same thread it must not see that transaction's
        writes (raising ``StorageError`` is fine); after the storage is closed it
        raises ``StorageError``. A function rather than a method, so that each
        adapter can hand out its fastest path.
        """
        ...


@runtime_checkable
class Storage(Protocol):
    """A storage back end: opens transactions and can be closed."""

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Transaction]:
        """Open a unit of work; commit on normal exit, roll back on any exception.

        Args:
            write: ``False`` for read-only work (may run concurrently with writers and
                sees a consistent snapshot); writing inside it is an error.
        """
        ...

    def close(self) -> None:
        """Release connections and other resources. Idempotent."""
        ...

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
  at a time; memory: one lock).
* Driver errors never escape: duplicates become
  :class:`~enspace_profile.exceptions.AlreadyExistsError`, stale versions
  :class:`~enspace_profile.exceptions.ConflictError`, anything else
  :class:`~enspace_profile.exceptions.StorageError`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

import attrs

from enspace_profile._audit import AuditEvent
from enspace_profile._profile.domain import Profile

__all__ = [
    "AuditLog",
    "Blob",
    "BlobRepository",
    "ProfileRepository",
    "Storage",
    "SupportsBlobs",
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

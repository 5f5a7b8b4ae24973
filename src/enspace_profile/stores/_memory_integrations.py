"""The in-memory integrations repository (part of :class:`~enspace_profile.MemoryStorage`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from enspace_profile._crypto.keyring import SealedBox
from enspace_profile._integrations.domain import Connection, SealedCredentials
from enspace_profile._integrations.oauth import PendingAuthorization
from enspace_profile.exceptions import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    StorageError,
)

if TYPE_CHECKING:
    from enspace_profile.stores.memory import Journal

__all__ = ["IntegrationTables", "MemoryIntegrations"]

_Account = tuple[str, str, str]


@attrs.define
class IntegrationTables:
    """The integrations state of one MemoryStorage.

    Values are immutable, so the journal can restore any of them by reference.

    Attributes:
        connections: Connections by id.
        accounts: Connection id by ``(user_id, provider, external_account_id)``.
        by_user: Each user's connection ids.
        credentials: Sealed credentials by connection id.
        pending: Pending OAuth authorizations by state digest.
    """

    connections: dict[str, Connection] = attrs.Factory(dict)
    accounts: dict[_Account, str] = attrs.Factory(dict)
    by_user: dict[str, frozenset[str]] = attrs.Factory(dict)
    credentials: dict[str, SealedBox] = attrs.Factory(dict)
    pending: dict[str, PendingAuthorization] = attrs.Factory(dict)


def _account(connection: Connection) -> _Account:
    return (connection.user_id, connection.provider, connection.external_account_id)


class MemoryIntegrations:
    """Integrations in memory (implements ``IntegrationRepository``)."""

    __slots__ = ("_j", "_t")

    def __init__(self, tables: IntegrationTables, journal: Journal) -> None:
        self._t = tables
        self._j = journal

    # -- connections -------------------------------------------------------------

    def _check_writable(self) -> None:
        # Checked up front, so a write that turns out to be a no-op is refused too.
        if not self._j.writable:
            msg = "attempt to write in a read-only transaction"
            raise StorageError(msg, code="storage.read_only")

    def _owned(self, user_id: str, connection_id: str) -> Connection | None:
        connection = self._t.connections.get(connection_id)
        if connection is None or connection.user_id != user_id:
            return None
        return connection

    def add(self, connection: Connection) -> None:
        self._check_writable()
        if connection.id in self._t.connections:
            raise AlreadyExistsError("connection", connection.id, field="id")
        account = _account(connection)
        if account in self._t.accounts:
            raise AlreadyExistsError("connection", connection.id, field="external_account_id")
        self._j.put(self._t.connections, connection.id, connection)
        self._j.put(self._t.accounts, account, connection.id)
        owned = self._t.by_user.get(connection.user_id, frozenset())
        self._j.put(self._t.by_user, connection.user_id, owned | {connection.id})

    def get(self, user_id: str, connection_id: str) -> Connection | None:
        return self._owned(user_id, connection_id)

    def find_account(
        self, user_id: str, provider: str, external_account_id: str
    ) -> Connection | None:
        connection_id = self._t.accounts.get((user_id, provider, external_account_id))
        return None if connection_id is None else self._t.connections[connection_id]

    def list_for_user(self, user_id: str, *, provider: str | None = None) -> Sequence[Connection]:
        connections = [self._t.connections[i] for i in self._t.by_user.get(user_id, ())]
        if provider is not None:
            connections = [c for c in connections if c.provider == provider]
        connections.sort(key=lambda c: (c.connected_at, c.id))
        return connections

    def update(self, connection: Connection, *, expected_version: int) -> None:
        self._check_writable()
        current = self._owned(connection.user_id, connection.id)
        if current is None:
            raise NotFoundError("connection", connection.id)
        if current.version != expected_version:
            raise ConflictError(
                "connection",
                connection.id,
                expected_version=expected_version,
                current_version=current.version,
            )
        if _account(connection) != _account(current):
            if _account(connection) in self._t.accounts:
                raise AlreadyExistsError("connection", connection.id, field="external_account_id")
            self._j.pop(self._t.accounts, _account(current))
            self._j.put(self._t.accounts, _account(connection), connection.id)
        self._j.put(self._t.connections, connection.id, connection)

    def delete(self, user_id: str, connection_id: str) -> bool:
        self._check_writable()
        current = self._owned(user_id, connection_id)
        if current is None:
            return False
        self._j.pop(self._t.connections, connection_id)
        self._j.pop(self._t.accounts, _account(current))
        self._j.pop(self._t.credentials, connection_id)
        remaining = self._t.by_user[user_id] - {connection_id}
        if remaining:
            self._j.put(self._t.by_user, user_id, remaining)
        else:
            self._j.pop(self._t.by_user, user_id)
        return True

    # -- credentials -------------------------------------------------------------

    def get_credentials(self, user_id: str, connection_id: str) -> SealedBox | None:
        if self._owned(user_id, connection_id) is None:
            return None
        return self._t.credentials.get(connection_id)

    def put_credentials(self, user_id: str, connection_id: str, box: SealedBox) -> None:
        self._check_writable()
        if self._owned(user_id, connection_id) is None:
            raise NotFoundError("connection", connection_id)
        self._j.put(self._t.credentials, connection_id, box)

    def delete_credentials(self, user_id: str, connection_id: str) -> bool:
        self._check_writable()
        if self._owned(user_id, connection_id) is None or connection_id not in self._t.credentials:
            return False
        self._j.pop(self._t.credentials, connection_id)
        return True

    def list_credentials(
        self,
        *,
        user_id: str | None = None,
        exclude_key_id: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> Sequence[SealedCredentials]:
        found: list[SealedCredentials] = []
        if limit is not None and limit <= 0:
            return found
        for connection_id in sorted(self._t.credentials):
            if after is not None and connection_id <= after:
                continue
            box = self._t.credentials[connection_id]
            connection = self._t.connections[connection_id]
            if user_id is not None and connection.user_id != user_id:
                continue
            if exclude_key_id is not None and box.key_id == exclude_key_id:
                continue
            found.append(
                SealedCredentials(
                    connection_id=connection_id,
                    user_id=connection.user_id,
                    provider=connection.provider,
                    box=box,
                )
            )
            if limit is not None and len(found) >= limit:
                break
        return found

    # -- pending OAuth authorizations --------------------------------------------

    def add_pending(self, pending: PendingAuthorization) -> None:
        self._check_writable()
        if pending.state_digest in self._t.pending:
            raise AlreadyExistsError("authorization", pending.state_digest[:12])
        self._j.put(self._t.pending, pending.state_digest, pending)

    def take_pending(self, state_digest: str) -> PendingAuthorization | None:
        self._check_writable()
        if state_digest not in self._t.pending:
            return None
        taken: PendingAuthorization = self._j.pop(self._t.pending, state_digest)
        return taken

    def delete_expired_pending(self, now: datetime) -> int:
        self._check_writable()
        expired = [d for d, p in self._t.pending.items() if p.expires_at <= now]
        for digest in expired:
            self._j.pop(self._t.pending, digest)
        return len(expired)

"""The Integrations tab's service: connect, OAuth, status, credentials, key rotation, disconnect.

Reach it as ``panel.integrations``. Credentials are sealed with the host's
:class:`~enspace_profile._crypto.keyring.KeyRing` (AES-256-GCM, associated data from
:func:`~enspace_profile._integrations.domain.credentials_aad`) before they reach
storage, and opened only by :meth:`IntegrationService.read_credentials`. No method
makes a network call: the host's code talks to providers and hands the results in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta

import attrs

from enspace_profile._audit import AuditEvent, FieldChange, JSONValue, Notifier, deliver
from enspace_profile._capability import repository
from enspace_profile._clock import Clock
from enspace_profile._crypto.keyring import KeyRing, SealedBox
from enspace_profile._integrations.domain import (
    Connection,
    ConnectionStatus,
    Credentials,
    DisconnectPolicy,
    LastSignInMethodPolicy,
    ProviderCatalog,
    ProviderKind,
    credentials_aad,
    credentials_from_bytes,
    credentials_to_bytes,
    new_connection,
)
from enspace_profile._integrations.oauth import (
    DEFAULT_AUTHORIZATION_TTL,
    AuthorizationRedirect,
    AuthorizationRequest,
    OAuthGrant,
    authorization_url,
    open_authorization,
    seal_authorization,
    start_authorization,
    state_digest,
    verify_state,
)
from enspace_profile._random import RandomSource, new_id
from enspace_profile._security.reauth import (
    DEFAULT_REAUTH_POLICY,
    AuthContext,
    ReauthPolicy,
    SensitiveAction,
)
from enspace_profile._validation import ErrorCollector
from enspace_profile.exceptions import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PolicyError,
    ValidationError,
)
from enspace_profile.typing import (
    IntegrationRepository,
    Storage,
    Transaction,
)

__all__ = [
    "INTEGRATION_CONNECTED",
    "INTEGRATION_CREDENTIALS_ROTATED",
    "INTEGRATION_DISCONNECTED",
    "INTEGRATION_STATUS_CHANGED",
    "ConnectionCredentials",
    "CredentialsRevoker",
    "IntegrationService",
    "ReencryptionReport",
    "SignInMethodCounter",
    "TokenExchange",
    "require_integrations",
]

logger = logging.getLogger("enspace_profile.integrations")

#: Audit event kinds written by this service.
INTEGRATION_CONNECTED = "integration.connected"
INTEGRATION_DISCONNECTED = "integration.disconnected"
INTEGRATION_CREDENTIALS_ROTATED = "integration.credentials_rotated"
INTEGRATION_STATUS_CHANGED = "integration.status_changed"
_EVENT_KINDS = (
    INTEGRATION_CONNECTED,
    INTEGRATION_CREDENTIALS_ROTATED,
    INTEGRATION_STATUS_CHANGED,
    INTEGRATION_DISCONNECTED,
)

#: Tells how many ways to sign in a user has outside the Integrations tab
#: (a password counts 1, each passkey 1, ...). Given the user id.
SignInMethodCounter = Callable[[str], int]

#: The host's token exchange: given the pending request (with its ``code_verifier``),
#: call the provider's token endpoint and return what it granted.
TokenExchange = Callable[[AuthorizationRequest], OAuthGrant]

#: Called after a disconnect committed, with the removed connection and its last
#: credentials, so the host can revoke them at the provider (RFC 7009).
CredentialsRevoker = Callable[[Connection, Credentials], object]

_STATE_MAX = 512
_BATCH_MAX = 10_000


@attrs.frozen(kw_only=True)
class ConnectionCredentials:
    """A connection with its decrypted credentials, for the host's worker.

    ``repr`` shows the connection and which secrets are set, never their values.

    Attributes:
        connection: The connection as read.
        credentials: The decrypted credentials.
        key_id: The id of the key that had sealed them.
    """

    connection: Connection
    credentials: Credentials
    key_id: str

    @property
    def credentials_version(self) -> int:
        """Pass this as ``expected_credentials_version`` when storing refreshed credentials."""
        return self.connection.credentials_version


@attrs.frozen(kw_only=True)
class ReencryptionReport:
    """What :meth:`IntegrationService.reencrypt_credentials` did.

    Attributes:
        key_id: The current key everything was re-encrypted under.
        reencrypted: How many credential blobs were re-encrypted.
        failed: Connections whose credentials could not be opened (their key left the
            ring, or the blob was altered); they were left untouched.
    """

    key_id: str
    reencrypted: int
    failed: tuple[str, ...] = ()


def require_integrations(tx: Transaction, storage: Storage) -> IntegrationRepository:
    """Return the transaction's integrations repository or explain that the storage lacks one.

    Raises:
        CapabilityError: naming the ``integrations`` repository.
    """
    integrations: IntegrationRepository = repository(tx, "integrations", storage)
    return integrations


def _check_version(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError.single(field, "invalid", "must be an integer >= 0", min=0)
    return value


@attrs.frozen(kw_only=True)
class IntegrationService:
    """Everything the Integrations tab does. Reach it as ``panel.integrations``.

    Args:
        storage: Where connections, sealed credentials and pending OAuth requests live
            (needs :class:`~enspace_profile.typing.SupportsIntegrations`).
        providers: The providers the host offers.
        clock: Source of the current time.
        rng: Source of randomness (ids, OAuth state, PKCE verifiers).
        key_ring: Encrypts credentials; without one the tab lists and disconnects, but
            anything touching credentials raises
            :class:`~enspace_profile.exceptions.ConfigurationError`.
        reauth_policy: How recent an authentication connecting and disconnecting need.
        disconnect_policy: Decides whether a connection may be removed (default:
            never the user's last way to sign in).
        sign_in_methods: Tells how many sign-in methods a user has outside this tab
            (``None``: assume none, the safe answer).
        notifier: Receives each audit event after its transaction committed.
        authorization_ttl: How long a user has to come back from the provider.
    """

    storage: Storage
    providers: ProviderCatalog
    clock: Clock
    rng: RandomSource
    key_ring: KeyRing | None = None
    reauth_policy: ReauthPolicy = DEFAULT_REAUTH_POLICY
    disconnect_policy: DisconnectPolicy = attrs.field(factory=LastSignInMethodPolicy)
    sign_in_methods: SignInMethodCounter | None = None
    notifier: Notifier | None = None
    authorization_ttl: timedelta = DEFAULT_AUTHORIZATION_TTL

    # -- reading -----------------------------------------------------------------

    def list(self, user_id: str, *, provider: str | None = None) -> Sequence[Connection]:
        """Return the user's connections, oldest first (what the Integrations tab lists).

        Connections to providers the host no longer offers are included, so that the
        user can still remove them.

        Args:
            user_id: Whose connections.
            provider: Only connections to this provider key.
        """
        with self.storage.transaction(write=False) as tx:
            return require_integrations(tx, self.storage).list_for_user(user_id, provider=provider)

    def get(self, user_id: str, connection_id: str) -> Connection:
        """Return one of the user's connections.

        Raises:
            NotFoundError: ``connection.not_found`` (also for another user's connection).
        """
        with self.storage.transaction(write=False) as tx:
            connection = require_integrations(tx, self.storage).get(user_id, connection_id)
        if connection is None:
            raise NotFoundError("connection", connection_id)
        return connection

    def history(
        self, user_id: str, *, limit: int | None = None, newest_first: bool = False
    ) -> Sequence[AuditEvent]:
        """Return the user's integration events (connected, rotated, status, disconnected).

        Args:
            user_id: Whose events.
            limit: At most this many (after ordering).
            newest_first: Reverse the order (oldest first by default).
        """
        with self.storage.transaction(write=False) as tx:
            return tx.audit.list_for_user(
                user_id, kinds=_EVENT_KINDS, limit=limit, newest_first=newest_first
            )

    def read_credentials(self, user_id: str, connection_id: str) -> ConnectionCredentials:
        """Decrypt a connection's credentials for the host's worker (the only way to read them).

        Keep the result in memory only as long as the call to the provider needs it.

        Args:
            user_id: The connection's user.
            connection_id: The connection.

        Returns:
            The connection and its credentials; ``credentials_version`` is what
            :meth:`rotate_credentials` expects after a refresh.

        Raises:
            ConfigurationError: no key ring is configured.
            NotFoundError: ``connection.not_found``, or ``credentials.not_found`` when
                the connection has none (it was revoked).
            ValidationError: ``ciphertext.*`` / ``credentials.corrupt`` if the stored
                blob cannot be opened (its key left the ring, or it was altered).
        """
        ring = self._ring("reading integration credentials")
        with self.storage.transaction(write=False) as tx:
            repo = require_integrations(tx, self.storage)
            connection = repo.get(user_id, connection_id)
            box = None if connection is None else repo.get_credentials(user_id, connection_id)
        if connection is None:
            raise NotFoundError("connection", connection_id)
        if box is None:
            raise NotFoundError("credentials", connection_id)
        return ConnectionCredentials(
            connection=connection,
            credentials=_open(ring, connection, box),
            key_id=box.key_id,
        )

    # -- connecting --------------------------------------------------------------

    def connect(
        self,
        user_id: str,
        provider: str,
        *,
        auth: AuthContext,
        credentials: Credentials,
        external_account_id: str,
        external_account_label: str = "",
        granted_scopes: str | Iterable[str] = (),
        actor: str | None = None,
    ) -> Connection:
        """Connect an account directly (an API key or webhook the user entered).

        Also for OAuth 2 tokens the host obtained by other means; for the usual
        browser flow use :meth:`begin_authorization` and :meth:`complete_authorization`.
        Connecting an account that is already connected replaces its credentials and
        makes it ``connected`` again.

        Args:
            user_id: The signed-in user.
            provider: The provider's key in the catalog.
            auth: How the session last authenticated (connecting is sensitive).
            credentials: The secrets; they must fit the provider's kind
                (:attr:`~enspace_profile.Provider.accepted_credentials`).
            external_account_id: The account's stable id at the provider.
            external_account_label: What the user recognises the account by.
            granted_scopes: The scopes the credentials carry, if the provider has any.
            actor: Who connects, for the audit log (``None``: the user).

        Returns:
            The stored connection.

        Raises:
            ReauthenticationRequired: the session's authentication is not recent enough.
            NotFoundError: ``provider.not_found``.
            ValidationError: every invalid field (``credentials.missing_for_kind``, ...).
            ConfigurationError: no key ring is configured.
        """
        now = self.clock.now()
        self.reauth_policy.require(
            auth, SensitiveAction.CONNECT_INTEGRATION, user_id=user_id, now=now
        )
        found = self.providers.get(provider)
        errors = ErrorCollector()
        errors.capture(found.check_credentials, credentials)
        candidate = errors.capture(
            new_connection,
            found,
            user_id=user_id,
            external_account_id=external_account_id,
            external_account_label=external_account_label,
            granted_scopes=granted_scopes,
            rng=self.rng,
            now=now,
        )
        errors.raise_if_any()
        assert candidate is not None
        ring = self._ring("encrypting integration credentials")
        return self._link(candidate, credentials, ring=ring, actor=actor, via="direct")

    def begin_authorization(
        self,
        user_id: str,
        provider: str,
        *,
        auth: AuthContext,
        redirect_uri: str,
        scopes: str | Iterable[str] = (),
        client_id: str | None = None,
        extra_params: Mapping[str, str] | None = None,
    ) -> AuthorizationRedirect:
        """Start connecting an OAuth 2 account: store a pending request, return the URL.

        The pending request is stored under the SHA-256 of its state, with the PKCE
        verifier encrypted; it can be completed once, within ``authorization_ttl``.
        Expired pending requests are purged on the way.

        Args:
            user_id: The signed-in user.
            provider: An OAuth 2 provider's key.
            auth: How the session last authenticated (connecting is sensitive; the
                check is made here, not again on the callback).
            redirect_uri: The host's callback URL (https; http only for loopback).
            scopes: Scopes to ask for; each must be one the provider offers.
            client_id: The host's client id (default: the provider's ``client_id``).
            extra_params: Provider-specific query parameters (``prompt``, ...).

        Returns:
            The URL to redirect the browser to, and the request.

        Raises:
            ReauthenticationRequired: the session's authentication is not recent enough.
            NotFoundError: ``provider.not_found``.
            ValidationError: ``provider.not_oauth2``, ``scopes.unknown``,
                ``client_id.required``, ``redirect_uri.*``, ... (all at once).
            ConfigurationError: no key ring is configured.
        """
        now = self.clock.now()
        self.reauth_policy.require(
            auth, SensitiveAction.CONNECT_INTEGRATION, user_id=user_id, now=now
        )
        found = self.providers.get(provider)
        ring = self._ring("starting an OAuth authorization")
        errors = ErrorCollector()
        request = errors.capture(
            start_authorization,
            found,
            user_id=user_id,
            redirect_uri=redirect_uri,
            scopes=scopes,
            rng=self.rng,
            now=now,
            ttl=self.authorization_ttl,
        )
        client = client_id if client_id is not None else found.client_id
        if client is None and found.kind is ProviderKind.OAUTH2:
            errors.add(
                "client_id",
                "required",
                f"pass client_id or set it on the {found.name} provider",
                provider=found.key,
            )
        errors.raise_if_any()
        assert request is not None
        assert client is not None
        url = authorization_url(found, request, client_id=client, extra_params=extra_params)
        pending = seal_authorization(request, key_ring=ring)
        with self.storage.transaction() as tx:
            repo = require_integrations(tx, self.storage)
            repo.delete_expired_pending(now)
            repo.add_pending(pending)
        return AuthorizationRedirect(url=url, request=request)

    def complete_authorization(
        self,
        user_id: str,
        *,
        state: str,
        exchange: TokenExchange,
        actor: str | None = None,
    ) -> Connection:
        """Finish an OAuth 2 connection on the provider's callback.

        The pending request is taken from storage (read and deleted atomically) before
        anything else, so a ``state`` works exactly once, whether or not the rest
        succeeds. Then the state, the user and the expiry are checked, ``exchange``
        is called (outside any transaction: it does the network call), and the
        connection and its encrypted credentials are stored in one transaction.

        Args:
            user_id: The user signed in on the callback.
            state: The ``state`` query parameter of the callback.
            exchange: The host's token exchange; it receives the request (with its
                ``code_verifier``) and returns an :class:`OAuthGrant`.
            actor: Who connects, for the audit log (``None``: the user).

        Returns:
            The stored connection.

        Raises:
            PolicyError: ``integrations.oauth.unknown_state`` (forged, already used or
                purged), ``integrations.oauth.wrong_user`` or ``integrations.oauth.expired``.
            NotFoundError: ``provider.not_found`` if the host removed the provider.
            ValidationError: the grant is invalid or does not fit the provider.
            ConfigurationError: no key ring is configured.
        """
        ring = self._ring("completing an OAuth authorization")
        presented: object = state
        if not isinstance(presented, str) or not presented or len(presented) > _STATE_MAX:
            raise _unknown_state()
        with self.storage.transaction() as tx:
            pending = require_integrations(tx, self.storage).take_pending(state_digest(state))
        if pending is None:
            raise _unknown_state()
        request = open_authorization(pending, state=state, key_ring=ring)
        verify_state(request, state, now=self.clock.now(), user_id=user_id)
        provider = self.providers.get(request.provider)
        grant = exchange(request)
        grant_object: object = grant
        if not isinstance(grant_object, OAuthGrant):
            raise ValidationError.single(
                "grant", "invalid_type", "exchange must return an OAuthGrant"
            )
        errors = ErrorCollector()
        errors.capture(provider.check_credentials, grant.credentials)
        scopes = request.scopes if grant.granted_scopes is None else grant.granted_scopes
        candidate = errors.capture(
            new_connection,
            provider,
            user_id=user_id,
            external_account_id=grant.external_account_id,
            external_account_label=grant.external_account_label,
            granted_scopes=scopes,
            rng=self.rng,
            now=self.clock.now(),
        )
        errors.raise_if_any()
        assert candidate is not None
        return self._link(candidate, grant.credentials, ring=ring, actor=actor, via="oauth")

    def purge_expired_authorizations(self) -> int:
        """Delete pending OAuth requests that expired; return how many (for a periodic job)."""
        with self.storage.transaction() as tx:
            return require_integrations(tx, self.storage).delete_expired_pending(self.clock.now())

    def _link(
        self,
        candidate: Connection,
        credentials: Credentials,
        *,
        ring: KeyRing,
        actor: str | None,
        via: str,
    ) -> Connection:
        """Store a new connection, or reconnect the same account, with its credentials."""
        with self.storage.transaction() as tx:
            repo = require_integrations(tx, self.storage)
            existing = repo.find_account(
                candidate.user_id, candidate.provider, candidate.external_account_id
            )
            if existing is None:
                connection = candidate
                repo.add(connection)
                old_status: str | None = None
            else:
                renewed = existing.reauthorized(granted_scopes=candidate.granted_scopes)
                connection = attrs.evolve(
                    renewed,
                    external_account_label=candidate.external_account_label
                    or existing.external_account_label,
                    version=existing.version + 1,
                )
                repo.update(connection, expected_version=existing.version)
                old_status = existing.status.value
            box = _seal(ring, connection, credentials)
            repo.put_credentials(connection.user_id, connection.id, box)
            event = self._event(
                INTEGRATION_CONNECTED,
                connection,
                actor=actor,
                changes=(FieldChange(field="status", old=old_status, new=connection.status.value),),
                details={
                    "via": via,
                    "reconnected": existing is not None,
                    "external_account_label": connection.external_account_label,
                    "granted_scopes": sorted(connection.granted_scopes),
                    "credentials": list(credentials.set_fields),
                    "key_id": box.key_id,
                },
            )
            tx.audit.append(event)
        deliver(self.notifier, [event])
        return connection

    # -- status --------------------------------------------------------------------

    def update_status(
        self,
        user_id: str,
        connection_id: str,
        status: ConnectionStatus | str,
        *,
        error: str | None = None,
        expected_version: int | None = None,
        actor: str | None = None,
    ) -> Connection:
        """Set a connection's status, as the host's worker observed it.

        ``error`` is cleaned before it is stored (the connection's own credentials are
        redacted when a key ring is configured, control characters removed, length
        capped). Setting ``revoked`` deletes the credentials: the grant is gone. A
        change of status is audited; a call that changes nothing writes nothing.

        Args:
            user_id: The connection's user.
            connection_id: The connection.
            status: ``connected``, ``needs_reauthorization``, ``error`` or ``revoked``.
            error: What went wrong (ignored for ``connected``).
            expected_version: Refuse the change if the connection changed since.
            actor: Who changes it, for the audit log (e.g. ``"worker:sync"``).

        Returns:
            The connection as stored.

        Raises:
            NotFoundError: ``connection.not_found``.
            ConflictError: ``connection.conflict`` when ``expected_version`` is stale.
            PolicyError: ``integrations.revoked`` when leaving ``revoked`` (connect again).
            ValidationError: ``status.invalid``.
        """
        return self._transition(
            user_id,
            connection_id,
            lambda current, creds: current.with_status(status, error=error, credentials=creds),
            expected_version=expected_version,
            actor=actor,
        )

    def record_sync(
        self, user_id: str, connection_id: str, *, actor: str | None = None
    ) -> Connection:
        """Record a successful call to the provider: ``connected``, error cleared, last sync now.

        Raises:
            NotFoundError: ``connection.not_found``.
            PolicyError: ``integrations.revoked``.
        """
        now = self.clock.now()
        return self._transition(
            user_id,
            connection_id,
            lambda current, _creds: current.record_sync(now),
            expected_version=None,
            actor=actor,
        )

    def record_error(
        self,
        user_id: str,
        connection_id: str,
        message: str,
        *,
        needs_reauthorization: bool = False,
        actor: str | None = None,
    ) -> Connection:
        """Record a failed call: ``error`` (or ``needs_reauthorization``) with a safe message.

        Raises:
            NotFoundError: ``connection.not_found``.
            PolicyError: ``integrations.revoked``.
        """
        status = (
            ConnectionStatus.NEEDS_REAUTHORIZATION
            if needs_reauthorization
            else ConnectionStatus.ERROR
        )
        return self.update_status(user_id, connection_id, status, error=message, actor=actor)

    def _transition(
        self,
        user_id: str,
        connection_id: str,
        change: Callable[[Connection, Credentials | None], Connection],
        *,
        expected_version: int | None,
        actor: str | None,
    ) -> Connection:
        if expected_version is not None:
            _check_version(expected_version, "expected_version")
        with self.storage.transaction() as tx:
            repo = require_integrations(tx, self.storage)
            current = repo.get(user_id, connection_id)
            if current is None:
                raise NotFoundError("connection", connection_id)
            if expected_version is not None and current.version != expected_version:
                raise ConflictError(
                    "connection",
                    connection_id,
                    expected_version=expected_version,
                    current_version=current.version,
                )
            changed = change(current, self._redaction_source(repo, current))
            if changed == current:
                return current
            updated = attrs.evolve(changed, version=current.version + 1)
            repo.update(updated, expected_version=current.version)
            if updated.status is ConnectionStatus.REVOKED:
                repo.delete_credentials(user_id, connection_id)
            events: list[AuditEvent] = []
            if updated.status is not current.status:
                events.append(
                    self._event(
                        INTEGRATION_STATUS_CHANGED,
                        updated,
                        actor=actor,
                        changes=(
                            FieldChange(
                                field="status", old=current.status.value, new=updated.status.value
                            ),
                        ),
                        details={"last_error": updated.last_error},
                    )
                )
                tx.audit.append(events[0])
        deliver(self.notifier, events)
        return updated

    def _redaction_source(
        self, repo: IntegrationRepository, connection: Connection
    ) -> Credentials | None:
        """The connection's credentials, to redact from error texts (best effort)."""
        if self.key_ring is None:
            return None
        box = repo.get_credentials(connection.user_id, connection.id)
        if box is None:
            return None
        try:
            return _open(self.key_ring, connection, box)
        except ValidationError:
            return None

    # -- credentials -------------------------------------------------------------

    def rotate_credentials(
        self,
        user_id: str,
        connection_id: str,
        credentials: Credentials,
        *,
        expected_credentials_version: int,
        granted_scopes: str | Iterable[str] | None = None,
        actor: str | None = None,
    ) -> Connection:
        """Replace a connection's credentials (an OAuth refresh, a new API key).

        Two workers refreshing the same connection both read ``credentials_version``
        *n* (:meth:`read_credentials`); the first to store wins and makes it *n + 1*,
        the second gets :class:`~enspace_profile.exceptions.ConflictError` and should
        read the winner's credentials instead of overwriting them. Status updates in
        between do not cause a conflict.

        Args:
            user_id: The connection's user.
            connection_id: The connection.
            credentials: The new secrets (they must fit the provider's kind).
            expected_credentials_version: ``credentials_version`` as read.
            granted_scopes: The scopes now granted, if the provider reported them.
            actor: Who rotates, for the audit log (e.g. ``"worker:refresh"``).

        Returns:
            The connection as stored.

        Raises:
            ConflictError: ``connection.credentials.conflict``: someone stored newer
                credentials first (nothing was changed).
            NotFoundError: ``connection.not_found``.
            PolicyError: ``integrations.revoked``: connect the account again instead.
            ValidationError: invalid credentials or version.
            ConfigurationError: no key ring is configured.
        """
        expected = _check_version(expected_credentials_version, "expected_credentials_version")
        ring = self._ring("encrypting integration credentials")
        credentials_object: object = credentials
        if not isinstance(credentials_object, Credentials):
            raise ValidationError.single(
                "credentials", "invalid_type", "must be a Credentials object"
            )
        with self.storage.transaction() as tx:
            repo = require_integrations(tx, self.storage)
            current = repo.get(user_id, connection_id)
            if current is None:
                raise NotFoundError("connection", connection_id)
            if current.credentials_version != expected:
                raise ConflictError(
                    "connection.credentials",
                    connection_id,
                    expected_version=expected,
                    current_version=current.credentials_version,
                )
            provider = self.providers.find(current.provider)
            if provider is not None:
                provider.check_credentials(credentials)
            rotated = current.credentials_rotated()
            if granted_scopes is not None:
                rotated = attrs.evolve(rotated, granted_scopes=granted_scopes)
            updated = attrs.evolve(rotated, version=current.version + 1)
            repo.update(updated, expected_version=current.version)
            box = _seal(ring, updated, credentials)
            repo.put_credentials(user_id, connection_id, box)
            event = self._event(
                INTEGRATION_CREDENTIALS_ROTATED,
                updated,
                actor=actor,
                details={
                    "credentials_version": updated.credentials_version,
                    "credentials": list(credentials.set_fields),
                    "granted_scopes": sorted(updated.granted_scopes),
                    "key_id": box.key_id,
                },
            )
            tx.audit.append(event)
        deliver(self.notifier, [event])
        return updated

    def reencrypt_credentials(
        self, *, user_id: str | None = None, batch_size: int = 100
    ) -> ReencryptionReport:
        """Re-encrypt stored credentials under the key ring's current key (after a rotation).

        Put the new key first in the ring, run this (for one user or everyone), then
        drop old keys once the report shows no failure. Each batch is its own short
        write transaction; the plaintext and the connections do not change, so nothing
        is audited and no ``credentials_version`` moves. Safe to run again or
        concurrently with workers.

        Args:
            user_id: Only this user's credentials (``None``: everyone's).
            batch_size: Credentials re-encrypted per transaction (1 to 10 000).

        Returns:
            How many were re-encrypted, and which could not be opened.

        Raises:
            ConfigurationError: no key ring is configured.
            ValidationError: ``batch_size.out_of_range``.
        """
        ring = self._ring("re-encrypting integration credentials")
        size: object = batch_size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= _BATCH_MAX:
            raise ValidationError.single(
                "batch_size", "out_of_range", f"must be from 1 to {_BATCH_MAX}", max=_BATCH_MAX
            )
        current = ring.current.id
        done = 0
        failed: list[str] = []
        after: str | None = None
        while True:
            with self.storage.transaction() as tx:
                repo = require_integrations(tx, self.storage)
                page = repo.list_credentials(
                    user_id=user_id, exclude_key_id=current, after=after, limit=batch_size
                )
                for item in page:
                    try:
                        box = ring.rotate(item.box, aad=item.aad)
                    except ValidationError:
                        failed.append(item.connection_id)
                        continue
                    repo.put_credentials(item.user_id, item.connection_id, box)
                    done += 1
            if len(page) < batch_size:
                break
            after = page[-1].connection_id
        return ReencryptionReport(key_id=current, reencrypted=done, failed=tuple(failed))

    # -- disconnecting -------------------------------------------------------------

    def disconnect(
        self,
        user_id: str,
        connection_id: str,
        *,
        auth: AuthContext,
        other_sign_in_methods: int | None = None,
        revoke: CredentialsRevoker | None = None,
        actor: str | None = None,
    ) -> Connection:
        """Remove a connection and delete its credentials, if the disconnect policy allows.

        The default policy refuses to remove the user's last way to sign in: a
        connection to a provider marked ``sign_in`` when no other such connection
        exists and the host reports no other sign-in method.

        Args:
            user_id: The signed-in user.
            connection_id: The connection to remove.
            auth: How the session last authenticated (disconnecting is sensitive).
            other_sign_in_methods: Sign-in methods the user has outside this tab
                (default: what the panel's ``sign_in_methods`` callback says, else 0).
            revoke: Called after the removal committed with the connection and its
                last credentials, to revoke them at the provider; its errors are
                logged, never raised (the connection is gone either way).
            actor: Who disconnects, for the audit log (``None``: the user).

        Returns:
            The connection as it was before removal.

        Raises:
            ReauthenticationRequired: the session's authentication is not recent enough.
            NotFoundError: ``connection.not_found``.
            PolicyError: ``integrations.last_sign_in_method`` (or the host policy's code).
            ConfigurationError: ``revoke`` was given but no key ring is configured.
        """
        now = self.clock.now()
        self.reauth_policy.require(
            auth, SensitiveAction.DISCONNECT_INTEGRATION, user_id=user_id, now=now
        )
        ring = self._ring("revoking integration credentials") if revoke is not None else None
        count = other_sign_in_methods
        if count is None:
            count = 0 if self.sign_in_methods is None else self.sign_in_methods(user_id)
        last: Credentials | None = None
        with self.storage.transaction() as tx:
            repo = require_integrations(tx, self.storage)
            current = repo.get(user_id, connection_id)
            if current is None:
                raise NotFoundError("connection", connection_id)
            self.disconnect_policy.check_disconnect(
                current,
                other_connections=repo.list_for_user(user_id),
                catalog=self.providers,
                other_sign_in_methods=count,
            )
            if ring is not None:
                box = repo.get_credentials(user_id, connection_id)
                if box is not None:
                    try:
                        last = _open(ring, current, box)
                    except ValidationError:
                        logger.warning(
                            "credentials of connection %s could not be opened to revoke them",
                            connection_id,
                        )
            repo.delete(user_id, connection_id)
            event = self._event(
                INTEGRATION_DISCONNECTED,
                current,
                actor=actor,
                changes=(FieldChange(field="status", old=current.status.value, new=None),),
                details={"external_account_label": current.external_account_label},
            )
            tx.audit.append(event)
        deliver(self.notifier, [event])
        if revoke is not None and last is not None:
            try:
                revoke(current, last)
            except Exception:
                logger.exception("revoking the credentials of connection %s failed", current.id)
        return current

    # -- helpers -------------------------------------------------------------------

    def _ring(self, feature: str) -> KeyRing:
        if self.key_ring is None:
            raise ConfigurationError(option="key_ring", feature=feature)
        return self.key_ring

    def _event(
        self,
        kind: str,
        connection: Connection,
        *,
        actor: str | None,
        changes: tuple[FieldChange, ...] = (),
        details: Mapping[str, JSONValue],
    ) -> AuditEvent:
        return AuditEvent(
            id=new_id(self.rng),
            user_id=connection.user_id,
            kind=kind,
            at=self.clock.now(),
            actor=actor,
            subject=connection.id,
            version=connection.version,
            changes=changes,
            details={"provider": connection.provider, **details},
        )


def _seal(ring: KeyRing, connection: Connection, credentials: Credentials) -> SealedBox:
    aad = credentials_aad(
        user_id=connection.user_id, provider=connection.provider, connection_id=connection.id
    )
    return ring.seal(credentials_to_bytes(credentials), aad=aad)


def _open(ring: KeyRing, connection: Connection, box: SealedBox) -> Credentials:
    aad = credentials_aad(
        user_id=connection.user_id, provider=connection.provider, connection_id=connection.id
    )
    return credentials_from_bytes(ring.open(box, aad=aad))


def _unknown_state() -> PolicyError:
    return PolicyError(
        "this authorization is unknown, was already used, or expired: start again",
        code="integrations.oauth.unknown_state",
    )

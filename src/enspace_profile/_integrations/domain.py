"""The Integrations tab's domain: providers, connections, credentials, disconnect rules.

The host declares the external services it supports in a :class:`ProviderCatalog`;
nothing here knows any particular provider. A user links an external account as a
:class:`Connection`; what the link needs to call the provider (tokens, an API key)
is a :class:`Credentials` value that the service encrypts before storage, using
:func:`credentials_to_bytes` and :func:`credentials_aad`.

Pure code: no storage, no clock, no network.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol

import attrs

from enspace_profile._crypto.keyring import SealedBox
from enspace_profile._random import RandomSource, new_id
from enspace_profile._validation import (
    ErrorCollector,
    validate_aware_datetime,
    validate_https_url,
    validate_slug,
    validate_text,
    validate_user_id,
)
from enspace_profile.exceptions import (
    AlreadyExistsError,
    NotFoundError,
    PolicyError,
    ValidationError,
)

__all__ = [
    "Connection",
    "ConnectionStatus",
    "Credentials",
    "DisconnectPolicy",
    "LastSignInMethodPolicy",
    "Provider",
    "ProviderCatalog",
    "ProviderKind",
    "SealedCredentials",
    "credentials_aad",
    "credentials_from_bytes",
    "credentials_to_bytes",
    "new_connection",
    "safe_error_text",
    "validate_scope",
]

# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_RE: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_SCOPE_MAX: Final = 256
_NAME_MAX: Final = 100
_DESCRIPTION_MAX: Final = 2000
_ID_MAX: Final = 255
_LABEL_MAX: Final = 200
_ERROR_MAX: Final = 500
_ERROR_DEFAULT_LIMIT: Final = 200
_SECRET_MAX: Final = 16_384
_MIN_REDACTED: Final = 4
_REDACTED: Final = "[redacted]"
_CREDENTIALS_FORMAT: Final = 1
_SECRET_FIELDS: Final = ("access_token", "refresh_token", "api_key", "webhook_url")
_CLIENT_ID_MAX: Final = 512
_AAD_LABEL: Final = "enspace_profile/integrations/credentials"


def validate_scope(value: object, *, field: str = "scopes") -> str:
    r"""Check one scope token (RFC 6749: printable ASCII except space, ``"`` and ``\``).

    Raises:
        ValidationError: ``<field>.invalid`` or ``<field>.too_long``.
    """
    if not isinstance(value, str) or _SCOPE_RE.fullmatch(value) is None:
        raise ValidationError.single(
            field, "invalid", "a scope is printable ASCII without spaces, quotes or backslashes"
        )
    if len(value) > _SCOPE_MAX:
        raise ValidationError.single(
            field, "too_long", f"a scope is at most {_SCOPE_MAX} characters", limit=_SCOPE_MAX
        )
    return value


def _scope_iterable(scopes: str | Iterable[str]) -> tuple[str, ...]:
    """Accept an OAuth scope string (space-separated) or an iterable of scopes."""
    if isinstance(scopes, str):
        return tuple(scopes.split())
    try:
        return tuple(scopes)
    except TypeError:
        raise ValidationError.single(
            "scopes", "invalid_type", "must be a space-separated string or a list of scopes"
        ) from None


def _to_scope_tuple(value: str | Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_scope_iterable(value)))


def _to_scope_set(value: str | Iterable[str]) -> frozenset[str]:
    return frozenset(_scope_iterable(value))


class ProviderKind(StrEnum):
    """How the library authenticates to a provider."""

    OAUTH2 = "oauth2"
    API_KEY = "api_key"
    WEBHOOK = "webhook"


_ACCEPTED_CREDENTIALS: Final[dict[ProviderKind, tuple[str, ...]]] = {
    ProviderKind.OAUTH2: ("access_token",),
    ProviderKind.API_KEY: ("api_key",),
    ProviderKind.WEBHOOK: ("webhook_url", "api_key"),
}


@attrs.frozen(kw_only=True)
class Provider:
    """An external service the host lets users connect (defined by the host).

    >>> github = Provider(key="github", name="GitHub", kind=ProviderKind.OAUTH2,
    ...                   available_scopes=("read:user", "repo"), sign_in=True,
    ...                   authorize_url="https://github.com/login/oauth/authorize",
    ...                   token_url="https://github.com/login/oauth/access_token")
    >>> sorted(github.validate_scopes("repo read:user"))
    ['read:user', 'repo']

    Attributes:
        key: Stable machine key (``"github"``); see
            :func:`~enspace_profile._lab.domain.validate_slug`.
        name: Display name.
        description: What connecting it does, shown in the Integrations tab.
        kind: OAuth 2, API key or webhook.
        available_scopes: The scopes a connection may ask for, in display order.
        sign_in: Whether a connected account can be used to sign in.
        authorize_url: OAuth 2 authorization endpoint (https, no fragment), or ``None``.
        token_url: OAuth 2 token endpoint (https, no fragment), or ``None``.
        client_id: The host's OAuth 2 client id at the provider (public, not a secret;
            the client secret stays in the host's token exchange), or ``None``.

    Raises:
        ValidationError: with every problem found, when any field is invalid;
            ``authorize_url.not_oauth2`` / ``token_url.not_oauth2`` /
            ``client_id.not_oauth2`` when they are given for a provider that is not
            OAuth 2.
    """

    key: str
    name: str
    description: str = ""
    kind: ProviderKind
    available_scopes: tuple[str, ...] = attrs.field(default=(), converter=_to_scope_tuple)
    sign_in: bool = False
    authorize_url: str | None = None
    token_url: str | None = None
    client_id: str | None = None

    def __attrs_post_init__(self) -> None:
        errors = ErrorCollector()
        errors.capture(validate_slug, self.key, field="key")
        errors.capture(validate_text, self.name, field="name", max_length=_NAME_MAX)
        errors.capture(
            validate_text,
            self.description,
            field="description",
            max_length=_DESCRIPTION_MAX,
            required=False,
            multiline=True,
        )
        kind: object = self.kind
        if not isinstance(kind, ProviderKind):
            try:
                object.__setattr__(self, "kind", ProviderKind(str(kind)))
            except ValueError:
                errors.add(
                    "kind",
                    "invalid",
                    "must be one of: oauth2, api_key, webhook",
                    allowed=tuple(ProviderKind),
                )
        for scope in self.available_scopes:
            errors.capture(validate_scope, scope, field="available_scopes")
        sign_in: object = self.sign_in
        if not isinstance(sign_in, bool):
            errors.add("sign_in", "invalid_type", "must be True or False")
        for field in ("authorize_url", "token_url"):
            url = getattr(self, field)
            if url is None:
                continue
            if self.kind is not ProviderKind.OAUTH2:
                errors.add(field, "not_oauth2", "only OAuth 2 providers have endpoints")
            else:
                errors.capture(validate_https_url, url, field=field, allow_fragment=False)
        if self.client_id is not None:
            if self.kind is not ProviderKind.OAUTH2:
                errors.add("client_id", "not_oauth2", "only OAuth 2 providers have a client id")
            else:
                errors.capture(
                    validate_text, self.client_id, field="client_id", max_length=_CLIENT_ID_MAX
                )
        errors.raise_if_any()

    @property
    def accepted_credentials(self) -> tuple[str, ...]:
        """The :class:`Credentials` fields of which a connection needs at least one.

        OAuth 2: ``access_token``; API key: ``api_key``; webhook: ``webhook_url`` (the
        URL the host posts to, which embeds its secret) or ``api_key`` (a signing
        secret for webhooks the provider sends).
        """
        return _ACCEPTED_CREDENTIALS[self.kind]

    def check_credentials(self, credentials: Credentials) -> Credentials:
        """Check that ``credentials`` hold what a connection to this provider needs.

        Args:
            credentials: What the user entered or the token endpoint returned.

        Returns:
            ``credentials`` unchanged.

        Raises:
            ValidationError: ``credentials.invalid_type``, or
                ``credentials.missing_for_kind`` (params ``kind`` and ``accepted``).
        """
        if not isinstance(credentials, Credentials):
            raise ValidationError.single(
                "credentials", "invalid_type", "must be a Credentials object"
            )
        accepted = self.accepted_credentials
        if not any(getattr(credentials, field) is not None for field in accepted):
            raise ValidationError.single(
                "credentials",
                "missing_for_kind",
                f"a {self.name} connection needs: {' or '.join(accepted)}",
                kind=self.kind.value,
                accepted=accepted,
            )
        return credentials

    def validate_scopes(self, scopes: str | Iterable[str]) -> frozenset[str]:
        """Check that every requested scope is one this provider offers.

        Args:
            scopes: A space-separated OAuth scope string, or an iterable of scopes.

        Returns:
            The distinct scopes.

        Raises:
            ValidationError: ``scopes.unknown`` (params ``provider`` and ``unknown``,
                every unknown scope, sorted), or ``scopes.invalid_type``.
        """
        requested = _to_scope_set(scopes)
        unknown = tuple(sorted(str(s) for s in requested - set(self.available_scopes)))
        if unknown:
            raise ValidationError.single(
                "scopes",
                "unknown",
                f"{self.name} does not offer: {', '.join(unknown)}",
                provider=self.key,
                unknown=unknown,
            )
        return requested


@attrs.define(eq=False)
class ProviderCatalog:
    """The providers a host offers, by key. None is built in.

    >>> catalog = ProviderCatalog()
    >>> catalog.register(Provider(key="linear", name="Linear", kind=ProviderKind.API_KEY))
    >>> [p.key for p in catalog]
    ['linear']
    """

    _providers: dict[str, Provider] = attrs.field(init=False, factory=dict, repr=False)

    @classmethod
    def of(cls, providers: Iterable[Provider]) -> ProviderCatalog:
        """Build a catalog holding ``providers``.

        Raises:
            AlreadyExistsError: ``provider.already_exists`` if a key repeats.
        """
        catalog = cls()
        for provider in providers:
            catalog.register(provider)
        return catalog

    def __repr__(self) -> str:
        return f"ProviderCatalog(providers={list(self._providers)})"

    def register(self, provider: Provider) -> None:
        """Add a provider.

        Raises:
            AlreadyExistsError: ``provider.already_exists``.
        """
        if provider.key in self._providers:
            raise AlreadyExistsError("provider", provider.key, field="key")
        self._providers[provider.key] = provider

    def get(self, key: str) -> Provider:
        """Return the provider with ``key``.

        Raises:
            NotFoundError: ``provider.not_found``.
        """
        try:
            return self._providers[key]
        except KeyError:
            raise NotFoundError("provider", str(key)) from None

    def find(self, key: str) -> Provider | None:
        """Return the provider with ``key``, or ``None`` if the host no longer offers it."""
        return self._providers.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._providers

    def __iter__(self) -> Iterator[Provider]:
        """Iterate over the providers in registration order."""
        return iter(tuple(self._providers.values()))

    def __len__(self) -> int:
        return len(self._providers)

    def validate_scopes(self, provider_key: str, scopes: str | Iterable[str]) -> frozenset[str]:
        """Check requested scopes against a provider; see :meth:`Provider.validate_scopes`.

        Raises:
            NotFoundError: ``provider.not_found``.
            ValidationError: ``scopes.unknown`` listing every unknown scope.
        """
        return self.get(provider_key).validate_scopes(scopes)


# --------------------------------------------------------------------------- connections


class ConnectionStatus(StrEnum):
    """The health of a connection, as the Integrations tab shows it."""

    CONNECTED = "connected"
    NEEDS_REAUTHORIZATION = "needs_reauthorization"
    ERROR = "error"
    REVOKED = "revoked"


def safe_error_text(
    message: str,
    *,
    secrets: Iterable[str | None] = (),
    limit: int = _ERROR_DEFAULT_LIMIT,
) -> str:
    r"""Make a provider's error message safe to store and show as ``last_error``.

    Every occurrence of a known secret is replaced by ``[redacted]`` (this cannot
    catch secrets we were never told about, so pass every credential in use);
    whitespace and control characters collapse to single spaces; the text is cut
    to ``limit`` characters with an ellipsis.

    >>> safe_error_text("401: token abcd1234 expired\n", secrets=["abcd1234"])
    '401: token [redacted] expired'

    Args:
        message: Raw error text (e.g. an HTTP error body).
        secrets: Values that must not appear (``None`` entries are skipped).
        limit: Maximum length of the result (at least 1, at most 500).

    Returns:
        The cleaned text (possibly empty).
    """
    text = str(message)
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        if len(secret) >= _MIN_REDACTED:
            text = text.replace(secret, _REDACTED)
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    limit = max(1, min(limit, _ERROR_MAX))
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _to_granted(value: str | Iterable[str]) -> frozenset[str]:
    return _to_scope_set(value)


@attrs.frozen(kw_only=True)
class Connection:
    """A user's link to one account at one provider.

    A user may connect several accounts of the same provider; ``(user_id, provider,
    external_account_id)`` is unique. Transitions (:meth:`record_sync`,
    :meth:`record_error`, ...) return a new object and leave :attr:`version` as it
    was read: the service stores the result with ``version + 1`` and passes the read
    version to storage, which refuses the write if someone else wrote in between.

    Attributes:
        id: Our identifier for the connection.
        user_id: The host's user id.
        provider: The provider's key.
        external_account_id: The account's id at the provider (stable, not shown).
        external_account_label: What the user recognises (``"@ana"``, an email).
        status: Health of the link.
        granted_scopes: The scopes the provider actually granted.
        connected_at: When the user connected it (UTC).
        last_sync_at: Last successful use, or ``None``.
        last_error: Short, secret-free description of the last failure, or ``None``.
        version: Optimistic-concurrency version, as read from storage.
        credentials_version: Increases whenever the stored credentials are replaced
            (refresh, re-authorization), so a stale refresh can be detected.
    """

    id: str
    user_id: str
    provider: str
    external_account_id: str
    external_account_label: str = ""
    status: ConnectionStatus = ConnectionStatus.CONNECTED
    granted_scopes: frozenset[str] = attrs.field(default=frozenset(), converter=_to_granted)
    connected_at: datetime
    last_sync_at: datetime | None = None
    last_error: str | None = None
    version: int = 1
    credentials_version: int = 0

    def __attrs_post_init__(self) -> None:
        errors = ErrorCollector()
        errors.capture(validate_text, self.id, field="id", max_length=_ID_MAX)
        errors.capture(validate_user_id, self.user_id)
        errors.capture(validate_slug, self.provider, field="provider")
        errors.capture(
            validate_text,
            self.external_account_id,
            field="external_account_id",
            max_length=_ID_MAX,
        )
        errors.capture(
            validate_text,
            self.external_account_label,
            field="external_account_label",
            max_length=_LABEL_MAX,
            required=False,
        )
        status: object = self.status
        if not isinstance(status, ConnectionStatus):
            try:
                object.__setattr__(self, "status", ConnectionStatus(str(status)))
            except ValueError:
                errors.add("status", "invalid", "unknown connection status")
        for scope in sorted(self.granted_scopes):
            errors.capture(validate_scope, scope, field="granted_scopes")
        for field in ("connected_at", "last_sync_at"):
            value = getattr(self, field)
            if value is not None:
                utc = errors.capture(validate_aware_datetime, value, field=field)
                if utc is not None:
                    object.__setattr__(self, field, utc)
        if self.last_error is not None:
            errors.capture(
                validate_text,
                self.last_error,
                field="last_error",
                max_length=_ERROR_MAX,
                required=False,
            )
        for field, minimum in (("version", 1), ("credentials_version", 0)):
            number: object = getattr(self, field)
            if isinstance(number, bool) or not isinstance(number, int) or number < minimum:
                errors.add(field, "invalid", f"must be an integer >= {minimum}", min=minimum)
        errors.raise_if_any()

    def _ensure_not_revoked(self) -> None:
        if self.status is ConnectionStatus.REVOKED:
            raise PolicyError(
                "this connection was revoked: connect the account again",
                code="integrations.revoked",
                connection_id=self.id,
            )

    def record_sync(self, now: datetime) -> Connection:
        """Return the connection after a successful call: connected, error cleared.

        Raises:
            PolicyError: ``integrations.revoked``.
        """
        self._ensure_not_revoked()
        return attrs.evolve(
            self, status=ConnectionStatus.CONNECTED, last_sync_at=now, last_error=None
        )

    def record_error(
        self,
        message: str,
        *,
        credentials: Credentials | None = None,
        needs_reauthorization: bool = False,
    ) -> Connection:
        """Return the connection after a failed call, with a cleaned ``last_error``.

        Args:
            message: The raw error text; cleaned by :func:`safe_error_text`.
            credentials: The credentials in use, so that they are redacted.
            needs_reauthorization: The provider refused the grant (expired refresh
                token, revoked app): the user must connect again.

        Raises:
            PolicyError: ``integrations.revoked``.
        """
        status = (
            ConnectionStatus.NEEDS_REAUTHORIZATION
            if needs_reauthorization
            else ConnectionStatus.ERROR
        )
        return self.with_status(status, error=message, credentials=credentials)

    def with_status(
        self,
        status: ConnectionStatus | str,
        *,
        error: str | None = None,
        credentials: Credentials | None = None,
    ) -> Connection:
        """Return the connection in ``status`` (the generic form of the transitions).

        ``connected`` clears ``last_error``; the other statuses keep ``error`` (cleaned
        by :func:`safe_error_text`, with ``credentials`` redacted) as ``last_error``.
        ``last_sync_at`` is unchanged (use :meth:`record_sync` after a successful call).

        Args:
            status: The new status (a :class:`ConnectionStatus` or its value).
            error: What went wrong, for ``error``, ``needs_reauthorization`` and
                ``revoked``; ``None`` clears it.
            credentials: The credentials in use, so that they are redacted from ``error``.

        Raises:
            ValidationError: ``status.invalid``.
            PolicyError: ``integrations.revoked`` when leaving ``revoked``, which only
                connecting the account again does (:meth:`reauthorized`).
        """
        try:
            new = ConnectionStatus(status)
        except ValueError:
            raise ValidationError.single(
                "status",
                "invalid",
                f"must be one of: {', '.join(ConnectionStatus)}",
                allowed=tuple(ConnectionStatus),
            ) from None
        if new is not ConnectionStatus.REVOKED:
            self._ensure_not_revoked()
        last_error: str | None = None
        if new is not ConnectionStatus.CONNECTED and error is not None:
            secrets = () if credentials is None else credentials.secret_values()
            last_error = safe_error_text(error, secrets=secrets) or None
        return attrs.evolve(self, status=new, last_error=last_error)

    def reauthorized(self, *, granted_scopes: str | Iterable[str]) -> Connection:
        """Return the connection after the user authorized it again (new credentials).

        Works from every status, including ``REVOKED``.
        """
        return attrs.evolve(
            self,
            status=ConnectionStatus.CONNECTED,
            granted_scopes=_to_scope_set(granted_scopes),
            last_error=None,
            credentials_version=self.credentials_version + 1,
        )

    def credentials_rotated(self) -> Connection:
        """Return the connection after its credentials were refreshed.

        Raises:
            PolicyError: ``integrations.revoked``.
        """
        self._ensure_not_revoked()
        return attrs.evolve(self, credentials_version=self.credentials_version + 1)

    def revoked(self) -> Connection:
        """Return the connection marked revoked (the grant is gone; keep it for history)."""
        return attrs.evolve(self, status=ConnectionStatus.REVOKED)


def new_connection(
    provider: Provider,
    *,
    user_id: str,
    external_account_id: str,
    external_account_label: str = "",
    granted_scopes: str | Iterable[str] = (),
    rng: RandomSource,
    now: datetime,
) -> Connection:
    """Create a fresh, connected :class:`Connection` with a random id.

    Granted scopes are taken as the provider reports them (they may include scopes
    the catalog does not list).

    Raises:
        ValidationError: with every invalid field.
    """
    return Connection(
        id=new_id(rng),
        user_id=user_id,
        provider=provider.key,
        external_account_id=external_account_id,
        external_account_label=external_account_label,
        granted_scopes=_to_scope_set(granted_scopes),
        connected_at=now,
    )


# --------------------------------------------------------------------------- credentials


@attrs.frozen(kw_only=True, repr=False)
class Credentials:
    """What a connection needs to call its provider. Never logged, never shown.

    ``repr`` names only the fields that are set:

    >>> Credentials(access_token="gho_secret", refresh_token="r_secret")
    Credentials(access_token=<set>, refresh_token=<set>)

    Attributes:
        access_token: OAuth 2 access token, or ``None``.
        refresh_token: OAuth 2 refresh token, or ``None``.
        api_key: API key or webhook signing secret, or ``None``.
        webhook_url: A webhook URL that embeds its own secret (``https`` only), or
            ``None``.
        expires_at: When the access token expires (UTC), or ``None``.

    Raises:
        ValidationError: ``credentials.empty`` when no secret is set, or a field is
            not non-empty text without control characters (at most 16 384 characters),
            or ``webhook_url.*`` when it is not a safe https URL (never echoed).
    """

    access_token: str | None = attrs.field(default=None, repr=False)
    refresh_token: str | None = attrs.field(default=None, repr=False)
    api_key: str | None = attrs.field(default=None, repr=False)
    webhook_url: str | None = attrs.field(default=None, repr=False)
    expires_at: datetime | None = None

    def __attrs_post_init__(self) -> None:
        errors = ErrorCollector()
        for field in _SECRET_FIELDS:
            value: object = getattr(self, field)
            if value is None:
                continue
            if (
                not isinstance(value, str)
                or not value
                or len(value) > _SECRET_MAX
                or not value.isprintable()
                or value != value.strip()
            ):
                # Never echo the value: it is a secret.
                errors.add(
                    field,
                    "invalid",
                    f"must be 1 to {_SECRET_MAX} printable characters without surrounding spaces",
                    limit=_SECRET_MAX,
                )
            elif field == "webhook_url":
                errors.capture(validate_https_url, value, field=field, allow_fragment=False)
        if all(getattr(self, field) is None for field in _SECRET_FIELDS):
            errors.add("credentials", "empty", "set an access token, a refresh token or a key")
        if self.expires_at is not None:
            utc = errors.capture(validate_aware_datetime, self.expires_at, field="expires_at")
            if utc is not None:
                object.__setattr__(self, "expires_at", utc)
        errors.raise_if_any()

    def __repr__(self) -> str:
        parts = [f"{field}=<set>" for field in self.set_fields]
        if self.expires_at is not None:
            parts.append(f"expires_at={self.expires_at.isoformat()}")
        return f"Credentials({', '.join(parts)})"

    @property
    def set_fields(self) -> tuple[str, ...]:
        """The names of the secret fields that hold a value."""
        return tuple(f for f in _SECRET_FIELDS if getattr(self, f) is not None)

    def secret_values(self) -> tuple[str, ...]:
        """The secret values that are set (to redact them from error texts)."""
        return tuple(v for f in _SECRET_FIELDS if (v := getattr(self, f)) is not None)

    def is_expired(self, now: datetime, *, leeway: timedelta = timedelta(seconds=60)) -> bool:
        """Whether the access token has expired, or will within ``leeway``.

        Credentials without ``expires_at`` never expire.
        """
        return self.expires_at is not None and now + leeway >= self.expires_at


def credentials_to_bytes(credentials: Credentials) -> bytes:
    """Serialise credentials for encryption: compact JSON of the fields that are set.

    The result is plaintext secret material: encrypt it at once (AES-GCM with
    :func:`credentials_aad`) and do not keep it around.
    """
    payload: dict[str, Any] = {"v": _CREDENTIALS_FORMAT}
    for field in credentials.set_fields:
        payload[field] = getattr(credentials, field)
    if credentials.expires_at is not None:
        payload["expires_at"] = credentials.expires_at.isoformat()
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def _corrupt() -> ValidationError:
    return ValidationError.single(
        "credentials", "corrupt", "stored credentials are unreadable (format not recognised)"
    )


def credentials_from_bytes(data: bytes) -> Credentials:
    """Read credentials written by :func:`credentials_to_bytes` (after decryption).

    Raises:
        ValidationError: ``credentials.corrupt``; the content is never echoed and the
            parser's error (which may hold the plaintext) is not chained.
    """
    try:
        payload = json.loads(bytes(data).decode("utf-8"))
    except (ValueError, TypeError):
        raise _corrupt() from None
    if not isinstance(payload, dict) or payload.get("v") != _CREDENTIALS_FORMAT:
        raise _corrupt()
    if set(payload) - {"v", "expires_at", *_SECRET_FIELDS}:
        raise _corrupt()
    expires_at: datetime | None = None
    raw_expiry = payload.get("expires_at")
    if raw_expiry is not None:
        try:
            expires_at = datetime.fromisoformat(raw_expiry)
        except (ValueError, TypeError):
            raise _corrupt() from None
    try:
        return Credentials(
            access_token=payload.get("access_token"),
            refresh_token=payload.get("refresh_token"),
            api_key=payload.get("api_key"),
            webhook_url=payload.get("webhook_url"),
            expires_at=expires_at,
        )
    except ValidationError:
        raise _corrupt() from None


def credentials_aad(
    *,
    user_id: str,
    provider: str,
    connection_id: str,
    field: str = "credentials",
) -> bytes:
    """Return the AES-GCM associated data that binds an encrypted blob to its place.

    A ciphertext copied onto another user's, provider's or connection's row (or
    into another field) then fails to decrypt instead of being used there. The
    encoding is a JSON array, so no choice of ids can make two contexts collide.

    >>> credentials_aad(user_id="u1", provider="github", connection_id="c1")
    b'["enspace_profile/integrations/credentials",1,"u1","github","c1","credentials"]'
    """
    context = [_AAD_LABEL, _CREDENTIALS_FORMAT, user_id, provider, connection_id, field]
    return json.dumps(context, separators=(",", ":"), ensure_ascii=True).encode()


@attrs.frozen(kw_only=True)
class SealedCredentials:
    """A connection's encrypted credentials as storage keeps them, with their owner.

    What :meth:`~enspace_profile.typing.IntegrationRepository.list_credentials`
    returns, so that a key rotation job can rebuild each blob's associated data
    (:func:`credentials_aad`) without loading the connection. Holds no plaintext.

    Attributes:
        connection_id: The connection the credentials belong to.
        user_id: Its user.
        provider: Its provider's key.
        box: The AES-GCM ciphertext, with the id of the key that sealed it.
    """

    connection_id: str
    user_id: str
    provider: str
    box: SealedBox

    @property
    def aad(self) -> bytes:
        """The associated data the box was sealed with."""
        return credentials_aad(
            user_id=self.user_id, provider=self.provider, connection_id=self.connection_id
        )


# --------------------------------------------------------------------------- disconnect


class DisconnectPolicy(Protocol):
    """Decides whether a connection may be removed (a host may supply its own)."""

    def check_disconnect(
        self,
        connection: Connection,
        *,
        other_connections: Iterable[Connection],
        catalog: ProviderCatalog,
        other_sign_in_methods: int,
    ) -> None:
        """Raise :class:`~enspace_profile.exceptions.PolicyError` to refuse the removal.

        Args:
            connection: The connection the user wants to remove.
            other_connections: The user's connections (the one being removed may be
                included; it is ignored).
            catalog: The providers, to tell which ones can sign in.
            other_sign_in_methods: Ways to sign in the host knows of outside the
                Integrations tab (a password counts 1, each passkey 1, ...).
        """
        ...


@attrs.frozen
class LastSignInMethodPolicy:
    """The default: never remove the last way a user can sign in.

    Removing a connection whose provider is a sign-in method is refused when the
    user has no other sign-in method: no other connection (not revoked) to a
    sign-in provider, and ``other_sign_in_methods == 0``. Connections to providers
    that are not sign-in methods, and revoked connections (which cannot sign anyone
    in), may always be removed.
    """

    def check_disconnect(
        self,
        connection: Connection,
        *,
        other_connections: Iterable[Connection],
        catalog: ProviderCatalog,
        other_sign_in_methods: int,
    ) -> None:
        """Refuse to remove the user's last sign-in method.

        Raises:
            PolicyError: ``integrations.last_sign_in_method`` (params ``provider``).
            ValidationError: ``other_sign_in_methods.invalid`` if negative.
        """
        count: object = other_sign_in_methods
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValidationError.single(
                "other_sign_in_methods", "invalid", "must be an integer >= 0", min=0
            )
        provider = catalog.find(connection.provider)
        if (
            provider is None
            or not provider.sign_in
            or connection.status is ConnectionStatus.REVOKED
            or other_sign_in_methods > 0
        ):
            return
        for other in other_connections:
            if (
                other.id != connection.id
                and other.user_id == connection.user_id
                and other.status is not ConnectionStatus.REVOKED
                and _signs_in(catalog, other.provider)
            ):
                return
        raise PolicyError(
            f"{provider.name} is your only way to sign in: add a password or another "
            "sign-in method first",
            code="integrations.last_sign_in_method",
            provider=provider.key,
            connection_id=connection.id,
        )


def _signs_in(catalog: ProviderCatalog, key: str) -> bool:
    provider = catalog.find(key)
    return provider is not None and provider.sign_in

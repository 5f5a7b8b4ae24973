"""OAuth 2 authorization-code helpers with PKCE: no network calls, no storage.

The flow a service runs with these helpers:

1. :func:`start_authorization` creates an :class:`AuthorizationRequest` (a random
   ``state`` and a PKCE ``code_verifier``); the service stores it as *pending*;
2. :func:`authorization_url` builds the URL the browser is sent to;
3. on the callback, the service loads the pending request by ``state`` **and deletes
   it in the same atomic operation** (so a request can be used only once; replaying
   a callback finds nothing), then calls :func:`verify_state`;
4. the service exchanges the code at the provider's token endpoint, sending
   ``request.code_verifier``.

Storage keeps a :class:`PendingAuthorization` instead of the request itself: it is
indexed by :func:`state_digest` (the raw state is never stored) and holds the code
verifier encrypted under the host's key ring (:func:`seal_authorization`); on the
callback, :func:`open_authorization` rebuilds the request from the presented state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import urlencode

import attrs

from enspace_profile._crypto.keyring import KeyRing, SealedBox
from enspace_profile._integrations.domain import (
    Credentials,
    Provider,
    ProviderKind,
    validate_scope,
)
from enspace_profile._random import RandomSource
from enspace_profile._validation import (
    ErrorCollector,
    validate_aware_datetime,
    validate_https_url,
    validate_slug,
    validate_text,
    validate_user_id,
)
from enspace_profile.exceptions import PolicyError, ValidationError

__all__ = [
    "CODE_CHALLENGE_METHOD",
    "DEFAULT_AUTHORIZATION_TTL",
    "AuthorizationRedirect",
    "AuthorizationRequest",
    "OAuthGrant",
    "PendingAuthorization",
    "authorization_url",
    "code_challenge",
    "new_code_verifier",
    "open_authorization",
    "seal_authorization",
    "start_authorization",
    "state_digest",
    "validate_code_verifier",
    "verifier_aad",
    "verify_code_challenge",
    "verify_state",
]

#: The only PKCE method we use (RFC 7636 section 4.2); ``plain`` is never offered.
CODE_CHALLENGE_METHOD: Final = "S256"
#: How long a user has to come back from the provider.
DEFAULT_AUTHORIZATION_TTL: Final = timedelta(minutes=10)

_VERIFIER_MIN: Final = 43
_VERIFIER_MAX: Final = 128
_VERIFIER_DEFAULT: Final = 64
# RFC 7636 section 4.1: code-verifier = 43*128unreserved
_VERIFIER_RE: Final = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_STATE_BYTES: Final = 32
_STATE_MIN_LENGTH: Final = 22  # 128 bits in base64url
_STATE_MAX_LENGTH: Final = 512
_STATE_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_DIGEST_RE: Final = re.compile(r"[0-9a-f]{64}")
_ID_MAX: Final = 255
_LABEL_MAX: Final = 200
_AAD_LABEL: Final = "enspace_profile/integrations/oauth"
_MAX_TTL: Final = timedelta(hours=1)
_CLIENT_ID_MAX: Final = 512
_RESERVED_PARAMS: Final = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
    }
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def validate_code_verifier(value: object, *, field: str = "code_verifier") -> str:
    """Check a PKCE code verifier: 43 to 128 characters of ``A-Z a-z 0-9 - . _ ~``.

    Raises:
        ValidationError: ``<field>.invalid`` (the value is never echoed).
    """
    if not isinstance(value, str) or _VERIFIER_RE.fullmatch(value) is None:
        raise ValidationError.single(
            field,
            "invalid",
            "must be 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_' and '~'",
            min=_VERIFIER_MIN,
            max=_VERIFIER_MAX,
        )
    return value


def new_code_verifier(rng: RandomSource, *, length: int = _VERIFIER_DEFAULT) -> str:
    """Return a fresh PKCE code verifier of ``length`` characters (RFC 7636 section 4.1).

    The characters are base64url (a subset of the unreserved set), so each carries
    6 random bits: the default 64 characters hold 384 bits.

    Args:
        rng: The random source (a CSPRNG in production).
        length: 43 to 128.

    Raises:
        ValidationError: ``length.out_of_range``.
    """
    if isinstance(length, bool) or not _VERIFIER_MIN <= length <= _VERIFIER_MAX:
        raise ValidationError.single(
            "length",
            "out_of_range",
            f"must be from {_VERIFIER_MIN} to {_VERIFIER_MAX}",
            min=_VERIFIER_MIN,
            max=_VERIFIER_MAX,
        )
    return _b64url(rng.token_bytes(math.ceil(length * 6 / 8)))[:length]


def code_challenge(verifier: str) -> str:
    """Return the S256 code challenge: base64url (no padding) of SHA-256 of the verifier.

    >>> code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
    'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM'

    Raises:
        ValidationError: ``code_verifier.invalid``.
    """
    validate_code_verifier(verifier)
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def _ascii_bytes(value: object) -> bytes | None:
    if not isinstance(value, str) or not value.isascii():
        return None
    return value.encode("ascii")


def verify_code_challenge(verifier: str, challenge: str) -> bool:
    """Return whether ``verifier`` matches the S256 ``challenge`` (constant-time compare).

    Malformed input of any kind is simply a mismatch.
    """
    try:
        expected = code_challenge(verifier).encode("ascii")
    except ValidationError:
        return False
    presented = _ascii_bytes(challenge)
    if presented is None:
        return False
    return hmac.compare_digest(expected, presented)


def state_digest(state: str) -> str:
    """Return a hex SHA-256 of a state value, for storage to index pending requests by."""
    return hashlib.sha256(state.encode("utf-8", "surrogatepass")).hexdigest()


def _to_scopes(value: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split()
    try:
        return tuple(sorted(set(value)))
    except TypeError:
        raise ValidationError.single("scopes", "invalid_type", "must be a list of scopes") from None


@attrs.frozen(kw_only=True)
class AuthorizationRequest:
    """A pending OAuth authorization, from the redirect until the callback.

    ``repr`` never shows the code verifier (nor, being a CSRF secret, the state).

    Attributes:
        state: Random, URL-safe, at least 128 bits; echoed back by the provider.
        code_verifier: PKCE secret; sent only to the token endpoint.
        user_id: Who started the authorization.
        provider: The provider's key.
        redirect_uri: Where the provider sends the user back.
        scopes: The requested scopes, sorted.
        created_at: When it was started (UTC).
        expires_at: When it stops being accepted (UTC).
    """

    state: str = attrs.field(repr=False)
    code_verifier: str = attrs.field(repr=False)
    user_id: str
    provider: str
    redirect_uri: str
    scopes: tuple[str, ...] = attrs.field(default=(), converter=_to_scopes)
    created_at: datetime
    expires_at: datetime

    def __attrs_post_init__(self) -> None:
        errors = ErrorCollector()
        state: object = self.state
        if (
            not isinstance(state, str)
            or not _STATE_MIN_LENGTH <= len(state) <= _STATE_MAX_LENGTH
            or _STATE_RE.fullmatch(state) is None
        ):
            errors.add(
                "state",
                "invalid",
                f"must be {_STATE_MIN_LENGTH} to {_STATE_MAX_LENGTH} base64url characters",
            )
        errors.capture(validate_code_verifier, self.code_verifier)
        errors.capture(validate_user_id, self.user_id)
        errors.capture(validate_slug, self.provider, field="provider")
        errors.capture(
            validate_https_url,
            self.redirect_uri,
            field="redirect_uri",
            allow_loopback_http=True,
            allow_fragment=False,
        )
        for scope in self.scopes:
            errors.capture(validate_scope, scope, field="scopes")
        for field in ("created_at", "expires_at"):
            utc = errors.capture(validate_aware_datetime, getattr(self, field), field=field)
            if utc is not None:
                object.__setattr__(self, field, utc)
        if not errors.errors and self.expires_at <= self.created_at:
            errors.add("expires_at", "before_start", "must be later than created_at")
        errors.raise_if_any()

    @property
    def code_challenge(self) -> str:
        """The S256 challenge sent in the authorization URL."""
        return code_challenge(self.code_verifier)


def start_authorization(
    provider: Provider,
    *,
    user_id: str,
    redirect_uri: str,
    scopes: str | Iterable[str],
    rng: RandomSource,
    now: datetime,
    ttl: timedelta = DEFAULT_AUTHORIZATION_TTL,
) -> AuthorizationRequest:
    """Start an OAuth 2 authorization-code flow with PKCE for ``user_id``.

    Args:
        provider: An OAuth 2 provider from the catalog.
        user_id: The signed-in user who is connecting an account.
        redirect_uri: The callback URL (https; ``http`` only for loopback hosts).
        scopes: Requested scopes (a space-separated string or an iterable); each must
            be one the provider offers.
        rng: The random source for the state and the verifier.
        now: The current time (aware).
        ttl: How long the request stays valid (more than 0, at most 1 hour).

    Returns:
        The pending request; store it, then redirect to :func:`authorization_url`.

    Raises:
        ValidationError: every problem found: ``provider.not_oauth2``,
            ``scopes.unknown``, ``ttl.out_of_range``, ``redirect_uri.*``, ``user_id.*``.
    """
    errors = ErrorCollector()
    if provider.kind is not ProviderKind.OAUTH2:
        errors.add("provider", "not_oauth2", f"{provider.name} does not use OAuth 2")
    errors.capture(validate_user_id, user_id)
    errors.capture(
        validate_https_url,
        redirect_uri,
        field="redirect_uri",
        allow_loopback_http=True,
        allow_fragment=False,
    )
    requested = errors.capture(provider.validate_scopes, scopes)
    lifetime: object = ttl
    if not isinstance(lifetime, timedelta) or not timedelta(0) < lifetime <= _MAX_TTL:
        errors.add("ttl", "out_of_range", "must be more than 0 and at most 1 hour")
    created = errors.capture(validate_aware_datetime, now, field="now")
    errors.raise_if_any()
    assert created is not None
    assert requested is not None
    return AuthorizationRequest(
        state=_b64url(rng.token_bytes(_STATE_BYTES)),
        code_verifier=new_code_verifier(rng),
        user_id=user_id,
        provider=provider.key,
        redirect_uri=redirect_uri,
        scopes=requested,
        created_at=created,
        expires_at=created + ttl,
    )


def authorization_url(
    provider: Provider,
    request: AuthorizationRequest,
    *,
    client_id: str,
    extra_params: Mapping[str, str] | None = None,
) -> str:
    """Build the URL of the provider's authorization endpoint for ``request``.

    The query carries ``response_type=code``, ``client_id``, ``redirect_uri``,
    ``scope`` (space-separated; left out when no scope is requested), ``state``,
    ``code_challenge`` and ``code_challenge_method=S256``, encoded as
    ``application/x-www-form-urlencoded`` (RFC 6749 appendix B), appended to any
    query the endpoint already has.

    Args:
        provider: The provider ``request`` was started for.
        request: The pending request.
        client_id: The host's OAuth client id at the provider.
        extra_params: Provider-specific parameters (``prompt``, ``access_type``);
            they cannot replace the parameters above.

    Raises:
        ValidationError: ``provider.mismatch``, ``authorize_url.missing``,
            ``client_id.*``, ``extra_params.reserved``.
    """
    errors = ErrorCollector()
    if request.provider != provider.key:
        errors.add("provider", "mismatch", "the request was started for another provider")
    if provider.authorize_url is None:
        errors.add("authorize_url", "missing", f"{provider.name} has no authorization endpoint")
    errors.capture(validate_text, client_id, field="client_id", max_length=_CLIENT_ID_MAX)
    extra = dict(extra_params or {})
    reserved = sorted(_RESERVED_PARAMS.intersection(extra))
    if reserved:
        errors.add(
            "extra_params",
            "reserved",
            f"cannot override: {', '.join(reserved)}",
            reserved=tuple(reserved),
        )
    errors.raise_if_any()
    assert provider.authorize_url is not None
    params: dict[str, str] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": request.redirect_uri,
    }
    if request.scopes:
        params["scope"] = " ".join(request.scopes)
    params |= {
        "state": request.state,
        "code_challenge": request.code_challenge,
        "code_challenge_method": CODE_CHALLENGE_METHOD,
    }
    params |= extra
    separator = "&" if "?" in provider.authorize_url else "?"
    if provider.authorize_url.endswith(("?", "&")):
        separator = ""
    return provider.authorize_url + separator + urlencode(params)


def verify_state(
    request: AuthorizationRequest,
    presented_state: str,
    *,
    now: datetime,
    user_id: str,
) -> None:
    """Check an OAuth callback against the pending request it claims to answer.

    Checked in this order: the state (constant-time), the user, the expiry. Single
    use is the service's job: it must delete the pending request atomically when it
    loads it, before calling this.

    Args:
        request: The pending request loaded for this callback.
        presented_state: The ``state`` query parameter of the callback.
        now: The current time (aware).
        user_id: The user signed in on the callback.

    Raises:
        PolicyError: ``integrations.oauth.state_mismatch`` (possible CSRF: do not
            proceed), ``integrations.oauth.wrong_user`` (another user started this
            flow) or ``integrations.oauth.expired``.
    """
    presented = _ascii_bytes(presented_state)
    if presented is None or not hmac.compare_digest(request.state.encode("ascii"), presented):
        raise PolicyError(
            "the authorization response does not match the request (state mismatch)",
            code="integrations.oauth.state_mismatch",
            provider=request.provider,
        )
    expected_user = request.user_id.encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(expected_user, str(user_id).encode("utf-8", "surrogatepass")):
        raise PolicyError(
            "this authorization was started by another user",
            code="integrations.oauth.wrong_user",
            provider=request.provider,
        )
    checked = validate_aware_datetime(now, field="now")
    if checked >= request.expires_at:
        raise PolicyError(
            "the authorization took too long: start again",
            code="integrations.oauth.expired",
            provider=request.provider,
            expired_at=request.expires_at,
        )


# --------------------------------------------------------------------------- pending storage


def verifier_aad(*, user_id: str, provider: str, digest: str) -> bytes:
    """Return the AES-GCM associated data of a pending request's sealed code verifier.

    It binds the ciphertext to its user, provider and state digest, so a verifier
    copied onto another pending row does not decrypt there.

    >>> verifier_aad(user_id="u1", provider="github", digest="ab")
    b'["enspace_profile/integrations/oauth",1,"u1","github","ab","code_verifier"]'
    """
    context = [_AAD_LABEL, 1, user_id, provider, digest, "code_verifier"]
    return json.dumps(context, separators=(",", ":"), ensure_ascii=True).encode()


@attrs.frozen(kw_only=True)
class PendingAuthorization:
    """An :class:`AuthorizationRequest` as storage keeps it: no raw state, verifier sealed.

    Attributes:
        state_digest: :func:`state_digest` of the request's state (the storage key).
        user_id: Who started the authorization.
        provider: The provider's key.
        redirect_uri: Where the provider sends the user back.
        scopes: The requested scopes, sorted.
        created_at: When it was started (UTC).
        expires_at: When it stops being accepted (UTC).
        code_verifier: The PKCE verifier, encrypted (see :func:`verifier_aad`).

    Raises:
        ValidationError: with every invalid field.
    """

    state_digest: str
    user_id: str
    provider: str
    redirect_uri: str
    scopes: tuple[str, ...] = attrs.field(default=(), converter=_to_scopes)
    created_at: datetime
    expires_at: datetime
    code_verifier: SealedBox

    def __attrs_post_init__(self) -> None:
        errors = ErrorCollector()
        digest: object = self.state_digest
        if not isinstance(digest, str) or _DIGEST_RE.fullmatch(digest) is None:
            errors.add("state_digest", "invalid", "must be 64 lowercase hex digits")
        errors.capture(validate_user_id, self.user_id)
        errors.capture(validate_slug, self.provider, field="provider")
        for field in ("created_at", "expires_at"):
            utc = errors.capture(validate_aware_datetime, getattr(self, field), field=field)
            if utc is not None:
                object.__setattr__(self, field, utc)
        box: object = self.code_verifier
        if not isinstance(box, SealedBox):
            errors.add("code_verifier", "invalid_type", "must be a SealedBox")
        errors.raise_if_any()

    @property
    def aad(self) -> bytes:
        """The associated data :attr:`code_verifier` is sealed with."""
        return verifier_aad(user_id=self.user_id, provider=self.provider, digest=self.state_digest)

    def is_expired(self, now: datetime) -> bool:
        """Whether the request can no longer be completed at ``now``."""
        return now >= self.expires_at


def seal_authorization(request: AuthorizationRequest, *, key_ring: KeyRing) -> PendingAuthorization:
    """Turn a fresh request into what storage keeps: the state hashed, the verifier sealed.

    Args:
        request: From :func:`start_authorization`.
        key_ring: Encrypts the code verifier with its current key.

    Returns:
        The :class:`PendingAuthorization` to store.
    """
    digest = state_digest(request.state)
    aad = verifier_aad(user_id=request.user_id, provider=request.provider, digest=digest)
    return PendingAuthorization(
        state_digest=digest,
        user_id=request.user_id,
        provider=request.provider,
        redirect_uri=request.redirect_uri,
        scopes=request.scopes,
        created_at=request.created_at,
        expires_at=request.expires_at,
        code_verifier=key_ring.seal(request.code_verifier.encode("ascii"), aad=aad),
    )


def open_authorization(
    pending: PendingAuthorization,
    *,
    state: str,
    key_ring: KeyRing,
) -> AuthorizationRequest:
    """Rebuild the :class:`AuthorizationRequest` a callback answers, from its pending record.

    Then call :func:`verify_state` (user and expiry).

    Args:
        pending: The record storage returned for ``state_digest(state)``.
        state: The ``state`` parameter of the callback.
        key_ring: Decrypts the code verifier.

    Returns:
        The original request (state and code verifier included).

    Raises:
        PolicyError: ``integrations.oauth.state_mismatch`` if ``state`` does not hash to
            the record's digest.
        ValidationError: ``ciphertext.*`` if the verifier cannot be decrypted (the key
            that sealed it left the ring, or the row was altered).
    """
    presented = _ascii_bytes(state)
    if presented is None or not hmac.compare_digest(
        state_digest(state).encode("ascii"), pending.state_digest.encode("ascii")
    ):
        raise PolicyError(
            "the authorization response does not match the request (state mismatch)",
            code="integrations.oauth.state_mismatch",
            provider=pending.provider,
        )
    verifier = key_ring.open(pending.code_verifier, aad=pending.aad)
    return AuthorizationRequest(
        state=state,
        code_verifier=verifier.decode("ascii", "replace"),
        user_id=pending.user_id,
        provider=pending.provider,
        redirect_uri=pending.redirect_uri,
        scopes=pending.scopes,
        created_at=pending.created_at,
        expires_at=pending.expires_at,
    )


@attrs.frozen(kw_only=True)
class AuthorizationRedirect:
    """Where to send the browser to start connecting an OAuth 2 account.

    Attributes:
        url: The provider's authorization URL (state and PKCE challenge included).
        request: The pending request (its state and verifier never show in ``repr``).
    """

    url: str = attrs.field(repr=False)
    request: AuthorizationRequest

    @property
    def expires_at(self) -> datetime:
        """When the user must be back from the provider."""
        return self.request.expires_at


def _to_optional_scopes(value: str | Iterable[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset(value.split())
    try:
        return frozenset(value)
    except TypeError:
        raise ValidationError.single(
            "granted_scopes", "invalid_type", "must be a list of scopes"
        ) from None


@attrs.frozen(kw_only=True)
class OAuthGrant:
    """What the host's token exchange learned: the tokens and whose account they open.

    The host builds one in the ``exchange`` callback it passes to
    :meth:`~enspace_profile.IntegrationService.complete_authorization`, after
    calling the provider's token endpoint (and usually its "who am I" endpoint).

    Attributes:
        credentials: The tokens (an ``access_token`` at least).
        external_account_id: The account's stable id at the provider.
        external_account_label: What the user recognises (``"@ana"``).
        granted_scopes: The scopes the provider granted (``None``: the ones requested).

    Raises:
        ValidationError: ``credentials.invalid_type``, ``external_account_id.*``,
            ``external_account_label.*``, ``granted_scopes.*`` (all at once).
    """

    credentials: Credentials
    external_account_id: str
    external_account_label: str = ""
    granted_scopes: frozenset[str] | None = attrs.field(default=None, converter=_to_optional_scopes)

    def __attrs_post_init__(self) -> None:
        errors = ErrorCollector()
        credentials: object = self.credentials
        if not isinstance(credentials, Credentials):
            errors.add("credentials", "invalid_type", "must be a Credentials object")
        errors.capture(
            validate_text, self.external_account_id, field="external_account_id", max_length=_ID_MAX
        )
        errors.capture(
            validate_text,
            self.external_account_label,
            field="external_account_label",
            max_length=_LABEL_MAX,
            required=False,
        )
        for scope in sorted(self.granted_scopes or ()):
            errors.capture(validate_scope, scope, field="granted_scopes")
        errors.raise_if_any()

"""One exception tree for everything enspace_profile raises.

Every error the library raises on purpose derives from :class:`EnspaceProfileError`
and carries a stable, machine-readable :attr:`~EnspaceProfileError.code` that a UI
can translate. Where it is natural, leaves also inherit a builtin (``ValueError``,
``LookupError``, ``PermissionError``) so generic ``except`` clauses keep working.

Messages never contain secrets: no token, password, TOTP seed, recovery code or
integration credential is ever put into a message, an attribute or a ``repr``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import attrs

__all__ = [
    "AlreadyExistsError",
    "CapabilityError",
    "ConfigurationError",
    "ConflictError",
    "EnspaceProfileError",
    "ExpiredTokenError",
    "FieldError",
    "InsufficientScopeError",
    "InvalidCredentialsError",
    "LimitExceededError",
    "MalformedTokenError",
    "ManagedExternallyError",
    "MissingExtraError",
    "NotFoundError",
    "PolicyError",
    "RateLimitedError",
    "ReauthenticationRequired",
    "RevokedTokenError",
    "SchemaVersionError",
    "StorageBusyError",
    "StorageError",
    "TokenChecksumError",
    "TokenError",
    "UnknownTokenError",
    "ValidationError",
]


class EnspaceProfileError(Exception):
    """Raised for every error that enspace_profile raises on purpose.

    Attributes:
        code: A stable, machine-readable identifier such as ``"not_found"``.
            Subclasses set a class-wide default; some refine it per instance.
    """

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        """The human-readable message (never contains secrets)."""
        return str(self.args[0]) if self.args else ""


@attrs.frozen(kw_only=True)
class FieldError:
    """One problem with one field of an input.

    Attributes:
        field: The field's name as the caller spelled it (``"first_name"``).
        code: Stable code, ``<field>.<problem>`` (``"first_name.too_long"``).
        message: English message for logs and fallback UIs.
        params: Values a translated message needs (``{"limit": 64, "actual": 70}``).
    """

    field: str
    code: str
    message: str
    params: Mapping[str, Any] = attrs.field(factory=dict)


class ValidationError(EnspaceProfileError, ValueError):
    """Raised when input is invalid; carries **all** problems found at once.

    Attributes:
        errors: Every :class:`FieldError`, in the order the fields were checked.
    """

    code = "validation_error"

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        if not self.errors:
            msg = "ValidationError needs at least one FieldError"
            raise ValueError(msg)
        summary = "; ".join(f"{e.field}: {e.message}" for e in self.errors)
        super().__init__(summary)

    @classmethod
    def single(cls, field: str, problem: str, message: str, **params: Any) -> ValidationError:
        """Build an error for one field; the code becomes ``<field>.<problem>``."""
        error = FieldError(field=field, code=f"{field}.{problem}", message=message, params=params)
        return cls([error])

    @property
    def codes(self) -> tuple[str, ...]:
        """The codes of all field errors, in order."""
        return tuple(e.code for e in self.errors)

    @property
    def fields(self) -> tuple[str, ...]:
        """The names of the fields that failed, in order (may repeat)."""
        return tuple(e.field for e in self.errors)


class NotFoundError(EnspaceProfileError, LookupError):
    """Raised when a requested object does not exist.

    Attributes:
        kind: What was looked for (``"profile"``, ``"token"``).
        key: The (non-secret) identifier that was not found.
    """

    code = "not_found"

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} does not exist", code=f"{kind}.not_found")


class ConflictError(EnspaceProfileError):
    """Raised when a write is based on a stale version of an object.

    The update was **not** applied. Reload, show the user what changed, retry.

    Attributes:
        kind: What was being written (``"profile"``).
        key: Its identifier.
        expected_version: The version the caller based its change on.
        current_version: The version now stored (``None`` if unknown).
        changed_fields: Fields changed since ``expected_version``, when known.
    """

    code = "conflict"

    def __init__(
        self,
        kind: str,
        key: str,
        *,
        expected_version: int | None = None,
        current_version: int | None = None,
        changed_fields: Iterable[str] = (),
        message: str | None = None,
    ) -> None:
        self.kind = kind
        self.key = key
        self.expected_version = expected_version
        self.current_version = current_version
        self.changed_fields: tuple[str, ...] = tuple(changed_fields)
        if message is None:
            message = (
                f"{kind} {key!r} was changed by someone else "
                f"(you had version {expected_version}, now {current_version}"
                + (f"; changed: {', '.join(self.changed_fields)}" if self.changed_fields else "")
                + ")"
            )
        super().__init__(message, code=f"{kind}.conflict")


class AlreadyExistsError(ConflictError):
    """Raised when creating an object whose key (or unique name) is taken."""

    code = "already_exists"

    def __init__(self, kind: str, key: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(kind, key, message=f"{kind} {key!r} already exists")
        self.code = f"{kind}.already_exists"


class LimitExceededError(EnspaceProfileError):
    """Raised when an action would exceed a configured quota (e.g. tokens per user).

    Attributes:
        limit: The configured maximum.
        resource: What is limited (``"tokens"``).
    """

    code = "limit_exceeded"

    def __init__(self, resource: str, limit: int) -> None:
        self.resource = resource
        self.limit = limit
        super().__init__(f"at most {limit} {resource} allowed", code=f"{resource}.limit_exceeded")


class PolicyError(EnspaceProfileError):
    """Raised when an action is valid input but refused by a rule (with a stable code).

    Examples: opting into a lab feature whose dependency is off, disconnecting the
    last way a user can sign in.

    Attributes:
        params: Values a translated message needs.
    """

    code = "policy"

    def __init__(self, message: str, *, code: str, **params: Any) -> None:
        self.params: Mapping[str, Any] = params
        super().__init__(message, code=code)


class CapabilityError(EnspaceProfileError):
    """Raised when the configured storage lacks a repository a tab needs."""

    code = "storage.capability_missing"

    def __init__(self, capability: str, storage: object) -> None:
        self.capability = capability
        super().__init__(
            f"{type(storage).__name__} does not provide the {capability!r} repository; "
            "implement the corresponding Protocol from enspace_profile.typing",
        )


class ConfigurationError(EnspaceProfileError):
    """Raised when a feature is used but the panel lacks the option it needs (e.g. a key ring).

    The panel still constructs without it; only the feature that needs it fails.

    Attributes:
        option: The :class:`~enspace_profile.UserPanel` option to set (``"key_ring"``).
        feature: What needed it (``"encrypting integration credentials"``).
    """

    code = "configuration.missing_option"

    def __init__(self, *, option: str, feature: str) -> None:
        self.option = option
        self.feature = feature
        super().__init__(f"{feature} needs UserPanel({option}=...), which is not configured")


class MissingExtraError(EnspaceProfileError, ImportError):
    """Raised when an optional feature needs an extra that is not installed."""

    code = "missing_extra"

    def __init__(self, extra: str, feature: str) -> None:
        self.extra = extra
        super().__init__(
            f"{feature} needs the optional extra: pip install 'enspace-profile[{extra}]'",
        )


class StorageError(EnspaceProfileError):
    """Raised when the storage back end fails for a reason that is not the caller's input."""

    code = "storage.error"


class StorageBusyError(StorageError):
    """Raised when the database stayed locked by other writers beyond the busy timeout."""

    code = "storage.busy"


class SchemaVersionError(StorageError):
    """Raised when a database was written by a newer version of this library (or is unusable).

    Attributes:
        found: The schema version in the database.
        supported: The newest schema version this library knows.
    """

    code = "storage.schema_version"

    def __init__(self, message: str, *, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(message)


class TokenError(EnspaceProfileError):
    """Raised when a presented access token cannot authenticate.

    Every subclass has a precise :attr:`code` (for logs) while :attr:`public_message`
    is the same uniform text for all of them, safe to send to API clients.
    """

    code = "token.invalid"
    public_message = "invalid token"

    def __init__(self, message: str, *, token_id: str | None = None) -> None:
        self.token_id = token_id
        super().__init__(message)


class MalformedTokenError(TokenError):
    """Raised when a string is not shaped like one of our tokens (checked offline)."""

    code = "token.malformed"


class TokenChecksumError(TokenError):
    """Raised when a token's checksum does not match (a typo or a made-up string)."""

    code = "token.bad_checksum"


class UnknownTokenError(TokenError):
    """Raised when a well-formed token is not in storage."""

    code = "token.unknown"


class ExpiredTokenError(TokenError):
    """Raised when a token's expiry time has passed."""

    code = "token.expired"


class RevokedTokenError(TokenError):
    """Raised when a token was revoked (or rotated away)."""

    code = "token.revoked"


class InsufficientScopeError(EnspaceProfileError, PermissionError):
    """Raised when an authenticated token lacks a scope the call requires.

    Attributes:
        missing: The required scopes the token does not have.
    """

    code = "token.insufficient_scope"

    def __init__(self, missing: Iterable[str]) -> None:
        self.missing: tuple[str, ...] = tuple(sorted(missing))
        super().__init__(f"token lacks required scope(s): {', '.join(self.missing)}")


class InvalidCredentialsError(EnspaceProfileError):
    """Raised when a password, TOTP code or recovery code does not verify."""

    code = "credentials.invalid"


class ReauthenticationRequired(EnspaceProfileError, PermissionError):  # noqa: N818 - name promised by the issue
    """Raised when a sensitive action needs a more recent (or stronger) authentication.

    Attributes:
        action: The sensitive action (``"tokens.create"``).
        max_age: How recent the authentication must be.
        factors: Factor sets that would satisfy the policy (any one of them).
    """

    code = "reauthentication_required"

    def __init__(
        self,
        action: str,
        *,
        max_age: timedelta,
        factors: Iterable[frozenset[str]] = (),
    ) -> None:
        self.action = action
        self.max_age = max_age
        self.factors: tuple[frozenset[str], ...] = tuple(factors)
        minutes = max_age.total_seconds() / 60
        need = ""
        if self.factors:
            need = " using " + " or ".join("+".join(sorted(f)) for f in self.factors)
        super().__init__(
            f"{action} requires authenticating again{need} (within {minutes:g} minutes)",
        )


class ManagedExternallyError(EnspaceProfileError, PermissionError):
    """Raised when a security change is attempted on an account managed by SSO.

    Attributes:
        provider: The identity provider's display name.
        manage_url: Where the user manages security at that provider (may be ``None``).
        action: What was attempted.
    """

    code = "managed_externally"

    def __init__(self, *, provider: str, manage_url: str | None, action: str) -> None:
        self.provider = provider
        self.manage_url = manage_url
        self.action = action
        where = f" at {manage_url}" if manage_url else ""
        super().__init__(f"this account is managed by {provider}: make this change{where}")


class RateLimitedError(EnspaceProfileError):
    """Raised when too many failed attempts were made; retry later.

    Attributes:
        retry_after: How long until the next attempt may be made.
    """

    code = "rate_limited"

    def __init__(self, *, retry_after: timedelta, scope: str = "account") -> None:
        self.retry_after = retry_after
        self.scope = scope
        super().__init__(f"too many failed attempts; retry in {int(retry_after.total_seconds())} s")

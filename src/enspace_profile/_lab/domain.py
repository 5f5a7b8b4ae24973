"""The Lab tab's domain: features still in testing, who may see them, who has them on.

The host declares its experimental features once, in a :class:`LabRegistry`. Each
user's choices are :class:`OptIn` records (kept by storage). :func:`evaluate` turns
the registry, one user's choices and the current time into a :class:`FeatureState`
per feature, with the *reason* a feature is on or off so the Lab list can explain it.

Pure code: no storage, no clock, no I/O. The service passes ``now`` and stores what
:func:`check_opt_in` / :func:`check_opt_out` return.

Rules, strongest first (see :func:`evaluate`):

1. a feature whose kill switch is on is off for everyone, immediately;
2. a graduated feature is on for everyone and leaves the Lab list;
3. outside ``[starts_at, ends_at)`` a feature is off;
4. a user outside the feature's audience neither sees it nor has it;
5. a feature whose dependency is off is off (transitively);
6. the user's own choice wins over ``default_on``;
7. a feature with terms is off until the user accepted the *current* terms version.
"""

from __future__ import annotations

import hashlib
import math
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

import attrs

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
    "ROLLOUT_BUCKETS",
    "Audience",
    "AudienceKind",
    "FeatureState",
    "LabFeature",
    "LabRegistry",
    "OptIn",
    "Reason",
    "RegistrySnapshot",
    "Stage",
    "Terms",
    "check_opt_in",
    "check_opt_out",
    "dependants_of",
    "evaluate",
    "rollout_bucket",
]

#: Users are spread over this many rollout buckets (a resolution of 0.01 %).
ROLLOUT_BUCKETS: Final = 10_000

_TITLE_MAX: Final = 200
_DESCRIPTION_MAX: Final = 4000
_TERMS_VERSION_MAX: Final = 64
_TERMS_TEXT_MAX: Final = 100_000


def _coerce_enum(errors: ErrorCollector, instance: object, field: str, enum: type[StrEnum]) -> None:
    """Replace a plain string by its enum member (or record an error)."""
    value = getattr(instance, field)
    if isinstance(value, enum):
        return
    try:
        object.__setattr__(instance, field, enum(value))
    except ValueError:
        errors.add(field, "invalid", f"must be one of: {', '.join(enum)}", allowed=tuple(enum))


def _coerce_datetime(errors: ErrorCollector, instance: object, field: str) -> None:
    """Replace an aware datetime by its UTC form (or record an error); ``None`` stays."""
    value = getattr(instance, field)
    if value is not None:
        utc = errors.capture(validate_aware_datetime, value, field=field)
        if utc is not None:
            object.__setattr__(instance, field, utc)


def _coerce_bool(errors: ErrorCollector, instance: object, field: str) -> None:
    if not isinstance(getattr(instance, field), bool):
        errors.add(field, "invalid_type", "must be True or False")


# --------------------------------------------------------------------------- features


class Stage(StrEnum):
    """How mature a lab feature is (shown as a badge in the Lab list)."""

    EXPERIMENT = "experiment"
    ALPHA = "alpha"
    BETA = "beta"
    PREVIEW = "preview"


class AudienceKind(StrEnum):
    """Who a lab feature is offered to."""

    EVERYONE = "everyone"
    ALLOW_LIST = "allow_list"
    ROLLOUT = "rollout"


class Reason(StrEnum):
    """Why a feature is on or off for a user (see :func:`evaluate`)."""

    ENABLED_BY_USER = "enabled_by_user"
    ENABLED_BY_DEFAULT = "enabled_by_default"
    DISABLED_BY_USER = "disabled_by_user"
    DISABLED_BY_DEFAULT = "disabled_by_default"
    NOT_ELIGIBLE = "not_eligible"
    NEEDS_TERMS = "needs_terms"
    DEPENDS_ON = "depends_on"
    NOT_STARTED = "not_started"
    ENDED = "ended"
    KILLED = "killed"
    GRADUATED = "graduated"


def rollout_bucket(key: str, user_id: str) -> int:
    """Return the user's stable rollout bucket for a feature, in ``range(10_000)``.

    The first 8 bytes (big-endian) of ``sha256("<key>:<user_id>")``, modulo 10 000. It is
    the same in every process and every release (never Python's salted ``hash()``),
    and independent between features, so the same users are not always first.

    >>> rollout_bucket("new-editor", "user-1") == rollout_bucket("new-editor", "user-1")
    True
    """
    digest = hashlib.sha256(f"{key}:{user_id}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % ROLLOUT_BUCKETS


def _to_user_ids(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset((value,))
    try:
        return frozenset(value)
    except TypeError:
        raise ValidationError.single(
            "user_ids", "invalid_type", "must be a collection of user ids"
        ) from None


@attrs.frozen(kw_only=True)
class Audience:
    """Who is offered a lab feature: everyone, listed users, or a percentage rollout.

    Build one with :meth:`everyone`, :meth:`allow_list` or :meth:`rollout`.

    A rollout puts user ``u`` in the audience of feature ``k`` when
    ``rollout_bucket(k, u) < round(percent * 100)``: the answer is stable, and raising
    the percentage only ever adds users (nobody who had the feature loses it).

    Attributes:
        kind: Which of the three audiences this is.
        user_ids: The users offered the feature (``ALLOW_LIST`` only).
        percent: Share of users offered the feature, 0 to 100 with 0.01 resolution
            (``ROLLOUT`` only).
    """

    kind: AudienceKind = AudienceKind.EVERYONE
    user_ids: frozenset[str] = attrs.field(default=frozenset(), converter=_to_user_ids)
    percent: float = 100.0

    def __attrs_post_init__(self) -> None:
        errors = ErrorCollector()
        _coerce_enum(errors, self, "kind", AudienceKind)
        percent: object = self.percent
        if (
            isinstance(percent, bool)
            or not isinstance(percent, int | float)
            or not math.isfinite(percent)
            or not 0 <= percent <= 100
        ):
            errors.add("percent", "out_of_range", "must be a number from 0 to 100", min=0, max=100)
        if self.kind is not AudienceKind.ALLOW_LIST and self.user_ids:
            errors.add("user_ids", "not_allowed", "only an allow-list audience lists users")
        for user_id in sorted(self.user_ids) if self.kind is AudienceKind.ALLOW_LIST else ():
            errors.capture(validate_user_id, user_id, field="user_ids")
        errors.raise_if_any()

    @classmethod
    def everyone(cls) -> Audience:
        """Offer the feature to every user."""
        return cls(kind=AudienceKind.EVERYONE)

    @classmethod
    def allow_list(cls, user_ids: Iterable[str]) -> Audience:
        """Offer the feature only to the listed user ids (an empty list offers it to nobody)."""
        return cls(kind=AudienceKind.ALLOW_LIST, user_ids=_to_user_ids(user_ids))

    @classmethod
    def rollout(cls, percent: float) -> Audience:
        """Offer the feature to a stable ``percent`` (0 to 100) of users.

        Raises:
            ValidationError: ``percent.out_of_range``.
        """
        return cls(kind=AudienceKind.ROLLOUT, percent=percent)

    def includes(self, key: str, user_id: str) -> bool:
        """Return whether ``user_id`` is in this audience for the feature ``key``."""
        if self.kind is AudienceKind.EVERYONE:
            return True
        if self.kind is AudienceKind.ALLOW_LIST:
            return user_id in self.user_ids
        return _in_rollout(_rollout_threshold(self), key, user_id)


def _in_rollout(threshold: int, key: str, user_id: str) -> bool:
    if threshold >= ROLLOUT_BUCKETS:
        return True
    if threshold <= 0:
        return False
    return rollout_bucket(key, user_id) < threshold


@attrs.frozen(kw_only=True)
class Terms:
    """Terms a user must accept before a lab feature turns on for them.

    Publishing a new :attr:`version` turns the feature off again for everyone who
    accepted an older version, until they accept the new one.

    Attributes:
        version: Identifies the wording (``"2026-01"``); compared exactly.
        url: Where the terms are published (https), or ``None``.
        text: The terms themselves, or ``None``. At least one of ``url`` and ``text``.
    """

    version: str
    url: str | None = None
    text: str | None = None

    def __attrs_post_init__(self) -> None:
        errors = ErrorCollector()
        errors.capture(validate_text, self.version, field="version", max_length=_TERMS_VERSION_MAX)
        if self.url is not None:
            errors.capture(validate_https_url, self.url, field="url")
        if self.text is not None:
            errors.capture(
                validate_text, self.text, field="text", max_length=_TERMS_TEXT_MAX, multiline=True
            )
        if self.url is None and self.text is None:
            errors.add("url", "required", "terms need a url or a text")
        errors.raise_if_any()


def _to_key_tuple(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    try:
        return tuple(dict.fromkeys(value))
    except TypeError:
        raise ValidationError.single(
            "depends_on", "invalid_type", "must be a sequence of feature keys"
        ) from None


@attrs.frozen(kw_only=True)
class LabFeature:
    """One feature the host offers in the Lab tab.

    >>> from datetime import datetime, UTC
    >>> feature = LabFeature(key="new-editor", title="The new editor", stage=Stage.BETA,
    ...                      audience=Audience.rollout(25))
    >>> feature.stage
    <Stage.BETA: 'beta'>

    Attributes:
        key: Stable machine key (see :func:`validate_slug`).
        title: Short name shown in the Lab list.
        description: What the feature does (plain text, may span lines).
        stage: How mature it is.
        feedback_url: Where users send feedback (https), or ``None``.
        docs_url: Where it is documented (https), or ``None``.
        audience: Who is offered the feature.
        default_on: On for its audience until a user turns it off.
        depends_on: Keys of lab features that must be on for this one to be on.
        terms: Terms to accept before it turns on, or ``None``.
        starts_at: Offered from this instant (aware; stored in UTC), or ``None``.
        ends_at: Offered until just before this instant, or ``None``.
        kill_switch: Off for everyone, immediately (an emergency brake).
        graduated: Finished testing: on for everyone and no longer in the Lab list.

    Raises:
        ValidationError: with every problem found, when any field is invalid.
    """

    key: str
    title: str
    description: str = ""
    stage: Stage = Stage.EXPERIMENT
    feedback_url: str | None = None
    docs_url: str | None = None
    audience: Audience = attrs.field(factory=Audience.everyone)
    default_on: bool = False
    depends_on: tuple[str, ...] = attrs.field(default=(), converter=_to_key_tuple)
    terms: Terms | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    kill_switch: bool = False
    graduated: bool = False

    def __attrs_post_init__(self) -> None:
        errors = ErrorCollector()
        errors.capture(validate_slug, self.key, field="key")
        errors.capture(validate_text, self.title, field="title", max_length=_TITLE_MAX)
        errors.capture(
            validate_text,
            self.description,
            field="description",
            max_length=_DESCRIPTION_MAX,
            required=False,
            multiline=True,
        )
        _coerce_enum(errors, self, "stage", Stage)
        for field in ("feedback_url", "docs_url"):
            if getattr(self, field) is not None:
                errors.capture(validate_https_url, getattr(self, field), field=field)
        audience: object = self.audience
        terms: object = self.terms
        if not isinstance(audience, Audience):
            errors.add("audience", "invalid_type", "must be an Audience")
        if terms is not None and not isinstance(terms, Terms):
            errors.add("terms", "invalid_type", "must be Terms or None")
        for field in ("default_on", "kill_switch", "graduated"):
            _coerce_bool(errors, self, field)
        for dependency in self.depends_on:
            errors.capture(validate_slug, dependency, field="depends_on")
        if self.key in self.depends_on:
            errors.add("depends_on", "self", "a feature cannot depend on itself")
        _coerce_datetime(errors, self, "starts_at")
        _coerce_datetime(errors, self, "ends_at")
        starts, ends = self.starts_at, self.ends_at
        if (
            starts is not None
            and ends is not None
            and starts.tzinfo is not None
            and ends.tzinfo is not None
            and ends <= starts
        ):
            errors.add("ends_at", "before_start", "must be later than starts_at")
        errors.raise_if_any()


@attrs.frozen(kw_only=True)
class OptIn:
    """One user's explicit choice for one lab feature (what storage keeps).

    Attributes:
        user_id: Whose choice.
        key: Which feature.
        enabled: ``True`` to opt in, ``False`` to opt out.
        at: When the choice was made (aware; stored in UTC).
        terms_version_accepted: The terms version the user accepted, or ``None``.
    """

    user_id: str
    key: str
    enabled: bool
    at: datetime
    terms_version_accepted: str | None = None

    def __attrs_post_init__(self) -> None:
        errors = ErrorCollector()
        errors.capture(validate_user_id, self.user_id)
        errors.capture(validate_slug, self.key, field="key")
        _coerce_bool(errors, self, "enabled")
        _coerce_datetime(errors, self, "at")
        if self.terms_version_accepted is not None:
            errors.capture(
                validate_text,
                self.terms_version_accepted,
                field="terms_version_accepted",
                max_length=_TERMS_VERSION_MAX,
            )
        errors.raise_if_any()


@attrs.frozen(kw_only=True)
class FeatureState:
    """Whether one lab feature is on for one user, and why.

    Attributes:
        key: The feature.
        enabled: Whether the feature is on for the user.
        visible: Whether the Lab list shows it to the user.
        reason: Why it is on or off.
        blocked_by: The dependencies that are off (only when ``reason`` is ``DEPENDS_ON``).
        choice: The user's explicit choice (``True``/``False``), or ``None`` if none.
    """

    key: str
    enabled: bool
    visible: bool
    reason: Reason
    blocked_by: tuple[str, ...] = ()
    choice: bool | None = None


# --------------------------------------------------------------------------- registry


@attrs.frozen(kw_only=True)
class _Compiled:
    """A feature with everything evaluation needs precomputed (internal)."""

    key: str
    feature: LabFeature
    deps: tuple[str, ...]
    killed: bool
    graduated: bool
    default_on: bool
    kind: AudienceKind
    user_ids: frozenset[str]
    threshold: int
    starts_at: datetime | None
    ends_at: datetime | None
    terms_version: str | None
    # Every outcome except DEPENDS_ON, built once: evaluation then allocates nothing.
    prebuilt: Mapping[tuple[Reason, bool | None], FeatureState]

    @classmethod
    def of(cls, feature: LabFeature) -> _Compiled:
        audience = feature.audience
        prebuilt: dict[tuple[Reason, bool | None], FeatureState] = {
            (reason, choice): FeatureState(
                key=feature.key,
                enabled=reason in _ENABLED_REASONS,
                visible=reason in _LISTED_REASONS,
                reason=reason,
                choice=choice,
            )
            for reason in Reason
            if reason is not Reason.DEPENDS_ON
            for choice in (None, True, False)
        }
        return cls(
            prebuilt=prebuilt,
            key=feature.key,
            feature=feature,
            deps=feature.depends_on,
            killed=feature.kill_switch,
            graduated=feature.graduated,
            default_on=feature.default_on,
            kind=audience.kind,
            user_ids=audience.user_ids,
            threshold=_rollout_threshold(audience),
            starts_at=feature.starts_at,
            ends_at=feature.ends_at,
            terms_version=None if feature.terms is None else feature.terms.version,
        )


_ENABLED_REASONS: Final = frozenset(
    {Reason.ENABLED_BY_USER, Reason.ENABLED_BY_DEFAULT, Reason.GRADUATED}
)
_LISTED_REASONS: Final = frozenset(
    {
        Reason.ENABLED_BY_USER,
        Reason.ENABLED_BY_DEFAULT,
        Reason.DISABLED_BY_USER,
        Reason.DISABLED_BY_DEFAULT,
        Reason.NEEDS_TERMS,
    }
)


def _rollout_threshold(audience: Audience) -> int:
    """Buckets below this number are in the audience (all of them unless a rollout)."""
    if audience.kind is AudienceKind.ROLLOUT:
        return round(audience.percent * 100)
    return ROLLOUT_BUCKETS


@attrs.frozen(kw_only=True)
class RegistrySnapshot:
    """An immutable, consistent view of a :class:`LabRegistry` at one revision.

    Evaluation reads one snapshot, so a concurrent update never mixes two revisions.

    Attributes:
        revision: The registry revision this snapshot shows.
        features: Features by key, in registration order.
        order: Keys in dependency order (every feature after its dependencies).
        dependants: Direct dependants of each key.
        transitions: Sorted instants at which some feature starts or ends.
    """

    revision: int
    features: Mapping[str, LabFeature]
    order: tuple[str, ...]
    dependants: Mapping[str, tuple[str, ...]]
    transitions: tuple[datetime, ...]
    compiled: tuple[_Compiled, ...] = attrs.field(repr=False)

    @classmethod
    def build(cls, features: Mapping[str, LabFeature], *, revision: int) -> RegistrySnapshot:
        """Check ``features`` as a whole and precompute what evaluation needs.

        Raises:
            ValidationError: ``depends_on.unknown``, ``depends_on.cycle`` or
                ``depends_on.not_graduated`` (a graduated feature must only depend on
                graduated features, since it is on for everyone).
        """
        errors = ErrorCollector()
        for feature in features.values():
            missing = tuple(d for d in feature.depends_on if d not in features)
            if missing:
                errors.add(
                    "depends_on",
                    "unknown",
                    f"{feature.key} depends on unknown lab feature(s): {', '.join(missing)}",
                    feature=feature.key,
                    missing=missing,
                )
            elif feature.graduated:
                pending = tuple(d for d in feature.depends_on if not features[d].graduated)
                if pending:
                    errors.add(
                        "depends_on",
                        "not_graduated",
                        f"graduated {feature.key} depends on feature(s) still in the lab: "
                        f"{', '.join(pending)}",
                        feature=feature.key,
                        dependencies=pending,
                    )
        errors.raise_if_any()
        order = _topological_order(features)
        dependants: dict[str, list[str]] = {key: [] for key in order}
        for key in order:
            for dependency in features[key].depends_on:
                dependants[dependency].append(key)
        transitions = sorted(
            {
                instant
                for f in features.values()
                if not f.kill_switch and not f.graduated
                for instant in (f.starts_at, f.ends_at)
                if instant is not None
            },
        )
        return cls(
            revision=revision,
            features=MappingProxyType(dict(features)),
            order=order,
            dependants=MappingProxyType({k: tuple(v) for k, v in dependants.items()}),
            transitions=tuple(transitions),
            compiled=tuple(_Compiled.of(features[key]) for key in order),
        )

    def next_change_after(self, now: datetime) -> datetime | None:
        """Return the first instant after ``now`` at which a feature starts or ends.

        Evaluation depends on time only through these windows, so a cache of
        evaluated states stays valid until this instant (``None``: forever).
        """
        transitions = self.transitions
        index = bisect_right(transitions, now)
        return transitions[index] if index < len(transitions) else None


def _topological_order(features: Mapping[str, LabFeature]) -> tuple[str, ...]:
    """Order keys so that every feature comes after its dependencies.

    Otherwise registration order is kept as far as possible (a depth-first walk in
    registration order), so the Lab list can be shown in this order.

    Raises:
        ValidationError: ``depends_on.cycle`` naming one cycle.
    """
    order: dict[str, None] = {}
    for root in features:
        if root in order:
            continue
        path: list[str] = [root]
        pending: list[Iterator[str]] = [iter(features[root].depends_on)]
        while pending:
            dependency = next(pending[-1], None)
            if dependency is None:
                pending.pop()
                order[path.pop()] = None
            elif dependency in path:
                cycle = (*path[path.index(dependency) :], dependency)
                raise ValidationError.single(
                    "depends_on",
                    "cycle",
                    f"lab features depend on each other in a cycle: {' -> '.join(cycle)}",
                    cycle=cycle,
                )
            elif dependency not in order:
                path.append(dependency)
                pending.append(iter(features[dependency].depends_on))
    return tuple(order)


@attrs.define(eq=False)
class LabRegistry:
    """The lab features a host offers; safe to read from many threads while updated.

    Every change increases :attr:`revision`, so caches of evaluated results can tell
    that they are stale. Readers take an immutable :attr:`snapshot`.

    >>> registry = LabRegistry()
    >>> registry.register(LabFeature(key="new-editor", title="New editor"))
    >>> registry.register(LabFeature(key="ai-assist", title="AI help", depends_on=("new-editor",)))
    >>> registry.revision, [f.key for f in registry]
    (2, ['new-editor', 'ai-assist'])
    >>> registry.set_kill_switch("ai-assist", on=True).kill_switch
    True
    """

    _snapshot: RegistrySnapshot = attrs.field(
        init=False,
        repr=False,
        factory=lambda: RegistrySnapshot.build({}, revision=0),
    )
    _lock: threading.Lock = attrs.field(init=False, repr=False, factory=threading.Lock)

    @classmethod
    def of(cls, features: Iterable[LabFeature]) -> LabRegistry:
        """Build a registry holding ``features`` (in any order; see :meth:`register_all`)."""
        registry = cls()
        registry.register_all(features)
        return registry

    def __repr__(self) -> str:
        snapshot = self._snapshot
        return f"LabRegistry(revision={snapshot.revision}, features={list(snapshot.features)})"

    @property
    def revision(self) -> int:
        """Increases by at least one on every change; ``0`` for a new, empty registry."""
        return self._snapshot.revision

    @property
    def snapshot(self) -> RegistrySnapshot:
        """The current immutable view (what :func:`evaluate` reads)."""
        return self._snapshot

    def _commit(self, change: Callable[[dict[str, LabFeature]], None]) -> None:
        with self._lock:
            features = dict(self._snapshot.features)
            change(features)
            self._snapshot = RegistrySnapshot.build(features, revision=self._snapshot.revision + 1)

    def register(self, feature: LabFeature) -> None:
        """Add one feature; its dependencies must already be registered.

        Raises:
            AlreadyExistsError: ``lab_feature.already_exists`` if the key is taken.
            ValidationError: ``depends_on.unknown`` (or ``depends_on.not_graduated``).
        """
        self.register_all((feature,))

    def register_all(self, features: Iterable[LabFeature]) -> None:
        """Add several features at once, in any order; all of them or none.

        Raises:
            AlreadyExistsError: ``lab_feature.already_exists`` if a key is taken or repeated.
            ValidationError: ``depends_on.unknown``, ``depends_on.cycle`` or
                ``depends_on.not_graduated``.
        """
        batch = tuple(features)

        def add(current: dict[str, LabFeature]) -> None:
            for feature in batch:
                if feature.key in current:
                    raise AlreadyExistsError("lab_feature", feature.key, field="key")
                current[feature.key] = feature

        self._commit(add)

    def update(self, feature: LabFeature) -> None:
        """Replace the registered feature that has ``feature.key``.

        Raises:
            NotFoundError: ``lab_feature.not_found``.
            ValidationError: the new version's dependencies are unknown or form a cycle.
        """

        def replace(current: dict[str, LabFeature]) -> None:
            if feature.key not in current:
                raise NotFoundError("lab_feature", feature.key)
            current[feature.key] = feature

        self._commit(replace)

    def remove(self, key: str) -> None:
        """Remove a feature that no other feature depends on.

        Raises:
            NotFoundError: ``lab_feature.not_found``.
            ValidationError: ``key.has_dependants`` (params ``dependants``).
        """

        def drop(current: dict[str, LabFeature]) -> None:
            if key not in current:
                raise NotFoundError("lab_feature", key)
            dependants = tuple(k for k, f in current.items() if key in f.depends_on)
            if dependants:
                raise ValidationError.single(
                    "key",
                    "has_dependants",
                    f"{key} cannot be removed: {', '.join(dependants)} depend on it",
                    dependants=dependants,
                )
            del current[key]

        self._commit(drop)

    def _evolve(self, key: str, **changes: Any) -> LabFeature:
        with self._lock:
            features = dict(self._snapshot.features)
            if key not in features:
                raise NotFoundError("lab_feature", key)
            features[key] = attrs.evolve(features[key], **changes)
            self._snapshot = RegistrySnapshot.build(features, revision=self._snapshot.revision + 1)
            return features[key]

    def set_kill_switch(self, key: str, *, on: bool) -> LabFeature:
        """Turn the kill switch on (off for everyone, now) or off again; return the feature.

        Raises:
            NotFoundError: ``lab_feature.not_found``.
        """
        return self._evolve(key, kill_switch=on)

    def set_graduated(self, key: str, *, graduated: bool = True) -> LabFeature:
        """Graduate a feature (on for everyone, gone from the Lab list); return it.

        Raises:
            NotFoundError: ``lab_feature.not_found``.
            ValidationError: ``depends_on.not_graduated`` if a dependency is still in
                the lab (or, when un-graduating, a graduated feature depends on it).
        """
        return self._evolve(key, graduated=graduated)

    def set_audience(self, key: str, audience: Audience) -> LabFeature:
        """Change who is offered the feature; return it.

        Raises:
            NotFoundError: ``lab_feature.not_found``.
        """
        return self._evolve(key, audience=audience)

    def set_rollout(self, key: str, percent: float) -> LabFeature:
        """Offer the feature to a stable ``percent`` of users; return it.

        Raises:
            NotFoundError: ``lab_feature.not_found``.
            ValidationError: ``percent.out_of_range``.
        """
        return self.set_audience(key, Audience.rollout(percent))

    def get(self, key: str) -> LabFeature:
        """Return the feature with ``key``.

        Raises:
            NotFoundError: ``lab_feature.not_found`` (a typo must never silently
                read as "feature off").
        """
        try:
            return self._snapshot.features[key]
        except KeyError:
            raise NotFoundError("lab_feature", str(key)) from None

    def __contains__(self, key: object) -> bool:
        return key in self._snapshot.features

    def __iter__(self) -> Iterator[LabFeature]:
        """Iterate over the features in registration order."""
        return iter(self._snapshot.features.values())

    def __len__(self) -> int:
        return len(self._snapshot.features)

    def next_change_after(self, now: datetime) -> datetime | None:
        """Return the first instant after ``now`` at which a feature starts or ends.

        A cache of evaluated states stays valid until this instant (or a new
        :attr:`revision`), since evaluation depends on time only through the windows.
        """
        return self._snapshot.next_change_after(now)


# --------------------------------------------------------------------------- evaluation


def _check_now(now: object) -> None:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise ValidationError.single("now", "naive", "must be a timezone-aware datetime")


def evaluate(
    registry: LabRegistry | RegistrySnapshot,
    user_id: str,
    choices: Mapping[str, OptIn],
    now: datetime,
) -> Mapping[str, FeatureState]:
    """Decide, for one user, whether each lab feature is on, visible, and why.

    Rules, strongest first:

    * kill switch on: off and hidden for everyone (``KILLED``);
    * graduated: on for everyone and hidden (``GRADUATED``) unless a dependency was
      killed (``DEPENDS_ON``);
    * before ``starts_at`` / from ``ends_at`` on: off and hidden (``NOT_STARTED`` /
      ``ENDED``);
    * user outside the audience: off and hidden (``NOT_ELIGIBLE``);
    * a dependency off: off (``DEPENDS_ON``, with ``blocked_by``); shown only if the
      user could turn every blocking dependency on;
    * the user's choice, else ``default_on`` (``ENABLED_BY_USER``,
      ``DISABLED_BY_USER``, ``ENABLED_BY_DEFAULT``, ``DISABLED_BY_DEFAULT``);
    * would be on but the current terms version is not accepted: off (``NEEDS_TERMS``).

    Features are evaluated in dependency order, so turning a dependency off turns
    every dependant off too. Choices for keys that are not registered are ignored.

    Args:
        registry: The host's lab features (one snapshot of it is read), or a
            snapshot taken earlier.
        user_id: The user.
        choices: The user's :class:`OptIn` records by feature key.
        now: The current time (aware).

    Returns:
        A read-only mapping from every registered key to its :class:`FeatureState`,
        in dependency order.

    Raises:
        ValidationError: ``now.naive``, or ``choices.wrong_user`` if a choice belongs
            to another user.
    """
    _check_now(now)
    snapshot = registry if isinstance(registry, RegistrySnapshot) else registry.snapshot
    states: dict[str, FeatureState] = {}
    for c in snapshot.compiled:
        key = c.key
        choice = choices.get(key)
        if choice is not None and choice.user_id != user_id:
            raise ValidationError.single(
                "choices", "wrong_user", "a choice belongs to another user", key=key
            )
        states[key] = _evaluate_one(c, user_id, choice, now, states)
    return MappingProxyType(states)


def _blocked(c: _Compiled, states: Mapping[str, FeatureState]) -> tuple[str, ...]:
    return tuple(d for d in c.deps if not states[d].enabled)


def _evaluate_one(
    c: _Compiled,
    user_id: str,
    choice: OptIn | None,
    now: datetime,
    states: Mapping[str, FeatureState],
) -> FeatureState:
    chosen = None if choice is None else choice.enabled
    hidden = _hidden_reason(c, user_id, now)
    if hidden is not None:
        return c.prebuilt[hidden, chosen]
    blocked = tuple(d for d in c.deps if not states[d].enabled) if c.deps else ()
    if blocked:
        return FeatureState(
            key=c.key,
            enabled=False,
            visible=not c.graduated and all(states[d].visible for d in blocked),
            reason=Reason.DEPENDS_ON,
            blocked_by=blocked,
            choice=chosen,
        )
    if c.graduated:
        return c.prebuilt[Reason.GRADUATED, chosen]
    return c.prebuilt[_choice_reason(c, choice), chosen]


def _hidden_reason(c: _Compiled, user_id: str, now: datetime) -> Reason | None:
    """Why the feature is off and out of the user's Lab list, or ``None``."""
    if c.killed:
        return Reason.KILLED
    if c.graduated:
        return None
    if c.starts_at is not None and now < c.starts_at:
        return Reason.NOT_STARTED
    if c.ends_at is not None and now >= c.ends_at:
        return Reason.ENDED
    if c.kind is AudienceKind.ALLOW_LIST:
        eligible = user_id in c.user_ids
    else:
        eligible = _in_rollout(c.threshold, c.key, user_id)
    return None if eligible else Reason.NOT_ELIGIBLE


def _choice_reason(c: _Compiled, choice: OptIn | None) -> Reason:
    """The user's choice (else the default), then the terms."""
    if choice is None:
        if not c.default_on:
            return Reason.DISABLED_BY_DEFAULT
        return Reason.ENABLED_BY_DEFAULT if c.terms_version is None else Reason.NEEDS_TERMS
    if not choice.enabled:
        return Reason.DISABLED_BY_USER
    if c.terms_version is not None and choice.terms_version_accepted != c.terms_version:
        return Reason.NEEDS_TERMS
    return Reason.ENABLED_BY_USER


def check_opt_in(
    registry: LabRegistry,
    user_id: str,
    key: str,
    choices: Mapping[str, OptIn],
    now: datetime,
    *,
    accept_terms_version: str | None = None,
) -> OptIn:
    """Check that a user may turn a lab feature on; return the choice to store.

    Args:
        registry: The host's lab features.
        user_id: The user opting in.
        key: The feature.
        choices: The user's current choices by key.
        now: The current time (aware); becomes the choice's ``at``.
        accept_terms_version: The terms version the user is accepting with this
            click (must be the current one), if any. A version accepted earlier
            and still current is kept.

    Returns:
        An enabled :class:`OptIn` carrying the accepted terms version.

    Raises:
        NotFoundError: ``lab_feature.not_found``.
        PolicyError: ``lab.killed``, ``lab.graduated``, ``lab.not_started``,
            ``lab.ended``, ``lab.not_eligible``, ``lab.depends_on`` (params
            ``dependency``, ``dependencies``) or ``lab.needs_terms`` (params
            ``terms_version``, ``terms_url``).
        ValidationError: ``now.naive`` or ``choices.wrong_user``.
    """
    feature = registry.get(key)
    state = evaluate(registry, user_id, choices, now)[key]
    _refuse_unavailable(feature, state)
    if state.reason is Reason.DEPENDS_ON:
        raise PolicyError(
            f"turn on {state.blocked_by[0]!r} first: {key!r} depends on it",
            code="lab.depends_on",
            feature=key,
            dependency=state.blocked_by[0],
            dependencies=state.blocked_by,
        )
    accepted: str | None = None
    if feature.terms is not None:
        previous = choices.get(key)
        accepted = accept_terms_version
        if accepted is None and previous is not None:
            accepted = previous.terms_version_accepted
        if accepted != feature.terms.version:
            raise PolicyError(
                f"accept the terms (version {feature.terms.version}) to turn on {key!r}",
                code="lab.needs_terms",
                feature=key,
                terms_version=feature.terms.version,
                terms_url=feature.terms.url,
            )
    return OptIn(user_id=user_id, key=key, enabled=True, at=now, terms_version_accepted=accepted)


def _refuse_unavailable(feature: LabFeature, state: FeatureState) -> None:
    key = feature.key
    if feature.kill_switch:
        raise PolicyError(f"{key!r} is switched off for everyone", code="lab.killed", feature=key)
    if feature.graduated:
        raise PolicyError(
            f"{key!r} has graduated: it is on for everyone", code="lab.graduated", feature=key
        )
    if state.reason is Reason.NOT_STARTED:
        raise PolicyError(
            f"{key!r} is not available yet",
            code="lab.not_started",
            feature=key,
            starts_at=feature.starts_at,
        )
    if state.reason is Reason.ENDED:
        raise PolicyError(
            f"{key!r} is no longer available",
            code="lab.ended",
            feature=key,
            ends_at=feature.ends_at,
        )
    if state.reason is Reason.NOT_ELIGIBLE:
        raise PolicyError(
            f"{key!r} is not offered to this account", code="lab.not_eligible", feature=key
        )


def check_opt_out(
    registry: LabRegistry,
    user_id: str,
    key: str,
    choices: Mapping[str, OptIn],
    now: datetime,
) -> OptIn:
    """Check that a user may turn a lab feature off; return the choice to store.

    Opting out is allowed even while a feature is killed or outside its window (the
    choice is remembered), but not once it has graduated. An accepted terms version
    is kept, so opting in again does not ask for the same terms twice. Use
    :func:`dependants_of` to find the features that go off with it.

    Raises:
        NotFoundError: ``lab_feature.not_found``.
        PolicyError: ``lab.graduated``.
        ValidationError: ``now.naive``.
    """
    feature = registry.get(key)
    _check_now(now)
    if feature.graduated:
        raise PolicyError(
            f"{key!r} has graduated: it is on for everyone", code="lab.graduated", feature=key
        )
    previous = choices.get(key)
    accepted = None if previous is None else previous.terms_version_accepted
    return OptIn(user_id=user_id, key=key, enabled=False, at=now, terms_version_accepted=accepted)


def dependants_of(registry: LabRegistry, key: str) -> tuple[str, ...]:
    """Return every feature that (directly or transitively) depends on ``key``.

    Keys come in dependency order. A service that turns ``key`` off for a user may
    turn these off too, so they stay off when ``key`` is turned on again.

    Raises:
        NotFoundError: ``lab_feature.not_found``.
    """
    snapshot = registry.snapshot
    if key not in snapshot.features:
        raise NotFoundError("lab_feature", str(key))
    found: set[str] = set()
    pending = [key]
    while pending:
        for dependant in snapshot.dependants[pending.pop()]:
            if dependant not in found:
                found.add(dependant)
                pending.append(dependant)
    return tuple(k for k in snapshot.order if k in found)

"""The Lab tab's service: list features for a user, opt in and out, and ``is_enabled``.

``is_enabled`` is meant for hot paths. It answers from a per-user cache of evaluated
states (bounded, least recently used users dropped first). An entry is used only
while all of these hold:

* the registry is at the revision the entry was computed from (any change to the
  registry, such as a kill switch, makes every entry stale at once);
* the next instant at which some feature starts or ends has not passed (read from
  the injected clock);
* the user's choices have not changed. Changes made through this service drop the
  entry at once. Changes made elsewhere (another process on the same SQLite file,
  another :class:`UserPanel` on the same storage) are noticed by reading the
  storage's change marker at most every :attr:`LabCachePolicy.refresh_interval`
  seconds (default 1 s): such a change is seen within that delay plus one storage
  read.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Final

import attrs

from enspace_profile._audit import AuditEvent, FieldChange, Notifier, deliver
from enspace_profile._capability import repository
from enspace_profile._clock import Clock
from enspace_profile._lab.domain import (
    FeatureState,
    LabFeature,
    LabRegistry,
    OptIn,
    Reason,
    RegistrySnapshot,
    Stage,
    Terms,
    check_opt_in,
    check_opt_out,
    dependants_of,
    evaluate,
)
from enspace_profile._random import RandomSource, new_id
from enspace_profile._validation import ErrorCollector, validate_text, validate_user_id
from enspace_profile.exceptions import NotFoundError, ValidationError
from enspace_profile.typing import LabRepository, Storage, Transaction

__all__ = [
    "LAB_OPTED_IN",
    "LAB_OPTED_OUT",
    "LAB_RESET",
    "LabCachePolicy",
    "LabItem",
    "LabService",
    "require_lab",
]

#: Audit event kinds written by this service.
LAB_OPTED_IN: Final = "lab.opted_in"
LAB_OPTED_OUT: Final = "lab.opted_out"
LAB_RESET: Final = "lab.reset"

_TERMS_VERSION_MAX: Final = 64

# Off because the feature is not offered to the user right now (not because of a choice).
_UNOFFERED: Final = frozenset(
    {Reason.NOT_ELIGIBLE, Reason.NOT_STARTED, Reason.ENDED, Reason.KILLED}
)


@attrs.frozen(kw_only=True)
class LabItem:
    """One row of the Lab tab: a feature, whether it is on for the user, and why.

    It carries what the Lab tab displays and nothing more: not the feature's
    audience (an allow-list names other users) nor its kill switch, so it is safe to
    send to the user's browser as is (e.g. through ``enspace_profile.converter``).

    Attributes:
        key: The feature's key.
        title: Its short name.
        description: What it does.
        stage: How mature it is (a badge).
        feedback_url: Where to send feedback, or ``None``.
        docs_url: Where it is documented, or ``None``.
        terms: The terms to accept before it turns on, or ``None``.
        starts_at: When it is offered from, or ``None``.
        ends_at: When it stops being offered, or ``None``.
        state: Whether it is on, whether it is offered, and the reason.
        chosen_at: When the user last turned it on or off (``None``: never).
        terms_version_accepted: The terms version the user accepted, if any.
    """

    key: str
    title: str
    description: str
    stage: Stage
    feedback_url: str | None
    docs_url: str | None
    terms: Terms | None
    starts_at: datetime | None
    ends_at: datetime | None
    state: FeatureState
    chosen_at: datetime | None = None
    terms_version_accepted: str | None = None

    @classmethod
    def of(cls, feature: LabFeature, state: FeatureState, choice: OptIn | None) -> LabItem:
        """Build the row for ``feature`` in ``state``, with the user's ``choice`` if any."""
        return cls(
            key=feature.key,
            title=feature.title,
            description=feature.description,
            stage=feature.stage,
            feedback_url=feature.feedback_url,
            docs_url=feature.docs_url,
            terms=feature.terms,
            starts_at=feature.starts_at,
            ends_at=feature.ends_at,
            state=state,
            chosen_at=None if choice is None else choice.at,
            terms_version_accepted=None if choice is None else choice.terms_version_accepted,
        )

    @property
    def enabled(self) -> bool:
        """Whether the feature is on for the user."""
        return self.state.enabled

    @property
    def reason(self) -> Reason:
        """Why it is on or off (see :class:`~enspace_profile.Reason`)."""
        return self.state.reason

    @property
    def available(self) -> bool:
        """Whether the feature is offered to the user now (``False``: ended, not eligible...)."""
        return self.state.visible

    @property
    def blocked_by(self) -> tuple[str, ...]:
        """The dependencies to turn on first (when :attr:`reason` is ``DEPENDS_ON``)."""
        return self.state.blocked_by

    @property
    def terms_to_accept(self) -> Terms | None:
        """The terms the user must accept to turn it on (when :attr:`reason` is ``NEEDS_TERMS``)."""
        return self.terms if self.state.reason is Reason.NEEDS_TERMS else None


def _check_interval(_instance: object, _attribute: object, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value < float("inf")
    ):
        raise ValidationError.single(
            "refresh_interval", "invalid", "must be a finite number of seconds, 0 or more"
        )


def _check_max_users(_instance: object, _attribute: object, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError.single("max_users", "invalid", "must be an integer, 0 or more")


@attrs.frozen(kw_only=True)
class LabCachePolicy:
    """How :meth:`LabService.is_enabled` caches evaluated states.

    Attributes:
        refresh_interval: At most this many seconds pass between two reads of the
            storage's change marker, i.e. the longest delay before a change made by
            another process is seen. ``0`` reads it on every call (slow: a storage
            read per call).
        max_users: How many users' states are kept (least recently used dropped
            first); ``0`` disables the cache.
        monotonic: Source of monotonic seconds for ``refresh_interval`` (inject a
            fake in tests instead of sleeping).

    Raises:
        ValidationError: ``refresh_interval.invalid`` or ``max_users.invalid``.
    """

    refresh_interval: float = attrs.field(default=1.0, validator=_check_interval)
    max_users: int = attrs.field(default=10_000, validator=_check_max_users)
    monotonic: Callable[[], float] = attrs.field(default=time.monotonic, eq=False, repr=False)


class _Entry:
    """One user's evaluated states, valid for one registry snapshot until ``valid_until``."""

    __slots__ = ("choices", "enabled", "snapshot", "states", "valid_until")

    def __init__(
        self,
        snapshot: RegistrySnapshot,
        user_id: str,
        choices: Mapping[str, OptIn],
        now: datetime,
    ) -> None:
        self.snapshot = snapshot
        self.choices = choices
        self.states = evaluate(snapshot, user_id, choices, now)
        self.enabled = {key: state.enabled for key, state in self.states.items()}
        self.valid_until = snapshot.next_change_after(now)

    def fresh(self, snapshot: RegistrySnapshot, now: datetime) -> bool:
        until = self.valid_until
        return self.snapshot is snapshot and (until is None or now < until)


class _StateCache:
    """The per-user cache behind ``is_enabled`` (see the module docstring).

    ``revision`` is the storage change marker the entries are known to be current
    with; ``epoch`` grows with every invalidation, so a load that raced with one is
    not stored.
    """

    __slots__ = (
        "check_at",
        "entries",
        "epoch",
        "interval",
        "lock",
        "max_users",
        "monotonic",
        "refresh_lock",
        "revision",
    )

    def __init__(self, policy: LabCachePolicy) -> None:
        self.entries: OrderedDict[str, _Entry] = OrderedDict()
        self.lock = threading.Lock()
        self.refresh_lock = threading.Lock()
        self.epoch = 0
        self.revision: int | None = None
        self.interval = float(policy.refresh_interval)
        self.max_users = policy.max_users
        self.monotonic = policy.monotonic
        self.check_at = float("-inf")
        # Transaction classes known to support the lab: a runtime Protocol check costs
        # microseconds, more than the rest of a cold read from memory.

    def store(self, user_id: str, entry: _Entry, *, epoch: int, revision: int | None) -> None:
        """Keep ``entry`` unless an invalidation happened since ``epoch`` was read."""
        if self.max_users == 0:
            return
        with self.lock:
            if epoch != self.epoch:
                return
            if revision is not None:
                if self.revision is None:
                    self.revision = revision
                elif revision < self.revision:
                    return
            entries = self.entries
            entries[user_id] = entry
            entries.move_to_end(user_id)
            while len(entries) > self.max_users:
                entries.popitem(last=False)

    def invalidate(self, user_id: str) -> None:
        with self.lock:
            self.entries.pop(user_id, None)
            self.epoch += 1

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.epoch += 1

    def apply(self, known: int | None, current: int, changed: Sequence[str] | None) -> None:
        """Record that the storage is at ``current``; drop the users changed since ``known``."""
        with self.lock:
            if self.revision != known:
                return  # someone else moved the marker meanwhile; the next check catches up
            if known is not None and current != known:
                if current < known or changed is None or len(changed) > self.max_users:
                    self.entries.clear()  # storage replaced, or too many to name
                else:
                    for user_id in changed:
                        self.entries.pop(user_id, None)
                self.epoch += 1
            self.revision = current


def require_lab(tx: Transaction, storage: Storage) -> LabRepository:
    """Return the transaction's lab repository or explain that the storage lacks one.

    Raises:
        CapabilityError: if the storage keeps no lab choices.
    """
    lab: LabRepository = repository(tx, "lab", storage)
    return lab


@attrs.frozen
class LabService:
    """Everything the Lab tab does. Reach it as ``panel.lab``.

    Args:
        storage: Where users' choices live.
        registry: The lab features the host offers.
        clock: Source of the current time (feature start and end dates).
        rng: Source of randomness (event ids).
        notifier: Receives each audit event after its transaction committed.
        cache_policy: How :meth:`is_enabled` caches (refresh delay, size).

    >>> from enspace_profile import LabFeature, LabRegistry, MemoryStorage, UserPanel
    >>> lab = LabRegistry.of([LabFeature(key="new-editor", title="New editor")])
    >>> panel = UserPanel(storage=MemoryStorage(), lab=lab)
    >>> panel.lab.is_enabled("u1", "new-editor")
    False
    >>> panel.lab.opt_in("u1", "new-editor").enabled, panel.lab.is_enabled("u1", "new-editor")
    (True, True)
    """

    storage: Storage
    registry: LabRegistry
    clock: Clock
    rng: RandomSource
    notifier: Notifier | None = None
    cache_policy: LabCachePolicy = attrs.field(factory=LabCachePolicy)
    _cache: _StateCache = attrs.field(
        init=False,
        repr=False,
        eq=False,
        default=attrs.Factory(lambda self: _StateCache(self.cache_policy), takes_self=True),
    )

    # -- reading -----------------------------------------------------------------------

    def is_enabled(self, user_id: str, key: str) -> bool:
        """Return whether the lab feature ``key`` is on for the user. Fast when warm.

        Args:
            user_id: The user.
            key: A registered feature key.

        Returns:
            ``True`` if the feature is on (opted in, on by default, or graduated).

        Raises:
            NotFoundError: ``lab_feature.not_found`` for an unregistered key (a typo
                must not silently read as "off").
            ValidationError: ``user_id.invalid`` for an unusable user id.
            CapabilityError: if the storage keeps no lab choices.
        """
        cache = self._cache
        try:
            entry = cache.entries.get(user_id)
            if (
                entry is not None
                and entry.snapshot is self.registry.snapshot
                and cache.monotonic() < cache.check_at
            ):
                until = entry.valid_until
                if until is None or self.clock.now() < until:
                    enabled = entry.enabled.get(key)
                    if enabled is not None:
                        cache.entries.move_to_end(user_id)
                        return enabled
        except (KeyError, TypeError):
            # KeyError: another thread dropped the entry meanwhile; TypeError: an
            # unhashable argument. The slow path answers (or reports bad input).
            pass
        return self._is_enabled_slow(user_id, key)

    def _is_enabled_slow(self, user_id: str, key: str) -> bool:
        validate_user_id(user_id)
        unknown: object = key
        if not isinstance(unknown, str) or unknown not in self.registry:
            raise NotFoundError("lab_feature", str(key))
        enabled = self._entry(user_id).enabled.get(key)
        if enabled is None:
            raise NotFoundError("lab_feature", str(key))
        return enabled

    def enabled_keys(self, user_id: str) -> frozenset[str]:
        """Return the keys of every lab feature that is on for the user.

        Cached like :meth:`is_enabled`; handy to hand all flags to a front end at once.

        Raises:
            ValidationError: ``user_id.invalid``.
            CapabilityError: if the storage keeps no lab choices.
        """
        return frozenset(k for k, on in self._entry(user_id).enabled.items() if on)

    def has_visible_features(self, user_id: str) -> bool:
        """Return whether at least one lab feature is offered to the user now.

        The Lab tab is hidden when this is ``False``. Cached like :meth:`is_enabled`.

        Raises:
            ValidationError: ``user_id.invalid``.
            CapabilityError: if the storage keeps no lab choices.
        """
        if not len(self.registry):
            validate_user_id(user_id)
            return False  # nothing to offer: no need to read (or have) lab storage
        return any(state.visible for state in self._entry(user_id).states.values())

    def list_for_user(self, user_id: str) -> tuple[LabItem, ...]:
        """Return what the Lab tab shows the user, read fresh from storage.

        Listed: every feature offered to the user now (on or off, needing terms,
        waiting for a dependency), and each feature the user had turned on that is
        no longer available to them (ended, not eligible any more, switched off), so
        nobody wonders where it went. Graduated features are not listed (they are
        on for everyone). The order is the registry's (dependencies first).

        Raises:
            ValidationError: ``user_id.invalid``.
            CapabilityError: if the storage keeps no lab choices.
        """
        entry = self._load(user_id, snapshot=self.registry.snapshot, now=self.clock.now())
        items: list[LabItem] = []
        for key in entry.snapshot.order:
            state = entry.states[key]
            choice = entry.choices.get(key)
            if state.visible or (
                choice is not None and choice.enabled and state.reason in _UNOFFERED
            ):
                items.append(LabItem.of(entry.snapshot.features[key], state, choice))
        return tuple(items)

    # -- choices -------------------------------------------------------------------------

    def opt_in(
        self,
        user_id: str,
        key: str,
        *,
        accept_terms_version: str | None = None,
        actor: str | None = None,
    ) -> LabItem:
        """Turn a lab feature on for the user, recording the time and accepted terms.

        Turning on a feature that is already on (with the same terms) changes nothing
        and writes no event.

        Args:
            user_id: The user.
            key: The feature.
            accept_terms_version: The terms version the user accepts with this click
                (needed when the feature has terms the user has not accepted yet).
            actor: Who does it, for the audit log (``None``: the user).

        Returns:
            The feature's row in the Lab tab after the change.

        Raises:
            NotFoundError: ``lab_feature.not_found``.
            PolicyError: why it cannot be turned on: ``lab.depends_on`` (params
                ``dependency``, ``dependencies``), ``lab.needs_terms`` (params
                ``terms_version``, ``terms_url``), ``lab.not_eligible``,
                ``lab.not_started``, ``lab.ended``, ``lab.killed`` or ``lab.graduated``.
            ValidationError: ``user_id.invalid`` or ``accept_terms_version.*``.
            CapabilityError: if the storage keeps no lab choices.
        """
        errors = ErrorCollector()
        errors.capture(validate_user_id, user_id)
        if accept_terms_version is not None:
            errors.capture(
                validate_text,
                accept_terms_version,
                field="accept_terms_version",
                max_length=_TERMS_VERSION_MAX,
            )
        errors.raise_if_any()
        self.registry.get(key)
        events: list[AuditEvent] = []
        with self.storage.transaction() as tx:
            repo = self._repo(tx)
            choices = {c.key: c for c in repo.list_for_user(user_id)}
            now = self.clock.now()
            choice = check_opt_in(
                self.registry,
                user_id,
                key,
                choices,
                now,
                accept_terms_version=accept_terms_version,
            )
            previous = choices.get(key)
            if (
                previous is None
                or not previous.enabled
                or previous.terms_version_accepted != choice.terms_version_accepted
            ):
                repo.put(choice)
                events.append(self._event(LAB_OPTED_IN, choice, previous, actor=actor))
                tx.audit.append(events[-1])
                choices[key] = choice
        return self._after_change(user_id, choices, now, events, (key,))[0]

    def opt_out(self, user_id: str, key: str, *, actor: str | None = None) -> tuple[LabItem, ...]:
        """Turn a lab feature off for the user, and every feature that depends on it.

        Dependants the user had on (by choice, or by default while offered to them)
        are turned off in the same transaction, so they stay off when ``key`` is
        turned on again. Turning off a feature that is already off by the user's
        choice changes nothing.

        Args:
            user_id: The user.
            key: The feature.
            actor: Who does it, for the audit log (``None``: the user).

        Returns:
            The feature's row first, then one row per dependant turned off with it.

        Raises:
            NotFoundError: ``lab_feature.not_found``.
            PolicyError: ``lab.graduated`` (a graduated feature is on for everyone).
            ValidationError: ``user_id.invalid``.
            CapabilityError: if the storage keeps no lab choices.
        """
        validate_user_id(user_id)
        self.registry.get(key)
        events: list[AuditEvent] = []
        cascaded: list[str] = []
        with self.storage.transaction() as tx:
            repo = self._repo(tx)
            choices = {c.key: c for c in repo.list_for_user(user_id)}
            now = self.clock.now()
            choice = check_opt_out(self.registry, user_id, key, choices, now)
            snapshot = self.registry.snapshot
            before = evaluate(snapshot, user_id, choices, now)
            previous = choices.get(key)
            writes: list[tuple[OptIn, OptIn | None, str | None]] = []
            if previous is None or previous.enabled:
                writes.append((choice, previous, None))
            for dependant in dependants_of(self.registry, key):
                old = choices.get(dependant)
                wanted = (
                    old.enabled
                    if old is not None
                    else snapshot.features[dependant].default_on
                    and before[dependant].reason not in _UNOFFERED
                )
                if wanted:
                    off = check_opt_out(self.registry, user_id, dependant, choices, now)
                    writes.append((off, old, key))
                    cascaded.append(dependant)
            for new, old, cause in writes:
                repo.put(new)
                event = self._event(LAB_OPTED_OUT, new, old, actor=actor, turned_off_with=cause)
                tx.audit.append(event)
                events.append(event)
                choices[new.key] = new
        return self._after_change(user_id, choices, now, events, (key, *cascaded))

    def reset(self, user_id: str, *, actor: str | None = None) -> int:
        """Forget every lab choice of the user: each feature is back to its default.

        Also what a host calls when it deletes an account.

        Returns:
            How many choices were forgotten.

        Raises:
            ValidationError: ``user_id.invalid``.
            CapabilityError: if the storage keeps no lab choices.
        """
        validate_user_id(user_id)
        events: list[AuditEvent] = []
        with self.storage.transaction() as tx:
            count = self._repo(tx).delete_for_user(user_id)
            if count:
                events.append(
                    AuditEvent(
                        id=new_id(self.rng),
                        user_id=user_id,
                        kind=LAB_RESET,
                        at=self.clock.now(),
                        actor=actor,
                        details={"choices": count},
                    )
                )
                tx.audit.append(events[-1])
        if events:
            self._cache.invalidate(user_id)
        deliver(self.notifier, events)
        return count

    def clear_cache(self) -> None:
        """Drop every cached state (e.g. after changing choices behind the service's back)."""
        self._cache.clear()

    # -- internals -----------------------------------------------------------------------

    def _repo(self, tx: Transaction) -> LabRepository:
        return require_lab(tx, self.storage)

    def _event(
        self,
        kind: str,
        choice: OptIn,
        previous: OptIn | None,
        *,
        actor: str | None,
        turned_off_with: str | None = None,
    ) -> AuditEvent:
        changes = [
            FieldChange(
                field="enabled",
                old=None if previous is None else previous.enabled,
                new=choice.enabled,
            )
        ]
        old_terms = None if previous is None else previous.terms_version_accepted
        if old_terms != choice.terms_version_accepted:
            changes.append(
                FieldChange(
                    field="terms_version_accepted",
                    old=old_terms,
                    new=choice.terms_version_accepted,
                )
            )
        return AuditEvent(
            id=new_id(self.rng),
            user_id=choice.user_id,
            kind=kind,
            at=choice.at,
            actor=actor,
            subject=choice.key,
            changes=tuple(changes),
            details={} if turned_off_with is None else {"turned_off_with": turned_off_with},
        )

    def _after_change(
        self,
        user_id: str,
        choices: Mapping[str, OptIn],
        now: datetime,
        events: Sequence[AuditEvent],
        keys: Sequence[str],
    ) -> tuple[LabItem, ...]:
        if events:
            self._cache.invalidate(user_id)
        deliver(self.notifier, events)
        snapshot = self.registry.snapshot
        states = evaluate(snapshot, user_id, choices, now)
        return tuple(LabItem.of(snapshot.features[k], states[k], choices.get(k)) for k in keys)

    def _refresh_if_due(self) -> None:
        """Read the storage's change marker if ``refresh_interval`` has passed."""
        cache = self._cache
        if cache.monotonic() < cache.check_at:
            return
        if not cache.refresh_lock.acquire(blocking=False):
            return  # another thread is reading it right now
        try:
            known = cache.revision
            changed: Sequence[str] | None = None
            with self.storage.transaction(write=False) as tx:
                repo = self._repo(tx)
                current = repo.revision()
                if known is not None and current > known:
                    changed = repo.changed_since(known, limit=cache.max_users + 1)
            cache.apply(known, current, changed)
            cache.check_at = cache.monotonic() + cache.interval
        finally:
            cache.refresh_lock.release()

    def _entry(self, user_id: str) -> _Entry:
        """Return the user's cached entry, refreshed as needed.

        Only the registry or the time moved on: re-evaluated from the cached choices.
        """
        validate_user_id(user_id)
        self._refresh_if_due()
        cache = self._cache
        epoch = cache.epoch
        entry = cache.entries.get(user_id)
        snapshot = self.registry.snapshot
        now = self.clock.now()
        if entry is None:
            return self._load(user_id, snapshot=snapshot, now=now)
        if not entry.fresh(snapshot, now):
            entry = _Entry(snapshot, user_id, entry.choices, now)
            cache.store(user_id, entry, epoch=epoch, revision=None)
        return entry

    def _load(self, user_id: str, *, snapshot: RegistrySnapshot, now: datetime) -> _Entry:
        """Read the user's choices from storage, evaluate them and cache the result."""
        validate_user_id(user_id)
        cache = self._cache
        epoch = cache.epoch
        with self.storage.transaction(write=False) as tx:
            repo = self._repo(tx)
            revision = repo.revision()
            choices = {c.key: c for c in repo.list_for_user(user_id)}
        entry = _Entry(snapshot, user_id, choices, now)
        cache.store(user_id, entry, epoch=epoch, revision=revision)
        return entry

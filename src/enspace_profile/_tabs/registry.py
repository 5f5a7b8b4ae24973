"""The panel's tabs: which exist, in what order, and whether each is available.

A :class:`TabRegistry` holds the host's tab definitions. :meth:`TabRegistry.default`
has the product's six tabs in the product's order: Profile, Billing (coming soon),
Integrations, Dev, Lab and Security. A host changes statuses, adds its own tabs at a
chosen place, and adds per-user :class:`TabRule` callables; the Tabs service
(``panel.tabs``) applies them for one user.

Pure code: no storage, no I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, Protocol

import attrs

from enspace_profile._validation import ErrorCollector, validate_slug, validate_text
from enspace_profile.exceptions import AlreadyExistsError, NotFoundError, ValidationError

__all__ = [
    "TAB_BILLING",
    "TAB_DEV",
    "TAB_INTEGRATIONS",
    "TAB_LAB",
    "TAB_PROFILE",
    "TAB_SECURITY",
    "Tab",
    "TabNote",
    "TabRegistry",
    "TabRule",
    "TabStatus",
]

#: Keys of the built-in tabs (stable: hosts and UIs may rely on them).
TAB_PROFILE: Final = "profile"
TAB_BILLING: Final = "billing"
TAB_INTEGRATIONS: Final = "integrations"
TAB_DEV: Final = "dev"
TAB_LAB: Final = "lab"
TAB_SECURITY: Final = "security"

_LABEL_MAX: Final = 64
_MESSAGE_ID_MAX: Final = 200
_NOTE_TEXT_MAX: Final = 500


class TabStatus(StrEnum):
    """Whether a tab can be used."""

    AVAILABLE = "available"
    COMING_SOON = "coming_soon"
    HIDDEN = "hidden"
    DISABLED = "disabled"


def _validate_message_id(value: object, *, field: str) -> str:
    text = validate_text(value, field=field, max_length=_MESSAGE_ID_MAX)
    if any(c.isspace() for c in text):
        raise ValidationError.single(field, "invalid", "must not contain white space")
    return text


def _to_params(value: Mapping[str, str]) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise ValidationError.single("params", "invalid_type", "must be a mapping of text")
    return MappingProxyType(dict(value))


@attrs.frozen(kw_only=True)
class TabNote:
    """A short, translatable text about a tab: why it is unavailable, or a notice.

    >>> note = TabNote(message_id="tabs.security.managed", text="Managed by Okta.",
    ...                params={"provider": "Okta"})
    >>> note.params["provider"]
    'Okta'

    Attributes:
        message_id: Identifies the text in the host's translation catalog.
        text: The English text (a fallback, and what logs show).
        params: Values the translated text needs (``{"provider": "Okta"}``).

    Raises:
        ValidationError: for an empty or overlong text, a message id with white space,
            or params that are not text.
    """

    message_id: str
    text: str
    params: Mapping[str, str] = attrs.field(
        factory=lambda: MappingProxyType({}),
        converter=_to_params,
        hash=False,
        repr=lambda params: repr(dict(params)),
    )

    def __attrs_post_init__(self) -> None:
        errors = ErrorCollector()
        errors.capture(_validate_message_id, self.message_id, field="message_id")
        errors.capture(validate_text, self.text, field="text", max_length=_NOTE_TEXT_MAX)
        items: Iterable[tuple[object, object]] = self.params.items()
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in items):
            errors.add("params", "invalid_type", "keys and values must be text")
        errors.raise_if_any()


def _to_status(value: TabStatus | str) -> TabStatus:
    try:
        return TabStatus(value)
    except ValueError:
        raise ValidationError.single(
            "status",
            "invalid",
            f"must be one of: {', '.join(TabStatus)}",
            allowed=tuple(TabStatus),
        ) from None


@attrs.frozen(kw_only=True)
class Tab:
    """One tab of the panel, as shown to one user (or as the host defines it).

    >>> tab = Tab(key="reports", label="Reports", message_id="tabs.reports.label")
    >>> tab.status, tab.visible
    (<TabStatus.AVAILABLE: 'available'>, True)

    Attributes:
        key: Stable machine key (``"profile"``, ``"billing"``...): 2 to 64 of
            ``a-z 0-9 . _ -``.
        label: The English label.
        message_id: Identifies the label in the host's translation catalog.
        status: Available, coming soon, hidden or disabled.
        reason: Why the tab is not available (required when disabled; never set
            when available).
        notice: Something to tell the user on the tab (e.g. "managed by Okta").

    Raises:
        ValidationError: with every problem found.
    """

    key: str
    label: str
    message_id: str
    status: TabStatus = attrs.field(default=TabStatus.AVAILABLE, converter=_to_status)
    reason: TabNote | None = None
    notice: TabNote | None = None

    def __attrs_post_init__(self) -> None:
        errors = ErrorCollector()
        errors.capture(validate_slug, self.key, field="key")
        errors.capture(validate_text, self.label, field="label", max_length=_LABEL_MAX)
        errors.capture(_validate_message_id, self.message_id, field="message_id")
        for field in ("reason", "notice"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, TabNote):
                errors.add(field, "invalid_type", "must be a TabNote or None")
        if self.status is TabStatus.DISABLED and self.reason is None:
            errors.add("reason", "required", "a disabled tab needs a reason")
        if self.status is TabStatus.AVAILABLE and self.reason is not None:
            errors.add("reason", "not_allowed", "an available tab has no reason")
        errors.raise_if_any()

    @property
    def visible(self) -> bool:
        """Whether the tab is shown at all (every status but hidden)."""
        return self.status is not TabStatus.HIDDEN

    @property
    def usable(self) -> bool:
        """Whether the user can open the tab (available)."""
        return self.status is TabStatus.AVAILABLE

    def with_status(self, status: TabStatus | str, *, reason: TabNote | str | None = None) -> Tab:
        """Return a copy with another status.

        A plain-text ``reason`` gets the message id ``tabs.<key>.<status>``.

        Raises:
            ValidationError: ``status.invalid``, ``reason.required`` (disabled) or
                ``reason.not_allowed`` (available).
        """
        status = _to_status(status)
        if isinstance(reason, str):
            reason = TabNote(message_id=f"tabs.{self.key}.{status}", text=reason)
        return attrs.evolve(self, status=status, reason=reason)

    def with_notice(self, notice: TabNote | None) -> Tab:
        """Return a copy carrying ``notice`` (``None`` removes it)."""
        return attrs.evolve(self, notice=notice)


class TabRule(Protocol):
    """Shapes one tab for one user: receives the tab so far, returns it (changed or not).

    Rules must be quick and must keep the tab's key. Example: show a host's "Admin"
    tab only to administrators::

        def admins_only(user_id: str, tab: Tab) -> Tab:
            return tab if is_admin(user_id) else tab.with_status("hidden")
    """

    def __call__(self, user_id: str, tab: Tab, /) -> Tab:
        """Return the tab as this user should see it."""
        ...


def _builtin(key: str, label: str) -> Tab:
    return Tab(key=key, label=label, message_id=f"tabs.{key}.label")


def default_tabs() -> tuple[Tab, ...]:
    """Return the product's six tabs, in the product's order, with default statuses."""
    billing = _builtin(TAB_BILLING, "Billing").with_status(
        TabStatus.COMING_SOON,
        reason=TabNote(
            message_id="tabs.billing.coming_soon",
            text="Coming soon: here you will be able to view the details of your subscription.",
        ),
    )
    return (
        _builtin(TAB_PROFILE, "Profile"),
        billing,
        _builtin(TAB_INTEGRATIONS, "Integrations"),
        _builtin(TAB_DEV, "Dev"),
        _builtin(TAB_LAB, "Lab"),
        _builtin(TAB_SECURITY, "Security"),
    )


@attrs.frozen
class _State:
    tabs: tuple[Tab, ...]
    rules: Mapping[str, tuple[TabRule, ...]]


@attrs.define(eq=False)
class TabRegistry:
    """The host's tabs, in order, with their default statuses and per-user rules.

    Safe to read from many threads while it is changed: readers see one consistent
    state.

    >>> tabs = TabRegistry.default()
    >>> tabs.add(Tab(key="reports", label="Reports", message_id="tabs.reports.label"),
    ...          after="integrations")
    >>> tabs.set_status("billing", "available").status
    <TabStatus.AVAILABLE: 'available'>
    >>> [t.key for t in tabs]
    ['profile', 'billing', 'integrations', 'reports', 'dev', 'lab', 'security']
    """

    _state: _State = attrs.field(
        init=False, repr=False, factory=lambda: _State(tabs=(), rules=MappingProxyType({}))
    )
    _lock: threading.Lock = attrs.field(init=False, repr=False, factory=threading.Lock)

    @classmethod
    def default(cls) -> TabRegistry:
        """Return a registry holding the product's six tabs (Billing: coming soon)."""
        return cls.of(default_tabs())

    @classmethod
    def of(cls, tabs: Iterable[Tab]) -> TabRegistry:
        """Return a registry holding exactly ``tabs``, in that order.

        Raises:
            AlreadyExistsError: ``tab.already_exists`` if a key repeats.
        """
        registry = cls()
        for tab in tabs:
            registry.add(tab)
        return registry

    def __repr__(self) -> str:
        return f"TabRegistry({[f'{t.key}:{t.status}' for t in self._state.tabs]})"

    def __iter__(self) -> Iterator[Tab]:
        """Iterate over the tabs in display order."""
        return iter(self._state.tabs)

    def __len__(self) -> int:
        return len(self._state.tabs)

    def __contains__(self, key: object) -> bool:
        return any(t.key == key for t in self._state.tabs)

    @property
    def tabs(self) -> tuple[Tab, ...]:
        """The tabs in display order, with their default statuses."""
        return self._state.tabs

    def rules_for(self, key: str) -> tuple[TabRule, ...]:
        """Return the per-user rules added for the tab ``key``, in order."""
        return self._state.rules.get(key, ())

    def get(self, key: str) -> Tab:
        """Return the tab with ``key``.

        Raises:
            NotFoundError: ``tab.not_found``.
        """
        for tab in self._state.tabs:
            if tab.key == key:
                return tab
        raise NotFoundError("tab", str(key))

    def add(self, tab: Tab, *, after: str | None = None, before: str | None = None) -> None:
        """Add a tab: at the end, or right after / before an existing tab.

        Raises:
            AlreadyExistsError: ``tab.already_exists``.
            NotFoundError: ``tab.not_found`` if ``after`` / ``before`` is unknown.
            ValidationError: ``position.ambiguous`` if both are given;
                ``tab.invalid_type`` if ``tab`` is not a :class:`Tab`.
        """
        if not isinstance(tab, Tab):
            raise ValidationError.single("tab", "invalid_type", "must be a Tab")
        if after is not None and before is not None:
            raise ValidationError.single(
                "position", "ambiguous", "give either after= or before=, not both"
            )
        with self._lock:
            tabs = list(self._state.tabs)
            if any(t.key == tab.key for t in tabs):
                raise AlreadyExistsError("tab", tab.key, field="key")
            if after is not None:
                index = self._index(tabs, after) + 1
            elif before is not None:
                index = self._index(tabs, before)
            else:
                index = len(tabs)
            tabs.insert(index, tab)
            self._state = attrs.evolve(self._state, tabs=tuple(tabs))

    def update(self, tab: Tab) -> None:
        """Replace the tab that has ``tab.key`` (to change its label or notice), in place.

        Raises:
            NotFoundError: ``tab.not_found``.
        """
        with self._lock:
            tabs = list(self._state.tabs)
            tabs[self._index(tabs, tab.key)] = tab
            self._state = attrs.evolve(self._state, tabs=tuple(tabs))

    def set_status(
        self, key: str, status: TabStatus | str, *, reason: TabNote | str | None = None
    ) -> Tab:
        """Change a tab's default status (for every user); return the tab.

        Args:
            key: The tab.
            status: The new status.
            reason: Why (required for ``disabled``, refused for ``available``); a plain
                text gets the message id ``tabs.<key>.<status>``.

        Raises:
            NotFoundError: ``tab.not_found``.
            ValidationError: ``status.invalid``, ``reason.required`` or
                ``reason.not_allowed``.
        """
        with self._lock:
            tabs = list(self._state.tabs)
            index = self._index(tabs, key)
            tabs[index] = tabs[index].with_status(status, reason=reason)
            self._state = attrs.evolve(self._state, tabs=tuple(tabs))
            return tabs[index]

    def add_rule(self, key: str, rule: TabRule) -> None:
        """Add a per-user rule for the tab ``key`` (run after earlier rules).

        Raises:
            NotFoundError: ``tab.not_found``.
            ValidationError: ``rule.invalid_type`` if ``rule`` is not callable.
        """
        if not callable(rule):
            raise ValidationError.single("rule", "invalid_type", "must be callable")
        with self._lock:
            self._index(list(self._state.tabs), key)
            rules: dict[str, tuple[TabRule, ...]] = dict(self._state.rules)
            rules[key] = (*rules.get(key, ()), rule)
            self._state = attrs.evolve(self._state, rules=MappingProxyType(rules))

    @staticmethod
    def _index(tabs: list[Tab], key: Any) -> int:
        for index, tab in enumerate(tabs):
            if tab.key == key:
                return index
        raise NotFoundError("tab", str(key))

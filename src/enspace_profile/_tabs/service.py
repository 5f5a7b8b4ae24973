"""The tabs service: the panel's tabs as one user sees them (``panel.tabs``).

Per-user facts come in through small callables, so this module depends on no other
tab's service:

* :class:`LabVisibility` (``user_id -> bool``): whether any lab feature is offered
  to the user; the Lab tab is hidden when none is
  (:meth:`LabService.has_visible_features` fits);
* :class:`AccountManagementLookup` (``user_id -> ManagedBy | None``): which identity
  provider manages the user's credentials; the Security tab then carries a notice
  naming it.

The panel wires them into rules (:func:`hide_lab_without_features`,
:func:`notice_when_managed`); the host's own rules from the registry run after them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Protocol

import attrs

from enspace_profile._security.accounts import ManagedBy
from enspace_profile._tabs.registry import (
    TAB_LAB,
    TAB_SECURITY,
    Tab,
    TabNote,
    TabRegistry,
    TabRule,
    TabStatus,
)
from enspace_profile._validation import validate_user_id
from enspace_profile.exceptions import ValidationError

__all__ = [
    "NO_LAB_FEATURES",
    "AccountManagementLookup",
    "LabVisibility",
    "TabService",
    "hide_lab_without_features",
    "managed_notice",
    "notice_when_managed",
]

#: The reason the Lab tab is hidden from a user no lab feature is offered to.
NO_LAB_FEATURES: Final = TabNote(
    message_id="tabs.lab.no_features",
    text="No lab features are offered to this account right now.",
)


class LabVisibility(Protocol):
    """Tells whether at least one lab feature is offered to a user."""

    def __call__(self, user_id: str, /) -> bool:
        """Return ``True`` if the user's Lab list has something to act on."""
        ...


class AccountManagementLookup(Protocol):
    """Tells which identity provider manages a user's credentials, if any."""

    def __call__(self, user_id: str, /) -> ManagedBy | None:
        """Return the provider (SSO-managed account) or ``None`` (local account)."""
        ...


def hide_lab_without_features(lab_visible: LabVisibility) -> TabRule:
    """Return a rule that hides the Lab tab from users no lab feature is offered to.

    A Lab tab the host made unavailable (coming soon, disabled, hidden) is left alone.
    """

    def rule(user_id: str, tab: Tab, /) -> Tab:
        if tab.status is TabStatus.AVAILABLE and not lab_visible(user_id):
            return tab.with_status(TabStatus.HIDDEN, reason=NO_LAB_FEATURES)
        return tab

    return rule


def managed_notice(managed_by: ManagedBy) -> TabNote:
    """Return the Security tab's notice for an account managed by ``managed_by``."""
    params = {"provider": managed_by.provider}
    where = ""
    if managed_by.manage_url is not None:
        params["manage_url"] = managed_by.manage_url
        where = f" at {managed_by.manage_url}"
    return TabNote(
        message_id="tabs.security.managed_by_provider",
        text=(
            f"This account's security settings are managed by {managed_by.provider}: "
            f"change them{where}."
        ),
        params=params,
    )


def notice_when_managed(lookup: AccountManagementLookup) -> TabRule:
    """Return a rule that puts a notice naming the provider on an SSO account's Security tab."""

    def rule(user_id: str, tab: Tab, /) -> Tab:
        if tab.status is TabStatus.HIDDEN:
            return tab
        managed_by = lookup(user_id)
        return tab if managed_by is None else tab.with_notice(managed_notice(managed_by))

    return rule


@attrs.frozen
class TabService:
    """The panel's tabs for one user. Reach it as ``panel.tabs``.

    Args:
        registry: The host's tabs (order, default statuses, host rules).
        lab_visible: Whether any lab feature is offered to a user (``None``: the Lab
            tab is left as the registry says).
        managed_by: Which identity provider manages a user's credentials (``None``:
            no Security notice).

    >>> from enspace_profile import TabRegistry, TabService
    >>> service = TabService(TabRegistry.default())
    >>> [(t.key, str(t.status)) for t in service.for_user("u1")][:2]
    [('profile', 'available'), ('billing', 'coming_soon')]
    """

    registry: TabRegistry
    lab_visible: LabVisibility | None = None
    managed_by: AccountManagementLookup | None = None
    _rules: Mapping[str, tuple[TabRule, ...]] = attrs.field(
        init=False,
        repr=False,
        eq=False,
        default=attrs.Factory(lambda self: self._builtin_rules(), takes_self=True),
    )

    def _builtin_rules(self) -> Mapping[str, tuple[TabRule, ...]]:
        rules: dict[str, tuple[TabRule, ...]] = {}
        if self.lab_visible is not None:
            rules[TAB_LAB] = (hide_lab_without_features(self.lab_visible),)
        if self.managed_by is not None:
            rules[TAB_SECURITY] = (notice_when_managed(self.managed_by),)
        return MappingProxyType(rules)

    def for_user(self, user_id: str) -> tuple[Tab, ...]:
        """Return every tab, in display order, as ``user_id`` should see it.

        Hidden tabs are included (status ``hidden``) so a host can tell "hidden" from
        "unknown"; show only those whose :attr:`Tab.visible` is true.

        Raises:
            ValidationError: ``user_id.invalid``, or ``rule.changed_key`` if a rule
                returned a different tab.
        """
        validate_user_id(user_id)
        return tuple(self._shape(user_id, tab) for tab in self.registry.tabs)

    def get_for_user(self, user_id: str, key: str) -> Tab:
        """Return one tab as ``user_id`` should see it.

        Raises:
            NotFoundError: ``tab.not_found``.
            ValidationError: as :meth:`for_user`.
        """
        validate_user_id(user_id)
        return self._shape(user_id, self.registry.get(key))

    def _shape(self, user_id: str, tab: Tab) -> Tab:
        key = tab.key
        for rule in (*self._rules.get(key, ()), *self.registry.rules_for(key)):
            shaped: object = rule(user_id, tab)
            if not isinstance(shaped, Tab) or shaped.key != key:
                raise ValidationError.single(
                    "rule", "changed_key", f"a rule for tab {key!r} must return that tab"
                )
            tab = shaped
        return tab

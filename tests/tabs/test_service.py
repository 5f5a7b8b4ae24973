from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from enspace_profile import (
    Audience,
    FixedClock,
    LabFeature,
    LabRegistry,
    ManagedBy,
    MemoryStorage,
    SQLiteStorage,
    Tab,
    TabRegistry,
    TabService,
    TabStatus,
    UserPanel,
    ValidationError,
)
from enspace_profile.exceptions import NotFoundError
from enspace_profile.typing import Storage

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
OKTA = ManagedBy(provider="Okta", manage_url="https://acme.okta.com/enduser/settings")


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    s: Storage = MemoryStorage() if request.param == "memory" else SQLiteStorage(tmp_path / "p.db")
    yield s
    s.close()


def statuses(tabs: tuple[Tab, ...]) -> dict[str, TabStatus]:
    return {t.key: t.status for t in tabs}


class TestPanelTabs:
    def test_default_panel_lists_six_tabs(self, storage: Storage) -> None:
        """A default panel lists the six tabs in order; without lab features the Lab is hidden."""
        panel = UserPanel(storage=storage)
        tabs = panel.tabs.for_user("u1")
        assert [t.key for t in tabs] == [
            "profile",
            "billing",
            "integrations",
            "dev",
            "lab",
            "security",
        ]
        assert statuses(tabs) == {
            "profile": TabStatus.AVAILABLE,
            "billing": TabStatus.COMING_SOON,
            "integrations": TabStatus.AVAILABLE,
            "dev": TabStatus.AVAILABLE,
            "lab": TabStatus.HIDDEN,
            "security": TabStatus.AVAILABLE,
        }
        lab = tabs[4]
        assert lab.reason is not None
        assert lab.reason.message_id == "tabs.lab.no_features"

    def test_lab_tab_shows_when_a_feature_is_offered(self, storage: Storage) -> None:
        """The Lab tab is available to a user offered a feature and hidden from the others."""
        lab = LabRegistry.of(
            [LabFeature(key="insiders", title="Insiders", audience=Audience.allow_list(["u1"]))]
        )
        panel = UserPanel(storage=storage, lab=lab)
        assert panel.tabs.get_for_user("u1", "lab").status is TabStatus.AVAILABLE
        assert panel.tabs.get_for_user("u2", "lab").status is TabStatus.HIDDEN

    def test_lab_tab_follows_the_registry(self, storage: Storage) -> None:
        """Killing the only feature hides the Lab tab; releasing it shows it again."""
        lab = LabRegistry.of([LabFeature(key="new-editor", title="New editor")])
        panel = UserPanel(storage=storage, lab=lab)
        assert panel.tabs.get_for_user("u1", "lab").visible is True
        lab.set_kill_switch("new-editor", on=True)
        assert panel.tabs.get_for_user("u1", "lab").visible is False
        lab.set_kill_switch("new-editor", on=False)
        assert panel.tabs.get_for_user("u1", "lab").visible is True

    def test_lab_tab_hides_when_the_last_feature_ends(self, storage: Storage) -> None:
        """A user whose only feature ended (even one they had on) no longer sees the Lab tab."""
        clock = FixedClock(T0)
        lab = LabRegistry.of(
            [LabFeature(key="trial", title="Trial", ends_at=T0 + timedelta(days=1))]
        )
        panel = UserPanel(storage=storage, lab=lab, clock=clock)
        panel.lab.opt_in("u1", "trial")
        assert panel.tabs.get_for_user("u1", "lab").visible is True
        clock.advance(days=1)
        assert panel.tabs.get_for_user("u1", "lab").visible is False

    def test_host_status_wins_over_lab_facts(self, storage: Storage) -> None:
        """A Lab tab the host disabled stays disabled, with the host's reason."""
        tabs = TabRegistry.default()
        tabs.set_status("lab", "disabled", reason="The lab is closed for maintenance.")
        panel = UserPanel(storage=storage, tabs=tabs)
        lab = panel.tabs.get_for_user("u1", "lab")
        assert lab.status is TabStatus.DISABLED
        assert lab.reason is not None
        assert lab.reason.text == "The lab is closed for maintenance."

    def test_host_tabs_and_statuses_are_used(self, storage: Storage) -> None:
        """A panel built with a host registry shows its extra tab and changed statuses."""
        tabs = TabRegistry.default()
        tabs.add(Tab(key="reports", label="Reports", message_id="host.reports"), after="dev")
        tabs.set_status("billing", "available")
        panel = UserPanel(storage=storage, tabs=tabs)
        shown = panel.tabs.for_user("u1")
        assert [t.key for t in shown][3:5] == ["dev", "reports"]
        assert statuses(shown)["billing"] is TabStatus.AVAILABLE

    def test_invalid_user_id_is_refused(self, storage: Storage) -> None:
        """An empty user id raises ValidationError."""
        with pytest.raises(ValidationError):
            UserPanel(storage=storage).tabs.for_user("")

    def test_unknown_tab_raises_not_found(self, storage: Storage) -> None:
        """Asking for an unknown tab raises NotFoundError."""
        with pytest.raises(NotFoundError):
            UserPanel(storage=storage).tabs.get_for_user("u1", "reports")


class TestManagedAccounts:
    def test_panel_wires_the_security_tab(self, storage: Storage) -> None:
        """Through the panel, an account set to SSO gets the notice; a local one does not."""
        panel = UserPanel(storage=storage)
        panel.security.set_managed("sso", provider="Okta", manage_url=OKTA.manage_url)
        notice = panel.tabs.get_for_user("sso", "security").notice
        assert notice is not None
        assert notice.params["provider"] == "Okta"
        assert panel.tabs.get_for_user("local", "security").notice is None

    def test_sso_account_gets_a_notice_naming_the_provider(self) -> None:
        """For an SSO-managed account the Security tab carries a notice naming the provider."""
        service = TabService(
            TabRegistry.default(), managed_by=lambda user_id: OKTA if user_id == "sso" else None
        )
        security = service.get_for_user("sso", "security")
        assert security.status is TabStatus.AVAILABLE
        assert security.notice is not None
        assert security.notice.message_id == "tabs.security.managed_by_provider"
        assert dict(security.notice.params) == {
            "provider": "Okta",
            "manage_url": "https://acme.okta.com/enduser/settings",
        }
        assert "Okta" in security.notice.text
        assert service.get_for_user("local", "security").notice is None

    def test_provider_without_url(self) -> None:
        """Without a management URL the notice names only the provider."""
        service = TabService(
            TabRegistry.default(), managed_by=lambda user_id: ManagedBy(provider="Entra ID")
        )
        notice = service.get_for_user("u1", "security").notice
        assert notice is not None
        assert dict(notice.params) == {"provider": "Entra ID"}

    def test_hidden_security_tab_is_not_asked_about(self) -> None:
        """A hidden Security tab gets no notice, and the lookup is not called."""
        tabs = TabRegistry.default()
        tabs.set_status("security", "hidden")
        asked: list[str] = []

        def lookup(user_id: str) -> ManagedBy | None:
            asked.append(user_id)
            return OKTA

        service = TabService(tabs, managed_by=lookup)
        assert service.get_for_user("u1", "security").notice is None
        assert asked == []


class TestHostRules:
    def test_rules_shape_tabs_per_user_after_built_in_facts(self) -> None:
        """Host rules run per user, after the built-in facts, and can override them."""
        tabs = TabRegistry.default()
        tabs.add(Tab(key="admin", label="Admin", message_id="host.admin"))
        tabs.add_rule(
            "admin", lambda user_id, tab: tab if user_id == "root" else tab.with_status("hidden")
        )
        tabs.add_rule("lab", lambda user_id, tab: tab.with_status("available"))
        service = TabService(tabs, lab_visible=lambda user_id: False)
        assert statuses(service.for_user("root"))["admin"] is TabStatus.AVAILABLE
        assert statuses(service.for_user("u1"))["admin"] is TabStatus.HIDDEN
        assert statuses(service.for_user("u1"))["lab"] is TabStatus.AVAILABLE

    def test_rule_returning_another_tab_is_refused(self) -> None:
        """A rule must return the tab it was given (same key)."""
        tabs = TabRegistry.default()
        tabs.add_rule("dev", lambda user_id, tab: Tab(key="other", label="O", message_id="o"))
        with pytest.raises(ValidationError) as info:
            TabService(tabs).for_user("u1")
        assert info.value.codes == ("rule.changed_key",)

    def test_without_facts_the_registry_is_shown_as_is(self) -> None:
        """A service with no per-user facts shows the registry's statuses unchanged."""
        service = TabService(TabRegistry.default())
        assert service.for_user("u1") == TabRegistry.default().tabs

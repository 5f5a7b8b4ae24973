from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enspace_profile import Tab, TabNote, TabRegistry, TabStatus
from enspace_profile.exceptions import AlreadyExistsError, NotFoundError, ValidationError


def tab(key: str, **kwargs: object) -> Tab:
    return Tab(key=key, label=key.title(), message_id=f"tabs.{key}.label", **kwargs)  # type: ignore[arg-type]


class TestDefaultTabs:
    def test_six_tabs_in_the_products_order(self) -> None:
        """The default registry has the product's six tabs, in the product's order."""
        tabs = TabRegistry.default()
        assert [(t.key, t.label) for t in tabs] == [
            ("profile", "Profile"),
            ("billing", "Billing"),
            ("integrations", "Integrations"),
            ("dev", "Dev"),
            ("lab", "Lab"),
            ("security", "Security"),
        ]
        assert [t.message_id for t in tabs] == [f"tabs.{t.key}.label" for t in tabs]

    def test_billing_is_coming_soon_with_its_reason(self) -> None:
        """Billing is 'coming soon' with a translatable reason; the others are available."""
        tabs = {t.key: t for t in TabRegistry.default()}
        billing = tabs.pop("billing")
        assert billing.status is TabStatus.COMING_SOON
        assert billing.reason is not None
        assert billing.reason.message_id == "tabs.billing.coming_soon"
        assert "subscription" in billing.reason.text
        assert all(t.status is TabStatus.AVAILABLE and t.reason is None for t in tabs.values())

    def test_each_default_registry_is_independent(self) -> None:
        """Changing one default registry leaves a new one untouched."""
        TabRegistry.default().set_status("billing", TabStatus.AVAILABLE)
        assert TabRegistry.default().get("billing").status is TabStatus.COMING_SOON


class TestAdd:
    @pytest.mark.parametrize(
        ("position", "expected"),
        [
            ({}, ["profile", "billing", "integrations", "dev", "lab", "security", "new"]),
            (
                {"after": "dev"},
                ["profile", "billing", "integrations", "dev", "new", "lab", "security"],
            ),
            (
                {"before": "profile"},
                ["new", "profile", "billing", "integrations", "dev", "lab", "security"],
            ),
            (
                {"after": "security"},
                ["profile", "billing", "integrations", "dev", "lab", "security", "new"],
            ),
        ],
    )
    def test_places_the_tab(self, position: dict[str, str], expected: list[str]) -> None:
        """A host tab goes at the end, or right after / before the named tab."""
        tabs = TabRegistry.default()
        tabs.add(tab("new"), **position)
        assert [t.key for t in tabs] == expected

    def test_unknown_anchor_raises_not_found(self) -> None:
        """Placing a tab after an unknown key raises NotFoundError and adds nothing."""
        tabs = TabRegistry.default()
        with pytest.raises(NotFoundError) as info:
            tabs.add(tab("new"), after="billng")
        assert info.value.code == "tab.not_found"
        assert "new" not in tabs

    def test_both_anchors_are_refused(self) -> None:
        """Giving both after= and before= is ambiguous."""
        with pytest.raises(ValidationError) as info:
            TabRegistry.default().add(tab("new"), after="dev", before="lab")
        assert info.value.codes == ("position.ambiguous",)

    def test_duplicate_key_is_refused(self) -> None:
        """A key can be used once."""
        with pytest.raises(AlreadyExistsError) as info:
            TabRegistry.default().add(tab("lab"))
        assert info.value.code == "tab.already_exists"

    def test_only_tabs_can_be_added(self) -> None:
        """Adding something that is not a Tab raises ValidationError."""
        with pytest.raises(ValidationError):
            TabRegistry().add({"key": "x"})  # type: ignore[arg-type]

    @settings(max_examples=100)
    @given(st.data())
    def test_after_always_means_right_after(self, data: st.DataObject) -> None:
        """Whatever was added before, a tab added after k sits right after k, others in order."""
        tabs = TabRegistry.default()
        for n in range(data.draw(st.integers(0, 6))):
            before = [t.key for t in tabs]
            anchor = data.draw(st.sampled_from(before))
            tabs.add(tab(f"host-{n}"), after=anchor)
            after = [t.key for t in tabs]
            assert after[after.index(anchor) + 1] == f"host-{n}"
            assert [k for k in after if k != f"host-{n}"] == before


class TestStatus:
    def test_set_status_changes_the_default(self) -> None:
        """A host can make Billing available and disable Dev with a reason."""
        tabs = TabRegistry.default()
        billing = tabs.set_status("billing", "available")
        assert (billing.status, billing.reason) == (TabStatus.AVAILABLE, None)
        dev = tabs.set_status("dev", TabStatus.DISABLED, reason="API access is paused.")
        assert dev.reason == TabNote(message_id="tabs.dev.disabled", text="API access is paused.")
        assert tabs.get("dev") == dev

    def test_disabled_needs_a_reason(self) -> None:
        """A disabled tab without a reason is refused."""
        with pytest.raises(ValidationError) as info:
            TabRegistry.default().set_status("dev", "disabled")
        assert info.value.codes == ("reason.required",)

    def test_available_refuses_a_reason(self) -> None:
        """An available tab has nothing to explain."""
        with pytest.raises(ValidationError) as info:
            TabRegistry.default().set_status("dev", "available", reason="Because.")
        assert info.value.codes == ("reason.not_allowed",)

    def test_unknown_status_is_refused(self) -> None:
        """Only the four statuses exist."""
        with pytest.raises(ValidationError) as info:
            TabRegistry.default().set_status("dev", "maybe")
        assert info.value.codes == ("status.invalid",)

    def test_unknown_tab_raises_not_found(self) -> None:
        """Changing an unknown tab raises NotFoundError."""
        with pytest.raises(NotFoundError):
            TabRegistry.default().set_status("reports", "hidden")

    @pytest.mark.parametrize(
        ("status", "visible", "usable"),
        [("available", True, True), ("coming_soon", True, False), ("hidden", False, False)],
    )
    def test_visible_and_usable(self, status: str, visible: bool, usable: bool) -> None:
        """Only hidden tabs are invisible; only available tabs are usable."""
        shown = tab("xy").with_status(status)
        assert (shown.visible, shown.usable) == (visible, usable)


class TestUpdate:
    def test_replaces_in_place(self) -> None:
        """update changes a tab's label and keeps its place."""
        tabs = TabRegistry.default()
        tabs.update(Tab(key="dev", label="Developers", message_id="host.dev"))
        assert [t.label for t in tabs][3] == "Developers"

    def test_unknown_tab_raises_not_found(self) -> None:
        """Updating an unknown tab raises NotFoundError."""
        with pytest.raises(NotFoundError):
            TabRegistry.default().update(tab("reports"))


class TestTab:
    @pytest.mark.parametrize(
        ("fields", "codes"),
        [
            ({"key": "Bad Key"}, ("key.invalid",)),
            ({"label": ""}, ("label.required",)),
            ({"label": "x" * 65}, ("label.too_long",)),
            ({"message_id": "tabs profile"}, ("message_id.invalid",)),
            ({"reason": "text"}, ("reason.invalid_type", "reason.not_allowed")),
            ({"notice": "text"}, ("notice.invalid_type",)),
            (
                {"key": "", "label": "", "message_id": ""},
                ("key.too_short", "label.required", "message_id.required"),
            ),
        ],
    )
    def test_invalid_fields_are_all_reported(
        self, fields: dict[str, object], codes: tuple[str, ...]
    ) -> None:
        """Every invalid field is reported at once."""
        values: dict[str, object] = {"key": "ok", "label": "Ok", "message_id": "tabs.ok.label"}
        values.update(fields)
        with pytest.raises(ValidationError) as info:
            Tab(**values)  # type: ignore[arg-type]
        assert info.value.codes == codes

    def test_is_frozen(self) -> None:
        """A tab cannot be changed in place."""
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            tab("xy").status = TabStatus.HIDDEN  # type: ignore[misc]

    def test_status_accepts_its_value(self) -> None:
        """A status may be given as its string value."""
        assert tab("xy", status="coming_soon").status is TabStatus.COMING_SOON


class TestTabNote:
    def test_params_are_read_only(self) -> None:
        """A note's params cannot be changed after creation."""
        source = {"provider": "Okta"}
        note = TabNote(message_id="m.id", text="Managed by Okta.", params=source)
        source["provider"] = "Other"
        assert note.params["provider"] == "Okta"
        with pytest.raises(TypeError):
            note.params["provider"] = "x"  # type: ignore[index]

    @pytest.mark.parametrize(
        ("fields", "codes"),
        [
            ({"text": ""}, ("text.required",)),
            ({"text": "x" * 501}, ("text.too_long",)),
            ({"message_id": "a b"}, ("message_id.invalid",)),
            ({"params": {"n": 1}}, ("params.invalid_type",)),
        ],
    )
    def test_invalid_notes_are_refused(
        self, fields: dict[str, object], codes: tuple[str, ...]
    ) -> None:
        """Empty or long texts, spaced message ids and non-text params are refused."""
        values: dict[str, object] = {"message_id": "m.id", "text": "Fine."}
        values.update(fields)
        with pytest.raises(ValidationError) as info:
            TabNote(**values)  # type: ignore[arg-type]
        assert info.value.codes == codes


class TestRules:
    def test_rule_for_unknown_tab_is_refused(self) -> None:
        """A rule must name an existing tab."""
        with pytest.raises(NotFoundError):
            TabRegistry.default().add_rule("reports", lambda user_id, t: t)

    def test_rule_must_be_callable(self) -> None:
        """A rule that cannot be called is refused."""
        with pytest.raises(ValidationError) as info:
            TabRegistry.default().add_rule("dev", "hide")  # type: ignore[arg-type]
        assert info.value.codes == ("rule.invalid_type",)

    def test_rules_are_kept_in_order(self) -> None:
        """Rules for a tab are returned in the order they were added."""

        def first(user_id: str, t: Tab, /) -> Tab:
            return t

        def second(user_id: str, t: Tab, /) -> Tab:
            return t

        tabs = TabRegistry.default()
        tabs.add_rule("dev", first)
        tabs.add_rule("dev", second)
        assert tabs.rules_for("dev") == (first, second)
        assert tabs.rules_for("lab") == ()

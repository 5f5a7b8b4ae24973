from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest

from enspace_profile import (
    Audience,
    AuditEvent,
    FixedClock,
    LabCachePolicy,
    LabFeature,
    LabItem,
    LabRegistry,
    MemoryStorage,
    NotFoundError,
    Reason,
    SeededRandom,
    SQLiteStorage,
    Terms,
    UserPanel,
    ValidationError,
    converter,
)
from enspace_profile.exceptions import CapabilityError, PolicyError
from enspace_profile.typing import AuditLog, LabRepository, Storage, SupportsLab, Transaction

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
USER = "user-1"
TERMS = Terms(version="2026-03", url="https://example.com/lab/terms")


class FakeMonotonic:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def feature(key: str, **kwargs: object) -> LabFeature:
    return LabFeature(key=key, title=key.replace("-", " ").title(), **kwargs)  # type: ignore[arg-type]


def standard_registry() -> LabRegistry:
    return LabRegistry.of(
        [
            feature("new-editor"),
            feature("ai-assist", depends_on=("new-editor",)),
            feature("ai-summary", depends_on=("ai-assist",), default_on=True),
            feature("dark-sidebar", default_on=True),
            feature("beta-search", terms=TERMS),
            feature("insiders", audience=Audience.allow_list(["someone-else"])),
            feature("old-export", graduated=True),
            feature("window", starts_at=T0 + timedelta(days=1), ends_at=T0 + timedelta(days=2)),
        ]
    )


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    s: Storage = MemoryStorage() if request.param == "memory" else SQLiteStorage(tmp_path / "p.db")
    yield s
    s.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def monotonic() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def registry() -> LabRegistry:
    return standard_registry()


@pytest.fixture
def events() -> list[AuditEvent]:
    return []


@pytest.fixture
def make_panel(
    storage: Storage,
    clock: FixedClock,
    monotonic: FakeMonotonic,
    registry: LabRegistry,
    events: list[AuditEvent],
) -> Callable[..., UserPanel]:
    def make(**options: object) -> UserPanel:
        settings: dict[str, object] = {
            "storage": storage,
            "clock": clock,
            "rng": SeededRandom(7),
            "lab": registry,
            "lab_cache": LabCachePolicy(monotonic=monotonic),
            "notifier": events.append,
        }
        settings.update(options)
        return UserPanel(**settings)  # type: ignore[arg-type]

    return make


@pytest.fixture
def panel(make_panel: Callable[..., UserPanel]) -> UserPanel:
    return make_panel()


def lab_events(panel: UserPanel, user_id: str = USER) -> list[AuditEvent]:
    with panel.storage.transaction(write=False) as tx:
        return [e for e in tx.audit.list_for_user(user_id) if e.kind.startswith("lab.")]


def keys(items: tuple[LabItem, ...]) -> list[str]:
    return [item.key for item in items]


class TestIsEnabled:
    @pytest.mark.parametrize(
        ("key", "expected"),
        [
            ("new-editor", False),
            ("dark-sidebar", True),
            ("old-export", True),
            ("insiders", False),
            ("window", False),
            ("beta-search", False),
        ],
    )
    def test_answers_from_the_rules(self, panel: UserPanel, key: str, expected: bool) -> None:
        """Without choices a feature is on by default, when graduated, and otherwise off."""
        assert panel.lab.is_enabled(USER, key) is expected
        assert panel.lab.is_enabled(USER, key) is expected  # warm: same answer

    def test_unknown_key_raises_cold_and_warm(self, panel: UserPanel) -> None:
        """A typo raises NotFoundError both before and after the user's states are cached."""
        with pytest.raises(NotFoundError) as info:
            panel.lab.is_enabled(USER, "new-editr")
        assert info.value.code == "lab_feature.not_found"
        assert panel.lab.is_enabled(USER, "new-editor") is False
        with pytest.raises(NotFoundError):
            panel.lab.is_enabled(USER, "new-editr")

    @pytest.mark.parametrize("user_id", ["", "bad\x00id", None, ["u1"]])
    def test_invalid_user_id_is_refused(self, panel: UserPanel, user_id: object) -> None:
        """An empty, non-printable or non-text user id raises ValidationError, cold or warm."""
        panel.lab.is_enabled(USER, "new-editor")
        with pytest.raises(ValidationError) as info:
            panel.lab.is_enabled(user_id, "new-editor")  # type: ignore[arg-type]
        assert info.value.codes == ("user_id.invalid",)

    @pytest.mark.parametrize("key", [None, ["new-editor"], 42])
    def test_non_text_key_raises_not_found(self, panel: UserPanel, key: object) -> None:
        """A key that is not text is an unknown feature, never a raw TypeError."""
        panel.lab.is_enabled(USER, "new-editor")
        with pytest.raises(NotFoundError):
            panel.lab.is_enabled(USER, key)  # type: ignore[arg-type]

    def test_own_choices_are_seen_immediately(self, panel: UserPanel) -> None:
        """Opting in and out through the service changes is_enabled at once, even warm."""
        assert panel.lab.is_enabled(USER, "new-editor") is False
        panel.lab.opt_in(USER, "new-editor")
        assert panel.lab.is_enabled(USER, "new-editor") is True
        panel.lab.opt_out(USER, "new-editor")
        assert panel.lab.is_enabled(USER, "new-editor") is False

    def test_reset_is_seen_immediately(self, panel: UserPanel) -> None:
        """After reset, a cached user is back to the defaults at once."""
        panel.lab.opt_out(USER, "dark-sidebar")
        assert panel.lab.is_enabled(USER, "dark-sidebar") is False
        panel.lab.reset(USER)
        assert panel.lab.is_enabled(USER, "dark-sidebar") is True

    def test_enabled_keys_lists_every_feature_on(self, panel: UserPanel) -> None:
        """enabled_keys names exactly the features is_enabled says are on."""
        panel.lab.opt_in(USER, "new-editor")
        on = panel.lab.enabled_keys(USER)
        assert on == {"new-editor", "dark-sidebar", "old-export"}
        assert on == {f.key for f in panel.lab.registry if panel.lab.is_enabled(USER, f.key)}

    def test_storage_without_lab_raises_capability_error(self, clock: FixedClock) -> None:
        """A storage that keeps no lab choices raises CapabilityError, not AttributeError."""
        panel = UserPanel(storage=NoLabStorage(MemoryStorage()), lab=standard_registry())
        with pytest.raises(CapabilityError):
            panel.lab.is_enabled(USER, "new-editor")
        with pytest.raises(CapabilityError):
            panel.lab.opt_in(USER, "new-editor")


class TestCacheFollowsTheRegistry:
    def test_kill_switch_applies_at_once(self, panel: UserPanel, registry: LabRegistry) -> None:
        """Turning a kill switch on switches a cached, enabled feature off immediately."""
        assert panel.lab.is_enabled(USER, "dark-sidebar") is True
        registry.set_kill_switch("dark-sidebar", on=True)
        assert panel.lab.is_enabled(USER, "dark-sidebar") is False
        registry.set_kill_switch("dark-sidebar", on=False)
        assert panel.lab.is_enabled(USER, "dark-sidebar") is True

    def test_audience_change_applies_at_once(self, panel: UserPanel, registry: LabRegistry) -> None:
        """Adding the user to an allow-list makes a default-on feature appear at once."""
        registry.update(feature("insiders", audience=Audience.allow_list([USER]), default_on=True))
        assert panel.lab.is_enabled(USER, "insiders") is True

    def test_new_feature_is_known_at_once(self, panel: UserPanel, registry: LabRegistry) -> None:
        """A feature registered after the user was cached is answered, not NotFoundError."""
        assert panel.lab.is_enabled(USER, "new-editor") is False
        registry.register(feature("fresh", default_on=True))
        assert panel.lab.is_enabled(USER, "fresh") is True

    def test_removed_feature_raises(self, panel: UserPanel, registry: LabRegistry) -> None:
        """A feature removed from the registry raises NotFoundError, even for a cached user."""
        assert panel.lab.is_enabled(USER, "dark-sidebar") is True
        registry.remove("dark-sidebar")
        with pytest.raises(NotFoundError):
            panel.lab.is_enabled(USER, "dark-sidebar")


class TestCacheFollowsTheClock:
    def test_feature_starts_and_ends_on_time(
        self, panel: UserPanel, registry: LabRegistry, clock: FixedClock
    ) -> None:
        """A cached user sees a windowed feature start and end at the exact instants."""
        registry.update(
            feature(
                "window",
                default_on=True,
                starts_at=T0 + timedelta(days=1),
                ends_at=T0 + timedelta(days=2),
            )
        )
        assert panel.lab.is_enabled(USER, "window") is False
        clock.set(T0 + timedelta(days=1) - timedelta(microseconds=1))
        assert panel.lab.is_enabled(USER, "window") is False
        clock.set(T0 + timedelta(days=1))
        assert panel.lab.is_enabled(USER, "window") is True
        clock.set(T0 + timedelta(days=2) - timedelta(microseconds=1))
        assert panel.lab.is_enabled(USER, "window") is True
        clock.set(T0 + timedelta(days=2))
        assert panel.lab.is_enabled(USER, "window") is False


class TestCacheFollowsOtherWriters:
    def test_change_by_another_panel_is_seen_after_the_interval(
        self,
        make_panel: Callable[..., UserPanel],
        monotonic: FakeMonotonic,
        storage: Storage,
        tmp_path: Path,
    ) -> None:
        """Another writer's opt-in is seen once refresh_interval has passed, not before."""
        reader = make_panel(lab_cache=LabCachePolicy(refresh_interval=1.0, monotonic=monotonic))
        if isinstance(storage, SQLiteStorage):  # a second storage on the same file
            other_storage: Storage = SQLiteStorage(storage.path)
        else:
            other_storage = storage
        writer = make_panel(storage=other_storage)
        assert reader.lab.is_enabled(USER, "new-editor") is False
        writer.lab.opt_in(USER, "new-editor")
        monotonic.advance(0.999)
        assert reader.lab.is_enabled(USER, "new-editor") is False  # within the documented delay
        monotonic.advance(0.001)
        assert reader.lab.is_enabled(USER, "new-editor") is True
        writer.lab.reset(USER)
        monotonic.advance(1.0)
        assert reader.lab.is_enabled(USER, "new-editor") is False
        if other_storage is not storage:
            other_storage.close()

    def test_only_changed_users_are_reloaded(
        self, make_panel: Callable[..., UserPanel], monotonic: FakeMonotonic
    ) -> None:
        """Users the other writer did not touch keep their (still correct) answers."""
        reader = make_panel()
        writer = make_panel()
        for user in ("a", "b"):
            assert reader.lab.is_enabled(user, "dark-sidebar") is True
        writer.lab.opt_out("a", "dark-sidebar")
        monotonic.advance(1.0)
        assert reader.lab.is_enabled("a", "dark-sidebar") is False
        assert reader.lab.is_enabled("b", "dark-sidebar") is True

    def test_zero_interval_reads_the_marker_on_every_call(
        self, make_panel: Callable[..., UserPanel]
    ) -> None:
        """With refresh_interval=0 another writer's change is seen by the very next call."""
        reader = make_panel(lab_cache=LabCachePolicy(refresh_interval=0))
        writer = make_panel()
        assert reader.lab.is_enabled(USER, "new-editor") is False
        writer.lab.opt_in(USER, "new-editor")
        assert reader.lab.is_enabled(USER, "new-editor") is True

    def test_list_for_user_always_reads_fresh(self, make_panel: Callable[..., UserPanel]) -> None:
        """The Lab tab's list shows another writer's change at once, and refreshes the cache."""
        reader = make_panel()
        writer = make_panel()
        assert reader.lab.is_enabled(USER, "new-editor") is False
        writer.lab.opt_in(USER, "new-editor")
        (item,) = (i for i in reader.lab.list_for_user(USER) if i.key == "new-editor")
        assert item.enabled is True
        assert reader.lab.is_enabled(USER, "new-editor") is True

    def test_clear_cache_forgets_everything(self, make_panel: Callable[..., UserPanel]) -> None:
        """clear_cache makes the next call read the storage again."""
        reader = make_panel()
        writer = make_panel()
        assert reader.lab.is_enabled(USER, "new-editor") is False
        writer.lab.opt_in(USER, "new-editor")
        reader.lab.clear_cache()
        assert reader.lab.is_enabled(USER, "new-editor") is True

    def test_a_load_racing_with_a_change_is_not_cached(
        self, storage: Storage, clock: FixedClock, monotonic: FakeMonotonic
    ) -> None:
        """States read just before a change committed are not kept in the cache."""
        hooked = HookedStorage(storage)
        panel = UserPanel(
            storage=hooked,
            clock=clock,
            lab=standard_registry(),
            lab_cache=LabCachePolicy(monotonic=monotonic),
        )
        assert panel.lab.is_enabled("warm-up", "new-editor") is False  # reads the marker
        # The next read of USER's choices is followed, before it is cached, by an opt-in.
        hooked.after_next_read = lambda: panel.lab.opt_in(USER, "new-editor")
        assert panel.lab.is_enabled(USER, "new-editor") is False  # the answer as read
        assert panel.lab.is_enabled(USER, "new-editor") is True  # not a stale cached one


class TestConcurrency:
    def test_readers_racing_a_writer_leave_no_stale_answer(self, panel: UserPanel) -> None:
        """After threads read while another toggles a feature, the answer is the last write."""
        errors: list[BaseException] = []
        done = threading.Event()

        def read() -> None:
            try:
                while not done.is_set():
                    panel.lab.is_enabled(USER, "new-editor")
                    panel.lab.is_enabled("other", "new-editor")
            except BaseException as exc:
                errors.append(exc)

        readers = [threading.Thread(target=read) for _ in range(4)]
        for reader in readers:
            reader.start()
        try:
            for n in range(40):
                if n % 2:
                    panel.lab.opt_out(USER, "new-editor")
                else:
                    panel.lab.opt_in(USER, "new-editor")
                assert panel.lab.is_enabled(USER, "new-editor") is (n % 2 == 0)
        finally:
            done.set()
            for reader in readers:
                reader.join()
        assert errors == []
        assert panel.lab.is_enabled(USER, "new-editor") is False


class TestCacheBound:
    def test_least_recently_used_user_is_dropped(
        self, make_panel: Callable[..., UserPanel], monotonic: FakeMonotonic
    ) -> None:
        """With room for two users, the least recently used one is reloaded, the others kept."""
        reader = make_panel(lab_cache=LabCachePolicy(max_users=2, monotonic=monotonic))
        writer = make_panel()
        reader.lab.is_enabled("a", "new-editor")
        reader.lab.is_enabled("b", "new-editor")
        reader.lab.is_enabled("a", "new-editor")  # a is now the most recently used
        reader.lab.is_enabled("c", "new-editor")  # drops b
        for user in ("a", "b"):
            writer.lab.opt_in(user, "new-editor")
        assert reader.lab.is_enabled("a", "new-editor") is False  # cached, within the delay
        assert reader.lab.is_enabled("b", "new-editor") is True  # dropped, so read again

    def test_zero_size_disables_the_cache(self, make_panel: Callable[..., UserPanel]) -> None:
        """With max_users=0 every call reads the storage."""
        reader = make_panel(lab_cache=LabCachePolicy(max_users=0))
        writer = make_panel()
        assert reader.lab.is_enabled(USER, "new-editor") is False
        writer.lab.opt_in(USER, "new-editor")
        assert reader.lab.is_enabled(USER, "new-editor") is True

    def test_more_changes_than_the_cache_holds_are_all_seen(
        self, make_panel: Callable[..., UserPanel], monotonic: FakeMonotonic
    ) -> None:
        """When more users changed than the cache holds, every cached user is reloaded."""
        reader = make_panel(lab_cache=LabCachePolicy(max_users=2, monotonic=monotonic))
        writer = make_panel()
        reader.lab.is_enabled("a", "new-editor")
        reader.lab.is_enabled("b", "new-editor")
        for user in ("x", "y", "a", "b"):
            writer.lab.opt_in(user, "new-editor")
        monotonic.advance(1.0)
        assert reader.lab.is_enabled("a", "new-editor") is True
        assert reader.lab.is_enabled("b", "new-editor") is True


class TestCachePolicy:
    @pytest.mark.parametrize(
        ("options", "code"),
        [
            ({"refresh_interval": -1}, "refresh_interval.invalid"),
            ({"refresh_interval": float("inf")}, "refresh_interval.invalid"),
            ({"refresh_interval": float("nan")}, "refresh_interval.invalid"),
            ({"refresh_interval": "1"}, "refresh_interval.invalid"),
            ({"max_users": -1}, "max_users.invalid"),
            ({"max_users": 1.5}, "max_users.invalid"),
            ({"max_users": True}, "max_users.invalid"),
        ],
    )
    def test_invalid_settings_are_refused(self, options: dict[str, object], code: str) -> None:
        """Negative, infinite or mistyped settings raise ValidationError."""
        with pytest.raises(ValidationError) as info:
            LabCachePolicy(**options)  # type: ignore[arg-type]
        assert info.value.codes == (code,)


class TestListForUser:
    def test_shows_offered_features_with_their_reasons(self, panel: UserPanel) -> None:
        """The list shows what the user can act on, each with its state and reason."""
        items = {item.key: item for item in panel.lab.list_for_user(USER)}
        assert list(items) == [
            "new-editor",
            "ai-assist",
            "ai-summary",
            "dark-sidebar",
            "beta-search",
        ]
        assert items["new-editor"].reason is Reason.DISABLED_BY_DEFAULT
        assert items["dark-sidebar"].reason is Reason.ENABLED_BY_DEFAULT
        assert items["dark-sidebar"].enabled is True
        assert items["ai-assist"].reason is Reason.DEPENDS_ON
        assert items["ai-assist"].blocked_by == ("new-editor",)
        assert items["ai-summary"].blocked_by == ("ai-assist",)
        assert items["beta-search"].reason is Reason.DISABLED_BY_DEFAULT
        assert all(item.available for item in items.values())

    def test_hides_what_the_user_is_not_offered(self, panel: UserPanel) -> None:
        """Not eligible, not started and graduated features are not listed."""
        listed = keys(panel.lab.list_for_user(USER))
        assert not {"insiders", "window", "old-export"} & set(listed)

    def test_records_when_and_which_terms(self, panel: UserPanel, clock: FixedClock) -> None:
        """An item carries when the user chose and which terms version they accepted."""
        clock.advance(minutes=3)
        panel.lab.opt_in(USER, "beta-search", accept_terms_version="2026-03")
        (item,) = (i for i in panel.lab.list_for_user(USER) if i.key == "beta-search")
        assert item.chosen_at == T0 + timedelta(minutes=3)
        assert item.terms_version_accepted == "2026-03"
        assert item.reason is Reason.ENABLED_BY_USER
        assert item.terms_to_accept is None

    def test_new_terms_version_needs_accepting_again(
        self, panel: UserPanel, registry: LabRegistry
    ) -> None:
        """Publishing new terms turns the feature off, listed as needing terms, until accepted."""
        panel.lab.opt_in(USER, "beta-search", accept_terms_version="2026-03")
        new_terms = Terms(version="2026-04", url="https://example.com/lab/terms-2")
        registry.update(feature("beta-search", terms=new_terms))
        (item,) = (i for i in panel.lab.list_for_user(USER) if i.key == "beta-search")
        assert (item.enabled, item.reason) == (False, Reason.NEEDS_TERMS)
        assert item.terms_to_accept == new_terms
        assert panel.lab.is_enabled(USER, "beta-search") is False
        panel.lab.opt_in(USER, "beta-search", accept_terms_version="2026-04")
        assert panel.lab.is_enabled(USER, "beta-search") is True

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            (lambda r, c: c.set(T0 + timedelta(days=3)), Reason.ENDED),
            (lambda r, c: r.set_audience("window", Audience.allow_list([])), Reason.NOT_ELIGIBLE),
            (lambda r, c: r.set_kill_switch("window", on=True), Reason.KILLED),
        ],
    )
    def test_keeps_a_feature_the_user_had_on_with_why_it_went(
        self,
        *,
        panel: UserPanel,
        registry: LabRegistry,
        clock: FixedClock,
        change: Callable[[LabRegistry, FixedClock], object],
        reason: Reason,
    ) -> None:
        """A feature the user turned on that is no longer offered stays listed, with the reason."""
        clock.set(T0 + timedelta(days=1, hours=1))
        panel.lab.opt_in(USER, "window")
        change(registry, clock)
        (item,) = (i for i in panel.lab.list_for_user(USER) if i.key == "window")
        assert (item.enabled, item.available, item.reason) == (False, False, reason)

    def test_rows_do_not_reveal_other_users(self, make_panel: Callable[..., UserPanel]) -> None:
        """A row sent to the browser names no other user from an allow-list."""
        registry = LabRegistry.of(
            [feature("insiders", audience=Audience.allow_list([USER, "secret-colleague"]))]
        )
        panel = make_panel(lab=registry)
        (item,) = panel.lab.list_for_user(USER)
        assert "secret-colleague" not in json.dumps(converter.unstructure(item))
        assert "secret-colleague" not in repr(item)

    def test_empty_registry_lists_nothing(self, make_panel: Callable[..., UserPanel]) -> None:
        """A panel without lab features lists nothing and offers nothing."""
        panel = make_panel(lab=None)
        assert panel.lab.list_for_user(USER) == ()
        assert panel.lab.has_visible_features(USER) is False


class TestHasVisibleFeatures:
    def test_true_when_something_is_offered(self, panel: UserPanel) -> None:
        """A user offered at least one feature has a Lab tab."""
        assert panel.lab.has_visible_features(USER) is True

    def test_false_when_nothing_is_offered(self, make_panel: Callable[..., UserPanel]) -> None:
        """A user outside every audience has nothing to see."""
        only_others = LabRegistry.of(
            [feature("insiders", audience=Audience.allow_list(["someone-else"]))]
        )
        panel = make_panel(lab=only_others)
        assert panel.lab.has_visible_features(USER) is False
        assert panel.lab.has_visible_features("someone-else") is True


class TestOptIn:
    def test_turns_on_and_audits(
        self, panel: UserPanel, clock: FixedClock, events: list[AuditEvent]
    ) -> None:
        """Opting in stores the choice and one lab.opted_in event, delivered after commit."""
        item = panel.lab.opt_in(USER, "new-editor", actor="support-7")
        assert (item.key, item.enabled, item.reason) == ("new-editor", True, Reason.ENABLED_BY_USER)
        assert item.chosen_at == T0
        (event,) = lab_events(panel)
        assert (event.kind, event.subject, event.actor, event.at) == (
            "lab.opted_in",
            "new-editor",
            "support-7",
            T0,
        )
        assert [(c.field, c.old, c.new) for c in event.changes] == [("enabled", None, True)]
        assert events == [event]

    def test_dependency_off_explains_why(self, panel: UserPanel) -> None:
        """Opting into a feature whose dependency is off names the dependency; nothing changes."""
        with pytest.raises(PolicyError) as info:
            panel.lab.opt_in(USER, "ai-assist")
        assert info.value.code == "lab.depends_on"
        assert info.value.params["dependency"] == "new-editor"
        assert lab_events(panel) == []
        panel.lab.opt_in(USER, "new-editor")
        assert panel.lab.opt_in(USER, "ai-assist").enabled is True

    def test_terms_must_be_accepted(self, panel: UserPanel) -> None:
        """A feature with terms needs the current version accepted, which is recorded."""
        with pytest.raises(PolicyError) as info:
            panel.lab.opt_in(USER, "beta-search")
        assert info.value.code == "lab.needs_terms"
        assert info.value.params["terms_version"] == "2026-03"
        with pytest.raises(PolicyError):
            panel.lab.opt_in(USER, "beta-search", accept_terms_version="2025-01")
        item = panel.lab.opt_in(USER, "beta-search", accept_terms_version="2026-03")
        assert (item.enabled, item.terms_version_accepted) == (True, "2026-03")
        (event,) = lab_events(panel)
        assert ("terms_version_accepted", None, "2026-03") in [
            (c.field, c.old, c.new) for c in event.changes
        ]

    def test_accepted_terms_are_kept_across_opt_out(self, panel: UserPanel) -> None:
        """Turning a feature off and on again does not ask for the same terms twice."""
        panel.lab.opt_in(USER, "beta-search", accept_terms_version="2026-03")
        panel.lab.opt_out(USER, "beta-search")
        assert panel.lab.opt_in(USER, "beta-search").enabled is True

    @pytest.mark.parametrize(
        ("key", "setup", "code"),
        [
            ("insiders", None, "lab.not_eligible"),
            ("window", None, "lab.not_started"),
            ("window", lambda r, c: c.set(T0 + timedelta(days=5)), "lab.ended"),
            ("new-editor", lambda r, c: r.set_kill_switch("new-editor", on=True), "lab.killed"),
            ("old-export", None, "lab.graduated"),
        ],
    )
    def test_unavailable_features_are_refused_with_a_code(
        self,
        *,
        panel: UserPanel,
        registry: LabRegistry,
        clock: FixedClock,
        key: str,
        setup: Callable[[LabRegistry, FixedClock], object] | None,
        code: str,
    ) -> None:
        """Opting into a feature not offered to the user raises PolicyError with a stable code."""
        if setup is not None:
            setup(registry, clock)
        with pytest.raises(PolicyError) as info:
            panel.lab.opt_in(USER, key)
        assert info.value.code == code
        assert lab_events(panel) == []

    def test_opting_in_twice_changes_nothing(self, panel: UserPanel) -> None:
        """A second opt-in with the same terms writes no new event and keeps the first time."""
        panel.lab.opt_in(USER, "new-editor")
        panel.clock.advance(hours=1)  # type: ignore[attr-defined]
        item = panel.lab.opt_in(USER, "new-editor")
        assert item.chosen_at == T0
        assert len(lab_events(panel)) == 1

    def test_unknown_key_raises_not_found(self, panel: UserPanel) -> None:
        """Opting into an unregistered key raises NotFoundError."""
        with pytest.raises(NotFoundError):
            panel.lab.opt_in(USER, "nope")

    def test_reports_every_input_problem_at_once(self, panel: UserPanel) -> None:
        """A bad user id and a bad terms version are reported together."""
        with pytest.raises(ValidationError) as info:
            panel.lab.opt_in("", "beta-search", accept_terms_version="x" * 65)
        assert info.value.codes == ("user_id.invalid", "accept_terms_version.too_long")

    def test_failing_notifier_does_not_undo(self, make_panel: Callable[..., UserPanel]) -> None:
        """A notifier that raises is logged; the opt-in stays."""

        def boom(event: AuditEvent) -> None:
            raise RuntimeError(event.kind)

        panel = make_panel(notifier=boom)
        panel.lab.opt_in(USER, "new-editor")
        assert panel.lab.is_enabled(USER, "new-editor") is True


class TestOptOut:
    def test_turns_off_and_audits(self, panel: UserPanel, events: list[AuditEvent]) -> None:
        """Opting out of a default-on feature records the choice and a lab.opted_out event."""
        (item,) = panel.lab.opt_out(USER, "dark-sidebar")
        assert (item.enabled, item.reason) == (False, Reason.DISABLED_BY_USER)
        assert [e.kind for e in events] == ["lab.opted_out"]
        assert [(c.field, c.old, c.new) for c in events[0].changes] == [("enabled", None, False)]

    def test_turning_a_dependency_off_turns_dependants_off(
        self, panel: UserPanel, events: list[AuditEvent]
    ) -> None:
        """Dependants (transitive, chosen or on by default) go off with their dependency."""
        panel.lab.opt_in(USER, "new-editor")
        panel.lab.opt_in(USER, "ai-assist")
        assert panel.lab.is_enabled(USER, "ai-summary") is True  # on by default
        events.clear()
        items = panel.lab.opt_out(USER, "new-editor")
        assert keys(items) == ["new-editor", "ai-assist", "ai-summary"]
        assert [i.enabled for i in items] == [False] * 3
        assert [i.state.choice for i in items] == [False] * 3  # each one recorded as off
        assert [(e.subject, dict(e.details)) for e in events] == [
            ("new-editor", {}),
            ("ai-assist", {"turned_off_with": "new-editor"}),
            ("ai-summary", {"turned_off_with": "new-editor"}),
        ]
        # They stay off when the dependency is turned on again.
        panel.lab.opt_in(USER, "new-editor")
        assert panel.lab.is_enabled(USER, "ai-assist") is False
        assert panel.lab.is_enabled(USER, "ai-summary") is False

    def test_dependants_the_user_never_wanted_are_left_alone(
        self, panel: UserPanel, events: list[AuditEvent]
    ) -> None:
        """Only dependants that were wanted on get a recorded opt-out."""
        panel.lab.opt_in(USER, "new-editor")
        events.clear()
        items = panel.lab.opt_out(USER, "new-editor")
        assert keys(items) == ["new-editor", "ai-summary"]  # ai-assist was off by default
        assert [e.subject for e in events] == ["new-editor", "ai-summary"]

    def test_dependants_not_offered_are_left_alone(
        self, make_panel: Callable[..., UserPanel]
    ) -> None:
        """A default-on dependant the user is not eligible for gets no recorded choice."""
        registry = LabRegistry.of(
            [
                feature("base", default_on=True),
                feature(
                    "extra",
                    depends_on=("base",),
                    default_on=True,
                    audience=Audience.allow_list(["someone-else"]),
                ),
            ]
        )
        panel = make_panel(lab=registry)
        assert keys(panel.lab.opt_out(USER, "base")) == ["base"]
        registry.set_audience("extra", Audience.everyone())
        panel.lab.opt_in(USER, "base")
        assert panel.lab.is_enabled(USER, "extra") is True  # its default, untouched

    def test_cascade_is_all_or_nothing(self, storage: Storage, clock: FixedClock) -> None:
        """If recording a dependant fails, the dependency's own opt-out is rolled back too."""
        failing = HookedStorage(storage, fail_on_event="ai-assist")
        panel = UserPanel(storage=failing, clock=clock, lab=standard_registry())
        panel.lab.opt_in(USER, "new-editor")
        panel.lab.opt_in(USER, "ai-assist")
        with pytest.raises(RuntimeError):
            panel.lab.opt_out(USER, "new-editor")
        assert panel.lab.is_enabled(USER, "new-editor") is True
        assert panel.lab.is_enabled(USER, "ai-assist") is True
        with storage.transaction(write=False) as tx:
            assert isinstance(tx, SupportsLab)
            assert all(c.enabled for c in tx.lab.list_for_user(USER))

    def test_already_off_changes_nothing(self, panel: UserPanel) -> None:
        """Opting out of a feature the user already turned off writes nothing new."""
        panel.lab.opt_out(USER, "dark-sidebar")
        (item,) = panel.lab.opt_out(USER, "dark-sidebar")
        assert item.enabled is False
        assert len(lab_events(panel)) == 1

    def test_graduated_feature_cannot_be_turned_off(self, panel: UserPanel) -> None:
        """A graduated feature is on for everyone: opting out raises lab.graduated."""
        with pytest.raises(PolicyError) as info:
            panel.lab.opt_out(USER, "old-export")
        assert info.value.code == "lab.graduated"

    def test_unknown_key_raises_not_found(self, panel: UserPanel) -> None:
        """Opting out of an unregistered key raises NotFoundError."""
        with pytest.raises(NotFoundError):
            panel.lab.opt_out(USER, "nope")


class TestReset:
    def test_forgets_every_choice(self, panel: UserPanel, events: list[AuditEvent]) -> None:
        """Reset removes all choices, returns how many, and writes one lab.reset event."""
        panel.lab.opt_in(USER, "new-editor")
        panel.lab.opt_out(USER, "dark-sidebar")
        events.clear()
        assert panel.lab.reset(USER, actor="admin") == 2
        assert panel.lab.is_enabled(USER, "new-editor") is False
        assert panel.lab.is_enabled(USER, "dark-sidebar") is True
        assert [(e.kind, e.actor, dict(e.details)) for e in events] == [
            ("lab.reset", "admin", {"choices": 2})
        ]

    def test_nothing_to_forget_writes_nothing(self, panel: UserPanel) -> None:
        """Resetting a user without choices returns 0 and writes no event."""
        assert panel.lab.reset(USER) == 0
        assert lab_events(panel) == []


WRITER = textwrap.dedent(
    """
    import sys
    from enspace_profile import LabFeature, LabRegistry, UserPanel
    lab = LabRegistry.of([LabFeature(key="new-editor", title="New editor")])
    with UserPanel.open(sys.argv[1], lab=lab) as panel:
        panel.lab.opt_in("user-1", "new-editor")
    """
)


@pytest.mark.slow
class TestAnotherProcess:
    def test_change_by_another_process_is_seen_after_the_interval(
        self, tmp_path: Path, monotonic: FakeMonotonic
    ) -> None:
        """An opt-in made by another process on the SQLite file is seen after the delay."""
        path = tmp_path / "shared.db"
        lab = LabRegistry.of([feature("new-editor")])
        with UserPanel.open(path, lab=lab, lab_cache=LabCachePolicy(monotonic=monotonic)) as panel:
            assert panel.lab.is_enabled(USER, "new-editor") is False
            env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
            subprocess.run(
                [sys.executable, "-c", WRITER, str(path)], check=True, env=env, timeout=120
            )
            assert panel.lab.is_enabled(USER, "new-editor") is False  # cached, within the delay
            monotonic.advance(1.0)
            assert panel.lab.is_enabled(USER, "new-editor") is True


# --------------------------------------------------------------------------- helpers


@attrs.define
class _FailingAudit:
    inner: AuditLog
    fail_on: str

    def append(self, event: AuditEvent) -> None:
        if event.subject == self.fail_on and "turned_off_with" in event.details:
            raise RuntimeError(f"audit write failed for {event.subject}")
        self.inner.append(event)

    def list_for_user(
        self,
        user_id: str,
        *,
        kinds: Collection[str] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Sequence[AuditEvent]:
        return self.inner.list_for_user(
            user_id, kinds=kinds, limit=limit, newest_first=newest_first
        )


class _Tx:
    """A transaction that forwards to another but can fail one audit write."""

    def __init__(self, inner: Transaction, fail_on: str | None) -> None:
        self._inner = inner
        self.profiles = inner.profiles
        self.audit: AuditLog = (
            inner.audit if fail_on is None else _FailingAudit(inner.audit, fail_on)
        )
        assert isinstance(inner, SupportsLab)
        self.lab: LabRepository = inner.lab


class HookedStorage:
    """Wraps a storage: runs a callback after the next read-only transaction, or fails
    the audit write about one feature."""

    def __init__(self, inner: Storage, *, fail_on_event: str | None = None) -> None:
        self.inner = inner
        self.fail_on_event = fail_on_event
        self.after_next_read: Callable[[], object] | None = None

    @contextmanager
    def _run(self, *, write: bool) -> Iterator[Transaction]:
        with self.inner.transaction(write=write) as tx:
            yield _Tx(tx, self.fail_on_event)
        hook = self.after_next_read
        if hook is not None and not write:
            self.after_next_read = None
            hook()

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Transaction]:
        return self._run(write=write)

    def close(self) -> None:
        self.inner.close()


class NoLabStorage:
    """A storage whose transactions have profiles and an audit log, but no lab."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    @contextmanager
    def _run(self, *, write: bool) -> Iterator[Transaction]:
        with self.inner.transaction(write=write) as tx:
            yield _NoLabTx(tx)

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Transaction]:
        return self._run(write=write)

    def close(self) -> None:
        self.inner.close()


class _NoLabTx:
    def __init__(self, inner: Transaction) -> None:
        self.profiles = inner.profiles
        self.audit = inner.audit

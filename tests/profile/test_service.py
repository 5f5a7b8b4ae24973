from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from enspace_profile import (
    ConflictError,
    FixedClock,
    MemoryStorage,
    NotFoundError,
    SeededRandom,
    SQLiteStorage,
    UserPanel,
    ValidationError,
)
from enspace_profile.exceptions import AlreadyExistsError, CapabilityError
from enspace_profile.typing import Storage

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    s: Storage = MemoryStorage() if request.param == "memory" else SQLiteStorage(tmp_path / "p.db")
    yield s
    s.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def panel(storage: Storage, clock: FixedClock) -> UserPanel:
    return UserPanel(storage=storage, clock=clock, rng=SeededRandom(7))


class TestCreate:
    def test_creates_with_defaults(self, panel: UserPanel) -> None:
        """A new profile gets version 1, the catalog defaults and UTC timestamps."""
        p = panel.profile.create("u1", first_name="  Ada ", last_name="Lovelace")
        assert (p.first_name, p.last_name, p.version) == ("Ada", "Lovelace", 1)
        assert p.language == panel.locales.default.identifier
        assert p.theme == panel.themes.default_preference
        assert p.created_at == p.updated_at == T0
        assert panel.profile.get("u1") == p

    def test_reports_every_problem_at_once(self, panel: UserPanel) -> None:
        """Invalid user id, names and language are all reported in one error."""
        with pytest.raises(ValidationError) as info:
            panel.profile.create("", first_name="", last_name="x" * 65, language="xx")
        assert set(info.value.fields) == {"user_id", "first_name", "last_name", "language"}

    def test_duplicate_user_is_refused(self, panel: UserPanel) -> None:
        """A second profile for one user raises AlreadyExistsError."""
        panel.profile.create("u1", first_name="Ada")
        with pytest.raises(AlreadyExistsError):
            panel.profile.create("u1", first_name="Eve")

    def test_creation_is_audited(self, panel: UserPanel) -> None:
        """Creating writes a profile.created event with the initial values."""
        panel.profile.create("u1", first_name="Ada", actor="admin-7")
        (event,) = panel.profile.history("u1")
        assert event.kind == "profile.created"
        assert event.actor == "admin-7"
        assert {c.field: c.new for c in event.changes}["first_name"] == "Ada"


class TestGet:
    def test_missing_profile_raises_not_found(self, panel: UserPanel) -> None:
        """Loading an unknown user raises NotFoundError with a stable code."""
        with pytest.raises(NotFoundError) as info:
            panel.profile.get("ghost")
        assert info.value.code == "profile.not_found"


class TestSave:
    def test_applies_changes_and_bumps_version(self, panel: UserPanel, clock: FixedClock) -> None:
        """A Save applies normalised values, bumps the version and stamps the time."""
        p = panel.profile.create("u1", first_name="Ada")
        clock.advance(minutes=5)
        saved = panel.profile.save(
            "u1", {"last_name": " Lovelace ", "language": "PT-br"}, version=p.version
        )
        assert (saved.last_name, saved.language, saved.version) == ("Lovelace", "pt_BR", 2)
        assert saved.updated_at == T0 + timedelta(minutes=5)
        assert saved.created_at == T0
        assert panel.profile.get("u1") == saved

    def test_audit_event_has_old_and_new_values(self, panel: UserPanel) -> None:
        """A Save appends one event listing each changed field with old and new value."""
        p = panel.profile.create("u1", first_name="Ada")
        panel.profile.save(
            "u1", {"first_name": "Augusta", "last_name": "King"}, version=1, actor="me"
        )
        events = panel.profile.history("u1")
        assert [e.kind for e in events] == ["profile.created", "profile.updated"]
        last = events[-1]
        assert last.actor == "me"
        assert last.version == 2
        assert [(c.field, c.old, c.new) for c in last.changes] == [
            ("first_name", "Ada", "Augusta"),
            ("last_name", None, "King"),
        ]
        assert p.version == 1

    def test_theme_change_is_saved_and_audited(self, panel: UserPanel) -> None:
        """The theme preference goes through the same Save, version and audit."""
        panel.profile.create("u1", first_name="Ada")
        saved = panel.profile.save(
            "u1", {"theme": {"mode": "sync", "day": "light", "night": "dark"}}, version=1
        )
        assert saved.theme.resolve("dark") == "dark"
        change = panel.profile.history("u1")[-1].changes[0]
        assert change.field == "theme"
        assert change.new == {"mode": "sync", "day": "light", "night": "dark"}

    def test_no_op_save_keeps_version_and_writes_no_event(self, panel: UserPanel) -> None:
        """Saving values equal to the stored ones changes nothing."""
        p = panel.profile.create("u1", first_name="Ada", language="en")
        same = panel.profile.save("u1", {"first_name": " Ada ", "language": "EN"}, version=1)
        assert same == p
        assert len(panel.profile.history("u1")) == 1

    def test_every_problem_reported_and_nothing_changed(self, panel: UserPanel) -> None:
        """A Save with several bad fields lists them all and stores nothing."""
        p = panel.profile.create("u1", first_name="Ada")
        with pytest.raises(ValidationError) as info:
            panel.profile.save(
                "u1",
                {"first_name": "", "language": "klingon", "nickname": "x", "theme": "neon"},
                version=1,
            )
        assert set(info.value.codes) == {
            "first_name.required",
            "language.unsupported",
            "profile.unknown_field",
            "theme.unknown",
        }
        assert panel.profile.get("u1") == p

    def test_stale_version_raises_conflict_with_changed_fields(self, panel: UserPanel) -> None:
        """Two people saving from version 1: the second gets ConflictError, nothing lost."""
        panel.profile.create("u1", first_name="Ada")
        panel.profile.save("u1", {"last_name": "Lovelace"}, version=1)
        panel.profile.save("u1", {"language": "fr"}, version=2)
        with pytest.raises(ConflictError) as info:
            panel.profile.save("u1", {"first_name": "Eve"}, version=1)
        assert info.value.current_version == 3
        assert info.value.changed_fields == ("last_name", "language")
        stored = panel.profile.get("u1")
        assert (stored.first_name, stored.last_name, stored.language) == ("Ada", "Lovelace", "fr")

    @pytest.mark.parametrize("version", [0, -1, True, "1", None, 1.0])
    def test_bad_version_is_a_validation_error(self, panel: UserPanel, version: object) -> None:
        """The version must be a positive integer."""
        panel.profile.create("u1", first_name="Ada")
        with pytest.raises(ValidationError) as info:
            panel.profile.save("u1", {"first_name": "B"}, version=version)  # type: ignore[arg-type]
        assert info.value.codes == ("version.invalid",)

    def test_changes_must_be_a_mapping(self, panel: UserPanel) -> None:
        """Passing a list instead of a mapping is a ValidationError, not a crash."""
        panel.profile.create("u1", first_name="Ada")
        with pytest.raises(ValidationError):
            panel.profile.save("u1", [("first_name", "B")], version=1)  # type: ignore[arg-type]

    def test_save_missing_profile_raises_not_found(self, panel: UserPanel) -> None:
        """Saving a profile that does not exist raises NotFoundError."""
        with pytest.raises(NotFoundError):
            panel.profile.save("ghost", {"first_name": "B"}, version=1)

    def test_clearing_last_name(self, panel: UserPanel) -> None:
        """Saving None or blank clears the last name; the display name follows."""
        panel.profile.create("u1", first_name="Ada", last_name="Lovelace")
        saved = panel.profile.save("u1", {"last_name": None}, version=1)
        assert saved.last_name is None
        assert saved.display_name == "Ada"
        assert saved.initials == "A"


class TestHistory:
    def test_unknown_user_raises_not_found(self, panel: UserPanel) -> None:
        """History of a user that never had a profile raises NotFoundError."""
        with pytest.raises(NotFoundError):
            panel.profile.history("ghost")

    def test_limit(self, panel: UserPanel) -> None:
        """History can be limited to the oldest N events."""
        panel.profile.create("u1", first_name="Ada")
        for n in range(3):
            panel.profile.save("u1", {"first_name": f"A{n}"}, version=n + 1)
        assert [e.version for e in panel.profile.history("u1", limit=2)] == [1, 2]


class _NoBlobsStorage:
    """A storage whose transactions lack a blob repository (a minimal third-party adapter)."""

    def __init__(self) -> None:
        self._inner = MemoryStorage()

    def transaction(self, *, write: bool = True):  # type: ignore[no-untyped-def]
        from contextlib import contextmanager

        @contextmanager
        def run():  # type: ignore[no-untyped-def]
            with self._inner.transaction(write=write) as tx:

                class Tx:
                    profiles = tx.profiles
                    audit = tx.audit

                yield Tx()

        return run()

    def close(self) -> None:
        self._inner.close()


class TestNotifier:
    def test_notifier_gets_committed_events(self, storage: Storage, clock: FixedClock) -> None:
        """The host's notifier receives each event after its Save committed."""
        seen: list[str] = []
        panel = UserPanel(storage=storage, clock=clock, notifier=lambda e: seen.append(e.kind))
        panel.profile.create("u1", first_name="Ada")
        panel.profile.save("u1", {"first_name": "Eve"}, version=1)
        assert seen == ["profile.created", "profile.updated"]

    def test_failing_notifier_does_not_undo_the_save(
        self, storage: Storage, clock: FixedClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A notifier that raises is logged; the change stays."""

        def broken(event: object) -> None:
            raise RuntimeError("mail server down")

        panel = UserPanel(storage=storage, clock=clock, notifier=broken)
        panel.profile.create("u1", first_name="Ada")
        saved = panel.profile.save("u1", {"first_name": "Eve"}, version=1)
        assert panel.profile.get("u1") == saved
        assert "notifier failed" in caplog.text


def _png(color: tuple[int, int, int], *, exif_gps: bool = False) -> bytes:
    import io

    from PIL import Image

    image = Image.new("RGB", (64, 64), color)
    out = io.BytesIO()
    if exif_gps:
        exif = Image.Exif()
        exif[0x8825] = {2: (48.0, 51.0, 30.0), 1: "N"}  # GPSInfo
        exif[0x010F] = "SecretCam"  # Make
        image.save(out, "PNG", exif=exif)
    else:
        image.save(out, "PNG")
    return out.getvalue()


class TestPicture:
    def test_upload_strips_metadata_and_references_the_blob(self, panel: UserPanel) -> None:
        """A saved picture is stored without EXIF and referenced by its SHA-256."""
        import hashlib

        panel.profile.create("u1", first_name="Ada")
        raw = _png((200, 10, 10), exif_gps=True)
        assert b"SecretCam" in raw
        saved = panel.profile.save("u1", {"picture": raw}, version=1)
        assert saved.picture is not None
        blob = panel.profile.picture("u1")
        assert blob is not None
        assert b"SecretCam" not in blob.data
        assert hashlib.sha256(blob.data).hexdigest() == saved.picture.sha256
        assert (saved.picture.media_type, saved.picture.width) == ("image/png", 64)
        change = panel.profile.history("u1")[-1].changes[0]
        assert (change.field, change.old, change.new) == ("picture", None, saved.picture.sha256)

    def test_replacing_and_removing_leave_no_orphan(self, panel: UserPanel) -> None:
        """Replacing a picture releases the old blob; removing releases the last one."""
        panel.profile.create("u1", first_name="Ada")
        first = panel.profile.save("u1", {"picture": _png((1, 2, 3))}, version=1)
        second = panel.profile.save("u1", {"picture": _png((4, 5, 6))}, version=2)
        assert first.picture is not None
        assert second.picture is not None
        with panel.storage.transaction(write=False) as tx:
            assert tx.blobs.get(first.picture.sha256) is None  # type: ignore[attr-defined]
            assert tx.blobs.references(second.picture.sha256) == 1  # type: ignore[attr-defined]
        cleared = panel.profile.save("u1", {"picture": None}, version=3)
        assert cleared.picture is None
        assert panel.profile.picture("u1") is None
        with panel.storage.transaction(write=False) as tx:
            assert tx.blobs.get(second.picture.sha256) is None  # type: ignore[attr-defined]

    def test_same_picture_for_two_users_is_stored_once(self, panel: UserPanel) -> None:
        """Identical uploads share one blob, which outlives the first user's removal."""
        data = _png((9, 9, 9))
        for uid in ("a", "b"):
            panel.profile.create(uid, first_name="X")
            panel.profile.save(uid, {"picture": data}, version=1)
        sha = panel.profile.get("a").picture.sha256  # type: ignore[union-attr]
        with panel.storage.transaction(write=False) as tx:
            assert tx.blobs.references(sha) == 2  # type: ignore[attr-defined]
        panel.profile.save("a", {"picture": None}, version=2)
        blob = panel.profile.picture("b")
        assert blob is not None
        assert blob.sha256 == sha

    @pytest.mark.parametrize(
        ("data", "code"),
        [
            (
                b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
                "picture.unsupported_type",
            ),
            (b"\x89PNG\r\n\x1a\n\x00\x00", "picture.truncated"),
            ("not bytes", "picture.invalid_type"),
        ],
    )
    def test_bad_picture_is_refused(self, panel: UserPanel, data: object, code: str) -> None:
        """SVG, truncated files and non-bytes are refused with a stable code."""
        panel.profile.create("u1", first_name="Ada")
        with pytest.raises(ValidationError) as info:
            panel.profile.save("u1", {"picture": data}, version=1)
        assert code in info.value.codes
        assert panel.profile.get("u1").version == 1

    def test_storage_without_blobs_refuses_and_changes_nothing(self, clock: FixedClock) -> None:
        """A third-party storage lacking blobs gets CapabilityError; the Save is rolled back."""
        panel = UserPanel(storage=_NoBlobsStorage(), clock=clock)  # type: ignore[arg-type]
        panel.profile.create("u1", first_name="Ada")
        with pytest.raises(CapabilityError) as info:
            panel.profile.save("u1", {"picture": _png((1, 1, 1)), "first_name": "Eve"}, version=1)
        assert info.value.capability == "blobs"
        stored = panel.profile.get("u1")
        assert (stored.first_name, stored.version, stored.picture) == ("Ada", 1, None)


class TestAvatar:
    def test_avatar_follows_name_and_keeps_colour(self, panel: UserPanel) -> None:
        """The avatar shows current initials; its colour depends only on the user id."""
        panel.profile.create("u1", first_name="Ada", last_name="Lovelace")
        before = panel.profile.avatar("u1")
        panel.profile.save("u1", {"first_name": "Grace", "last_name": "Hopper"}, version=1)
        after = panel.profile.avatar("u1")
        assert (before.initials, after.initials) == ("AL", "GH")
        assert before.background == after.background
        assert "GH" in after.render_svg(48)

    def test_avatar_of_unknown_user(self, panel: UserPanel) -> None:
        """Asking for the avatar of an unknown user raises NotFoundError."""
        with pytest.raises(NotFoundError):
            panel.profile.avatar("ghost")

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from enspace_profile import (
    AuditEvent,
    FieldChange,
    PictureRef,
    Profile,
    ThemePreference,
    converter,
)
from enspace_profile._integrations.domain import Credentials
from enspace_profile.testing import make_profile

aware = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive by API
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive by API
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3)), timezone(timedelta(hours=9))]),
)
text = st.text(max_size=20)
json_scalar = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
themes = st.one_of(
    st.builds(ThemePreference.single, st.sampled_from(["light", "dark"])),
    st.builds(
        ThemePreference.sync,
        day=st.sampled_from(["light", "light-colorblind"]),
        night=st.sampled_from(["dark", "dark-high-contrast"]),
    ),
)
pictures = st.none() | st.builds(
    PictureRef,
    sha256=st.text("0123456789abcdef", min_size=64, max_size=64),
    media_type=st.sampled_from(["image/png", "image/jpeg"]),
    width=st.integers(1, 4096),
    height=st.integers(1, 4096),
    size=st.integers(1, 5_000_000),
)
profiles = st.builds(
    Profile,
    user_id=text.filter(bool),
    first_name=text.filter(bool),
    last_name=st.none() | text,
    language=st.sampled_from(["en", "pt_BR", "zh_Hant"]),
    theme=themes,
    picture=pictures,
    created_at=aware,
    updated_at=aware,
    version=st.integers(1, 10**6),
)
events = st.builds(
    AuditEvent,
    id=text,
    user_id=text,
    kind=st.sampled_from(["profile.updated", "tokens.created"]),
    at=aware,
    actor=st.none() | text,
    subject=st.none() | text,
    version=st.none() | st.integers(1, 100),
    changes=st.lists(
        st.builds(FieldChange, field=text, old=json_value, new=json_value), max_size=3
    ).map(tuple),
    details=st.dictionaries(text, json_value, max_size=3),
)


def _json_round_trip(data: object) -> object:
    return json.loads(json.dumps(data))


class TestRoundTrip:
    @given(profiles)
    def test_profile_round_trips_through_json(self, profile: Profile) -> None:
        """A profile survives unstructure -> JSON text -> structure unchanged (times in UTC)."""
        data = _json_round_trip(converter.unstructure(profile))
        again = converter.structure(data, Profile)
        assert again == profile
        assert again.created_at.tzinfo == UTC

    @given(events)
    def test_event_round_trips_through_json(self, event: AuditEvent) -> None:
        """An audit event with nested JSON values survives a JSON round trip."""
        data = _json_round_trip(converter.unstructure(event))
        assert converter.structure(data, AuditEvent) == event

    def test_shapes_are_what_an_api_expects(self) -> None:
        """Datetimes are ISO 8601 UTC strings and enums plain values."""
        profile = make_profile(
            created_at=datetime(2026, 5, 1, 12, tzinfo=timezone(timedelta(hours=2))),
            theme=ThemePreference.sync(day="light", night="dark"),
        )
        data = converter.unstructure(profile)
        assert data["created_at"] == "2026-05-01T10:00:00+00:00"
        assert data["theme"] == {"mode": "sync", "day": "light", "night": "dark"}


class TestSecretsStayOut:
    def test_fields_hidden_from_repr_are_never_written(self) -> None:
        """Credentials' secret fields (hidden from repr) are omitted from the converter output."""
        creds = Credentials(
            access_token="tok-SECRET", refresh_token="ref-SECRET", api_key="k-SECRET"
        )
        data = converter.unstructure(creds)
        assert "SECRET" not in json.dumps(data)

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enspace_profile._security.domain import (
    MAX_USER_AGENT_LENGTH,
    AccountCredentials,
    SecurityEventKind,
    TotpEnrolment,
    clean_ip_address,
    clean_session_id,
    clean_user_agent,
)
from enspace_profile.exceptions import ValidationError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class TestRecords:
    def test_credentials_repr_hides_the_hash(self) -> None:
        """The password hash and sealed secret never show in a repr."""
        record = AccountCredentials(
            user_id="u1",
            password_hash="$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
            totp=TotpEnrolment(sealed_secret=b"\x01secretbytes", created_at=T0),
        )
        text = repr(record)
        assert "argon2id" not in text
        assert "secretbytes" not in text
        assert "password_hash=<hidden>" in text
        assert "sealed_secret=<12 bytes>" in text

    def test_fresh_credentials_are_empty_and_local(self) -> None:
        """A record not stored yet has no password, no 2FA and is managed here."""
        record = AccountCredentials(user_id="u1")
        assert (record.version, record.epoch) == (0, 0)
        assert not record.has_password
        assert not record.two_factor_enabled
        assert record.management.is_local

    def test_naive_times_are_refused(self) -> None:
        """Stored times must be timezone-aware."""
        with pytest.raises(ValueError, match="naive"):
            TotpEnrolment(sealed_secret=b"x", created_at=datetime(2026, 1, 1))  # noqa: DTZ001

    def test_event_kinds_are_unique_strings(self) -> None:
        """Each event kind has its own stable value."""
        values = [kind.value for kind in SecurityEventKind]
        assert len(values) == len(set(values))


class TestSessionIds:
    @pytest.mark.parametrize("value", ["s-1", "a" * 256, "sess:2026/01 ü"])
    def test_printable_ids_are_kept(self, value: str) -> None:
        """Printable ids up to 256 characters are accepted unchanged."""
        assert clean_session_id(value) == value

    @pytest.mark.parametrize("value", ["", "a" * 257, "line\nbreak", None, 5])
    def test_unusable_ids_are_refused(self, value: object) -> None:
        """Empty, overlong, unprintable or non-text ids raise session_id.invalid."""
        with pytest.raises(ValidationError) as info:
            clean_session_id(value)
        assert info.value.codes == ("session_id.invalid",)

    @settings(max_examples=200)
    @given(st.text(max_size=300))
    def test_accepts_exactly_printable_bounded_text(self, value: str) -> None:
        """An id is accepted if and only if it is 1-256 printable characters."""
        ok = 0 < len(value) <= 256 and value.isprintable()
        try:
            assert clean_session_id(value) == value
        except ValidationError:
            assert not ok
        else:
            assert ok


class TestIpAddresses:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("192.0.2.1", "192.0.2.1"),
            (" 192.0.2.1 ", "192.0.2.1"),
            ("2001:DB8:0:0::1", "2001:db8::1"),
            ("::ffff:198.51.100.4", "198.51.100.4"),
            (None, None),
        ],
    )
    def test_addresses_are_normalised(self, value: str | None, expected: str | None) -> None:
        """Addresses are stored in one canonical spelling."""
        assert clean_ip_address(value) == expected

    @pytest.mark.parametrize("value", ["300.1.1.1", "localhost", "", "1.2.3.4/24", 7])
    def test_non_addresses_are_refused(self, value: object) -> None:
        """Anything but a single IPv4 or IPv6 address raises ip_address.invalid."""
        with pytest.raises(ValidationError) as info:
            clean_ip_address(value)
        assert info.value.codes == ("ip_address.invalid",)

    @settings(max_examples=200)
    @given(st.ip_addresses())
    def test_every_address_round_trips(self, address: ipaddress._BaseAddress) -> None:
        """Any address cleans to a form that parses back to the same client."""
        cleaned = clean_ip_address(str(address))
        assert cleaned is not None
        assert clean_ip_address(cleaned) == cleaned
        parsed = ipaddress.ip_address(cleaned)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            assert parsed == address.ipv4_mapped
        else:
            assert parsed == address

    @settings(max_examples=200)
    @given(st.text(max_size=80))
    def test_never_raises_anything_but_validation_error(self, value: str) -> None:
        """Arbitrary text is either an address or a ValidationError."""
        codes: tuple[str, ...] = ()
        try:
            clean_ip_address(value)
        except ValidationError as error:
            codes = error.codes
        assert codes in ((), ("ip_address.invalid",))


class TestUserAgents:
    def test_control_characters_are_dropped_and_length_cut(self) -> None:
        """User agents are cleaned for display rather than refused."""
        assert clean_user_agent("Mozilla\x00/5.0\n") == "Mozilla/5.0"
        assert clean_user_agent("x" * 600) == "x" * MAX_USER_AGENT_LENGTH
        assert clean_user_agent("   ") is None
        assert clean_user_agent(None) is None

    def test_non_text_is_refused(self) -> None:
        """A user agent must be text."""
        with pytest.raises(ValidationError) as info:
            clean_user_agent(b"curl")
        assert info.value.codes == ("user_agent.invalid",)

    @settings(max_examples=200)
    @given(st.text(max_size=1000))
    def test_result_is_printable_bounded_and_stable(self, value: str) -> None:
        """Cleaning gives printable text of at most 512 characters, and is idempotent."""
        cleaned = clean_user_agent(value)
        if cleaned is not None:
            assert cleaned.isprintable()
            assert 0 < len(cleaned) <= MAX_USER_AGENT_LENGTH
            assert clean_user_agent(cleaned) == cleaned

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enspace_profile._clock import FixedClock
from enspace_profile._random import SeededRandom
from enspace_profile._security.totp import Totp, TotpSecret, otpauth_uri
from enspace_profile.exceptions import ValidationError

RFC_SECRET = TotpSecret(b"12345678901234567890")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(unix_time: int) -> datetime:
    return datetime.fromtimestamp(unix_time, UTC)


class TestRfcVectors:
    @pytest.mark.parametrize(
        ("unix_time", "code"),
        [
            (59, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
            (20000000000, "65353130"),
        ],
    )
    def test_rfc6238_sha1_vectors(self, unix_time, code):
        """The RFC 6238 appendix B SHA-1 test vectors (8 digits, 30 s) are reproduced."""
        assert Totp(digits=8).code_at(RFC_SECRET, at(unix_time)) == code

    @pytest.mark.parametrize(
        ("counter", "code"),
        list(
            enumerate(
                [
                    "755224",
                    "287082",
                    "359152",
                    "969429",
                    "338314",
                    "254676",
                    "287922",
                    "162583",
                    "399871",
                    "520489",
                ]
            )
        ),
    )
    def test_rfc4226_hotp_vectors(self, counter, code):
        """The RFC 4226 appendix D HOTP values are the codes of steps 0 to 9."""
        assert Totp().code_for_step(RFC_SECRET, counter) == code
        assert Totp().code_at(RFC_SECRET, at(counter * 30 + 29)) == code

    def test_codes_are_zero_padded(self):
        """A code with leading zeros keeps them (07081804, not 7081804)."""
        assert len(Totp(digits=8).code_at(RFC_SECRET, at(1111111109))) == 8

    def test_time_step_boundaries(self):
        """Steps change exactly at multiples of the period."""
        totp = Totp()
        assert totp.time_step(at(29)) == 0
        assert totp.time_step(at(30)) == 1
        assert totp.time_step(at(59)) == 1

    def test_non_utc_times_are_converted(self):
        """The same instant in another timezone gives the same code."""
        offset = datetime(2026, 1, 1, 1, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=5)))
        assert Totp().code_at(RFC_SECRET, offset) == Totp().code_at(
            RFC_SECRET, datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
        )

    def test_refuses_times_before_1970(self):
        """Time steps are unsigned; earlier times are refused."""
        with pytest.raises(ValidationError) as info:
            Totp().code_at(RFC_SECRET, datetime(1969, 12, 31, 23, 59, tzinfo=UTC))
        assert info.value.codes == ("step.out_of_range",)


class TestTotpSecret:
    def test_generated_secret_is_160_bits_from_the_source(self):
        """Secrets are 20 random bytes from the injected source."""
        secret = TotpSecret.generate(SeededRandom(1))
        assert len(secret.value) == 20
        assert secret == TotpSecret.generate(SeededRandom(1))
        assert secret != TotpSecret.generate(SeededRandom(2))

    def test_base32_has_no_padding(self):
        """The secret shown for manual entry is upper-case base32 without '='."""
        text = RFC_SECRET.to_base32()
        assert text == "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        assert "=" not in TotpSecret(b"x" * 17).to_base32()

    @pytest.mark.parametrize(
        "text",
        [
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            "gezd gnbv gy3t qojq gezd gnbv gy3t qojq",
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ====",
        ],
    )
    def test_from_base32_is_forgiving(self, text):
        """Case, spaces and padding do not matter when reading a secret."""
        assert TotpSecret.from_base32(text) == RFC_SECRET

    @pytest.mark.parametrize(
        ("text", "code"),
        [
            ("", "secret.invalid"),
            ("GEZDGNBVGY3TQOJ1", "secret.invalid"),
            ("GEZDGNBV", "secret.too_short"),
            ("A", "secret.invalid"),
        ],
    )
    def test_from_base32_refuses_bad_text(self, text, code):
        """Invalid base32 or too few bits is a ValidationError."""
        with pytest.raises(ValidationError) as info:
            TotpSecret.from_base32(text)
        assert info.value.codes == (code,)

    def test_refuses_secrets_under_128_bits(self):
        """RFC 4226 requires at least 128 bits of secret."""
        with pytest.raises(ValidationError) as info:
            TotpSecret(b"x" * 15)
        assert info.value.codes == ("secret.too_short",)

    def test_repr_hides_the_secret(self):
        """Neither raw bytes nor base32 appear in the repr."""
        assert repr(RFC_SECRET) == "TotpSecret(<hidden>)"
        assert "12345" not in repr(RFC_SECRET)

    @settings(max_examples=200)
    @given(st.text(max_size=64))
    def test_from_base32_raises_only_validation_errors(self, text):
        """Any text either parses to a secret or raises ValidationError."""
        try:
            secret = TotpSecret.from_base32(text)
        except ValidationError:
            return
        assert len(secret.value) >= 16

    @settings(max_examples=100)
    @given(st.binary(min_size=16, max_size=64))
    def test_base32_round_trip(self, raw):
        """A secret shown as base32 reads back to the same secret."""
        secret = TotpSecret(raw)
        assert TotpSecret.from_base32(secret.to_base32()) == secret


class TestOtpauthUri:
    def test_shape(self):
        """The URI has the Issuer:account label, issuer parameter and settings."""
        uri = otpauth_uri(RFC_SECRET, issuer="ENSPACE", account_name="ada@example.com")
        assert uri == (
            "otpauth://totp/ENSPACE:ada%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
            "&issuer=ENSPACE&algorithm=SHA1&digits=6&period=30"
        )

    def test_percent_encodes_label_and_issuer(self):
        """Spaces become %20 (not +) and reserved characters are escaped everywhere."""
        uri = otpauth_uri(RFC_SECRET, issuer="ACME & Co/Lab", account_name="a b+c?d#e")
        parts = urlsplit(uri)
        assert " " not in uri
        assert "+" not in uri
        assert parts.path == "/ACME%20%26%20Co%2FLab:a%20b%2Bc%3Fd%23e"
        assert parts.fragment == ""
        query = parse_qs(parts.query)
        assert query["issuer"] == ["ACME & Co/Lab"]
        assert unquote(parts.path[1:]) == "ACME & Co/Lab:a b+c?d#e"

    def test_non_ascii_is_utf8_percent_encoded(self):
        """Non-ASCII names are encoded as UTF-8 percent escapes."""
        uri = otpauth_uri(RFC_SECRET, issuer="Café", account_name="zoë")
        assert "Caf%C3%A9:zo%C3%AB" in uri
        assert "issuer=Caf%C3%A9" in uri

    def test_carries_digits_and_period(self):
        """Non-default settings are written into the URI, also via Totp.provisioning_uri."""
        totp = Totp(digits=8, period=60)
        uri = totp.provisioning_uri(RFC_SECRET, issuer="X", account_name="y")
        assert uri.endswith("&digits=8&period=60")

    def test_reports_all_problems_at_once(self):
        """Colons in both names and a bad digit count are reported together."""
        with pytest.raises(ValidationError) as info:
            otpauth_uri(RFC_SECRET, issuer="a:b", account_name="", digits=5)
        assert info.value.codes == (
            "issuer.invalid",
            "account_name.required",
            "digits.out_of_range",
        )

    def test_refuses_control_characters(self):
        """A newline in a name could corrupt the QR payload and is refused."""
        with pytest.raises(ValidationError) as info:
            otpauth_uri(RFC_SECRET, issuer="ENSPACE", account_name="a\nb")
        assert info.value.codes == ("account_name.invalid",)


class TestTotpConfiguration:
    @pytest.mark.parametrize(
        ("kwargs", "codes"),
        [
            ({"digits": 5}, ("digits.out_of_range",)),
            ({"digits": 9}, ("digits.out_of_range",)),
            ({"period": 0}, ("period.out_of_range",)),
            ({"drift_steps": 2}, ("drift_steps.out_of_range",)),
            ({"drift_steps": -1}, ("drift_steps.out_of_range",)),
            (
                {"digits": 4, "period": -1, "drift_steps": 3},
                ("digits.out_of_range", "period.out_of_range", "drift_steps.out_of_range"),
            ),
        ],
    )
    def test_refuses_bad_settings(self, kwargs, codes):
        """Settings outside the safe range are refused, all problems at once."""
        with pytest.raises(ValidationError) as info:
            Totp(**kwargs)
        assert info.value.codes == codes

    def test_defaults(self):
        """The defaults are what authenticator apps expect: 6 digits, 30 s, ±1 step."""
        assert (Totp().digits, Totp().period, Totp().drift_steps) == (6, 30, 1)


class TestVerify:
    def setup_method(self):
        self.totp = Totp()
        self.secret = TotpSecret.generate(SeededRandom(42))
        self.clock = FixedClock(T0 + timedelta(seconds=15))

    def code(self, offset_steps: int = 0) -> str:
        return self.totp.code_at(
            self.secret, self.clock.now() + timedelta(seconds=30 * offset_steps)
        )

    def test_accepts_the_current_code_and_returns_its_step(self):
        """A correct code returns the time step it belongs to."""
        step = self.totp.verify(self.secret, self.code(), now=self.clock.now(), last_used_step=None)
        assert step == self.totp.time_step(self.clock.now())

    @pytest.mark.parametrize("offset", [-1, 1])
    def test_accepts_one_step_of_drift(self, offset):
        """A code from the previous or next step is accepted (phone clock drift)."""
        step = self.totp.verify(
            self.secret, self.code(offset), now=self.clock.now(), last_used_step=None
        )
        assert step == self.totp.time_step(self.clock.now()) + offset

    @pytest.mark.parametrize("offset", [-3, -2, 2, 3])
    def test_refuses_codes_further_away(self, offset):
        """Codes more than one step away are refused."""
        code = self.code(offset)
        if code in {self.code(-1), self.code(0), self.code(1)}:
            pytest.skip("random collision with an accepted code")
        assert (
            self.totp.verify(self.secret, code, now=self.clock.now(), last_used_step=None) is None
        )

    def test_zero_drift_accepts_only_the_current_step(self):
        """With drift_steps=0 only the current code works."""
        strict = Totp(drift_steps=0)
        now = self.clock.now()
        assert strict.verify(self.secret, self.code(0), now=now, last_used_step=None) is not None
        assert strict.verify(self.secret, self.code(-1), now=now, last_used_step=None) is None

    def test_the_same_code_is_never_accepted_twice(self):
        """Replaying a code after it was accepted fails, even within its step."""
        code = self.code()
        first = self.totp.verify(self.secret, code, now=self.clock.now(), last_used_step=None)
        assert first is not None
        self.clock.advance(seconds=10)
        assert (
            self.totp.verify(self.secret, code, now=self.clock.now(), last_used_step=first) is None
        )

    def test_older_steps_are_refused_after_a_newer_one(self):
        """After step N is used, a still-valid code of step N-1 is refused."""
        newer = self.totp.verify(
            self.secret, self.code(1), now=self.clock.now(), last_used_step=None
        )
        assert newer is not None
        assert (
            self.totp.verify(self.secret, self.code(0), now=self.clock.now(), last_used_step=newer)
            is None
        )

    def test_next_code_works_after_a_used_one(self):
        """The following step's code is accepted once the clock reaches it."""
        used = self.totp.verify(self.secret, self.code(), now=self.clock.now(), last_used_step=None)
        self.clock.advance(seconds=30)
        nxt = self.totp.verify(self.secret, self.code(), now=self.clock.now(), last_used_step=used)
        assert nxt == used + 1  # type: ignore[operator]

    @pytest.mark.parametrize(
        "typed",
        ["{c}", "{a} {b}", " {c} ", "{a}  {b}", "{c}\n", "\t{c}"],
    )
    def test_tolerates_spaces(self, typed):
        """Spaces inside or around the code are ignored ("123 456")."""
        code = self.code()
        text = typed.format(c=code, a=code[:3], b=code[3:])
        assert self.totp.verify(self.secret, text, now=self.clock.now(), last_used_step=None)

    @pytest.mark.parametrize(
        "bad",
        [
            "",
            "12345",
            "1234567",
            "12345a",
            "abcdef",
            "\uff11\uff12\uff13\uff14\uff15\uff16",  # full-width digits
            "١٢٣٤٥٦",
            "12-345",
            None,
            123456,
            b"123456",
        ],
    )
    def test_malformed_input_is_just_no_match(self, bad):
        """Wrong length, non-ASCII digits or non-strings return None, never raise."""
        assert self.totp.verify(self.secret, bad, now=self.clock.now(), last_used_step=None) is None

    def test_wrong_code_is_refused(self):
        """A well-formed but wrong code is refused."""
        wrong = f"{(int(self.code()) + 1) % 10**6:06d}"
        if wrong in {self.code(-1), self.code(1)}:
            pytest.skip("random collision with an accepted code")
        assert (
            self.totp.verify(self.secret, wrong, now=self.clock.now(), last_used_step=None) is None
        )

    def test_does_not_accept_negative_steps_near_the_epoch(self):
        """At the very start of Unix time only non-negative steps are considered."""
        now = at(5)
        code = self.totp.code_at(self.secret, now)
        assert self.totp.verify(self.secret, code, now=now, last_used_step=None) == 0

    def test_rfc_vector_verifies(self):
        """The RFC 6238 vector code verifies at its time (8 digits)."""
        assert (
            Totp(digits=8).verify(RFC_SECRET, "0708 1804", now=at(1111111109), last_used_step=None)
            == 1111111109 // 30
        )

    @settings(max_examples=200)
    @given(st.text(max_size=40))
    def test_arbitrary_input_never_raises(self, typed):
        """Whatever the user types, verify returns a step or None."""
        result = self.totp.verify(self.secret, typed, now=T0, last_used_step=None)
        assert result is None or isinstance(result, int)

    @settings(max_examples=100)
    @given(st.integers(min_value=0, max_value=10**10), st.integers(min_value=-1, max_value=1))
    def test_code_verifies_within_drift_property(self, unix_time, offset):
        """A code from one step either side always verifies, returning that step."""
        now = at(unix_time)
        step = self.totp.time_step(now) + offset
        if step < 0:
            return
        code = self.totp.code_for_step(self.secret, step)
        result = self.totp.verify(self.secret, code, now=now, last_used_step=None)
        assert result is not None
        assert result >= step
        assert self.totp.verify(self.secret, code, now=now, last_used_step=result) is None

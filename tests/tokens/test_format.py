from __future__ import annotations

import contextlib
import re
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enspace_profile._random import SeededRandom
from enspace_profile._tokens.format import (
    BASE62_ALPHABET,
    DEFAULT_TOKEN_FORMAT,
    TOKEN_PATTERN,
    TokenFormat,
    find_tokens,
    token_from_header,
)
from enspace_profile.exceptions import (
    MalformedTokenError,
    TokenChecksumError,
    TokenError,
    ValidationError,
)

FMT = DEFAULT_TOKEN_FORMAT
GOOD = FMT.generate(SeededRandom(42))


def base62(n: int, width: int) -> str:
    digits = []
    for _ in range(width):
        n, r = divmod(n, 62)
        digits.append(BASE62_ALPHABET[r])
    return "".join(reversed(digits))


def other_char(c: str) -> str:
    return "A" if c != "A" else "B"


class TestGenerate:
    def test_default_shape(self):
        """A default token is 'esp_', 30 base62 characters and a 6-character checksum."""
        assert re.fullmatch(r"esp_[0-9A-Za-z]{36}", GOOD)
        assert len(GOOD) == FMT.length == 40

    def test_checksum_is_base62_crc32_of_prefix_and_body(self):
        """The last 6 characters are the zero-padded base62 CRC32 of everything before them."""
        assert GOOD[-6:] == base62(zlib.crc32(GOOD[:-6].encode()), 6)

    def test_deterministic_with_seeded_random(self):
        """The same seed gives the same token, so tests can pin values."""
        assert FMT.generate(SeededRandom(42)) == GOOD
        assert FMT.generate(SeededRandom(43)) != GOOD

    def test_consecutive_tokens_differ(self):
        """Tokens drawn one after another from one source are distinct."""
        rng = SeededRandom(1)
        tokens = {FMT.generate(rng) for _ in range(200)}
        assert len(tokens) == 200

    def test_body_uses_the_whole_alphabet(self):
        """Every base62 character appears in bodies, so no position is biased toward digits."""
        rng = SeededRandom(3)
        seen = set("".join(FMT.generate(rng)[4:-6] for _ in range(100)))
        assert seen == set(BASE62_ALPHABET)

    def test_rejected_bytes_are_replaced(self):
        """Bytes 248-255 are skipped (no modulo bias) and the body is still full length."""

        class HighThenLow:
            def __init__(self) -> None:
                self.calls = 0

            def token_bytes(self, n: int) -> bytes:
                self.calls += 1
                return bytes([255] * n) if self.calls == 1 else bytes([61] * n)

        rng = HighThenLow()
        token = FMT.generate(rng)
        assert token[4:-6] == "z" * 30
        assert rng.calls == 2

    @pytest.mark.parametrize(
        ("prefix", "body_length"),
        [("ab_", 27), ("esp_", 30), ("enspace2026abcd_", 40), ("x9_", 128)],
    )
    def test_custom_formats_round_trip(self, prefix, body_length):
        """Any valid prefix and body length produces tokens that the same format accepts."""
        fmt = TokenFormat(prefix=prefix, body_length=body_length)
        token = fmt.generate(SeededRandom(0))
        assert token.startswith(prefix)
        assert len(token) == len(prefix) + body_length + 6 == fmt.length
        assert fmt.check(token) == token

    @given(seed=st.integers(min_value=0, max_value=2**64))
    @settings(max_examples=100)
    def test_generated_tokens_always_pass_check(self, seed):
        """Every generated token passes check."""
        token = FMT.generate(SeededRandom(seed))
        assert FMT.check(token) == token


class TestFormatConfiguration:
    @pytest.mark.parametrize(
        "prefix",
        ["esp", "e_", "ESP_", "esp-", "_esp_", "abcdefghijklmnopq_", "es p_", "ésp_", "", 5],
    )
    def test_invalid_prefixes_are_refused(self, prefix):
        """A prefix must be 2-16 characters of [a-z0-9] followed by '_'."""
        with pytest.raises(ValidationError) as info:
            TokenFormat(prefix=prefix)
        assert info.value.codes == ("prefix.invalid",)

    @pytest.mark.parametrize("body_length", [0, 26, 129, True, "30"])
    def test_body_too_short_for_160_bits_is_refused(self, body_length):
        """The body must carry at least 160 bits (27 characters) and stay reasonable."""
        with pytest.raises(ValidationError) as info:
            TokenFormat(body_length=body_length)
        assert info.value.codes == ("body_length.out_of_range",)

    def test_max_input_length_must_fit_a_token(self):
        """A maximum input length shorter than a token would refuse every token."""
        with pytest.raises(ValidationError) as info:
            TokenFormat(max_input_length=39)
        assert info.value.codes == ("max_input_length.out_of_range",)
        assert TokenFormat(max_input_length=40).check(GOOD) == GOOD


MALFORMED = [
    pytest.param(None, id="none"),
    pytest.param(12345, id="int"),
    pytest.param(GOOD.encode(), id="bytes"),
    pytest.param(["esp_"], id="list"),
    pytest.param("", id="empty"),
    pytest.param("ghp_" + GOOD[4:], id="other-prefix"),
    pytest.param("ESP_" + GOOD[4:], id="upper-prefix"),
    pytest.param(GOOD[4:], id="no-prefix"),
    pytest.param(GOOD[:-1], id="one-short"),
    pytest.param("esp_", id="prefix-only"),
    pytest.param(GOOD + "A", id="one-long"),
    pytest.param(GOOD * 1000, id="huge"),
    pytest.param(" " + GOOD, id="leading-space"),
    pytest.param(GOOD + "\n", id="trailing-newline"),
    pytest.param(GOOD[:20] + " " + GOOD[21:], id="inner-space"),
    pytest.param(GOOD[:20] + "é" + GOOD[21:], id="non-ascii"),
    pytest.param(GOOD[:20] + "٣" + GOOD[21:], id="non-ascii-digit"),
    pytest.param(GOOD[:20] + "_" + GOOD[21:], id="underscore"),
    pytest.param(GOOD[:20] + "-" + GOOD[21:], id="dash"),
    pytest.param(GOOD[:20] + "\x00" + GOOD[21:], id="nul"),
]


class TestCheck:
    def test_good_token_is_returned(self):
        """A valid token is returned unchanged."""
        assert FMT.check(GOOD) == GOOD

    def test_str_subclass_is_returned_as_plain_str(self):
        """A str subclass is accepted and returned as an exact str."""

        class Secret(str):
            __slots__ = ()

        result = FMT.check(Secret(GOOD))
        assert type(result) is str
        assert result == GOOD

    @pytest.mark.parametrize("raw", MALFORMED)
    def test_malformed_input_is_refused(self, raw):
        """Wrong type, prefix, length or characters raise MalformedTokenError."""
        with pytest.raises(MalformedTokenError) as info:
            FMT.check(raw)
        assert info.value.code == "token.malformed"
        assert info.value.public_message == "invalid token"

    @pytest.mark.parametrize("raw", MALFORMED)
    def test_messages_never_echo_the_input(self, raw):
        """No part of the presented string appears in the error message."""
        with pytest.raises(TokenError) as info:
            FMT.check(raw)
        assert GOOD[4:14] not in str(info.value)

    def test_too_long_input_is_refused_first(self):
        """Input over the maximum is refused as too long, whatever else is wrong with it."""
        with pytest.raises(MalformedTokenError, match="too long"):
            FMT.check("nope" * 100)

    def test_bad_checksum_is_a_checksum_error(self):
        """A well-formed token with a wrong last character raises TokenChecksumError."""
        bad = GOOD[:-1] + other_char(GOOD[-1])
        with pytest.raises(TokenChecksumError) as info:
            FMT.check(bad)
        assert info.value.code == "token.bad_checksum"

    def test_token_of_another_format_is_refused(self):
        """A token made under a different prefix does not pass another format's check."""
        other = TokenFormat(prefix="abc_").generate(SeededRandom(0))
        with pytest.raises(MalformedTokenError):
            FMT.check(other)

    @given(raw=st.text(max_size=300))
    @settings(max_examples=200)
    def test_arbitrary_text_raises_only_token_errors(self, raw):
        """Any string either passes or raises MalformedTokenError/TokenChecksumError."""
        with contextlib.suppress(MalformedTokenError, TokenChecksumError):
            assert FMT.check(raw) == raw

    @given(tail=st.text(alphabet=BASE62_ALPHABET, min_size=36, max_size=36))
    @settings(max_examples=200)
    def test_random_well_shaped_strings_fail_the_checksum(self, tail):
        """Random strings shaped like tokens are almost never accepted (checksum)."""
        raw = "esp_" + tail
        try:
            FMT.check(raw)
        except TokenChecksumError:
            return
        assert tail[-6:] == base62(zlib.crc32(raw[:-6].encode()), 6)

    @given(
        seed=st.integers(min_value=0, max_value=2**32),
        position=st.integers(min_value=0, max_value=39),
        replacement=st.sampled_from(BASE62_ALPHABET),
    )
    @settings(max_examples=200)
    def test_every_single_character_change_is_detected(self, seed, position, replacement):
        """Changing any one character of a valid token to another base62 character is refused."""
        token = FMT.generate(SeededRandom(seed))
        if token[position] == replacement:
            replacement = other_char(replacement)
        mutated = token[:position] + replacement + token[position + 1 :]
        with pytest.raises((MalformedTokenError, TokenChecksumError)):
            FMT.check(mutated)

    def test_every_single_character_change_is_detected_exhaustively(self):
        """For one token, all 40 x 61 single-character substitutions are refused."""
        for position in range(len(GOOD)):
            for char in BASE62_ALPHABET:
                if char == GOOD[position]:
                    continue
                mutated = GOOD[:position] + char + GOOD[position + 1 :]
                assert not FMT.is_valid(mutated), (position, char)

    def test_is_valid(self):
        """is_valid reports what check would do, without raising."""
        assert FMT.is_valid(GOOD)
        assert not FMT.is_valid(GOOD[:-1])
        assert not FMT.is_valid(None)


class TestScanning:
    def test_pattern_matches_generated_tokens(self):
        """The scanner regex fully matches generated tokens."""
        rng = SeededRandom(5)
        for _ in range(50):
            token = FMT.generate(rng)
            assert TOKEN_PATTERN.fullmatch(token)
            assert FMT.pattern is TOKEN_PATTERN

    def test_pattern_is_word_bounded(self):
        """The regex does not match tokens glued to other word characters."""
        assert TOKEN_PATTERN.search("x" + GOOD) is None
        assert TOKEN_PATTERN.search(GOOD + "x") is None
        assert TOKEN_PATTERN.search(GOOD + "_") is None
        assert TOKEN_PATTERN.search(f"({GOOD})") is not None

    @pytest.mark.parametrize(
        "template",
        [
            "{t}",
            "token={t}",
            "Authorization: Bearer {t}\n",
            'export ESP_TOKEN="{t}"',
            "first {t} then {t}",
            "é{t}é",
            "https://x.invalid/?t={t}&a=1",
        ],
    )
    def test_find_tokens_finds_them_in_text(self, template):
        """find_tokens returns every valid token embedded in text, in order."""
        text = template.format(t=GOOD)
        assert find_tokens(text) == [GOOD] * template.count("{t}")

    def test_find_tokens_ignores_lookalikes(self):
        """Candidates with a bad checksum or glued to other characters are not reported."""
        fake = GOOD[:-1] + other_char(GOOD[-1])
        assert find_tokens(f"{fake} a{GOOD} {GOOD}b nothing here") == []

    def test_find_tokens_with_a_custom_format(self):
        """A host's own format finds its own tokens and not the default ones."""
        fmt = TokenFormat(prefix="acme_")
        token = fmt.generate(SeededRandom(9))
        text = f"{GOOD} {token}"
        assert fmt.find_tokens(text) == [token]
        assert find_tokens(text, token_format=fmt) == [token]
        assert find_tokens(text) == [GOOD]


class TestHint:
    def test_hint_shows_prefix_and_last_four(self):
        """The hint is prefix + ellipsis + the last 4 characters and nothing of the body."""
        hint = FMT.hint(GOOD)
        assert hint == "esp_…" + GOOD[-4:]
        assert GOOD[4:-4] not in hint


class TestTokenFromHeader:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("Bearer esp_abc", "esp_abc"),
            ("bearer   esp_abc  ", "esp_abc"),
            ("token esp_abc", "esp_abc"),
            ("TOKEN esp_abc", "esp_abc"),
            (b"Bearer esp_abc", "esp_abc"),
        ],
    )
    def test_accepted_schemes(self, header, expected):
        """Bearer and token schemes, any case, surrounding spaces ignored."""
        assert token_from_header(header) == expected

    @pytest.mark.parametrize(
        "header",
        [None, "", "   ", "Basic dXNlcjpwYXNz", "esp_abc", "Bearer", b"\xff\xfe", "x" * 9000, 42],
    )
    def test_other_headers_are_malformed(self, header):
        """Missing headers, other schemes and junk raise MalformedTokenError."""
        with pytest.raises(MalformedTokenError):
            token_from_header(header)

    @given(value=st.one_of(st.text(max_size=200), st.binary(max_size=50)))
    @settings(max_examples=100)
    def test_any_header_gives_text_or_a_token_error(self, value):
        """Whatever the header holds, the result is text or a MalformedTokenError."""
        with contextlib.suppress(MalformedTokenError):
            assert isinstance(token_from_header(value), str)

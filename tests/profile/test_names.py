import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enspace_profile._profile.names import (
    NamePolicy,
    display_name,
    grapheme_length,
    initials,
    normalize_name,
)
from enspace_profile.exceptions import ValidationError


class TestNormalizeName:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("Ada", "Ada"),
            ("  Ada  ", "Ada"),
            ("Ana\u00a0\u2003María", "Ana María"),  # NBSP and em space collapse
            ("Jean\t\n-Luc", "Jean -Luc"),
            ("e\u0301mile", "\u00e9mile"),  # decomposed input becomes NFC
            ("O'Brien", "O'Brien"),
            ("O’Brien", "O’Brien"),
            ("Mary-Jane", "Mary-Jane"),
            ("J. R. R.", "J. R. R."),
            ("X", "X"),  # one-letter names are fine
            ("李", "李"),
            ("محمد", "محمد"),
            ("ישראל", "ישראל"),
            ("Ngũgĩ", "Ngũgĩ"),
            ("میرزا\u200cحسین", "میرزا\u200cحسین"),  # ZWNJ (Persian) kept
            ("क्षत्रिय", "क्षत्रिय"),
            ("👩\u200d💻", "👩\u200d💻"),  # ZWJ emoji kept
            ("Ａｄａ", "Ａｄａ"),  # full-width letters are letters: NFC keeps them
        ],
    )
    def test_accepts_and_normalises(self, raw: str, expected: str) -> None:
        """Names from every script are accepted and normalised (NFC, collapsed white space)."""
        assert normalize_name(raw) == expected

    @pytest.mark.parametrize(
        ("raw", "code"),
        [
            ("a\u0000b", "first_name.invalid_character"),  # NUL
            ("a\u0007b", "first_name.invalid_character"),  # bell
            ("a\u202eb", "first_name.invalid_character"),  # RTL override
            ("a\u2066b", "first_name.invalid_character"),  # LR isolate
            ("a\u200eb", "first_name.invalid_character"),  # LRM
            ("a\u00adb", "first_name.invalid_character"),  # soft hyphen
            ("a\ufeffb", "first_name.invalid_character"),  # BOM / ZWNBSP
            ("a\ue000b", "first_name.invalid_character"),  # private use
            ("a\U000e0041b", "first_name.invalid_character"),  # tag character
            ("a\ud800b", "first_name.invalid_character"),  # lone surrogate
            ("a\U0010fffeb", "first_name.invalid_character"),  # noncharacter / unassigned
            ("", "first_name.required"),
            ("   \u3000 ", "first_name.required"),
            ("x" * 65, "first_name.too_long"),
            ("x" * 10_000, "first_name.too_long"),
            (None, "first_name.invalid_type"),
            (42, "first_name.invalid_type"),
            (b"Ada", "first_name.invalid_type"),
        ],
    )
    def test_refuses_with_stable_code(self, raw: object, code: str) -> None:
        """Unusable input is refused with a ValidationError carrying a stable code."""
        with pytest.raises(ValidationError) as info:
            normalize_name(raw)
        assert info.value.codes == (code,)
        assert info.value.errors[0].field == "first_name"

    def test_limit_counts_graphemes_not_code_points(self) -> None:
        """64 family emoji (each several code points) fit a 64-character limit."""
        family = "👨\u200d👩\u200d👧\u200d👦"
        assert len(family) == 7
        assert normalize_name(family * 64) == family * 64
        with pytest.raises(ValidationError) as info:
            normalize_name(family * 65)
        assert info.value.errors[0].params == {"limit": 64, "actual": 65}

    def test_limits_are_configurable(self) -> None:
        """A host can require a last name and shorten first names."""
        policy = NamePolicy(first_name_max=3, last_name_min=1)
        with pytest.raises(ValidationError) as info:
            normalize_name("Abcd", policy=policy)
        assert info.value.codes == ("first_name.too_long",)
        with pytest.raises(ValidationError) as info:
            normalize_name("", field="last_name", policy=policy)
        assert info.value.codes == ("last_name.required",)

    def test_last_name_may_be_empty_by_default(self) -> None:
        """An empty last name is valid by default."""
        assert normalize_name("  ", field="last_name") == ""

    def test_tab_and_newline_are_white_space_not_errors(self) -> None:
        """Control characters that are white space collapse instead of failing."""
        assert normalize_name("Ana\r\nMaria") == "Ana Maria"

    @given(st.text(max_size=200))
    def test_only_validation_error_escapes_and_is_idempotent(self, raw: str) -> None:
        """Any text either normalises idempotently or raises ValidationError."""
        try:
            once = normalize_name(raw)
        except ValidationError:
            return
        assert normalize_name(once) == once
        assert once == once.strip()
        assert "  " not in once
        assert unicodedata.is_normalized("NFC", once)
        assert 1 <= grapheme_length(once) <= 64

    @given(st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text())))
    def test_non_text_is_refused(self, raw: object) -> None:
        """Non-text input raises ValidationError, never TypeError."""
        with pytest.raises(ValidationError):
            normalize_name(raw)


class TestInitials:
    @pytest.mark.parametrize(
        ("first", "last", "expected"),
        [
            ("Ada", "Lovelace", "AL"),
            ("ada", "lovelace", "AL"),
            ("Ada", None, "A"),
            ("Ada", "", "A"),
            ("Jürgen", "von der Straße", "JS"),  # last word of the last name
            ("Gabriel", "García Márquez", "GM"),
            ("María", "García-Márquez", "MG"),
            ("e\u0301mile", "zola", "ÉZ"),  # decomposed accent is not split off
            ("Émile", "Zola", "ÉZ"),
            ("ßtefan", None, "ß"),  # upper-casing "ß" would give "SS": kept
            ("太郎", "山田", "太"),  # CJK: one character
            ("민준", "김", "민"),  # Hangul
            ("さくら", "山本", "さ"),  # Kana
            ("Ana", "山田", "A"),  # a CJK last name is not mixed in
            ("'Ana", None, "A"),  # leading punctuation skipped
            ("...Ana", "d'Arc", "AD"),
            ("3rd", "Person", "RP"),  # leading digit skipped when a letter exists
            ("123", None, "1"),  # no letter: the first digit
            ("😀", None, "😀"),
            ("👩\u200d💻 Ana", None, "A"),
            ("👩\u200d💻", "🇧🇷", "👩\u200d💻🇧🇷"),  # ZWJ sequence and flag stay whole
            ("क्षमा", None, "क्ष"),  # Indic conjunct is one grapheme
            ("محمد", "علي", "مع"),
            ("  Ana  ", "  de   Souza ", "AS"),
        ],
    )
    def test_table(self, first: str, last: str | None, expected: str) -> None:
        """Initials are grapheme-aware and follow the documented rules."""
        assert initials(first, last) == expected

    def test_invalid_name_raises_validation_error(self) -> None:
        """Initials of an invalid name raise ValidationError, not a crash."""
        with pytest.raises(ValidationError):
            initials("")
        with pytest.raises(ValidationError):
            initials("Ada", "a\u202eb")

    @given(st.text(min_size=1, max_size=40), st.one_of(st.none(), st.text(max_size=40)))
    def test_never_empty_for_valid_names(self, first: str, last: str | None) -> None:
        """Every valid name gets non-empty initials of at most two graphemes."""
        try:
            result = initials(first, last)
        except ValidationError:
            return
        assert result
        assert 1 <= grapheme_length(result) <= 2


class TestDisplayName:
    @pytest.mark.parametrize(
        ("first", "last", "expected"),
        [("Ana", "Souza", "Ana Souza"), ("Cher", None, "Cher"), ("Cher", "", "Cher")],
    )
    def test_joins_names(self, first: str, last: str | None, expected: str) -> None:
        """The display name joins first and last name, without a dangling space."""
        assert display_name(first, last) == expected

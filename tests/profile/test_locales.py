from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enspace_profile._profile.locales import (
    DEFAULT_LANGUAGES,
    MAX_HEADER_ITEMS,
    MAX_HEADER_LENGTH,
    Language,
    LocaleCatalog,
)
from enspace_profile.exceptions import ValidationError


@pytest.fixture(scope="module")
def catalog() -> LocaleCatalog:
    return LocaleCatalog.default()


@pytest.fixture(scope="module")
def regional() -> LocaleCatalog:
    """A host catalog exercising aliases, scripts and regional variants."""
    return LocaleCatalog(
        ["en", "nb", "he", "id", "yi", "sr", "sr_Latn", "pt_PT", "es", "zh_Hant"],
        default="en",
    )


# Ranges a browser could send, for structured headers in property tests.
RANGES = st.sampled_from(
    [
        "en",
        "en-US",
        "en-GB",
        "pt-BR",
        "pt",
        "pt-PT",
        "es",
        "es-MX",
        "es-419",
        "zh",
        "zh-TW",
        "zh-HK",
        "zh-CN",
        "zh-Hant",
        "sr-Latn",
        "iw",
        "no",
        "ar",
        "he",
        "ja",
        "xx",
        "und",
        "*",
        "de-CH",
        "fr-CA",
    ],
)
QVALUES = st.sampled_from(["", ";q=1", ";q=0.9", ";q=0.5", ";q=0.001", ";q=0", ";q=abc", ";Q=0.7"])


class TestDefaultCatalog:
    def test_ships_the_required_languages(self, catalog):
        """The shipped catalog offers at least twelve languages including the required ones."""
        required = {"en", "pt_BR", "es", "fr", "de", "ja", "zh_Hans", "zh_Hant", "ar", "he"}
        assert len(catalog) >= 12
        assert required <= set(catalog.identifiers)

    def test_keeps_menu_order(self, catalog):
        """Languages come back in the order the catalog lists them."""
        assert catalog.identifiers == DEFAULT_LANGUAGES
        assert tuple(language.identifier for language in catalog) == DEFAULT_LANGUAGES
        assert catalog.languages == tuple(catalog)

    def test_default_is_english(self, catalog):
        """The shipped catalog falls back to English."""
        assert catalog.default.identifier == "en"
        assert catalog.default is catalog.default_language

    def test_default_on_the_class_builds_a_catalog(self):
        """`LocaleCatalog.default()` builds the shipped catalog, equal to `shipped()`."""
        assert LocaleCatalog.default() == LocaleCatalog.shipped()

    @pytest.mark.parametrize("spelling", ["pt_BR", "pt-BR", "pt-br", "PT_BR"])
    def test_get_and_contains_accept_any_spelling(self, catalog, spelling):
        """Lookup ignores case and accepts `-` or `_`."""
        assert spelling in catalog
        language = catalog.get(spelling)
        assert language is not None
        assert language.identifier == "pt_BR"

    @pytest.mark.parametrize("value", ["pt", "xx", "und", "", None, 42, b"en", "pt__BR"])
    def test_get_and_contains_reject_others(self, catalog, value):
        """Unsupported or malformed values are simply absent, never an error."""
        assert value not in catalog
        assert catalog.get(value) is None

    def test_repr_lists_identifiers(self):
        """The repr shows the identifiers and the default, not every name."""
        assert repr(LocaleCatalog(["en", "de"])) == "LocaleCatalog(['en', 'de'], default='en')"


class TestLanguage:
    @pytest.mark.parametrize(
        ("identifier", "tag", "native_name", "english_name"),
        [
            ("en", "en", "English", "English"),
            ("pt_BR", "pt-BR", "Português (Brasil)", "Portuguese (Brazil)"),
            ("de", "de", "Deutsch", "German"),
            ("fr", "fr", "Français", "French"),
            ("es_419", "es-419", "Español (Latinoamérica)", "Spanish (Latin America)"),
            ("ru", "ru", "Русский", "Russian"),
            ("ja", "ja", "日本語", "Japanese"),
            ("zh_Hans", "zh-Hans", "中文 (简体)", "Chinese (Simplified)"),
            ("zh_Hant", "zh-Hant", "中文 (繁體)", "Chinese (Traditional)"),
        ],
    )
    def test_names_and_tags(self, catalog, identifier, tag, native_name, english_name):
        """Each language carries its BCP 47 tag and CLDR names for a menu."""
        language = catalog.get(identifier)
        assert language == Language(
            identifier=identifier,
            tag=tag,
            native_name=native_name,
            english_name=english_name,
            direction="ltr",
        )

    def test_native_names_are_capitalised(self, catalog):
        """Every native name starts with a capital where the script has case."""
        for language in catalog:
            first = language.native_name[0]
            assert first == first.title(), language

    @pytest.mark.parametrize(
        ("identifier", "direction"),
        [("ar", "rtl"), ("he", "rtl"), ("en", "ltr"), ("ja", "ltr"), ("zh_Hant", "ltr")],
    )
    def test_direction_of_shipped_languages(self, catalog, identifier, direction):
        """Arabic and Hebrew are right to left; the others left to right."""
        language = catalog.get(identifier)
        assert language is not None
        assert language.direction == direction

    @pytest.mark.parametrize(
        ("identifier", "direction"),
        [("fa", "rtl"), ("ur", "rtl"), ("ps", "rtl"), ("yi", "rtl"), ("sr_Latn", "ltr")],
    )
    def test_direction_comes_from_cldr(self, identifier, direction):
        """Direction is read from CLDR for any locale a host adds, not from a fixed list."""
        language = LocaleCatalog([identifier], default=identifier).default
        assert language.direction == direction

    def test_is_immutable(self, catalog):
        """A language cannot be changed after the catalog is built."""
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            catalog.default.native_name = "Anglais"  # type: ignore[misc]

    def test_rejects_unknown_direction(self):
        """Only `ltr` and `rtl` are directions."""
        with pytest.raises(ValueError, match="direction"):
            Language(
                identifier="en",
                tag="en",
                native_name="English",
                english_name="English",
                direction="up",  # type: ignore[arg-type]
            )


class TestConstruction:
    def test_canonicalises_host_identifiers(self):
        """Hosts may spell identifiers in any case and with `-`; the CLDR spelling is kept."""
        catalog = LocaleCatalog(["PT-br", "zh-hant", "EN"], default="pt-BR")
        assert catalog.identifiers == ("pt_BR", "zh_Hant", "en")
        assert catalog.default.identifier == "pt_BR"

    def test_default_argument_is_english(self):
        """Without `default`, English is the default."""
        assert LocaleCatalog(["de", "en"]).default.identifier == "en"

    @pytest.mark.parametrize(
        ("identifiers", "default", "codes"),
        [
            (["en", "xx"], "en", ("identifiers.unknown",)),
            (["en", "und"], "en", ("identifiers.unknown",)),
            (["en", "en_ZZ"], "en", ("identifiers.unknown",)),
            (["en", "root"], "en", ("identifiers.unknown",)),
            (["en", "zh_TW"], "en", ("identifiers.unknown",)),
            (["en", 5], "en", ("identifiers.unknown",)),
            (["en", "pt__BR"], "en", ("identifiers.unknown",)),
            (["en", "EN"], "en", ("identifiers.duplicate",)),
            ([], "en", ("identifiers.empty",)),
            ("en", "en", ("identifiers.invalid",)),
            (None, "en", ("identifiers.invalid",)),
            (["de"], "en", ("default.unsupported",)),
            (["de"], "und", ("default.unsupported",)),
            (
                ["en", "xx", "en", "fr"],
                "de",
                ("identifiers.unknown", "identifiers.duplicate", "default.unsupported"),
            ),
        ],
    )
    def test_reports_every_problem(self, identifiers, default, codes):
        """Bad host configuration raises one ValidationError listing every problem."""
        with pytest.raises(ValidationError) as caught:
            LocaleCatalog(identifiers, default=default)
        assert caught.value.codes == codes

    def test_never_substitutes_a_locale(self):
        """Babel's lossy parsing (`und` -> `en_US`) never turns a typo into a language."""
        with pytest.raises(ValidationError) as caught:
            LocaleCatalog(["und"], default="und")
        assert caught.value.errors[0].params == {"values": ("'und'",)}

    def test_equal_catalogs(self):
        """Catalogs with the same languages and default are equal and hash alike."""
        first = LocaleCatalog(["en", "de"], default="de")
        second = LocaleCatalog(["EN", "de"], default="DE")
        assert first == second
        assert hash(first) == hash(second)
        assert first != LocaleCatalog(["en", "de"], default="en")


class TestValidate:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("en", "en"),
            ("EN", "en"),
            ("pt_BR", "pt_BR"),
            ("pt-BR", "pt_BR"),
            ("pt-br", "pt_BR"),
            ("PT_BR", "pt_BR"),
            ("zh-hans", "zh_Hans"),
            ("ZH_HANT", "zh_Hant"),
            ("es-419", "es_419"),
        ],
    )
    def test_accepts_any_spelling_of_a_supported_identifier(self, catalog, value, expected):
        """Case and separator do not matter; the canonical identifier comes back."""
        assert catalog.validate(value) == expected

    @pytest.mark.parametrize(
        ("value", "code"),
        [
            ("und", "language.unsupported"),
            ("en_ZZ", "language.unsupported"),
            ("en_US", "language.unsupported"),
            ("xx", "language.unsupported"),
            ("pt", "language.unsupported"),
            ("iw", "language.unsupported"),
            ("zh", "language.unsupported"),
            ("", "language.invalid"),
            ("pt__BR", "language.invalid"),
            ("pt_", "language.invalid"),
            ("-pt", "language.invalid"),
            (" en", "language.invalid"),
            ("en\n", "language.invalid"),
            ("e", "language.invalid"),
            ("pt_BRAZILIAN", "language.invalid"),
            ("\u212ao", "language.invalid"),  # KELVIN SIGN lower-cases to "k"
            ("x" * 10_000, "language.invalid"),
            (42, "language.invalid"),
            (None, "language.invalid"),
            (b"en", "language.invalid"),
            (["en"], "language.invalid"),
        ],
    )
    def test_rejects_with_a_code(self, catalog, value, code):
        """Anything but a supported identifier raises ValidationError with a stable code."""
        with pytest.raises(ValidationError) as caught:
            catalog.validate(value)
        assert caught.value.codes == (code,)
        assert caught.value.errors[0].params["supported"] == catalog.identifiers

    def test_unsupported_error_names_the_value(self, catalog):
        """An unsupported but well-formed value is echoed so a UI can show it."""
        with pytest.raises(ValidationError) as caught:
            catalog.validate("xx")
        assert caught.value.errors[0].params["value"] == "xx"

    def test_uses_the_callers_field_name(self, catalog):
        """The field name is the caller's, in both the field and the code."""
        with pytest.raises(ValidationError) as caught:
            catalog.validate("xx", field="ui_language")
        assert caught.value.fields == ("ui_language",)
        assert caught.value.codes == ("ui_language.unsupported",)

    @settings(max_examples=200)
    @given(
        value=st.one_of(
            st.text(),
            st.from_regex(r"[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8}){0,3}", fullmatch=True),
            st.sampled_from(DEFAULT_LANGUAGES).map(str.upper),
            st.binary(),
            st.integers(),
            st.none(),
            st.floats(),
        ),
    )
    def test_only_raises_validation_error_and_is_idempotent(self, catalog, value):
        """Validation returns an identifier that validates to itself, or raises only ours."""
        codes: tuple[str, ...] = ()
        result = None
        try:
            result = catalog.validate(value)
        except ValidationError as error:
            codes = error.codes
        if result is None:
            assert codes in {("language.invalid",), ("language.unsupported",)}
        else:
            assert result in catalog.identifiers
            assert catalog.validate(result) == result


class TestNegotiate:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            # Chrome, Brazilian Portuguese UI.
            ("pt-BR,pt;q=0.9,en-US;q=0.8,en;q=0.7", "pt_BR"),
            # Safari, Taiwan (older Safari sends lower case).
            ("zh-TW", "zh_Hant"),
            ("zh-tw", "zh_Hant"),
            ("zh-TW,zh-Hant;q=0.9", "zh_Hant"),
            # Chrome, Hong Kong / mainland / Singapore.
            ("zh-HK,zh;q=0.9,en;q=0.8", "zh_Hant"),
            ("zh-CN,zh;q=0.9", "zh_Hans"),
            ("zh-SG,zh;q=0.9,en;q=0.8", "zh_Hans"),
            ("zh", "zh_Hans"),
            ("zh-Hant-HK", "zh_Hant"),
            ("zh-MO", "zh_Hant"),
            # Firefox with q values.
            ("fr-FR,fr;q=0.8,en-US;q=0.5,en;q=0.3", "fr"),
            ("de,en-US;q=0.7,en;q=0.3", "de"),
            ("en-US,en;q=0.5", "en"),
            # Spanish: CLDR parent exceptions send Latin America to es_419.
            ("es-MX,es;q=0.9,en;q=0.8", "es_419"),
            ("es-AR", "es_419"),
            ("es-US", "es_419"),
            ("es-419", "es_419"),
            ("es-ES,es;q=0.9", "es"),
            ("es", "es"),
            # Old Java/Android codes.
            ("iw", "he"),
            ("iw-IL,en;q=0.5", "he"),
            # Region-only differences fall back to the language.
            ("en-GB,en;q=0.9", "en"),
            ("de-CH", "de"),
            ("nl-BE,nl;q=0.9", "nl"),
            ("ar-SA,ar;q=0.9,en;q=0.8", "ar"),
            ("ja-JP", "ja"),
            ("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7", "ko"),
            ("hi-IN", "hi"),
            # Another regional variant of the language beats the next preference.
            ("pt-PT,pt;q=0.9,en;q=0.8", "pt_BR"),
            ("pt", "pt_BR"),
            # Unsupported languages move on to the next range.
            ("sr-Latn-RS,sr;q=0.9,en;q=0.8", "en"),
            ("sr-Latn", "en"),
            ("xx-YY, de;q=0.5", "de"),
            ("sv-SE,sv;q=0.9,de;q=0.8", "de"),
            # Wildcard.
            ("*", "en"),
            ("*;q=0.5, fr", "fr"),
            ("sv, *;q=0.1", "en"),
        ],
    )
    def test_real_browser_headers(self, catalog, header, expected):
        """Headers sent by real browsers pick the language a user expects."""
        assert catalog.negotiate(header) == expected

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("no", "nb"),
            ("no-NO", "nb"),
            ("nn", "nb"),
            ("nb-NO", "nb"),
            ("in", "id"),
            ("in-ID", "id"),
            ("ji", "yi"),
            ("iw", "he"),
            ("sh", "sr_Latn"),
            ("sr-Latn", "sr_Latn"),
            ("sr-Latn-RS", "sr_Latn"),
            ("sr-ME", "sr_Latn"),
            ("sr", "sr"),
            ("sr-Cyrl-RS", "sr"),
            ("pt-BR", "pt_PT"),
            ("pt-AO", "pt_PT"),
            ("es-MX", "es"),
            ("zh-HK", "zh_Hant"),
            ("zh-CN, es;q=0.5", "es"),
        ],
    )
    def test_host_catalog_fallbacks(self, regional, header, expected):
        """Aliases, scripts and CLDR parents resolve against whatever the host supports."""
        assert regional.negotiate(header) == expected

    @pytest.mark.parametrize(
        ("identifiers", "header", "expected"),
        [
            (["en", "zh"], "zh-TW", "zh"),
            (["en", "sr"], "sr-Latn", "sr"),
            (["en_US", "en_GB"], "en-AU", "en_GB"),
            (["en_US", "en_GB"], "en-IN", "en_GB"),
            (["en_US", "en_GB"], "en", "en_US"),
            (["en_GB", "en"], "en-AU", "en"),
            (["pt_PT", "pt_BR"], "pt", "pt_BR"),
            (["pt_PT", "pt_BR"], "pt-MZ", "pt_PT"),
            (["en", "no"], "nb", "no"),
        ],
    )
    def test_truncation_and_regional_variants(self, identifiers, header, expected):
        """RFC 4647 truncation and CLDR regional groupings find the closest variant."""
        catalog = LocaleCatalog(identifiers, default=identifiers[0])
        assert catalog.negotiate(header) == expected

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("fr;q=0.5, de", "de"),
            ("de;q=0.8, fr;q=0.8", "de"),
            ("fr;q=0.8, de;q=0.8", "fr"),
            ("ja;q=0.1, ko;q=0.2, ar;q=0.3", "ar"),
            ("fr;q=1.000, de;q=0.999", "fr"),
            ("fr ; q = 0.3 , de ; q=0.4", "de"),
            ("fr;Q=0.3, de;q=0.4", "de"),
            ("de;level=1;q=0.4, fr;q=0.3", "de"),
        ],
    )
    def test_orders_by_q_then_header_order(self, catalog, header, expected):
        """Higher q wins; equal q keeps the header's order."""
        assert catalog.negotiate(header) == expected

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("fr;q=0", "en"),
            ("fr;q=0, fr-CA", "en"),
            ("fr-CA, fr;q=0", "en"),
            ("fr;q=0.000, de", "de"),
            ("pt;q=0, pt-PT, es;q=0.5", "es"),
            ("zh;q=0, zh-TW, ja;q=0.5", "ja"),
            ("iw;q=0, he, ar;q=0.5", "ar"),
            ("en;q=0", "en"),
            ("*;q=0, de", "de"),
            ("*;q=0", "en"),
        ],
    )
    def test_q_zero_excludes(self, catalog, header, expected):
        """`q=0` rules a language out even when another range would fall back to it."""
        assert catalog.negotiate(header) == expected

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("de;q=abc, fr", "fr"),
            ("de;q=2, fr;q=0.1", "fr"),
            ("de;q=0.0001, fr;q=0.1", "fr"),
            ("de;q=-1, fr;q=0.1", "fr"),
            ("de;q=, fr;q=0.1", "fr"),
            ("de;q=abc", "de"),
            ("de;q=abc, ja;q=abc", "de"),
        ],
    )
    def test_malformed_q_ranks_last(self, catalog, header, expected):
        """An item with an unreadable q stays a candidate but after every readable one."""
        assert catalog.negotiate(header) == expected

    @pytest.mark.parametrize(
        "header",
        [
            None,
            "",
            " ",
            ",,,",
            ";q=0.5",
            "garbage;;;,,",
            "\x00\xff\ud800",
            "i-klingon",
            "x-pig-latin",
            "en_US.UTF-8",
            "12-34",
            "日本語",
            "\u212ao",
            "q=1",
            "*-CH",
            "und",
            "und-TW",
            "en-" + "x" * 9,
        ],
    )
    def test_garbage_falls_back_to_the_default(self, catalog, header):
        """Missing or unreadable headers give the catalog default."""
        assert catalog.negotiate(header) == "en"

    @pytest.mark.parametrize("value", [b"de", 42, ["de"]])
    def test_non_string_is_treated_as_absent(self, catalog, value):
        """A value that is not a string (a host bug) still gives the default."""
        assert catalog.negotiate(value) == "en"

    def test_reads_only_the_first_items(self, catalog):
        """Items past the limit are ignored."""
        filler = "xx, " * (MAX_HEADER_ITEMS - 1)
        assert catalog.negotiate(filler + "de") == "de"
        assert catalog.negotiate(filler + "xx, de") == "en"

    def test_reads_only_the_first_characters(self, catalog):
        """Text past the length limit is ignored, cutting at a comma so no item is truncated."""
        long_item = "en-" + "-".join(["abcdefgh"] * 500)
        assert len(long_item) > MAX_HEADER_LENGTH
        assert catalog.negotiate(long_item) == "en"
        assert catalog.negotiate(f"{long_item}, de") == "en"
        padding = " " * MAX_HEADER_LENGTH
        assert catalog.negotiate(f"de;q=0.1,{padding},fr") == "de"
        assert catalog.negotiate(f"fr;q=0.1, {'x' * 10 * MAX_HEADER_LENGTH}") == "fr"

    def test_cached_answers_match_fresh_ones(self, catalog):
        """Asking twice, or from many threads, gives the same answer as a fresh catalog."""
        headers = ["pt-BR,pt;q=0.9", "zh-HK", "es-MX", "iw", "*", "xx"] * 50
        fresh = LocaleCatalog.default()
        expected = [fresh.negotiate(header) for header in headers]
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(catalog.negotiate, headers))
        assert results == expected

    @settings(max_examples=200)
    @given(header=st.one_of(st.none(), st.text(), st.text(alphabet=",;=-_ q.*0123456789enzhptHK")))
    def test_never_raises_and_answers_from_the_catalog(self, catalog, header):
        """Whatever the header, the answer is one of the catalog's identifiers."""
        assert catalog.negotiate(header) in catalog.identifiers

    @settings(max_examples=200)
    @given(items=st.lists(st.tuples(RANGES, QVALUES), max_size=8))
    def test_structured_headers(self, regional, items):
        """A well-formed header yields a catalog identifier; a supported first choice wins."""
        header = ", ".join(f"{language_range}{q}" for language_range, q in items)
        result = regional.negotiate(header)
        assert result in regional.identifiers
        if items and items[0][1] in {"", ";q=1"} and all(q != ";q=0" for _, q in items):
            first = regional.get(items[0][0])
            if first is not None:
                assert result == first.identifier


def _run_python(code: str) -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, object] = json.loads(completed.stdout)
    return result


_REPORT_BABEL_STATE = """
import json, sys
localedata = sys.modules.get("babel.localedata")
core = sys.modules.get("babel.core")
print(json.dumps({
    "locales": sorted(localedata._cache) if localedata else [],
    "global": bool(core and core._global_data is not None),
}))
"""


class TestLoadingCost:
    def test_import_loads_no_locale_data(self):
        """Importing the package (and this module) reads no Babel locale data."""
        state = _run_python(
            "import enspace_profile, enspace_profile._profile.locales\n" + _REPORT_BABEL_STATE,
        )
        assert state == {"locales": [], "global": False}

    def test_build_loads_only_the_supported_locales(self):
        """A catalog loads the data of its own locales and their CLDR parents, nothing more."""
        state = _run_python(
            "from enspace_profile._profile.locales import LocaleCatalog\n"
            "LocaleCatalog(['en', 'pt_BR', 'zh_Hant'])\n" + _REPORT_BABEL_STATE,
        )
        loaded = state["locales"]
        assert isinstance(loaded, list)
        assert set(loaded) <= {"root", "en", "pt", "pt_BR", "zh", "zh_Hant"}

from __future__ import annotations

import math
import re

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enspace_profile._profile.themes import (
    CONTRAST_RULES,
    HIGH_CONTRAST_TEXT_MINIMUM,
    TOKEN_NAMES,
    ColorScheme,
    ContrastKind,
    Theme,
    ThemeCatalog,
    ThemeMode,
    ThemePreference,
    ThemeTokens,
    check_contrast,
    contrast_ratio,
    normalize_color,
    relative_luminance,
)
from enspace_profile.exceptions import AlreadyExistsError, NotFoundError, ValidationError

BUILTIN_IDS = (
    "light",
    "dark",
    "light-high-contrast",
    "dark-high-contrast",
    "light-colorblind",
    "dark-colorblind",
)

hex_colors = st.integers(min_value=0, max_value=0xFFFFFF).map(lambda n: f"#{n:06x}")

GOOD_LIGHT_TOKENS = {
    "background": "#ffffff",
    "surface": "#f5f5f5",
    "text": "#111111",
    "muted_text": "#555555",
    "accent": "#0b57d0",
    "accent_text": "#ffffff",
    "border": "#808080",
    "danger": "#b00020",
    "success": "#1b6e2e",
    "warning": "#8a5a00",
    "focus": "#0b57d0",
}
GOOD_DARK_TOKENS = {
    **GOOD_LIGHT_TOKENS,
    "background": "#101010",
    "surface": "#1a1a1a",
    "text": "#f0f0f0",
    "muted_text": "#b0b0b0",
    "accent": "#7fb0ff",
    "accent_text": "#000000",
    "border": "#707070",
    "danger": "#ff8080",
    "success": "#60d080",
    "warning": "#e0b040",
    "focus": "#7fb0ff",
}


def make_theme(
    theme_id: str = "ocean",
    *,
    scheme: ColorScheme = ColorScheme.LIGHT,
    high_contrast: bool = False,
    deprecated_by: str | None = None,
    **tokens: str,
) -> Theme:
    base = GOOD_LIGHT_TOKENS if scheme is ColorScheme.LIGHT else GOOD_DARK_TOKENS
    return Theme(
        id=theme_id,
        name="Host theme",
        scheme=scheme,
        tokens=ThemeTokens(**{**base, **tokens}),
        high_contrast=high_contrast,
        deprecated_by=deprecated_by,
    )


@pytest.fixture
def catalog() -> ThemeCatalog:
    return ThemeCatalog.default()


class TestContrastRatio:
    @pytest.mark.parametrize(
        ("foreground", "background", "expected"),
        [
            ("#000000", "#ffffff", 21.0),
            ("#000", "#fff", 21.0),
            ("#ffffff", "#000000", 21.0),
            ("#777777", "#ffffff", 4.48),
            ("#767676", "#ffffff", 4.54),
            ("#ff0000", "#ffffff", 4.0),
            ("#123456", "#123456", 1.0),
        ],
    )
    def test_known_values(self, foreground: str, background: str, expected: float) -> None:
        """The WCAG 2.x ratio matches published reference values to two decimals."""
        assert round(contrast_ratio(foreground, background), 2) == expected

    def test_threshold_is_not_rounded(self) -> None:
        """#777777 on white is just under 4.5:1 and must not be reported as passing."""
        assert contrast_ratio("#777777", "#ffffff") < 4.5

    @pytest.mark.parametrize(
        ("short", "long"), [("#abc", "#aabbcc"), ("#ABC", "#aabbcc"), ("#AbCdEf", "#abcdef")]
    )
    def test_short_and_upper_case_forms(self, short: str, long: str) -> None:
        """#rgb and upper-case colours are the same colours as their #rrggbb forms."""
        assert contrast_ratio(short, "#000000") == contrast_ratio(long, "#000000")

    @pytest.mark.parametrize(
        "bad", ["", "fff", "#ffff", "#gggggg", "#ffffff0", "red", "#١٢٣", "#fff\n#fff", None, 0xFFF]
    )
    def test_bad_colour_raises_validation_error(self, bad: object) -> None:
        """A malformed colour raises ValidationError with field 'color' and code color.invalid."""
        with pytest.raises(ValidationError) as info:
            contrast_ratio(bad, "#ffffff")  # type: ignore[arg-type]
        assert info.value.fields == ("color",)
        assert info.value.codes == ("color.invalid",)

    def test_both_bad_colours_reported(self) -> None:
        """When both colours are malformed both are reported, each with its role."""
        with pytest.raises(ValidationError) as info:
            contrast_ratio("nope", "#12")
        assert [e.params["role"] for e in info.value.errors] == ["foreground", "background"]

    @settings(max_examples=200)
    @given(hex_colors, hex_colors)
    def test_symmetric_and_bounded(self, first: str, second: str) -> None:
        """The ratio does not depend on argument order and lies between 1 and 21."""
        ratio = contrast_ratio(first, second)
        assert ratio == contrast_ratio(second, first)
        assert 1.0 <= ratio <= 21.0 + 1e-9

    @settings(max_examples=100)
    @given(hex_colors)
    def test_luminance_in_unit_interval(self, color: str) -> None:
        """Relative luminance is between 0 (black) and 1 (white)."""
        assert 0.0 <= relative_luminance(color) <= 1.0

    @settings(max_examples=200)
    @given(st.text(max_size=10))
    def test_arbitrary_text_only_raises_validation_error(self, text: str) -> None:
        """Any string either parses as a colour or raises ValidationError, nothing else."""
        if re.fullmatch(r"#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}", text.strip()):
            assert 1.0 <= contrast_ratio(text, "#ffffff") <= 21.0 + 1e-9
        else:
            with pytest.raises(ValidationError) as info:
                contrast_ratio(text, "#ffffff")
            assert info.value.codes == ("color.invalid",)


class TestNormalizeColor:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [("#FFF", "#ffffff"), (" #0a0B0c ", "#0a0b0c"), ("#123", "#112233")],
    )
    def test_normalises_to_lowercase_long_form(self, raw: str, expected: str) -> None:
        """Colours are stored as lowercase #rrggbb whatever form they came in."""
        assert normalize_color(raw) == expected

    def test_reports_requested_field(self) -> None:
        """The field name given by the caller appears in the error."""
        with pytest.raises(ValidationError) as info:
            normalize_color("blue", field="accent")
        assert info.value.fields == ("accent",)


class TestThemeTokens:
    def test_tokens_are_normalised(self) -> None:
        """Token colours are normalised to lowercase #rrggbb on construction."""
        tokens = ThemeTokens(**{**GOOD_LIGHT_TOKENS, "background": "#FFF", "text": "#111"})
        assert tokens.background == "#ffffff"
        assert tokens.text == "#111111"

    def test_every_bad_token_reported(self) -> None:
        """All malformed tokens are reported at once, each under tokens.<name>."""
        with pytest.raises(ValidationError) as info:
            ThemeTokens(**{**GOOD_LIGHT_TOKENS, "accent": "blue", "focus": "#12345"})
        assert info.value.fields == ("tokens.accent", "tokens.focus")
        assert set(info.value.codes) == {"color.invalid"}

    def test_as_dict_lists_every_token_in_order(self) -> None:
        """as_dict returns every token name in declaration order."""
        assert tuple(ThemeTokens(**GOOD_LIGHT_TOKENS).as_dict()) == TOKEN_NAMES

    def test_required_tokens_exist(self) -> None:
        """The tokens hosts style against are all defined."""
        required = {
            "background",
            "surface",
            "text",
            "muted_text",
            "accent",
            "accent_text",
            "border",
            "danger",
            "success",
            "warning",
            "focus",
        }
        assert required <= set(TOKEN_NAMES)

    def test_evolve_revalidates(self) -> None:
        """Replacing a token with attrs.evolve normalises and validates it too."""
        tokens = ThemeTokens(**GOOD_LIGHT_TOKENS)
        assert attrs.evolve(tokens, accent="#ABC").accent == "#aabbcc"
        with pytest.raises(ValidationError):
            attrs.evolve(tokens, accent="nope")


class TestTheme:
    @pytest.mark.parametrize("theme_id", ["a", "light", "my-theme-2", "x" * 64, "a--b"])
    def test_valid_ids(self, theme_id: str) -> None:
        """Lowercase ASCII slugs up to 64 characters are valid theme ids."""
        assert make_theme(theme_id).id == theme_id

    @pytest.mark.parametrize(
        "theme_id", ["", "Light", "-light", "light-", "li ght", "lígh", "x" * 65, "a_b", "a\n"]
    )
    def test_invalid_ids(self, theme_id: str) -> None:
        """Anything but a lowercase ASCII slug is refused with theme.id_invalid."""
        with pytest.raises(ValidationError) as info:
            make_theme(theme_id)
        assert info.value.codes == ("theme.id_invalid",)

    def test_all_problems_reported(self) -> None:
        """A bad id, name and scheme are reported together."""
        with pytest.raises(ValidationError) as info:
            Theme(
                id="Bad Id",
                name=" ",
                scheme="dusk",  # type: ignore[arg-type]
                tokens=ThemeTokens(**GOOD_LIGHT_TOKENS),
            )
        assert info.value.codes == (
            "theme.id_invalid",
            "theme.name_invalid",
            "theme.scheme_invalid",
        )

    def test_scheme_accepts_string(self) -> None:
        """A scheme given as a string is stored as the ColorScheme member."""
        theme = Theme(id="t", name="T", scheme="dark", tokens=ThemeTokens(**GOOD_DARK_TOKENS))  # type: ignore[arg-type]
        assert theme.scheme is ColorScheme.DARK

    def test_css_variables(self, catalog: ThemeCatalog) -> None:
        """css_variables gives one hyphenated custom property per token plus color-scheme."""
        light = catalog.get("light")
        variables = light.css_variables()
        assert variables["--esp-background"] == light.tokens.background
        assert variables["--esp-muted-text"] == light.tokens.muted_text
        assert variables["color-scheme"] == "light"
        assert len(variables) == len(TOKEN_NAMES) + 1

    def test_css_variables_custom_prefix(self, catalog: ThemeCatalog) -> None:
        """A host may choose its own custom-property prefix."""
        assert "--acme-accent-text" in catalog.get("dark").css_variables("--acme-")

    @pytest.mark.parametrize("prefix", ["esp-", "--a;b", "--a}", "-- x", ""])
    def test_unsafe_prefix_refused(self, catalog: ThemeCatalog, prefix: str) -> None:
        """A prefix that is not a CSS custom-property name start is refused."""
        with pytest.raises(ValidationError) as info:
            catalog.get("light").css_variables(prefix)
        assert info.value.codes == ("theme.css_prefix_invalid",)

    def test_css_block(self, catalog: ThemeCatalog) -> None:
        """css() wraps every declaration in one rule for the given selector."""
        text = catalog.get("dark").css('[data-theme="dark"]')
        assert text.startswith('[data-theme="dark"] {\n')
        assert text.rstrip().endswith("}")
        assert "  color-scheme: dark;" in text
        assert "  --esp-background: #121417;" in text
        assert text.count(";") == len(TOKEN_NAMES) + 1

    @pytest.mark.parametrize(
        "selector", ["", "a{}", "x; color: red", "</style><script>", "a /* */", ":root\\"]
    )
    def test_unsafe_selector_refused(self, catalog: ThemeCatalog, selector: str) -> None:
        """A selector that could escape the rule block is refused."""
        with pytest.raises(ValidationError) as info:
            catalog.get("light").css(selector)
        assert info.value.codes == ("theme.css_selector_invalid",)


class TestContrastTable:
    @pytest.mark.parametrize(
        ("foreground", "background", "minimum"),
        [
            ("text", "background", 4.5),
            ("text", "surface", 4.5),
            ("muted_text", "background", 4.5),
            ("muted_text", "surface", 4.5),
            ("accent_text", "accent", 4.5),
            ("accent", "background", 3.0),
            ("danger", "background", 3.0),
            ("success", "background", 3.0),
            ("warning", "background", 3.0),
            ("border", "background", 3.0),
            ("focus", "background", 3.0),
        ],
    )
    def test_required_rows(self, foreground: str, background: str, minimum: float) -> None:
        """The table holds every WCAG pair the product promises, with its minimum."""
        assert any(
            rule.foreground == foreground
            and rule.background == background
            and rule.minimum == minimum
            for rule in CONTRAST_RULES
        )

    def test_rows_name_real_tokens(self) -> None:
        """Every row refers to tokens that exist."""
        for rule in CONTRAST_RULES:
            assert rule.foreground in TOKEN_NAMES
            assert rule.background in TOKEN_NAMES

    def test_high_contrast_raises_text_minimum(self) -> None:
        """High-contrast themes need 7:1 on text rows and keep 3:1 on UI rows."""
        theme = make_theme(high_contrast=True)
        for result in check_contrast(theme):
            expected = HIGH_CONTRAST_TEXT_MINIMUM if result.rule.kind is ContrastKind.TEXT else 3.0
            assert result.minimum == expected


# Machado et al. (2009) simulation matrices at full severity, applied in linear RGB.
DEUTERANOPIA = (
    (0.367322, 0.860646, -0.227968),
    (0.280085, 0.672501, 0.047413),
    (-0.011820, 0.042940, 0.968881),
)
PROTANOPIA = (
    (0.152286, 1.052583, -0.204868),
    (0.114503, 0.786281, 0.099216),
    (-0.003882, -0.048116, 1.051998),
)


def _linear(color: str) -> list[float]:
    channels = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    return [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]


def _lab(rgb: list[float]) -> tuple[float, float, float]:
    r, g, b = rgb
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def simulated_difference(first: str, second: str, matrix: tuple[tuple[float, ...], ...]) -> float:
    """CIE76 colour difference between two colours as seen with a colour-vision deficiency."""

    def simulate(color: str) -> list[float]:
        rgb = _linear(color)
        return [min(1.0, max(0.0, sum(row[i] * rgb[i] for i in range(3)))) for row in matrix]

    return math.dist(_lab(simulate(first)), _lab(simulate(second)))


class TestDefaultCatalog:
    def test_ships_builtin_themes(self, catalog: ThemeCatalog) -> None:
        """The default catalog offers the six built-in themes, light first."""
        assert tuple(t.id for t in catalog.themes) == BUILTIN_IDS
        assert tuple(t.id for t in catalog) == BUILTIN_IDS
        assert len(catalog) == 6

    @pytest.mark.parametrize("theme_id", BUILTIN_IDS)
    def test_builtin_theme_passes_contrast_table(
        self, catalog: ThemeCatalog, theme_id: str
    ) -> None:
        """Every built-in theme passes every row of the contrast table."""
        failures = [r for r in check_contrast(catalog.get(theme_id)) if not r.passed]
        assert failures == []

    @pytest.mark.parametrize(
        ("theme_id", "scheme", "high_contrast", "colorblind"),
        [
            ("light", ColorScheme.LIGHT, False, False),
            ("dark", ColorScheme.DARK, False, False),
            ("light-high-contrast", ColorScheme.LIGHT, True, False),
            ("dark-high-contrast", ColorScheme.DARK, True, False),
            ("light-colorblind", ColorScheme.LIGHT, False, True),
            ("dark-colorblind", ColorScheme.DARK, False, True),
        ],
    )
    def test_builtin_flags(
        self,
        catalog: ThemeCatalog,
        theme_id: str,
        scheme: ColorScheme,
        high_contrast: bool,
        colorblind: bool,
    ) -> None:
        """Each built-in theme declares its scheme and accessibility flags."""
        theme = catalog.get(theme_id)
        assert (theme.scheme, theme.high_contrast, theme.colorblind_friendly) == (
            scheme,
            high_contrast,
            colorblind,
        )

    @pytest.mark.parametrize("theme_id", ["light-high-contrast", "dark-high-contrast"])
    def test_high_contrast_text_reaches_seven(self, catalog: ThemeCatalog, theme_id: str) -> None:
        """High-contrast themes reach 7:1 for body text on background and surface."""
        tokens = catalog.get(theme_id).tokens
        for fg, bg in [("text", "background"), ("text", "surface"), ("muted_text", "surface")]:
            assert contrast_ratio(tokens.color(fg), tokens.color(bg)) >= 7.0

    @pytest.mark.parametrize("theme_id", ["light-colorblind", "dark-colorblind"])
    @pytest.mark.parametrize("matrix", [DEUTERANOPIA, PROTANOPIA], ids=["deutan", "protan"])
    def test_colorblind_status_colours_distinguishable(
        self, catalog: ThemeCatalog, theme_id: str, matrix: tuple[tuple[float, ...], ...]
    ) -> None:
        """Danger and success stay clearly different (ΔE ≥ 40) for red-green colour blindness."""
        tokens = catalog.get(theme_id).tokens
        assert simulated_difference(tokens.danger, tokens.success, matrix) >= 40

    def test_simulation_detects_red_green_confusion(self, catalog: ThemeCatalog) -> None:
        """The regular dark theme's red/green pair falls below the bar the blind-safe ones pass."""
        tokens = catalog.get("dark").tokens
        assert simulated_difference(tokens.danger, tokens.success, DEUTERANOPIA) < 40

    def test_catalogs_are_independent(self) -> None:
        """Registering on one default catalog does not change another (no global state)."""
        first, second = ThemeCatalog.default(), ThemeCatalog.default()
        first.register(make_theme())
        assert "ocean" in first
        assert "ocean" not in second

    def test_default_preference(self, catalog: ThemeCatalog) -> None:
        """The default preference is the single light theme."""
        assert catalog.default_preference == ThemePreference.single("light")
        assert catalog.resolve(None, "dark").id == "light"


class TestRegister:
    def test_good_host_theme_registers(self, catalog: ThemeCatalog) -> None:
        """A host theme that passes the table is registered and can be fetched."""
        theme = catalog.register(make_theme())
        assert catalog.get("ocean") is theme
        assert catalog.themes[-1] is theme

    def test_every_failing_pair_listed(self, catalog: ThemeCatalog) -> None:
        """A theme failing several pairs is refused with one error per failing pair."""
        theme = make_theme(muted_text="#999999", border="#dddddd", accent_text="#6699ff")
        with pytest.raises(ValidationError) as info:
            catalog.register(theme)
        pairs = {(e.params["foreground"], e.params["background"]) for e in info.value.errors}
        assert pairs == {
            ("muted_text", "background"),
            ("muted_text", "surface"),
            ("accent_text", "accent"),
            ("border", "background"),
        }
        assert set(info.value.codes) == {"theme.contrast"}
        assert "ocean" not in catalog

    def test_failure_params(self, catalog: ThemeCatalog) -> None:
        """Each failure carries the ratio to two decimals and the minimum it missed."""
        with pytest.raises(ValidationError) as info:
            catalog.register(make_theme(text="#777777", surface="#ffffff"))
        first = info.value.errors[0]
        assert first.field == "tokens.text"
        assert first.params == {
            "theme": "ocean",
            "foreground": "text",
            "background": "background",
            "ratio": 4.48,
            "minimum": 4.5,
            "kind": "text",
        }

    def test_failing_ratio_never_shown_as_the_minimum(self, catalog: ThemeCatalog) -> None:
        """A ratio just under the minimum is reported below it, not rounded up onto it."""
        assert 4.495 < contrast_ratio("#656565", "#e2e2e2") < 4.5
        theme = make_theme(text="#656565", background="#e2e2e2", surface="#e2e2e2")
        with pytest.raises(ValidationError) as info:
            catalog.register(theme)
        text_errors = [e for e in info.value.errors if e.params["foreground"] == "text"]
        assert [e.params["ratio"] for e in text_errors] == [4.49, 4.49]

    def test_high_contrast_theme_needs_seven(self, catalog: ThemeCatalog) -> None:
        """A theme flagged high contrast is refused when text only reaches AA."""
        with pytest.raises(ValidationError) as info:
            catalog.register(make_theme(high_contrast=True))
        failing = {(e.params["foreground"], e.params["minimum"]) for e in info.value.errors}
        assert ("muted_text", 7.0) in failing

    def test_duplicate_id_refused(self, catalog: ThemeCatalog) -> None:
        """Registering an id twice raises AlreadyExistsError."""
        with pytest.raises(AlreadyExistsError) as info:
            catalog.register(make_theme("light"))
        assert info.value.code == "theme.already_exists"

    def test_unknown_id(self, catalog: ThemeCatalog) -> None:
        """Getting an unknown theme raises NotFoundError('theme', id)."""
        with pytest.raises(NotFoundError) as info:
            catalog.get("neon")
        assert (info.value.kind, info.value.key, info.value.code) == (
            "theme",
            "neon",
            "theme.not_found",
        )

    def test_constructor_checks_themes(self) -> None:
        """Themes passed to the constructor are checked like registered ones."""
        with pytest.raises(ValidationError):
            ThemeCatalog([make_theme(text="#eeeeee")])

    def test_registered_deprecated_theme_needs_known_replacement(
        self, catalog: ThemeCatalog
    ) -> None:
        """A theme registered as deprecated must name a registered replacement."""
        with pytest.raises(ValidationError) as info:
            catalog.register(make_theme(deprecated_by="nowhere"))
        assert info.value.codes == ("theme.unknown",)


class TestThemePreference:
    @pytest.mark.parametrize(
        ("preference", "system", "expected"),
        [
            (ThemePreference.single("dark"), "light", "dark"),
            (ThemePreference.single("dark"), "dark", "dark"),
            (ThemePreference.single("dark"), None, "dark"),
            (ThemePreference.single("light"), ColorScheme.DARK, "light"),
            (ThemePreference.sync(day="light", night="dark"), "light", "light"),
            (ThemePreference.sync(day="light", night="dark"), ColorScheme.LIGHT, "light"),
            (ThemePreference.sync(day="light", night="dark"), "dark", "dark"),
            (ThemePreference.sync(day="light", night="dark"), ColorScheme.DARK, "dark"),
            (ThemePreference.sync(day="light", night="dark"), None, "light"),
            (ThemePreference.sync(day="light", night="dark"), "no-preference", "light"),
            (ThemePreference.sync(day="light", night="dark"), ' "Dark" ', "dark"),
        ],
    )
    def test_resolve(
        self, preference: ThemePreference, system: ColorScheme | str | None, expected: str
    ) -> None:
        """Single mode ignores the system; sync uses night only when the system is dark."""
        assert preference.resolve(system) == expected

    def test_theme_ids(self) -> None:
        """theme_ids lists the one or two chosen themes."""
        assert ThemePreference.single("dark").theme_ids == ("dark",)
        assert ThemePreference.sync(day="light", night="dark").theme_ids == ("light", "dark")

    def test_mode_from_string(self) -> None:
        """The mode may be given as its string value."""
        preference = ThemePreference(mode="sync", day="light", night="dark")  # type: ignore[arg-type]
        assert preference.mode is ThemeMode.SYNC

    @pytest.mark.parametrize(
        ("kwargs", "codes"),
        [
            ({"mode": "single", "day": "light", "night": "dark"}, ("theme.night_not_allowed",)),
            ({"mode": "sync", "day": "light"}, ("theme.night_missing",)),
            ({"mode": "sync", "day": "", "night": None}, ("theme.missing", "theme.night_missing")),
            ({"mode": "auto", "day": "light"}, ("theme.mode_invalid",)),
            ({"mode": "single", "day": 3}, ("theme.id_invalid",)),
        ],
    )
    def test_invalid_shapes(self, kwargs: dict[str, object], codes: tuple[str, ...]) -> None:
        """A preference with the wrong shape for its mode cannot be built."""
        with pytest.raises(ValidationError) as info:
            ThemePreference(**kwargs)  # type: ignore[arg-type]
        assert info.value.codes == codes

    @settings(max_examples=100)
    @given(
        st.sampled_from(BUILTIN_IDS),
        st.sampled_from(BUILTIN_IDS),
        st.one_of(st.none(), st.sampled_from(["light", "dark"]), st.text(max_size=8)),
    )
    def test_resolve_picks_a_chosen_theme(self, day: str, night: str, system: str | None) -> None:
        """Whatever the system reports, resolve returns one of the chosen themes."""
        preference = ThemePreference.sync(day=day, night=night)
        assert preference.resolve(system) in preference.theme_ids


def _outcome(
    catalog: ThemeCatalog, value: object
) -> tuple[ThemePreference | None, ValidationError | None]:
    try:
        return catalog.validate_preference(value), None
    except ValidationError as error:
        return None, error


class TestValidatePreference:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("dark", ThemePreference.single("dark")),
            (" Dark ", ThemePreference.single("dark")),
            (ThemePreference.single("light"), ThemePreference.single("light")),
            ({"mode": "single", "theme": "dark"}, ThemePreference.single("dark")),
            ({"mode": "single", "day": "dark"}, ThemePreference.single("dark")),
            ({"theme": "light-colorblind"}, ThemePreference.single("light-colorblind")),
            (
                {"mode": "sync", "day": "light", "night": "dark"},
                ThemePreference.sync(day="light", night="dark"),
            ),
            (
                {"day": "light-high-contrast", "night": "dark-high-contrast"},
                ThemePreference.sync(day="light-high-contrast", night="dark-high-contrast"),
            ),
            (["dark"], ThemePreference.single("dark")),
            (("light", "dark"), ThemePreference.sync(day="light", night="dark")),
        ],
    )
    def test_accepted_inputs(
        self, catalog: ThemeCatalog, value: object, expected: ThemePreference
    ) -> None:
        """Ids, mappings, one- or two-item lists and preferences are accepted and normalised."""
        assert catalog.validate_preference(value) == expected

    @pytest.mark.parametrize(
        ("value", "codes"),
        [
            ("neon", ("theme.unknown",)),
            ("", ("theme.missing",)),
            (42, ("theme.invalid_type",)),
            ({"mode": "auto", "theme": "dark"}, ("theme.mode_invalid",)),
            ({"mode": "sync", "day": "light"}, ("theme.night_missing",)),
            ({"mode": "single", "theme": "dark", "night": "dark"}, ("theme.night_not_allowed",)),
            ({"mode": "single", "theme": "dark", "day": "light"}, ("theme.too_many",)),
            (
                {"mode": "sync", "theme": "light-colorblind", "day": "light", "night": "dark"},
                ("theme.too_many",),
            ),
            (["light", "dark", "dark-colorblind"], ("theme.too_many",)),
            ([], ("theme.missing",)),
            (
                {"mode": "sync", "day": "dark", "night": "light"},
                ("theme.sync_day_not_light", "theme.sync_night_not_dark"),
            ),
            (
                {"mode": "sync", "day": "light", "night": "light-colorblind"},
                ("theme.sync_night_not_dark",),
            ),
            ({"mode": "single", "theme": "dark", "colour": "x"}, ("theme.unknown_key",)),
            ({"mode": "single", "theme": 7}, ("theme.id_invalid",)),
            ({"mode": "sync", "day": "neon", "night": "void"}, ("theme.unknown", "theme.unknown")),
        ],
    )
    def test_refused_inputs(
        self, catalog: ThemeCatalog, value: object, codes: tuple[str, ...]
    ) -> None:
        """Bad choices are refused with stable codes."""
        with pytest.raises(ValidationError) as info:
            catalog.validate_preference(value)
        assert info.value.codes == codes

    def test_all_problems_at_once(self, catalog: ThemeCatalog) -> None:
        """Unknown keys, a bad mode and an unknown theme are all reported together."""
        with pytest.raises(ValidationError) as info:
            catalog.validate_preference({"mode": "twice", "day": "neon", "extra": 1})
        assert set(info.value.codes) == {
            "theme.unknown_key",
            "theme.mode_invalid",
            "theme.unknown",
        }

    def test_field_name_prefixes_errors(self, catalog: ThemeCatalog) -> None:
        """Errors are reported under the caller's field name."""
        with pytest.raises(ValidationError) as info:
            catalog.validate_preference(
                {"mode": "sync", "day": "dark", "night": "neon"}, field="appearance"
            )
        assert set(info.value.fields) == {"appearance.day", "appearance.night"}

    def test_mismatched_sync_allowed_per_call(self, catalog: ThemeCatalog) -> None:
        """allow_mismatched_sync=True accepts a dark day theme for this call only."""
        value = {"mode": "sync", "day": "dark", "night": "light"}
        preference = catalog.validate_preference(value, allow_mismatched_sync=True)
        assert preference == ThemePreference.sync(day="dark", night="light")
        with pytest.raises(ValidationError):
            catalog.validate_preference(value)

    def test_mismatched_sync_allowed_by_catalog_policy(self) -> None:
        """A catalog built without the matching-scheme rule accepts any pair, unless overridden."""
        relaxed = ThemeCatalog.default(sync_requires_matching_schemes=False)
        value = {"mode": "sync", "day": "dark-colorblind", "night": "dark"}
        assert relaxed.validate_preference(value).day == "dark-colorblind"
        with pytest.raises(ValidationError) as info:
            relaxed.validate_preference(value, allow_mismatched_sync=False)
        assert info.value.codes == ("theme.sync_day_not_light",)

    def test_at_most_two_themes(self, catalog: ThemeCatalog) -> None:
        """The too_many error states the limit of two and the number given."""
        with pytest.raises(ValidationError) as info:
            catalog.validate_preference(["light", "dark", "dark-colorblind"])
        assert info.value.errors[0].params == {"limit": 2, "actual": 3}

    @settings(max_examples=200)
    @given(
        st.one_of(
            st.text(max_size=20),
            st.lists(st.text(max_size=12), max_size=4),
            st.dictionaries(
                st.sampled_from(["mode", "theme", "day", "night", "x"]),
                st.one_of(st.none(), st.text(max_size=12), st.sampled_from(BUILTIN_IDS)),
            ),
        )
    )
    def test_never_raises_anything_but_validation_error(self, value: object) -> None:
        """Arbitrary input yields a preference of known themes or a ValidationError."""
        catalog = ThemeCatalog.default()
        preference, error = _outcome(catalog, value)
        if error is not None:
            assert all(code.startswith("theme.") for code in error.codes)
        else:
            assert preference is not None
            assert 1 <= len(preference.theme_ids) <= 2
            assert all(theme_id in catalog for theme_id in preference.theme_ids)


class TestDeprecation:
    def test_deprecated_theme_refused_with_replacement(self, catalog: ThemeCatalog) -> None:
        """Choosing a deprecated theme is refused and the error names its replacement."""
        catalog.register(make_theme("sepia"))
        catalog.deprecate("sepia", replacement="light")
        with pytest.raises(ValidationError) as info:
            catalog.validate_preference("sepia")
        assert info.value.codes == ("theme.deprecated",)
        assert info.value.errors[0].params == {"theme": "sepia", "replacement": "light"}

    def test_deprecated_theme_not_selectable(self, catalog: ThemeCatalog) -> None:
        """Deprecated themes stay fetchable but are not offered for selection."""
        catalog.register(make_theme("sepia"))
        catalog.deprecate("sepia", replacement="light")
        assert catalog.get("sepia").deprecated_by == "light"
        assert "sepia" not in [t.id for t in catalog.selectable]
        assert "sepia" in [t.id for t in catalog.themes]

    def test_canonical_follows_chain(self, catalog: ThemeCatalog) -> None:
        """A stored preference maps through a chain of replacements to the live theme."""
        catalog.register(make_theme("sepia"))
        catalog.register(make_theme("paper"))
        catalog.deprecate("sepia", replacement="paper")
        catalog.deprecate("paper", replacement="light-colorblind")
        stored = ThemePreference.sync(day="sepia", night="dark")
        assert catalog.canonical(stored) == ThemePreference.sync(
            day="light-colorblind", night="dark"
        )
        assert catalog.resolve(stored, "light").id == "light-colorblind"
        assert catalog.resolve(stored, "dark").id == "dark"

    def test_replacement_named_in_error_is_the_end_of_the_chain(
        self, catalog: ThemeCatalog
    ) -> None:
        """The replacement suggested for a deprecated theme is one that can be chosen."""
        catalog.register(make_theme("sepia"))
        catalog.register(make_theme("paper"))
        catalog.deprecate("sepia", replacement="paper")
        catalog.deprecate("paper", replacement="light")
        with pytest.raises(ValidationError) as info:
            catalog.validate_preference("sepia")
        assert info.value.errors[0].params["replacement"] == "light"

    def test_canonical_unchanged_preference_is_same_object(self, catalog: ThemeCatalog) -> None:
        """A preference with only live themes is returned unchanged."""
        stored = ThemePreference.sync(day="light", night="dark")
        assert catalog.canonical(stored) is stored

    def test_cycle_refused(self, catalog: ThemeCatalog) -> None:
        """A deprecation that would form a cycle is refused."""
        catalog.register(make_theme("sepia"))
        catalog.register(make_theme("paper"))
        catalog.deprecate("sepia", replacement="paper")
        with pytest.raises(ValidationError) as info:
            catalog.deprecate("paper", replacement="sepia")
        assert info.value.codes == ("theme.deprecation_cycle",)
        with pytest.raises(ValidationError):
            catalog.deprecate("sepia", replacement="sepia")

    def test_canonical_guards_cycles(self, catalog: ThemeCatalog) -> None:
        """Even a cycle forced into the catalog's state resolves to a live theme."""
        catalog.register(make_theme("sepia"))
        catalog.register(make_theme("paper"))
        catalog._by_id["sepia"] = attrs.evolve(catalog.get("sepia"), deprecated_by="paper")
        catalog._by_id["paper"] = attrs.evolve(catalog.get("paper"), deprecated_by="sepia")
        assert catalog.canonical(ThemePreference.single("sepia")) == ThemePreference.single("light")

    def test_replacement_must_share_scheme(self, catalog: ThemeCatalog) -> None:
        """A light theme cannot be replaced by a dark one (sync preferences would break)."""
        with pytest.raises(ValidationError) as info:
            catalog.deprecate("light-colorblind", replacement="dark")
        assert info.value.codes == ("theme.replacement_scheme_mismatch",)

    def test_deprecate_unknown(self, catalog: ThemeCatalog) -> None:
        """Deprecating, or replacing with, an unknown theme raises NotFoundError."""
        with pytest.raises(NotFoundError):
            catalog.deprecate("neon", replacement="light")
        with pytest.raises(NotFoundError):
            catalog.deprecate("light", replacement="neon")

    @pytest.mark.parametrize(
        ("stored", "expected"),
        [
            (ThemePreference.single("gone"), ThemePreference.single("light")),
            (
                ThemePreference.sync(day="gone", night="vanished"),
                ThemePreference.sync(day="light", night="dark"),
            ),
        ],
    )
    def test_unknown_stored_ids_fall_back(
        self, catalog: ThemeCatalog, stored: ThemePreference, expected: ThemePreference
    ) -> None:
        """Ids no longer registered fall back to the default light/dark themes so pages render."""
        assert catalog.canonical(stored) == expected

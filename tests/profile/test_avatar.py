from __future__ import annotations

import collections
import hashlib
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enspace_profile._profile.avatar import (
    DEFAULT_AVATAR_COLORS,
    MIN_AVATAR_CONTRAST,
    Avatar,
    AvatarPalette,
    avatar_for,
    readable_text_color,
)
from enspace_profile._profile.themes import contrast_ratio
from enspace_profile.exceptions import ValidationError

SVG_NS = "{http://www.w3.org/2000/svg}"
ALLOWED_ELEMENTS = {"svg", "title", "rect", "circle", "text"}

HOSTILE_INITIALS = [
    "<script>",
    "<script>alert(1)</script>",
    '"/><svg onload=alert(1)>',
    "]]>",
    "&amp;",
    "A&B",
    "'\"",
    "\x00\x01\x1b[31m\x7f",
    "A\x08B",
    "\ud800X",
    "\ufffeY",
    "A\u202eB",
    "<!--",
    "<?xml?>",
    "<![CDATA[x]]>",
    "&#x3c;",
    "\n\t",
    "Ω≈ç√",
    "👩‍💻",
]


def parse_svg(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # our own output, parsed to prove it is well-formed
    assert root.tag == f"{SVG_NS}svg"
    return root


def assert_safe(svg: str) -> ET.Element:
    root = parse_svg(svg)
    for element in root.iter():
        assert element.tag.removeprefix(SVG_NS) in ALLOWED_ELEMENTS
        for name, value in element.attrib.items():
            assert not name.lower().startswith("on")
            assert "href" not in name.lower()
            assert "url(" not in value.lower()
            assert "javascript:" not in value.lower()
    lowered = svg.lower()
    for forbidden in ("<script", "<style", "@import", "<foreignobject", "<image", "<use", "href"):
        assert forbidden not in lowered
    return root


def text_of(root: ET.Element, tag: str) -> str | None:
    element = root.find(f"{SVG_NS}{tag}")
    return None if element is None else element.text


class TestReadableTextColor:
    @pytest.mark.parametrize(
        ("background", "expected"),
        [
            ("#000000", "#ffffff"),
            ("#ffffff", "#111111"),
            ("#1f65b8", "#ffffff"),
            ("#f2c14e", "#111111"),
            # YIQ brightness (127.5 < 128) would put white text on this green at 2.2:1;
            # by WCAG ratio near-black wins with 8.7:1.
            ("#00cc44", "#111111"),
        ],
    )
    def test_picks_higher_wcag_ratio(self, background: str, expected: str) -> None:
        """The text colour with the higher WCAG contrast is chosen."""
        chosen = readable_text_color(background)
        assert chosen == expected
        other = "#111111" if chosen == "#ffffff" else "#ffffff"
        assert contrast_ratio(chosen, background) >= contrast_ratio(other, background)

    @settings(max_examples=200)
    @given(st.integers(min_value=0, max_value=0xFFFFFF))
    def test_choice_is_never_worse(self, value: int) -> None:
        """For any background the chosen text colour has at least the other's contrast."""
        background = f"#{value:06x}"
        chosen = readable_text_color(background)
        best = max(contrast_ratio("#ffffff", background), contrast_ratio("#111111", background))
        assert contrast_ratio(chosen, background) == best


class TestAvatarPalette:
    def test_default_palette_size_and_distinctness(self) -> None:
        """The default palette has at least 12 distinct colours."""
        palette = AvatarPalette.default()
        assert len(palette) >= 12
        assert len(set(palette.colors)) == len(palette.colors)
        assert palette.colors == tuple(c.lower() for c in DEFAULT_AVATAR_COLORS)

    @pytest.mark.parametrize("color", DEFAULT_AVATAR_COLORS)
    def test_default_colours_readable(self, color: str) -> None:
        """Every default colour reaches 4.5:1 with the text colour chosen for it."""
        palette = AvatarPalette.default()
        assert contrast_ratio(palette.text_color_for(color), color) >= MIN_AVATAR_CONTRAST

    def test_default_uses_both_text_colours(self) -> None:
        """The default palette mixes dark backgrounds (white text) and light ones (dark text)."""
        palette = AvatarPalette.default()
        assert {palette.text_color_for(c) for c in palette.colors} == {"#ffffff", "#111111"}

    def test_unreadable_colours_refused(self) -> None:
        """Mid-tone colours that reach 4.5:1 with neither text colour are all refused at once."""
        with pytest.raises(ValidationError) as info:
            AvatarPalette(colors=("#1f65b8", "#797979", "#d14a00"))
        assert info.value.codes == ("avatar.palette_contrast", "avatar.palette_contrast")
        assert [e.params["color"] for e in info.value.errors] == ["#797979", "#d14a00"]
        assert all(e.params["ratio"] < 4.5 for e in info.value.errors)

    @pytest.mark.parametrize(
        ("colors", "codes"),
        [
            ((), ("avatar.palette_empty",)),
            (("#1f65b8", "nope"), ("color.invalid",)),
            (("#1F65B8", "#1f65b8"), ("avatar.palette_duplicate",)),
        ],
    )
    def test_bad_palettes(self, colors: tuple[str, ...], codes: tuple[str, ...]) -> None:
        """Empty palettes, malformed and repeated colours are refused."""
        with pytest.raises(ValidationError) as info:
            AvatarPalette(colors=colors)
        assert info.value.codes == codes

    def test_custom_text_colours(self) -> None:
        """A host may supply its own light and dark text colours."""
        palette = AvatarPalette(colors=("#1f65b8",), light_text="#FAFAFA", dark_text="#000")
        assert palette.pick("anyone") == ("#1f65b8", "#fafafa")

    def test_index_is_sha256_of_utf8_id(self) -> None:
        """The palette index is the first 8 bytes of SHA-256 of the UTF-8 id, mod the size."""
        palette = AvatarPalette.default()
        user_id = "usér-42"
        digest = hashlib.sha256(user_id.encode("utf-8")).digest()
        expected = int.from_bytes(digest[:8], "big") % len(palette)
        assert palette.index_for(user_id) == expected

    @pytest.mark.parametrize("user_id", ["", None, 42])
    def test_bad_user_id(self, user_id: object) -> None:
        """An empty or non-string user id raises ValidationError."""
        with pytest.raises(ValidationError) as info:
            AvatarPalette.default().pick(user_id)  # type: ignore[arg-type]
        assert info.value.codes == ("avatar.user_id_invalid",)

    @settings(max_examples=200)
    @given(st.text(min_size=1, max_size=64))
    def test_any_user_id_gets_readable_palette_colour(self, user_id: str) -> None:
        """Any user id gets a palette colour with text reaching at least 4.5:1."""
        avatar = avatar_for(user_id, "AB")
        assert avatar.background in AvatarPalette.default().colors
        assert contrast_ratio(avatar.foreground, avatar.background) >= MIN_AVATAR_CONTRAST

    @settings(max_examples=100)
    @given(st.text(min_size=1, max_size=64))
    def test_same_id_same_colour(self, user_id: str) -> None:
        """The same user id always gets the same colours, across palette instances."""
        fresh = AvatarPalette(colors=DEFAULT_AVATAR_COLORS)
        assert avatar_for(user_id, "X") == avatar_for(user_id, "X", palette=fresh)

    def test_surrogates_in_id_do_not_crash(self) -> None:
        """Even an id with a lone surrogate gets a stable colour instead of a UnicodeError."""
        palette = AvatarPalette.default()
        assert palette.pick("\ud800") == palette.pick("\ud800")

    def test_ids_spread_across_palette(self) -> None:
        """Many user ids use every colour, none more than twice as often as average."""
        palette = AvatarPalette.default()
        count = 200 * len(palette)
        usage = collections.Counter(palette.pick(f"user-{n}")[0] for n in range(count))
        assert set(usage) == set(palette.colors)
        assert max(usage.values()) < 2 * count / len(palette)
        assert min(usage.values()) > 0.5 * count / len(palette)


class TestAvatar:
    def test_avatar_for(self) -> None:
        """avatar_for combines the initials with the user's palette colours."""
        avatar = avatar_for("user-1", "AS")
        assert avatar.initials == "AS"
        assert (avatar.background, avatar.foreground) == AvatarPalette.default().pick("user-1")

    def test_custom_palette(self) -> None:
        """A host palette is used instead of the default."""
        palette = AvatarPalette(colors=("#f2c14e",))
        avatar = avatar_for("user-1", "AS", palette=palette)
        assert (avatar.background, avatar.foreground) == ("#f2c14e", "#111111")

    @pytest.mark.parametrize(
        ("raw", "clean"),
        [
            (" A  S ", "A S"),
            ("A\x00S", "AS"),
            ("A\u202eS", "AS"),
            ("\n\t", ""),
            ("Ö", "Ö"),
        ],
    )
    def test_initials_cleaned(self, raw: str, clean: str) -> None:
        """Whitespace is collapsed and control or bidi-override characters are removed."""
        assert avatar_for("u", raw).initials == clean

    def test_initials_too_long(self) -> None:
        """Initials longer than the limit are refused."""
        with pytest.raises(ValidationError) as info:
            avatar_for("u", "A" * 33)
        assert info.value.codes == ("avatar.initials_too_long",)

    def test_bad_user_id_and_initials_reported_together(self) -> None:
        """A bad user id and bad initials are reported in one error."""
        with pytest.raises(ValidationError) as info:
            avatar_for("", None)  # type: ignore[arg-type]
        assert info.value.codes == ("avatar.user_id_invalid", "avatar.initials_invalid")

    def test_low_contrast_colours_refused(self) -> None:
        """An avatar cannot be built with unreadable colours."""
        with pytest.raises(ValidationError) as info:
            Avatar(initials="AB", background="#808080", foreground="#999999")
        assert info.value.codes == ("avatar.contrast",)

    def test_colours_normalised(self) -> None:
        """Avatar colours are stored as lowercase #rrggbb."""
        avatar = Avatar(initials="AB", background="#000", foreground="#FFF")
        assert (avatar.background, avatar.foreground) == ("#000000", "#ffffff")


class TestRenderSvg:
    def test_structure(self) -> None:
        """The SVG has the right size, an accessible name, the fill and the initials."""
        avatar = avatar_for("user-1", "AS")
        root = assert_safe(avatar.render_svg(48))
        assert (root.get("width"), root.get("height")) == ("48", "48")
        assert root.get("role") == "img"
        assert root.get("aria-label") == "AS"
        assert text_of(root, "title") == "AS"
        assert text_of(root, "text") == "AS"
        circle = root.find(f"{SVG_NS}circle")
        assert circle is not None
        assert circle.get("fill") == avatar.background
        text = root.find(f"{SVG_NS}text")
        assert text is not None
        assert text.get("fill") == avatar.foreground

    def test_square(self) -> None:
        """shape='square' draws a rect instead of a circle."""
        root = assert_safe(avatar_for("u", "AS").render_svg(shape="square"))
        assert root.find(f"{SVG_NS}rect") is not None
        assert root.find(f"{SVG_NS}circle") is None

    def test_custom_label(self) -> None:
        """A host-supplied label becomes the accessible name, escaped."""
        root = assert_safe(avatar_for("u", "AS").render_svg(label='Ana "<b>" Souza'))
        assert root.get("aria-label") == 'Ana "<b>" Souza'
        assert text_of(root, "title") == 'Ana "<b>" Souza'

    def test_empty_initials(self) -> None:
        """Without initials a plain shape is drawn and the label falls back to 'Avatar'."""
        root = assert_safe(avatar_for("u", "").render_svg())
        assert root.find(f"{SVG_NS}text") is None
        assert root.get("aria-label") == "Avatar"

    def test_font_family_fixed(self) -> None:
        """The font list is fixed and local: no web font is referenced."""
        root = parse_svg(avatar_for("u", "AS").render_svg())
        text = root.find(f"{SVG_NS}text")
        assert text is not None
        assert text.get("font-family", "").endswith("sans-serif")

    @pytest.mark.parametrize("initials", HOSTILE_INITIALS)
    @pytest.mark.parametrize("shape", ["circle", "square"])
    def test_hostile_initials_stay_text(self, initials: str, shape: str) -> None:
        """Hostile initials produce well-formed, script-free SVG that shows them as text."""
        avatar = avatar_for("user-1", initials)
        root = assert_safe(avatar.render_svg(shape=shape))  # type: ignore[arg-type]
        assert (text_of(root, "text") or "") == avatar.initials
        assert root.get("aria-label") == (avatar.initials or "Avatar")

    @settings(max_examples=200)
    @given(st.text(max_size=32), st.sampled_from(["circle", "square"]))
    def test_any_initials_render_safely(self, initials: str, shape: str) -> None:
        """Any initials render to well-formed SVG with only the allowed elements."""
        avatar = avatar_for("user-1", initials)
        root = assert_safe(avatar.render_svg(shape=shape))  # type: ignore[arg-type]
        assert (text_of(root, "text") or "") == avatar.initials

    @pytest.mark.parametrize("size", [16, 64, 1024])
    def test_sizes_in_range(self, size: int) -> None:
        """Sizes from 16 to 1024 are accepted."""
        root = parse_svg(avatar_for("u", "AS").render_svg(size))
        assert root.get("width") == str(size)

    @pytest.mark.parametrize("size", [15, 0, -64, 1025, True, 64.0, "64"])
    def test_sizes_out_of_range(self, size: object) -> None:
        """Sizes outside 16..1024, or not whole numbers, are refused."""
        with pytest.raises(ValidationError) as info:
            avatar_for("u", "AS").render_svg(size)  # type: ignore[arg-type]
        assert info.value.codes == ("avatar.size_out_of_range",)

    def test_bad_shape_and_size_together(self) -> None:
        """A bad size and a bad shape are reported in one error."""
        with pytest.raises(ValidationError) as info:
            avatar_for("u", "AS").render_svg(2, shape="star")  # type: ignore[arg-type]
        assert info.value.codes == ("avatar.size_out_of_range", "avatar.shape_invalid")

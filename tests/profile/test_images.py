from __future__ import annotations

import contextlib
import hashlib
import io
import struct
import sys
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image, PngImagePlugin

from enspace_profile._profile.images import (
    PICTURE_TYPES,
    ImageInfo,
    PicturePolicy,
    PreparedPicture,
    inspect_image,
    prepare_picture,
    reencode,
    strip_metadata,
)
from enspace_profile.exceptions import MissingExtraError, ValidationError

# ---------------------------------------------------------------------- image builders

GPS_MARKER = b"GPSMARKER-52N"
EXIF_MARKER = b"EXIFMARKER-SerialNo"
XMP_MARKER = b"XMPMARKER-CreatorTool"
COMMENT_MARKER = b"COMMENTMARKER"
IPTC_MARKER = b"IPTCMARKER-Byline"
HTML = b"<html><script>alert(document.cookie)</script></html>"
MARKERS = (GPS_MARKER, EXIF_MARKER, XMP_MARKER, COMMENT_MARKER, IPTC_MARKER, b"<script")
XMP_PACKET = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description>'
    + XMP_MARKER
    + b"</rdf:Description></rdf:RDF></x:xmpmeta>"
)
LENIENT = PicturePolicy(
    min_width=1,
    min_height=1,
    max_width=2**32,
    max_height=2**32,
    max_pixels=2**64,
    max_total_pixels=2**96,
    max_frames=2**32,
)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def gradient(mode: str = "RGB", size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A picture with distinct pixels, so a crop, a flip or a colour change is visible."""
    image = Image.new("RGB", size)
    image.putdata(
        [(x * 4 % 256, y * 5 % 256, (x + y) % 256) for y in range(size[1]) for x in range(size[0])]
    )
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize(size))
        return image
    return image.convert(mode)


def still(fmt: str, mode: str = "RGB", size: tuple[int, int] = (64, 48), **options) -> bytes:
    return encode(gradient(mode, size), fmt, **options)


def animated(fmt: str, frames: int = 3, size: tuple[int, int] = (40, 40), **options) -> bytes:
    images = [Image.new("RGB", size, colour) for colour in ("red", "green", "blue", "white")]
    images = (images * frames)[:frames]
    return encode(
        images[0], fmt, save_all=True, append_images=images[1:], duration=80, loop=0, **options
    )


def exif_block(orientation: int | None = None) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.ImageDescription] = EXIF_MARKER.decode()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 13.0, 37.5)
    gps[ExifTags.GPS.GPSMapDatum] = GPS_MARKER.decode()
    return exif.tobytes()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_ihdr(width: int, height: int, depth: int = 8, color: int = 2) -> bytes:
    return png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def png_insert(data: bytes, before: bytes, *chunks: bytes) -> bytes:
    """Insert raw chunks before the first chunk of kind ``before``."""
    pos = 8
    while data[pos + 4 : pos + 8] != before:
        pos += 12 + struct.unpack(">I", data[pos : pos + 4])[0]
    return data[:pos] + b"".join(chunks) + data[pos:]


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_insert_after_soi(data: bytes, *segments: bytes) -> bytes:
    return data[:2] + b"".join(segments) + data[2:]


def jpeg_markers(data: bytes) -> list[int]:
    """Marker codes of the segments before the first scan."""
    pos, markers = 2, []
    while data[pos + 1] != 0xDA:
        markers.append(data[pos + 1])
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    return markers


def gif_blocks_start(data: bytes) -> int:
    packed = data[10]
    return 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)


def gif_sub_blocks(payload: bytes) -> bytes:
    return (
        b"".join(
            bytes((len(payload[i : i + 255]),)) + payload[i : i + 255]
            for i in range(0, len(payload), 255)
        )
        + b"\x00"
    )


def gif_insert(data: bytes, *blocks: bytes) -> bytes:
    pos = gif_blocks_start(data)
    return data[:pos] + b"".join(blocks) + data[pos:]


def gif_extension(label: int, payload: bytes) -> bytes:
    return b"!" + bytes((label,)) + gif_sub_blocks(payload)


def riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    pos, chunks = 12, []
    while pos + 8 <= len(data):
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        chunks.append((data[pos : pos + 4], data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + size % 2
    return chunks


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def assert_clean(data: bytes) -> None:
    """Pillow finds no metadata and none of the planted markers is left in the bytes."""
    image = decode(data)
    assert not image.getexif()
    for key in ("exif", "xmp", "XML:com.adobe.xmp", "comment", "Comment", "Description"):
        assert key not in image.info
    for marker in MARKERS:
        assert marker not in data


def pixels(data: bytes) -> list[bytes]:
    """The decoded pixels of every frame."""
    image = Image.open(io.BytesIO(data))
    frames = []
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        frames.append(image.convert("RGBA").tobytes())
    return frames


def codes(excinfo: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return set(excinfo.value.codes)


# Small valid samples of every shape the parsers handle; reused by the fuzz tests.
SAMPLES: dict[str, bytes] = {
    "png-rgb": still("PNG"),
    "png-gray": still("PNG", "L"),
    "png-rgba": still("PNG", "RGBA"),
    "png-palette": still("PNG", "P"),
    "png-interlaced-exif": still("PNG", optimize=False, exif=exif_block(6)),
    "apng": animated("PNG"),
    "jpeg": still("JPEG", exif=exif_block(3), comment=COMMENT_MARKER),
    "jpeg-progressive": still("JPEG", progressive=True, xmp=XMP_PACKET),
    "jpeg-cmyk": still("JPEG", "CMYK"),
    "jpeg-gray-restart": still("JPEG", "L", restart_marker_blocks=1),
    "gif": still("GIF", comment=COMMENT_MARKER),
    "gif-animated": animated("GIF"),
    "webp-lossy": still("WEBP"),
    "webp-lossless": still("WEBP", lossless=True),
    "webp-alpha-exif": still("WEBP", "RGBA", exif=exif_block(8), xmp=XMP_PACKET),
    "webp-animated": animated("WEBP"),
}
MEDIA_TYPES = {
    "png": "image/png",
    "apng": "image/png",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
}


def media_type_of(name: str) -> str:
    return MEDIA_TYPES[name.split("-", maxsplit=1)[0]]


# ---------------------------------------------------------------------- tests


class TestPicturePolicy:
    def test_defaults(self):
        """The defaults are 5 MiB, 4096x4096, 16.7 MP, 32x32 minimum, animations allowed."""
        policy = PicturePolicy()
        assert (policy.max_bytes, policy.max_width, policy.max_height) == (5 * 2**20, 4096, 4096)
        assert (policy.max_pixels, policy.min_width, policy.min_height) == (4096 * 4096, 32, 32)
        assert policy.allow_animated
        assert policy.allowed_types == PICTURE_TYPES
        assert {"image/png", "image/jpeg", "image/gif", "image/webp"} == PICTURE_TYPES

    def test_allowed_types_accepts_any_iterable(self):
        """allowed_types may be given as a list and is stored as a frozenset."""
        policy = PicturePolicy(allowed_types=["image/png", "image/webp"])
        assert policy.allowed_types == frozenset({"image/png", "image/webp"})

    def test_is_frozen(self):
        """A policy cannot be changed after it was built."""
        policy = PicturePolicy()
        with pytest.raises(AttributeError):
            policy.max_bytes = 1  # type: ignore[misc]

    @pytest.mark.parametrize(
        ("options", "expected"),
        [
            ({"max_bytes": 0}, {"max_bytes.not_positive"}),
            (
                {"max_width": -1, "max_pixels": 0},
                {"max_width.not_positive", "max_pixels.not_positive"},
            ),
            ({"min_width": True}, {"min_width.not_positive"}),
            ({"max_frames": 2.5}, {"max_frames.not_positive"}),
            ({"min_width": 100, "max_width": 50}, {"min_width.above_maximum"}),
            ({"min_height": 100, "max_height": 50}, {"min_height.above_maximum"}),
            ({"allowed_types": []}, {"allowed_types.empty"}),
            ({"allowed_types": ["image/svg+xml"]}, {"allowed_types.unknown"}),
            (
                {"allowed_types": ["text/html"], "max_bytes": 0},
                {"max_bytes.not_positive", "allowed_types.unknown"},
            ),
        ],
    )
    def test_invalid_settings(self, options, expected):
        """Every invalid setting is reported at once, with a code naming the setting."""
        with pytest.raises(ValidationError) as excinfo:
            PicturePolicy(**options)
        assert codes(excinfo) == expected


class TestTypeDetection:
    @pytest.mark.parametrize("name", sorted(SAMPLES))
    def test_type_comes_from_the_bytes(self, name):
        """Every sample is recognised from its magic numbers with Pillow's size."""
        data = SAMPLES[name]
        info = inspect_image(data)
        assert info.media_type == media_type_of(name)
        assert (info.width, info.height) == decode(data).size

    @pytest.mark.parametrize(
        ("media_type", "extension"),
        [
            ("image/png", ".png"),
            ("image/jpeg", ".jpg"),
            ("image/gif", ".gif"),
            ("image/webp", ".webp"),
        ],
    )
    def test_extension(self, media_type, extension):
        """The storage extension follows the detected type."""
        assert ImageInfo(media_type=media_type, width=1, height=1).extension == extension

    @pytest.mark.parametrize(
        "payload",
        [
            b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>',
            b"\xef\xbb\xbf<svg></svg>",
            b"  \n<!DOCTYPE html><html><body>avatar.png</body></html>",
            HTML,
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3",
            b"BM" + bytes(60),
            b"II*\x00" + bytes(60),
            b"\x00\x00\x01\x00" + bytes(60),
            b"\x00\x00\x00\x1cftypavif" + bytes(40),
            b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40),
            b"PK\x03\x04" + bytes(40),
            b"\x89PNX\r\n\x1a\n" + bytes(40),
        ],
        ids=[
            "svg",
            "svg-xml",
            "svg-bom",
            "html-doctype",
            "html",
            "pdf",
            "bmp",
            "tiff",
            "ico",
            "avif",
            "wav",
            "zip",
            "png-lookalike",
        ],
    )
    def test_everything_else_is_refused(self, payload):
        """SVG, HTML and every other type is refused, whatever the upload was called."""
        for function in (inspect_image, strip_metadata, prepare_picture):
            with pytest.raises(ValidationError) as excinfo:
                function(payload)
            assert excinfo.value.codes == ("picture.unsupported_type",)
            assert excinfo.value.errors[0].params["detected"] is None

    def test_policy_restricts_the_types(self):
        """A type outside the policy's allowed_types is refused, naming what was found."""
        policy = PicturePolicy(allowed_types={"image/png"})
        with pytest.raises(ValidationError) as excinfo:
            inspect_image(SAMPLES["jpeg"], policy=policy)
        error = excinfo.value.errors[0]
        assert error.code == "picture.unsupported_type"
        assert error.params == {"detected": "image/jpeg", "allowed": ("image/png",)}

    def test_field_name_is_used_in_codes(self):
        """Errors carry the caller's field name."""
        with pytest.raises(ValidationError) as excinfo:
            inspect_image(b"<svg/>", field="avatar")
        assert excinfo.value.codes == ("avatar.unsupported_type",)
        assert excinfo.value.fields == ("avatar",)

    def test_empty(self):
        """No bytes at all is its own error."""
        with pytest.raises(ValidationError) as excinfo:
            inspect_image(b"")
        assert excinfo.value.codes == ("picture.empty",)

    @pytest.mark.parametrize(
        "prefix", [b"\x89PN", b"\xff\xd8", b"GIF8", b"RIFF\x10\x00", b"RIFF\x00\x00\x00\x00WE"]
    )
    def test_cut_inside_the_signature(self, prefix):
        """Data that stops inside a signature is reported as truncated."""
        with pytest.raises(ValidationError) as excinfo:
            inspect_image(prefix)
        assert excinfo.value.codes == ("picture.truncated",)

    @pytest.mark.parametrize("wrap", [bytearray, memoryview])
    def test_bytes_like_input(self, wrap):
        """bytearray and memoryview inputs work like bytes."""
        data = SAMPLES["png-rgb"]
        assert inspect_image(wrap(data)) == inspect_image(data)
        assert strip_metadata(wrap(data)) == strip_metadata(data)


class TestInspectImage:
    @pytest.mark.parametrize(
        ("name", "frames"),
        [("apng", 3), ("gif-animated", 3), ("webp-animated", 3)],
    )
    def test_animations(self, name, frames):
        """APNG, animated GIF and animated WebP report their frame count."""
        info = inspect_image(SAMPLES[name])
        assert info.animated
        assert info.frames == frames == decode(SAMPLES[name]).n_frames

    @pytest.mark.parametrize("name", ["png-rgb", "jpeg", "gif", "webp-lossy", "webp-alpha-exif"])
    def test_still_images(self, name):
        """Still images are one frame, not animated."""
        info = inspect_image(SAMPLES[name])
        assert (info.animated, info.frames) == (False, 1)

    def test_single_frame_apng_is_still(self):
        """An APNG with one frame is not animated."""
        control = struct.pack(">IIIIIHHBB", 0, 64, 48, 0, 0, 1, 10, 0, 0)
        data = png_insert(
            SAMPLES["png-rgb"],
            b"IDAT",
            png_chunk(b"acTL", struct.pack(">II", 1, 0)),
            png_chunk(b"fcTL", control),
        )
        assert decode(data).n_frames == 1
        info = inspect_image(data)
        assert (info.animated, info.frames) == (False, 1)

    def test_gif_looping_alone_is_not_animation(self):
        """A NETSCAPE loop extension on a single frame does not make a GIF animated."""
        data = encode(gradient(), "GIF", loop=0)
        assert b"NETSCAPE2.0" in data
        assert not inspect_image(data).animated

    @pytest.mark.parametrize(
        ("name", "orientation"),
        [
            ("png-interlaced-exif", 6),
            ("jpeg", 3),
            ("webp-alpha-exif", 8),
            ("gif", 1),
            ("jpeg-cmyk", 1),
        ],
    )
    def test_orientation(self, name, orientation):
        """The EXIF orientation is reported (1 when there is none)."""
        assert inspect_image(SAMPLES[name]).orientation == orientation

    def test_display_size_swaps_for_rotated_photos(self):
        """Orientations 5 to 8 swap width and height for display."""
        info = ImageInfo(media_type="image/jpeg", width=64, height=48, orientation=6)
        assert (info.display_width, info.display_height) == (48, 64)
        upright = ImageInfo(media_type="image/jpeg", width=64, height=48, orientation=3)
        assert (upright.display_width, upright.display_height) == (64, 48)

    def test_gif_canvas_grows_to_fit_frames(self):
        """A GIF frame larger than the logical screen grows the size, as Pillow does."""
        data = bytearray(still("GIF", size=(40, 40)))
        data[6:10] = struct.pack("<HH", 10, 10)
        info = inspect_image(bytes(data))
        assert (info.width, info.height) == (40, 40) == decode(bytes(data)).size

    def test_trailing_bytes_are_tolerated(self):
        """Bytes after the end marker do not make a picture invalid."""
        for name in ("png-rgb", "jpeg", "gif", "webp-lossy"):
            assert inspect_image(SAMPLES[name] + b"trailer") == inspect_image(SAMPLES[name])


class TestLimits:
    def test_png_decompression_bomb(self):
        """A small PNG declaring 20000x20000 is refused from its header."""
        squeeze = zlib.compressobj(9)
        row = bytes(20000 * 3 + 1)
        idat = b"".join(squeeze.compress(row) for _ in range(800)) + squeeze.flush()
        data = (
            PNG_SIGNATURE
            + png_ihdr(20000, 20000)
            + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b"")
        )
        assert len(data) < 50 * 1024
        with pytest.raises(ValidationError) as excinfo:
            prepare_picture(data)
        assert codes(excinfo) == {"picture.too_large_dimensions", "picture.too_many_pixels"}
        pixels_error = excinfo.value.errors[1]
        assert pixels_error.params == {"limit": 4096 * 4096, "actual": 20000 * 20000}

    def test_bomb_header_wins_over_a_missing_body(self):
        """The limits are checked as soon as IHDR is read, before the rest of the file."""
        data = PNG_SIGNATURE + png_ihdr(20000, 20000)
        with pytest.raises(ValidationError) as excinfo:
            inspect_image(data)
        assert codes(excinfo) == {"picture.too_large_dimensions", "picture.too_many_pixels"}

    def test_pixels_limit_alone(self):
        """An image within the width and height limits can still have too many pixels."""
        policy = PicturePolicy(max_pixels=64 * 40)
        with pytest.raises(ValidationError) as excinfo:
            inspect_image(SAMPLES["png-rgb"], policy=policy)
        assert excinfo.value.codes == ("picture.too_many_pixels",)

    def test_jpeg_frame_header_bomb(self):
        """A JPEG whose frame header declares 65535x65535 is refused."""
        data = bytearray(SAMPLES["jpeg-cmyk"])
        sof = data.index(b"\xff\xc0")
        data[sof + 5 : sof + 9] = struct.pack(">HH", 65535, 65535)
        with pytest.raises(ValidationError) as excinfo:
            inspect_image(bytes(data))
        assert codes(excinfo) == {"picture.too_large_dimensions", "picture.too_many_pixels"}

    def test_gif_screen_bomb(self):
        """A GIF whose logical screen is 65535x65535 is refused."""
        data = bytearray(SAMPLES["gif"])
        data[6:10] = struct.pack("<HH", 65535, 65535)
        with pytest.raises(ValidationError) as excinfo:
            inspect_image(bytes(data))
        assert "picture.too_many_pixels" in codes(excinfo)

    def test_gif_frame_outside_a_small_screen(self):
        """A GIF frame placed far outside a small screen counts against the limits."""
        data = bytearray(SAMPLES["gif"])
        descriptor = data.index(b",", gif_blocks_start(bytes(data)))
        data[descriptor + 1 : descriptor + 5] = struct.pack("<HH", 60000, 60000)
        with pytest.raises(ValidationError) as excinfo:
            inspect_image(bytes(data))
        assert codes(excinfo) == {"picture.too_large_dimensions", "picture.too_many_pixels"}

    def test_webp_canvas_bomb(self):
        """A WebP whose VP8X canvas is 16384x16384 is refused."""
        data = bytearray(SAMPLES["webp-alpha-exif"])
        vp8x = data.index(b"VP8X") + 8
        data[vp8x + 4 : vp8x + 10] = (16383).to_bytes(3, "little") * 2
        with pytest.raises(ValidationError) as excinfo:
            inspect_image(bytes(data))
        assert codes(excinfo) == {"picture.too_large_dimensions", "picture.too_many_pixels"}

    def test_too_many_bytes_is_checked_first(self):
        """A file over max_bytes is refused without looking at its content."""
        with pytest.raises(ValidationError) as excinfo:
            inspect_image(b"<svg/>" * 100, policy=PicturePolicy(max_bytes=100))
        assert excinfo.value.codes == ("picture.too_large",)
        assert excinfo.value.errors[0].params == {"limit": 100, "actual": 600}

    @pytest.mark.parametrize(
        ("size", "min_size", "accepted"),
        [
            ((1, 1), 32, False),
            ((16, 16), 32, False),
            ((32, 31), 32, False),
            ((32, 32), 32, True),
            ((1, 1), 1, True),
        ],
    )
    def test_minimum_size(self, size, min_size, accepted):
        """Pictures narrower or shorter than the minimum are refused as too small."""
        data = still("PNG", size=size)
        policy = PicturePolicy(min_width=min_size, min_height=min_size)
        if accepted:
            assert inspect_image(data, policy=policy).width == size[0]
            return
        with pytest.raises(ValidationError) as excinfo:
            inspect_image(data, policy=policy)
        assert excinfo.value.codes == ("picture.too_small",)
        assert excinfo.value.errors[0].params["width"] == size[0]

    def test_whole_file_limits_are_reported_together(self):
        """Too small, animated and too many frames are reported in one error."""
        data = animated("GIF", frames=3, size=(8, 8))
        policy = PicturePolicy(allow_animated=False, max_frames=2)
        with pytest.raises(ValidationError) as excinfo:
            inspect_image(data, policy=policy)
        assert excinfo.value.codes == (
            "picture.too_small",
            "picture.animated_not_allowed",
            "picture.too_many_frames",
        )

    @pytest.mark.parametrize("name", ["apng", "gif-animated", "webp-animated"])
    def test_animation_size(self, name):
        """canvas pixels x frames above max_total_pixels is refused."""
        policy = PicturePolicy(max_total_pixels=40 * 40 * 3 - 1)
        with pytest.raises(ValidationError) as excinfo:
            inspect_image(SAMPLES[name], policy=policy)
        assert excinfo.value.codes == ("picture.animation_too_large",)
        assert inspect_image(SAMPLES[name], policy=PicturePolicy(max_total_pixels=40 * 40 * 3))

    def test_still_images_allowed_when_animation_is_not(self):
        """allow_animated=False still accepts still images of every type."""
        policy = PicturePolicy(allow_animated=False)
        for name in ("png-rgb", "jpeg", "gif", "webp-lossy"):
            assert inspect_image(SAMPLES[name], policy=policy)


def _png_with(*chunks: bytes, width: int = 32, height: int = 32) -> bytes:
    idat = png_chunk(b"IDAT", zlib.compress(bytes((width * 3 + 1) * height)))
    return (
        PNG_SIGNATURE + png_ihdr(width, height) + b"".join(chunks) + idat + png_chunk(b"IEND", b"")
    )


def _flip(data: bytes, index: int, value: int | None = None) -> bytes:
    out = bytearray(data)
    out[index] = (out[index] ^ 0xFF) if value is None else value
    return bytes(out)


def _jpeg_without(data: bytes, marker: bytes) -> bytes:
    start = data.index(marker)
    length = struct.unpack(">H", data[start + 2 : start + 4])[0]
    return data[:start] + data[start + 2 + length :]


def _hierarchical_jpeg() -> bytes:
    data = SAMPLES["jpeg-cmyk"]
    return data.replace(b"\xff\xc0", b"\xff\xc5", 1)


def _webp_frame_outside() -> bytes:
    data = bytearray(SAMPLES["webp-animated"])
    anmf = data.index(b"ANMF") + 8
    data[anmf : anmf + 3] = (10).to_bytes(3, "little")
    return bytes(data)


CORRUPT_CASES = [
    ("png-bad-crc", _flip(SAMPLES["png-rgb"], 30), "corrupt"),
    (
        "png-ihdr-not-first",
        PNG_SIGNATURE + png_chunk(b"gAMA", bytes(4)) + _png_with()[8:],
        "corrupt",
    ),
    ("png-zero-width", _png_with(width=0), "corrupt"),
    (
        "png-bad-depth",
        PNG_SIGNATURE + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 3, 2, 0, 0, 0)),
        "corrupt",
    ),
    ("png-unknown-critical", _png_with(png_chunk(b"CgBI", bytes(4))), "corrupt"),
    ("png-no-iend", _png_with()[:-12], "truncated"),
    ("png-no-idat", PNG_SIGNATURE + png_ihdr(32, 32) + png_chunk(b"IEND", b""), "corrupt"),
    (
        "png-palette-missing",
        PNG_SIGNATURE + png_ihdr(32, 32, 8, 3) + png_chunk(b"IDAT", b"x") + png_chunk(b"IEND", b""),
        "corrupt",
    ),
    (
        "png-split-idat",
        _png_with()[:-12]
        + png_chunk(b"tEXt", b"a\x00b")
        + png_chunk(b"IDAT", b"")
        + png_chunk(b"IEND", b""),
        "corrupt",
    ),
    ("png-bad-chunk-name", _png_with(png_chunk(b"t3Xt", b"")), "corrupt"),
    (
        "png-huge-chunk-length",
        PNG_SIGNATURE + png_ihdr(32, 32) + b"\xff\xff\xff\xffIDAT",
        "corrupt",
    ),
    ("png-actl-zero-frames", _png_with(png_chunk(b"acTL", bytes(8))), "corrupt"),
    ("png-actl-count-mismatch", _png_with(png_chunk(b"acTL", struct.pack(">II", 2, 0))), "corrupt"),
    ("jpeg-no-frame-header", _jpeg_without(SAMPLES["jpeg-cmyk"], b"\xff\xc0"), "corrupt"),
    (
        "jpeg-no-scan",
        SAMPLES["jpeg-cmyk"][: SAMPLES["jpeg-cmyk"].index(b"\xff\xda")] + b"\xff\xd9",
        "corrupt",
    ),
    ("jpeg-no-eoi", SAMPLES["jpeg-cmyk"][:-2], "truncated"),
    ("jpeg-hierarchical", _hierarchical_jpeg(), "unsupported_type"),
    (
        "jpeg-garbage-between-segments",
        SAMPLES["jpeg"][:20] + b"junk" + SAMPLES["jpeg"][20:],
        "corrupt",
    ),
    ("jpeg-second-soi", SAMPLES["jpeg"][:2] + SAMPLES["jpeg"], "corrupt"),
    (
        "jpeg-reserved-marker",
        jpeg_insert_after_soi(SAMPLES["jpeg"], jpeg_segment(0xF7, b"x")),
        "corrupt",
    ),
    (
        "jpeg-zero-height",
        SAMPLES["jpeg"].replace(b"\xff\xc0\x00\x11\x08\x00\x30", b"\xff\xc0\x00\x11\x08\x00\x00"),
        "corrupt",
    ),
    ("gif-html-after-header", b"GIF89a\x20\x00\x20\x00\x00\x00\x00" + HTML, "corrupt"),
    ("gif-no-trailer", SAMPLES["gif"][:-1], "truncated"),
    ("gif-no-image", SAMPLES["gif"][: gif_blocks_start(SAMPLES["gif"])] + b";", "corrupt"),
    (
        "webp-riff-size-too-large",
        SAMPLES["webp-lossy"][:4] + b"\xff\xff\x00\x00" + SAMPLES["webp-lossy"][8:],
        "truncated",
    ),
    (
        "webp-riff-size-too-small",
        SAMPLES["webp-lossy"][:4] + b"\x10\x00\x00\x00" + SAMPLES["webp-lossy"][8:],
        "corrupt",
    ),
    ("webp-unknown-first-chunk", b"RIFF\x0c\x00\x00\x00WEBPJUNK\x00\x00\x00\x00", "corrupt"),
    (
        "webp-not-a-key-frame",
        _flip(SAMPLES["webp-lossy"], 20, SAMPLES["webp-lossy"][20] | 1),
        "corrupt",
    ),
    ("webp-frame-outside-canvas", _webp_frame_outside(), "corrupt"),
]


class TestMalformedInput:
    @pytest.mark.parametrize(
        ("name", "data", "problem"), CORRUPT_CASES, ids=[c[0] for c in CORRUPT_CASES]
    )
    def test_malformed_files(self, name, data, problem):
        """Damaged files raise one ValidationError with a precise code from every entry point."""
        for function in (inspect_image, strip_metadata, prepare_picture):
            with pytest.raises(ValidationError) as excinfo:
                function(data) if function is strip_metadata else function(data, policy=LENIENT)
            assert excinfo.value.codes == (f"picture.{problem}",)
            assert excinfo.value.errors[0].params["reason"]

    def test_hierarchical_jpeg_message(self):
        """An unsupported JPEG variant says which one."""
        with pytest.raises(ValidationError) as excinfo:
            inspect_image(_hierarchical_jpeg())
        assert excinfo.value.errors[0].params == {
            "media_type": "image/jpeg",
            "reason": "hierarchical JPEG",
        }

    @pytest.mark.parametrize("name", sorted(SAMPLES))
    def test_every_truncation(self, name):
        """A valid file cut at any length is reported as truncated by every entry point."""
        data = SAMPLES[name]
        for length in range(1, len(data)):
            for function in (inspect_image, prepare_picture):
                with pytest.raises(ValidationError) as excinfo:
                    function(data[:length], policy=LENIENT)
                assert excinfo.value.codes == ("picture.truncated",)
            with pytest.raises(ValidationError) as excinfo:
                strip_metadata(data[:length])
            assert excinfo.value.codes == ("picture.truncated",)


class TestStripMetadata:
    def test_jpeg_exif_xmp_iptc_comment_and_thumbnail(self):
        """JPEG loses APP1 EXIF/XMP, APP13 IPTC, COM, other APPn and the JFIF thumbnail."""
        base = still("JPEG", exif=exif_block(), xmp=XMP_PACKET, comment=COMMENT_MARKER)
        jfif_with_thumbnail = b"JFIF\x00\x01\x02\x00\x00\x01\x00\x01\x01\x01" + b"\xab\xcd\xef"
        data = jpeg_insert_after_soi(
            base[:2] + _jpeg_without(base, b"\xff\xe0")[2:],
            jpeg_segment(0xE0, jfif_with_thumbnail),
        )
        data = data[:2] + data[2:].replace(
            b"\xff\xdb",
            jpeg_segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04" + IPTC_MARKER)
            + jpeg_segment(0xEC, b"Ducky\x00")
            + jpeg_segment(0xE2, b"MPF\x00" + bytes(20))
            + b"\xff\xdb",
            1,
        )
        assert all(marker in data for marker in (GPS_MARKER, XMP_MARKER, IPTC_MARKER))
        out = strip_metadata(data)
        assert_clean(out)
        assert jpeg_markers(out)[0] == 0xE0
        assert 0xE1 not in jpeg_markers(out)
        assert 0xED not in jpeg_markers(out)
        assert out[6:20] == b"JFIF\x00\x01\x02\x00\x00\x01\x00\x01\x00\x00"
        assert pixels(out) == pixels(base)

    def test_jpeg_keeps_icc_and_adobe(self):
        """ICC profiles and the Adobe segment survive, so colours decode the same."""
        icc = b"\x00" * 128 + b"acsp" + b"\x00" * 200
        data = still("JPEG", "CMYK", icc_profile=icc, exif=exif_block())
        out = strip_metadata(data)
        assert_clean(out)
        assert decode(out).info["icc_profile"] == icc
        assert b"Adobe" in out
        assert pixels(out) == pixels(data)

    @pytest.mark.parametrize("name", ["jpeg-progressive", "jpeg-gray-restart", "jpeg-cmyk"])
    def test_jpeg_scans_are_untouched(self, name):
        """Progressive scans and restart markers are copied exactly."""
        out = strip_metadata(SAMPLES[name], keep_orientation=False)
        assert_clean(out)
        assert pixels(out) == pixels(SAMPLES[name])
        assert out[out.index(b"\xff\xda") :] == SAMPLES[name][SAMPLES[name].index(b"\xff\xda") :]

    def test_png_text_exif_time_and_private_chunks(self):
        """PNG loses tEXt, zTXt, iTXt (XMP), eXIf, tIME and unknown chunks."""
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", COMMENT_MARKER.decode())
        info.add_text("Description", "x" * 2000, zip=True)
        info.add_itxt("XML:com.adobe.xmp", XMP_PACKET.decode())
        data = still("PNG", pnginfo=info, exif=exif_block())
        data = png_insert(data, b"IEND", png_chunk(b"tIME", bytes(7)), png_chunk(b"prVW", b"x"))
        out = strip_metadata(data)
        assert_clean(out)
        kinds = [kind for kind, _ in png_chunks(out)]
        assert kinds == [b"IHDR", b"IDAT", b"IEND"]
        assert pixels(out) == pixels(data)

    def test_png_keeps_colour_chunks(self):
        """gAMA, cHRM, sRGB, iCCP, sBIT, pHYs and tRNS survive."""
        icc = zlib.compress(b"\x00" * 128 + b"acsp")
        data = _png_with(
            png_chunk(b"gAMA", struct.pack(">I", 45455)),
            png_chunk(b"cHRM", bytes(32)),
            png_chunk(b"iCCP", b"profile\x00\x00" + icc),
            png_chunk(b"sBIT", b"\x08\x08\x08"),
            png_chunk(b"pHYs", bytes(9)),
            png_chunk(b"tRNS", bytes(6)),
            png_chunk(b"tEXt", b"Author\x00" + COMMENT_MARKER),
        )
        out = strip_metadata(data)
        kinds = [kind for kind, _ in png_chunks(out)]
        assert kinds == [
            b"IHDR",
            b"gAMA",
            b"cHRM",
            b"iCCP",
            b"sBIT",
            b"pHYs",
            b"tRNS",
            b"IDAT",
            b"IEND",
        ]
        assert_clean(out)

    def test_apng_keeps_its_animation(self):
        """APNG control and frame chunks survive; text chunks do not."""
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", COMMENT_MARKER.decode())
        data = animated("PNG", pnginfo=info)
        out = strip_metadata(data)
        assert_clean(out)
        assert decode(out).n_frames == 3
        assert pixels(out) == pixels(data)
        assert {kind for kind, _ in png_chunks(out)} == {
            b"IHDR",
            b"acTL",
            b"fcTL",
            b"IDAT",
            b"fdAT",
            b"IEND",
        }

    def test_gif_comments_xmp_and_plain_text(self):
        """GIF loses comment, plain-text and foreign application extensions; looping stays."""
        data = animated("GIF", comment=COMMENT_MARKER)
        data = gif_insert(
            data,
            gif_extension(0xFF, b"XMP DataXMP" + XMP_PACKET),
            gif_extension(0xFF, b"ICCRGBG1012" + b"icc"),
            b"!\xf9\x04\x00\x05\x00\x00\x00",
            gif_extension(0x01, bytes(12) + b"hidden text"),
            gif_extension(0xFE, HTML),
        )
        out = strip_metadata(data)
        assert_clean(out)
        image = decode(out)
        assert image.info["loop"] == 0
        assert image.n_frames == 3
        assert b"hidden text" not in out
        assert b"XMP DataXMP" not in out
        assert out.count(b"!\xf9") == data.count(b"!\xf9") - 1
        assert pixels(out) == pixels(data)

    @pytest.mark.parametrize("lossless", [False, True])
    def test_webp_exif_and_xmp(self, lossless):
        """WebP loses EXIF and XMP chunks; VP8X flags and the RIFF size are corrected."""
        data = still("WEBP", "RGBA", exif=exif_block(), xmp=XMP_PACKET, lossless=lossless)
        data = (
            data[:4] + struct.pack("<I", len(data) + 10 - 8) + data[8:] + b"JUNK\x02\x00\x00\x00ab"
        )
        out = strip_metadata(data)
        assert_clean(out)
        chunks = riff_chunks(out)
        assert [kind for kind, _ in chunks] == [b"VP8X", b"ALPH" if not lossless else b"VP8L"] + (
            [b"VP8 "] if not lossless else []
        )
        flags = chunks[0][1][0]
        assert flags & 0x0C == 0
        assert flags & 0x10  # alpha flag untouched
        assert struct.unpack("<I", out[4:8])[0] == len(out) - 8
        assert pixels(out) == pixels(data)

    def test_webp_animation_keeps_frames(self):
        """An animated WebP keeps ANIM and every ANMF frame, minus unknown frame sub-chunks."""
        data = SAMPLES["webp-animated"]
        assert strip_metadata(data) == data
        decoded = decode(strip_metadata(data))
        assert decoded.n_frames == 3

    def test_simple_webp_drops_chunks_after_the_image(self):
        """A simple WebP with stray chunks keeps only its bitstream."""
        data = SAMPLES["webp-lossy"]
        extra = b"EXIF" + struct.pack("<I", len(GPS_MARKER)) + GPS_MARKER
        extra += b"\x00" * (len(GPS_MARKER) % 2)
        grown = data[:4] + struct.pack("<I", len(data) + len(extra) - 8) + data[8:] + extra
        assert strip_metadata(grown) == data

    @pytest.mark.parametrize("name", ["png-rgb", "jpeg", "gif", "webp-lossy", "apng"])
    def test_trailing_data_is_removed(self, name):
        """Whatever follows the end marker (motion-photo videos, HTML, archives) is dropped."""
        clean = strip_metadata(SAMPLES[name], keep_orientation=False)
        assert strip_metadata(SAMPLES[name] + HTML + b"PK\x03\x04", keep_orientation=False) == clean

    @pytest.mark.parametrize("name", sorted(SAMPLES))
    def test_result_is_the_same_picture(self, name):
        """The result has the same type, size and pixels, and stripping twice changes nothing."""
        out = strip_metadata(SAMPLES[name])
        before, after = inspect_image(SAMPLES[name]), inspect_image(out)
        assert after == before
        assert decode(out).size == decode(SAMPLES[name]).size
        assert pixels(out) == pixels(SAMPLES[name])
        assert strip_metadata(out) == out

    @pytest.mark.parametrize(
        ("name", "orientation"), [("jpeg", 3), ("png-interlaced-exif", 6), ("webp-alpha-exif", 8)]
    )
    def test_orientation_is_the_only_tag_kept(self, name, orientation):
        """By default only the orientation survives, in a minimal EXIF block we write."""
        out = strip_metadata(SAMPLES[name])
        assert dict(decode(out).getexif()) == {0x0112: orientation}
        for marker in MARKERS:
            assert marker not in out
        assert inspect_image(out).orientation == orientation

    @pytest.mark.parametrize("name", ["jpeg", "png-interlaced-exif", "webp-alpha-exif"])
    def test_orientation_can_be_dropped(self, name):
        """keep_orientation=False leaves no EXIF at all."""
        out = strip_metadata(SAMPLES[name], keep_orientation=False)
        assert_clean(out)
        assert inspect_image(out).orientation == 1

    def test_no_limits_are_applied(self):
        """Stripping checks structure, not size: a tiny image is stripped fine."""
        data = still("PNG", size=(1, 1))
        assert strip_metadata(data) == data


class TestPreparePicture:
    def test_prepared_picture(self):
        """The result holds the stripped bytes, what they are, and their SHA-256."""
        data = SAMPLES["jpeg"]
        prepared = prepare_picture(data, keep_orientation=False)
        assert prepared.data == strip_metadata(data, keep_orientation=False)
        assert prepared.sha256 == hashlib.sha256(prepared.data).hexdigest()
        assert prepared.info == ImageInfo(media_type="image/jpeg", width=64, height=48)
        assert_clean(prepared.data)

    def test_repr_shows_only_the_length(self):
        """The repr of a prepared picture does not dump its bytes."""
        prepared = prepare_picture(SAMPLES["png-rgb"])
        text = repr(prepared)
        assert f"data=<{len(prepared.data)} bytes>" in text
        assert "\\x89PNG" not in text
        assert isinstance(prepared, PreparedPicture)

    def test_keeps_orientation_by_default(self):
        """The prepared picture still says how to display it."""
        assert prepare_picture(SAMPLES["jpeg"]).info.orientation == 3

    def test_applies_the_policy(self):
        """prepare_picture refuses what inspect_image refuses."""
        with pytest.raises(ValidationError) as excinfo:
            prepare_picture(SAMPLES["gif-animated"], policy=PicturePolicy(allow_animated=False))
        assert excinfo.value.codes == ("picture.animated_not_allowed",)


class TestPolyglots:
    def test_gif_header_followed_by_html_is_refused(self):
        """A GIF signature in front of an HTML page is not a GIF."""
        with pytest.raises(ValidationError) as excinfo:
            prepare_picture(b"GIF89a\x20\x00\x20\x00\x00\x00\x00" + HTML)
        assert excinfo.value.codes == ("picture.corrupt",)

    def test_gif_js_polyglot_header_is_refused(self):
        """The classic GIF89a/*...*/ script polyglot declares an absurd width and is refused."""
        with pytest.raises(ValidationError) as excinfo:
            prepare_picture(b"GIF89a/*\x10\x00\x00\x00\x00*/=1;alert(1);" + b"\x00" * 32)
        assert "picture.too_large_dimensions" in codes(excinfo)

    @pytest.mark.parametrize(
        "build",
        [
            lambda: gif_insert(SAMPLES["gif"], gif_extension(0xFE, HTML)) + HTML,
            lambda: (
                png_insert(SAMPLES["png-rgb"], b"IDAT", png_chunk(b"tEXt", b"x\x00" + HTML)) + HTML
            ),
            lambda: jpeg_insert_after_soi(SAMPLES["jpeg"], jpeg_segment(0xFE, HTML)) + HTML,
            lambda: SAMPLES["webp-lossy"] + HTML,
        ],
        ids=["gif", "png", "jpeg", "webp"],
    )
    def test_html_hidden_in_a_valid_image_is_removed(self, build):
        """A valid image carrying HTML in metadata or after its end is stored without it."""
        data = build()
        assert HTML in data
        prepared = prepare_picture(data)
        assert b"<script" not in prepared.data
        assert b"<html" not in prepared.data
        decode(prepared.data)


class TestReencode:
    def test_square_crop_and_resize(self):
        """The picture is centre-cropped to a square and resized to the requested side."""
        prepared = reencode(still("PNG", size=(80, 40)), size=32)
        assert (prepared.info.width, prepared.info.height) == (32, 32)
        assert prepared.info.media_type == "image/png"
        assert decode(prepared.data).size == (32, 32)

    def test_centre_crop_keeps_the_middle(self):
        """Without resizing, the crop is the middle square of the original pixels."""
        source = gradient("RGB", (80, 40))
        prepared = reencode(encode(source, "PNG"))
        assert (
            decode(prepared.data).convert("RGB").tobytes() == source.crop((20, 0, 60, 40)).tobytes()
        )

    def test_not_square(self):
        """square=False keeps the aspect ratio; size sets the longer side."""
        prepared = reencode(still("PNG", size=(80, 40)), square=False, size=64)
        assert (prepared.info.width, prepared.info.height) == (64, 32)

    def test_orientation_is_applied_and_metadata_is_gone(self):
        """A rotated phone photo comes out upright, with no EXIF left at all."""
        data = still("JPEG", size=(64, 48), exif=exif_block(6), xmp=XMP_PACKET)
        prepared = reencode(data, square=False)
        assert (prepared.info.width, prepared.info.height) == (48, 64)
        assert prepared.info.orientation == 1
        assert_clean(prepared.data)

    def test_format_conversion_flattens_transparency(self):
        """RGBA to JPEG paints transparent pixels white."""
        image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
        prepared = reencode(encode(image, "PNG"), format="jpeg")
        assert prepared.info.media_type == "image/jpeg"
        assert decode(prepared.data).convert("RGB").getpixel((20, 20)) == (255, 255, 255)

    @pytest.mark.parametrize(
        ("fmt", "target"), [("GIF", None), ("PNG", "webp"), ("WEBP", "image/gif")]
    )
    def test_animations_stay_animated(self, fmt, target):
        """Animated input stays animated when the output format can animate."""
        prepared = reencode(animated(fmt, frames=3, size=(60, 40)), format=target, size=32)
        assert prepared.info.animated
        assert prepared.info.frames == 3
        assert (prepared.info.width, prepared.info.height) == (32, 32)

    def test_animation_to_jpeg_keeps_the_first_frame(self):
        """JPEG cannot animate: the first frame is kept."""
        prepared = reencode(SAMPLES["gif-animated"], format="JPEG")
        assert (prepared.info.media_type, prepared.info.frames) == ("image/jpeg", 1)
        assert decode(prepared.data).convert("RGB").getpixel((20, 20))[0] > 200

    @pytest.mark.parametrize(
        "name", ["jpeg-cmyk", "png-gray", "png-palette", "jpeg-progressive", "webp-lossless"]
    )
    def test_every_mode(self, name):
        """CMYK, grayscale, palette and lossless inputs re-encode to their own type."""
        prepared = reencode(SAMPLES[name], size=32)
        assert prepared.info.media_type == media_type_of(name)
        assert decode(prepared.data).size == (32, 32)

    def test_sixteen_bit_grayscale(self):
        """A 16-bit grayscale PNG re-encodes."""
        image = Image.new("I;16", (40, 40), 30000)
        assert reencode(encode(image, "PNG")).info.width == 40

    @pytest.mark.parametrize("size", [0, 16, 5000, True])
    def test_size_outside_the_policy(self, size):
        """A target size outside the policy's limits is refused before any work."""
        with pytest.raises(ValidationError) as excinfo:
            reencode(SAMPLES["png-rgb"], size=size)
        assert excinfo.value.codes == ("size.out_of_range",)

    def test_unknown_format(self):
        """Only PNG, JPEG, GIF and WebP can be produced."""
        with pytest.raises(ValidationError) as excinfo:
            reencode(SAMPLES["png-rgb"], format="svg")
        assert excinfo.value.codes == ("format.unsupported_type",)

    def test_input_is_checked_first(self):
        """Refused input never reaches Pillow."""
        with pytest.raises(ValidationError) as excinfo:
            reencode(PNG_SIGNATURE + png_ihdr(20000, 20000))
        assert "picture.too_many_pixels" in codes(excinfo)

    def test_undecodable_pixels(self):
        """A well-formed file whose pixel data Pillow cannot decode is corrupt."""
        data = (
            PNG_SIGNATURE
            + png_ihdr(40, 40)
            + png_chunk(b"IDAT", b"not zlib at all")
            + png_chunk(b"IEND", b"")
        )
        with pytest.raises(ValidationError) as excinfo:
            reencode(data)
        assert excinfo.value.codes == ("picture.corrupt",)

    def test_pillow_bomb_guard_becomes_validation_error(self, monkeypatch):
        """Should Pillow's own guard be stricter, its error becomes too_many_pixels."""
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
        with pytest.raises(ValidationError) as excinfo:
            reencode(SAMPLES["png-rgb"])
        assert excinfo.value.codes == ("picture.too_many_pixels",)

    def test_missing_extra(self, monkeypatch):
        """Without Pillow, re-encoding says which extra to install."""
        monkeypatch.setitem(sys.modules, "PIL", None)
        with pytest.raises(MissingExtraError) as excinfo:
            reencode(SAMPLES["png-rgb"])
        assert excinfo.value.extra == "images"
        assert "enspace-profile[images]" in str(excinfo.value)

    def test_does_not_touch_pillow_globals(self):
        """Re-encoding leaves Pillow's process-wide decompression guard alone."""
        before = Image.MAX_IMAGE_PIXELS
        reencode(SAMPLES["png-rgb"])
        assert before == Image.MAX_IMAGE_PIXELS


# ---------------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def only_validation_errors(data: bytes) -> None:
    """Run every entry point; only ValidationError may come out, and results must be sound."""
    for call in (
        lambda: inspect_image(data, policy=LENIENT),
        lambda: prepare_picture(data, policy=LENIENT),
    ):
        with contextlib.suppress(ValidationError):
            call()
    try:
        out = strip_metadata(data)
    except ValidationError:
        return
    assert strip_metadata(out) == out
    assert inspect_image(out, policy=LENIENT) == inspect_image(data, policy=LENIENT)


class TestFuzz:
    @FUZZ
    @given(st.binary(max_size=2048))
    def test_random_bytes(self, data):
        """Random bytes never raise anything but ValidationError."""
        only_validation_errors(data)

    @FUZZ
    @given(
        st.sampled_from(
            [
                b"\x89PNG\r\n\x1a\n",
                b"\xff\xd8\xff",
                b"GIF89a",
                b"GIF87a",
                b"RIFF\x00\x01\x00\x00WEBP",
            ]
        ),
        st.binary(max_size=1024),
    )
    def test_signature_then_random_bytes(self, signature, tail):
        """A valid signature followed by garbage never raises anything but ValidationError."""
        only_validation_errors(signature + tail)

    @FUZZ
    @given(
        st.sampled_from(sorted(SAMPLES)),
        st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)), min_size=1, max_size=6),
    )
    def test_mutated_images(self, name, mutations):
        """Valid images with random bytes changed never raise anything but ValidationError."""
        data = bytearray(SAMPLES[name])
        for where, value in mutations:
            data[where % len(data)] = value
        only_validation_errors(bytes(data))

    @FUZZ
    @given(st.sampled_from(sorted(SAMPLES)), st.data())
    def test_chunk_headers_mutated(self, name, draw):
        """Mutations focused on the first bytes (headers, lengths) never crash."""
        data = bytearray(SAMPLES[name])
        for _ in range(draw.draw(st.integers(1, 4))):
            data[draw.draw(st.integers(0, min(len(data), 120) - 1))] = draw.draw(
                st.integers(0, 255)
            )
        only_validation_errors(bytes(data))

    @FUZZ
    @given(st.sampled_from(sorted(SAMPLES)), st.data())
    def test_insertions_and_deletions(self, name, draw):
        """Bytes inserted into or deleted from a valid image never crash the parsers."""
        data = bytearray(SAMPLES[name])
        where = draw.draw(st.integers(0, len(data)))
        if draw.draw(st.booleans()):
            data[where:where] = draw.draw(st.binary(min_size=1, max_size=16))
        else:
            del data[where : where + draw.draw(st.integers(1, 16))]
        only_validation_errors(bytes(data))

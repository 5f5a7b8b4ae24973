"""Profile pictures: what a file really is, whether it is acceptable, and without metadata.

Everything here works on ``bytes`` and never on a file name or a client-supplied
content type: the type comes from the file's own magic numbers. Only PNG (including
APNG), JPEG, GIF and WebP are accepted; SVG, HTML and everything else are refused
with ``picture.unsupported_type``.

The headers are parsed here, in pure Python, without decoding a single pixel, so the
limits of a :class:`PicturePolicy` (bytes, width, height, pixels, frames) are
enforced before any decoder sees the file. A 48 KB PNG may *declare* 20000x20000
pixels; it is refused as soon as its ``IHDR`` chunk has been read, before the rest
of the file is even walked. Broken input always becomes a :class:`ValidationError`
(``picture.corrupt`` or ``picture.truncated``), never an ``IndexError`` or a
``struct.error``.

Decisions worth knowing:

* **Metadata.** :func:`strip_metadata` keeps only what decoding and colour need and
  drops the rest: EXIF (GPS), XMP, IPTC, comments, text chunks, thumbnails, unknown
  and private chunks, application extensions other than looping, and any bytes
  after the format's end marker (where phones append "motion photo" videos, gain
  maps or vendor trailers). By default the EXIF *orientation* survives, as a
  synthetic one-tag EXIF block written by us, because without it phone photos are
  shown sideways; pass ``keep_orientation=False`` to drop it too, or use
  :func:`reencode`, which applies the orientation to the pixels.
* **Trailing bytes** after the end marker (``IEND``, ``EOI``, the GIF trailer, the
  RIFF size) are tolerated by :func:`inspect_image` and removed by
  :func:`strip_metadata`.
* **Polyglots.** A file that starts like a GIF but continues as HTML is refused
  (``picture.corrupt``), because the rest does not parse as a GIF. A *valid* image
  that hides HTML in a comment, a metadata chunk or after its end is accepted, and
  the hidden part is removed by :func:`strip_metadata`. Bytes hidden inside the
  compressed pixel data cannot be found without decoding; hosts must still serve
  stored pictures with the exact ``Content-Type`` from :attr:`ImageInfo.media_type`,
  ``X-Content-Type-Options: nosniff`` and preferably from a separate origin.
  :func:`reencode` (optional ``[images]`` extra) rebuilds the file from its pixels
  and removes even that.
* **Pillow's global guard.** :func:`reencode` does not change
  ``PIL.Image.MAX_IMAGE_PIXELS`` (process-wide state that belongs to the host).
  It enforces the policy's limits itself, from the headers and again on every frame
  Pillow opens, before pixels are decoded; should Pillow's own guard be stricter, its
  ``DecompressionBombError`` becomes ``picture.too_many_pixels``.

>>> try:
...     inspect_image(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
... except ValidationError as exc:
...     print(exc.codes)
('picture.unsupported_type',)
"""

from __future__ import annotations

import abc
import hashlib
import io
import re
import struct
import zlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, Literal

import attrs

from enspace_profile.exceptions import FieldError, MissingExtraError, ValidationError

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "PICTURE_TYPES",
    "ImageInfo",
    "PicturePolicy",
    "PreparedPicture",
    "inspect_image",
    "prepare_picture",
    "reencode",
    "strip_metadata",
]

_PNG: Final = "image/png"
_JPEG: Final = "image/jpeg"
_GIF: Final = "image/gif"
_WEBP: Final = "image/webp"

PICTURE_TYPES: Final[frozenset[str]] = frozenset({_PNG, _JPEG, _GIF, _WEBP})
"""The media types a profile picture may have."""

_EXTENSIONS: Final = {_PNG: ".png", _JPEG: ".jpg", _GIF: ".gif", _WEBP: ".webp"}
_NAMES: Final = {_PNG: "PNG", _JPEG: "JPEG", _GIF: "GIF", _WEBP: "WebP"}

_MIB: Final = 1024 * 1024


# --------------------------------------------------------------------------- public values


def _to_types(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


@attrs.frozen(kw_only=True)
class PicturePolicy:
    """What a profile picture may be; every limit is checked from the file's header.

    Attributes:
        max_bytes: Largest accepted file, in bytes (5 MiB).
        max_width: Widest accepted image, in pixels.
        max_height: Tallest accepted image, in pixels.
        max_pixels: Most pixels in one frame (width x height; 16.7 MP = 4096 x 4096).
        min_width: Narrowest accepted image (smaller pictures look broken as avatars).
        min_height: Shortest accepted image.
        allow_animated: Whether animated GIF, APNG and WebP are accepted.
        max_frames: Most frames in an animation.
        max_total_pixels: Most pixels a decoder must produce for the whole image,
            canvas pixels x frames (bounds the work of decoding an animation).
        allowed_types: Accepted media types, a subset of :data:`PICTURE_TYPES`.

    Raises:
        ValidationError: A limit is not a positive integer, a minimum exceeds its
            maximum, or ``allowed_types`` is empty or names an unsupported type.

    >>> PicturePolicy(max_width=1024, max_height=1024).max_pixels
    16777216
    """

    max_bytes: int = 5 * _MIB
    max_width: int = 4096
    max_height: int = 4096
    max_pixels: int = 4096 * 4096
    min_width: int = 32
    min_height: int = 32
    allow_animated: bool = True
    max_frames: int = 1000
    max_total_pixels: int = 100_000_000
    allowed_types: frozenset[str] = attrs.field(default=PICTURE_TYPES, converter=_to_types)

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        limits = (
            "max_bytes",
            "max_width",
            "max_height",
            "max_pixels",
            "min_width",
            "min_height",
            "max_frames",
            "max_total_pixels",
        )
        for name in limits:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                errors.append(_field_error(name, "not_positive", f"{name} must be an integer >= 1"))
        if not errors:
            for low, high in (("min_width", "max_width"), ("min_height", "max_height")):
                if getattr(self, low) > getattr(self, high):
                    errors.append(
                        _field_error(low, "above_maximum", f"{low} must not exceed {high}"),
                    )
        unknown = sorted(self.allowed_types - PICTURE_TYPES)
        if unknown:
            errors.append(
                _field_error(
                    "allowed_types",
                    "unknown",
                    "allowed_types may only contain " + ", ".join(sorted(PICTURE_TYPES)),
                    unknown=tuple(unknown),
                ),
            )
        elif not self.allowed_types:
            errors.append(_field_error("allowed_types", "empty", "allowed_types is empty"))
        if errors:
            raise ValidationError(errors)


@attrs.frozen(kw_only=True)
class ImageInfo:
    """What the header of an accepted picture says.

    Attributes:
        media_type: ``"image/png"``, ``"image/jpeg"``, ``"image/gif"`` or ``"image/webp"``.
        width: Width in pixels as stored (for GIF, the canvas grown to fit every frame,
            as browsers and Pillow do).
        height: Height in pixels as stored.
        animated: Whether the image has more than one frame.
        frames: Number of frames (1 for still images).
        orientation: EXIF orientation, 1 to 8 (1 = as stored; 6 = rotate 90 degrees
            clockwise to display). Always 1 for GIF.
    """

    media_type: str
    width: int
    height: int
    animated: bool = False
    frames: int = 1
    orientation: int = 1

    @property
    def extension(self) -> str:
        """The usual file extension for storage keys (``".png"``, ``".jpg"``, ...)."""
        return _EXTENSIONS[self.media_type]

    @property
    def display_width(self) -> int:
        """Width once the orientation is applied (width and height swap for 5 to 8)."""
        return self.height if self.orientation >= 5 else self.width

    @property
    def display_height(self) -> int:
        """Height once the orientation is applied."""
        return self.width if self.orientation >= 5 else self.height


def _repr_length(data: bytes) -> str:
    return f"<{len(data)} bytes>"


@attrs.frozen(kw_only=True)
class PreparedPicture:
    """A picture ready to store: checked against a policy and free of metadata.

    Attributes:
        data: The stripped (or re-encoded) bytes; the ``repr`` shows only their length.
        info: What the stored bytes are.
        sha256: Hex SHA-256 of :attr:`data` (a content-addressed storage key, an ETag).
    """

    data: bytes = attrs.field(repr=_repr_length)
    info: ImageInfo
    sha256: str


# --------------------------------------------------------------------------- errors


def _field_error(field: str, problem: str, message: str, **params: object) -> FieldError:
    return FieldError(field=field, code=f"{field}.{problem}", message=message, params=params)


class _MalformedError(Exception):
    """Internal: the bytes are not a valid file of the sniffed type (never escapes)."""

    def __init__(self, problem: str, reason: str) -> None:
        super().__init__(reason)
        self.problem = problem
        self.reason = reason


def _truncated() -> _MalformedError:
    return _MalformedError("truncated", "the file ends too early")


def _corrupt(reason: str) -> _MalformedError:
    return _MalformedError("corrupt", reason)


def _malformed_to_validation(exc: _MalformedError, field: str, media_type: str) -> ValidationError:
    name = _NAMES[media_type]
    if exc.problem == "truncated":
        message = f"the picture is incomplete: the {name} file was cut off"
    elif exc.problem == "unsupported_type":
        message = f"this kind of {name} file is not supported ({exc.reason})"
    else:
        message = f"the picture is damaged or not a valid {name} file"
    return ValidationError.single(
        field,
        exc.problem,
        message,
        media_type=media_type,
        reason=exc.reason,
    )


def _unsupported(field: str, detected: str | None, allowed: frozenset[str]) -> ValidationError:
    names = ", ".join(_NAMES[t] for t in sorted(allowed, key=_NAMES.__getitem__))
    return ValidationError.single(
        field,
        "unsupported_type",
        f"the picture must be one of: {names}",
        detected=detected,
        allowed=tuple(sorted(allowed)),
    )


# --------------------------------------------------------------------------- small readers

_Buffer = bytes | memoryview


def _u16be(data: _Buffer, pos: int) -> int:
    return (data[pos] << 8) | data[pos + 1]


def _u16le(data: _Buffer, pos: int) -> int:
    return data[pos] | (data[pos + 1] << 8)


def _u24le(data: _Buffer, pos: int) -> int:
    return data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16)


def _u32be(data: _Buffer, pos: int) -> int:
    return int.from_bytes(data[pos : pos + 4], "big")


def _u32le(data: _Buffer, pos: int) -> int:
    return int.from_bytes(data[pos : pos + 4], "little")


# --------------------------------------------------------------------------- EXIF orientation

_ORIENTATION_TAG: Final = 0x0112
_TIFF_SHORT: Final = 3


def _tiff_orientation(tiff: bytes) -> int:
    """Read the Orientation tag from a TIFF/EXIF block; 1 if absent or unreadable."""
    if len(tiff) < 8:
        return 1
    order: Literal["little", "big"]
    if tiff[:4] == b"II*\x00":
        order = "little"
    elif tiff[:4] == b"MM\x00*":
        order = "big"
    else:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 1
    count = int.from_bytes(tiff[ifd : ifd + 2], order)
    for index in range(count):
        entry = ifd + 2 + 12 * index
        if entry + 12 > len(tiff):
            return 1
        if int.from_bytes(tiff[entry : entry + 2], order) != _ORIENTATION_TAG:
            continue
        kind = int.from_bytes(tiff[entry + 2 : entry + 4], order)
        number = int.from_bytes(tiff[entry + 4 : entry + 8], order)
        value = int.from_bytes(tiff[entry + 8 : entry + 10], order)
        return value if kind == _TIFF_SHORT and number == 1 and 1 <= value <= 8 else 1
    return 1


def _orientation_tiff(orientation: int) -> bytes:
    """A minimal big-endian TIFF block holding only the Orientation tag."""
    return (
        b"MM\x00*"
        + (8).to_bytes(4, "big")
        + (1).to_bytes(2, "big")
        + _ORIENTATION_TAG.to_bytes(2, "big")
        + _TIFF_SHORT.to_bytes(2, "big")
        + (1).to_bytes(4, "big")
        + orientation.to_bytes(2, "big")
        + b"\x00\x00"
        + (0).to_bytes(4, "big")
    )


# --------------------------------------------------------------------------- scanners

_SizeCheck = Callable[[int, int], None]
_Piece = bytes | memoryview


def _no_size_check(width: int, height: int) -> None:
    """Accept any size (stripping needs structure, not limits)."""


@attrs.define
class _Scanner(abc.ABC):
    """Walks one file once: validates its structure and collects the pieces to keep."""

    data: bytes
    on_size: _SizeCheck
    keep_orientation: bool
    view: memoryview = attrs.field(init=False)
    pieces: list[_Piece] = attrs.field(init=False, factory=list)
    orientation: int = attrs.field(init=False, default=1)
    exif_seen: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        self.view = memoryview(self.data)

    def need(self, end: int) -> None:
        """Raise "truncated" unless the data reaches ``end``."""
        if end > len(self.data):
            raise _truncated()

    def read_exif(self, tiff: bytes) -> bytes | None:
        """Note the orientation of the first EXIF block; return the block to keep, if any."""
        if self.exif_seen:
            return None
        self.exif_seen = True
        self.orientation = _tiff_orientation(tiff)
        if self.keep_orientation and self.orientation != 1:
            return _orientation_tiff(self.orientation)
        return None

    @abc.abstractmethod
    def scan(self) -> ImageInfo:
        """Validate the whole file and fill :attr:`pieces`."""


# PNG ----------------------------------------------------------------------------------

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_PNG_MAX_LENGTH: Final = 0x7FFFFFFF
_PNG_DEPTHS: Final = {
    0: frozenset({1, 2, 4, 8, 16}),
    2: frozenset({8, 16}),
    3: frozenset({1, 2, 4, 8}),
    4: frozenset({8, 16}),
    6: frozenset({8, 16}),
}
# Ancillary chunks that carry colour or rendering information, not metadata.
_PNG_KEEP_ANCILLARY: Final = frozenset(
    {
        b"tRNS",
        b"gAMA",
        b"cHRM",
        b"sRGB",
        b"iCCP",
        b"sBIT",
        b"cICP",
        b"mDCv",
        b"cLLi",
        b"bKGD",
        b"pHYs",
        b"hIST",
    },
)
_IDAT_NONE: Final = 0
_IDAT_OPEN: Final = 1
_IDAT_CLOSED: Final = 2


@attrs.define
class _PngScanner(_Scanner):
    width: int = attrs.field(init=False, default=0)
    height: int = attrs.field(init=False, default=0)
    color_type: int = attrs.field(init=False, default=-1)
    palette: bool = attrs.field(init=False, default=False)
    idat: int = attrs.field(init=False, default=_IDAT_NONE)
    declared_frames: int | None = attrs.field(init=False, default=None)
    frame_controls: int = attrs.field(init=False, default=0)
    sequence: int = attrs.field(init=False, default=0)

    def scan(self) -> ImageInfo:
        pos = len(_PNG_SIGNATURE)
        self.pieces.append(self.view[:pos])
        while True:
            self.need(pos + 8)
            length = _u32be(self.data, pos)
            kind = self.data[pos + 4 : pos + 8]
            if length > _PNG_MAX_LENGTH or not kind.isalpha():
                raise _corrupt("invalid chunk header")
            end = pos + 12 + length
            self.need(end)
            if zlib.crc32(self.view[pos + 4 : end - 4]) != _u32be(self.data, end - 4):
                raise _corrupt(f"bad checksum in the {kind.decode('ascii')} chunk")
            if pos == len(_PNG_SIGNATURE) and kind != b"IHDR":
                raise _corrupt("the IHDR chunk must come first")
            if self.chunk(kind, self.view[pos + 8 : end - 4]):
                self.pieces.append(self.view[pos:end])
            pos = end
            if kind == b"IEND":
                break
        if self.declared_frames is not None and self.frame_controls != self.declared_frames:
            raise _corrupt("the APNG frame count does not match its frames")
        frames = self.declared_frames or 1
        return ImageInfo(
            media_type=_PNG,
            width=self.width,
            height=self.height,
            animated=frames > 1,
            frames=frames,
            orientation=self.orientation,
        )

    def chunk(self, kind: bytes, body: memoryview) -> bool:
        """Check one chunk; return whether to keep it."""
        if kind != b"IDAT" and self.idat == _IDAT_OPEN:
            self.idat = _IDAT_CLOSED
        handler = _PNG_HANDLERS.get(kind)
        if handler is not None:
            return handler(self, body)
        if not kind[0] & 0x20:
            raise _corrupt(f"unknown critical chunk {kind.decode('ascii')}")
        return kind in _PNG_KEEP_ANCILLARY

    def ihdr(self, body: memoryview) -> bool:
        """Read the header: size, bit depth and colour type."""
        if self.width:
            raise _corrupt("more than one IHDR chunk")
        if len(body) != 13:
            raise _corrupt("the IHDR chunk has the wrong length")
        width, height = _u32be(body, 0), _u32be(body, 4)
        if not (0 < width <= _PNG_MAX_LENGTH and 0 < height <= _PNG_MAX_LENGTH):
            raise _corrupt("invalid image size")
        self.on_size(width, height)
        depth, color_type = body[8], body[9]
        if depth not in _PNG_DEPTHS.get(color_type, ()):
            raise _corrupt("invalid bit depth or colour type")
        if body[10] != 0 or body[11] != 0 or body[12] > 1:
            raise _corrupt("invalid compression, filter or interlace method")
        self.width, self.height, self.color_type = width, height, color_type
        return True

    def plte(self, body: memoryview) -> bool:
        """Check the palette's place and size."""
        if self.color_type in {0, 4} or self.palette or self.idat != _IDAT_NONE:
            raise _corrupt("misplaced PLTE chunk")
        if len(body) % 3 or not 3 <= len(body) <= 768:
            raise _corrupt("invalid palette size")
        self.palette = True
        return True

    def idat_chunk(self, body: memoryview) -> bool:  # noqa: ARG002 - handlers share one signature
        """Check that image data is contiguous and has its palette."""
        if self.idat == _IDAT_CLOSED:
            raise _corrupt("IDAT chunks must be consecutive")
        if self.color_type == 3 and not self.palette:
            raise _corrupt("a palette image without a PLTE chunk")
        self.idat = _IDAT_OPEN
        return True

    def iend(self, body: memoryview) -> bool:
        """Check the end chunk."""
        if len(body) or self.idat == _IDAT_NONE:
            raise _corrupt("no image data before IEND")
        return True

    def actl(self, body: memoryview) -> bool:
        """Read the APNG animation control chunk (frame count)."""
        if self.idat != _IDAT_NONE or self.declared_frames is not None or len(body) != 8:
            raise _corrupt("invalid acTL chunk")
        frames = _u32be(body, 0)
        if frames == 0:
            raise _corrupt("an APNG must have at least one frame")
        self.declared_frames = frames
        return True

    def next_sequence(self, body: memoryview) -> None:
        """Check the APNG sequence number at the start of ``body``."""
        if len(body) < 4 or _u32be(body, 0) != self.sequence:
            raise _corrupt("APNG chunks out of sequence")
        self.sequence += 1

    def fctl(self, body: memoryview) -> bool:
        """Check one APNG frame control chunk (frame inside the canvas)."""
        if self.declared_frames is None:
            return False  # not an APNG: decoders ignore it, so do we
        if len(body) != 26:
            raise _corrupt("invalid fcTL chunk")
        self.next_sequence(body)
        width, height = _u32be(body, 4), _u32be(body, 8)
        left, top = _u32be(body, 12), _u32be(body, 16)
        if width == 0 or height == 0 or left + width > self.width or top + height > self.height:
            raise _corrupt("an APNG frame lies outside the image")
        covers = (left, top, width, height) == (0, 0, self.width, self.height)
        if self.idat == _IDAT_NONE and not covers:
            raise _corrupt("the first APNG frame must cover the image")
        if body[24] > 2 or body[25] > 1:
            raise _corrupt("invalid APNG dispose or blend operation")
        self.frame_controls += 1
        return True

    def fdat(self, body: memoryview) -> bool:
        """Check one APNG frame data chunk's sequence number."""
        if self.declared_frames is None:
            return False
        self.next_sequence(body)
        return True

    def exif(self, body: memoryview) -> bool:
        """Note the orientation, drop the EXIF chunk, maybe keep a synthetic one."""
        kept = self.read_exif(bytes(body))
        if kept is not None:
            self.pieces.append(_png_chunk(b"eXIf", kept))
        return False


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body)
    return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")


_PNG_HANDLERS: Final[dict[bytes, Callable[[_PngScanner, memoryview], bool]]] = {
    b"IHDR": _PngScanner.ihdr,
    b"PLTE": _PngScanner.plte,
    b"IDAT": _PngScanner.idat_chunk,
    b"IEND": _PngScanner.iend,
    b"acTL": _PngScanner.actl,
    b"fcTL": _PngScanner.fctl,
    b"fdAT": _PngScanner.fdat,
    b"eXIf": _PngScanner.exif,
}


# JPEG ---------------------------------------------------------------------------------

_FILL: Final = re.compile(rb"\xff+")
_SOF_MARKERS: Final = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC9, 0xCA, 0xCB})
_SOF_HIERARCHICAL: Final = frozenset({0xC5, 0xC6, 0xC7, 0xCD, 0xCE, 0xCF})
_SOS: Final = 0xDA
_EOI: Final = 0xD9
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RST0-7
_TABLES: Final = frozenset({0xC4, 0xCC, 0xDB, 0xDC, 0xDD})  # DHT, DAC, DQT, DNL, DRI
_APP0: Final = 0xE0
_APP1: Final = 0xE1
_APP2: Final = 0xE2
_APP14: Final = 0xEE
_COM: Final = 0xFE


@attrs.define
class _JpegScanner(_Scanner):
    width: int = attrs.field(init=False, default=0)
    height: int = attrs.field(init=False, default=0)
    scanned: bool = attrs.field(init=False, default=False)

    def scan(self) -> ImageInfo:
        self.pieces.append(self.view[:2])
        pos = 2
        while True:
            marker, pos = self.marker(pos)
            if marker == _EOI:
                if not self.scanned:
                    raise _corrupt("no image data")
                self.pieces.append(b"\xff\xd9")
                break
            if marker in _STANDALONE:
                self.pieces.append(bytes((0xFF, marker)))
                continue
            self.need(pos + 2)
            end = pos + _u16be(self.data, pos)
            if end < pos + 2:
                raise _corrupt("invalid segment length")
            self.need(end)
            if self.segment(marker, self.data[pos + 2 : end]):
                self.pieces.extend((bytes((0xFF, marker)), self.view[pos:end]))
            pos = end
            if marker == _SOS:
                data_end = self.entropy_end(pos)
                self.pieces.append(self.view[pos:data_end])
                pos = data_end
        return ImageInfo(
            media_type=_JPEG,
            width=self.width,
            height=self.height,
            orientation=self.orientation,
        )

    def marker(self, pos: int) -> tuple[int, int]:
        """Read the marker at ``pos`` (after any fill bytes); return it and the next offset."""
        self.need(pos + 1)
        fill = _FILL.match(self.data, pos)
        if fill is None:
            raise _corrupt("expected a marker")
        pos = fill.end()
        self.need(pos + 1)
        marker = self.data[pos]
        if marker in {0x00, 0xD8}:
            raise _corrupt("unexpected marker")
        return marker, pos + 1

    def entropy_end(self, pos: int) -> int:
        """Skip entropy-coded data (stuffed bytes, RST markers, fill); return the next marker."""
        data = self.data
        while True:
            found = data.find(b"\xff", pos)
            if found < 0 or found + 1 >= len(data):
                raise _truncated()
            following = data[found + 1]
            if following == 0x00 or 0xD0 <= following <= 0xD7:
                pos = found + 2
            elif following == 0xFF:
                pos = found + 1
            else:
                return found

    def segment(self, marker: int, payload: bytes) -> bool:
        """Check one marker segment; return whether to keep it."""
        if marker in _SOF_MARKERS:
            return self.frame_header(payload)
        if marker in _SOF_HIERARCHICAL:
            raise _MalformedError("unsupported_type", "hierarchical JPEG")
        if marker == _SOS:
            return self.scan_header(payload)
        if marker in _TABLES:
            return True
        if 0xE0 <= marker <= 0xEF or marker == _COM:
            return self.application(marker, payload)
        raise _corrupt(f"unsupported marker 0x{marker:02X}")

    def frame_header(self, payload: bytes) -> bool:
        """Read the SOFn frame header: the image size."""
        if self.width:
            raise _corrupt("more than one frame header")
        if len(payload) < 6:
            raise _corrupt("frame header too short")
        height, width, components = _u16be(payload, 1), _u16be(payload, 3), payload[5]
        if width == 0 or height == 0:
            raise _corrupt("zero or deferred image size")
        self.on_size(width, height)
        if not 1 <= components <= 4 or len(payload) != 6 + 3 * components:
            raise _corrupt("invalid frame header")
        self.width, self.height = width, height
        return True

    def scan_header(self, payload: bytes) -> bool:
        """Check an SOS header (a scan needs a frame header first)."""
        if not self.width:
            raise _corrupt("scan before the frame header")
        components = payload[0] if payload else 0
        if not 1 <= components <= 4 or len(payload) != 4 + 2 * components:
            raise _corrupt("invalid scan header")
        self.scanned = True
        return True

    def application(self, marker: int, payload: bytes) -> bool:
        """Keep JFIF (without thumbnail), ICC profiles and Adobe colour info; drop the rest."""
        if marker == _APP0 and payload[:5] == b"JFIF\x00" and len(payload) >= 14:
            if len(payload) == 14 and payload[12:14] == b"\x00\x00":
                return True
            # Rewrite without the thumbnail: it may show what the user cropped away.
            self.pieces.append(b"\xff\xe0\x00\x10" + payload[:12] + b"\x00\x00")
            return False
        if marker == _APP1 and payload[:6] == b"Exif\x00\x00":
            kept = self.read_exif(payload[6:])
            if kept is not None:
                body = b"Exif\x00\x00" + kept
                self.pieces.append(b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body)
            return False
        if marker == _APP2:
            return payload[:12] == b"ICC_PROFILE\x00"
        if marker == _APP14:
            return payload[:5] == b"Adobe"
        return False


# GIF ----------------------------------------------------------------------------------

_GIF_EXTENSION: Final = 0x21
_GIF_IMAGE: Final = 0x2C
_GIF_TRAILER: Final = 0x3B
_GIF_CONTROL: Final = 0xF9
_GIF_PLAIN_TEXT: Final = 0x01
_GIF_APPLICATION: Final = 0xFF
# The first sub-block (length 11, then the identifier) of the looping extensions we keep.
_GIF_LOOPING: Final = frozenset({b"\x0bNETSCAPE2.0", b"\x0bANIMEXTS1.0"})


def _color_table_size(packed: int) -> int:
    return 3 << ((packed & 7) + 1) if packed & 0x80 else 0


@attrs.define
class _GifScanner(_Scanner):
    width: int = attrs.field(init=False, default=0)
    height: int = attrs.field(init=False, default=0)
    frames: int = attrs.field(init=False, default=0)
    control: memoryview | None = attrs.field(init=False, default=None)

    def scan(self) -> ImageInfo:
        self.need(13)
        self.width, self.height = _u16le(self.data, 6), _u16le(self.data, 8)
        if self.width and self.height:
            self.on_size(self.width, self.height)
        pos = 13 + _color_table_size(self.data[10])
        self.need(pos)
        self.pieces.append(self.view[:pos])
        while True:
            self.need(pos + 1)
            block = self.data[pos]
            if block == _GIF_TRAILER:
                self.pieces.append(b";")
                break
            if block == _GIF_EXTENSION:
                pos = self.extension(pos)
            elif block == _GIF_IMAGE:
                pos = self.image(pos)
            else:
                raise _corrupt("unknown block")
        if not self.frames:
            raise _corrupt("no image in the file")
        return ImageInfo(
            media_type=_GIF,
            width=self.width,
            height=self.height,
            animated=self.frames > 1,
            frames=self.frames,
        )

    def sub_blocks_end(self, pos: int) -> int:
        """Skip a chain of data sub-blocks starting at ``pos``; return the offset after it."""
        data, size = self.data, len(self.data)
        while True:
            if pos >= size:
                raise _truncated()
            length = data[pos]
            pos += 1 + length
            if not length:
                return pos

    def extension(self, pos: int) -> int:
        """Keep graphic control and looping extensions; drop comments, text and the rest."""
        self.need(pos + 2)
        label = self.data[pos + 1]
        end = self.sub_blocks_end(pos + 2)
        if label == _GIF_CONTROL:
            if self.data[pos + 2] != 4:
                raise _corrupt("invalid graphic control extension")
            self.control = self.view[pos:end]  # kept with the image it describes
        elif label == _GIF_PLAIN_TEXT:
            self.control = None  # the control block described this dropped text
        elif label == _GIF_APPLICATION and self.data[pos + 2 : pos + 14] in _GIF_LOOPING:
            self.pieces.append(self.view[pos:end])
        return end

    def image(self, pos: int) -> int:
        """Read one image descriptor and skip its colour table and data."""
        self.need(pos + 10)
        left, top = _u16le(self.data, pos + 1), _u16le(self.data, pos + 3)
        width, height = _u16le(self.data, pos + 5), _u16le(self.data, pos + 7)
        if not width or not height:
            raise _corrupt("an empty frame")
        if left + width > self.width or top + height > self.height:
            # Decoders grow the canvas to fit the frame; so must the limits.
            self.width = max(self.width, left + width)
            self.height = max(self.height, top + height)
            self.on_size(self.width, self.height)
        code_size_at = pos + 10 + _color_table_size(self.data[pos + 9])
        self.need(code_size_at + 1)
        if not 1 <= self.data[code_size_at] <= 11:
            raise _corrupt("invalid LZW code size")
        end = self.sub_blocks_end(code_size_at + 1)
        if self.control is not None:
            self.pieces.append(self.control)
            self.control = None
        self.pieces.append(self.view[pos:end])
        self.frames += 1
        return end


# WebP ---------------------------------------------------------------------------------

_VP8: Final = b"VP8 "
_VP8L: Final = b"VP8L"
_VP8X: Final = b"VP8X"
_ANIM: Final = b"ANIM"
_ANMF: Final = b"ANMF"
_ALPH: Final = b"ALPH"
_ICCP: Final = b"ICCP"
_EXIF: Final = b"EXIF"
_FLAG_ANIMATION: Final = 0x02
_FLAG_XMP: Final = 0x04
_FLAG_EXIF: Final = 0x08
_MAX_CANVAS_PIXELS: Final = 2**32 - 1


@attrs.frozen
class _RiffChunk:
    kind: bytes
    start: int  # of the payload
    end: int  # of the payload (without the pad byte)


def _riff_chunks(data: bytes, pos: int, end: int) -> list[_RiffChunk]:
    """Split ``data[pos:end]`` into RIFF chunks; raise "corrupt" if they do not fit."""
    chunks: list[_RiffChunk] = []
    while pos < end:
        if pos + 8 > end:
            raise _corrupt("a chunk header crosses the end of its container")
        payload_end = pos + 8 + _u32le(data, pos + 4)
        if payload_end > end:
            raise _corrupt("a chunk crosses the end of its container")
        chunks.append(_RiffChunk(data[pos : pos + 4], pos + 8, payload_end))
        pos = payload_end + (payload_end - pos) % 2
    return chunks


def _bitstream_size(data: bytes, chunk: _RiffChunk) -> tuple[int, int]:
    """Read the size from a VP8 (lossy) or VP8L (lossless) bitstream header."""
    length = chunk.end - chunk.start
    payload = data[chunk.start : chunk.start + 10]
    if chunk.kind == _VP8:
        if length < 10:
            raise _corrupt("VP8 header too short")
        tag = payload[0] | (payload[1] << 8) | (payload[2] << 16)
        if tag & 1 or not (tag >> 4) & 1 or (tag >> 1) & 7 > 3:
            raise _corrupt("VP8 data is not a displayable key frame")
        if payload[3:6] != b"\x9d\x01\x2a" or 10 + (tag >> 5) > length:
            raise _corrupt("invalid VP8 header")
        width, height = _u16le(payload, 6) & 0x3FFF, _u16le(payload, 8) & 0x3FFF
        if not width or not height:
            raise _corrupt("invalid VP8 image size")
        return width, height
    if length < 5 or payload[0] != 0x2F:
        raise _corrupt("invalid VP8L header")
    bits = _u32le(payload, 1)
    if bits >> 29:
        raise _corrupt("unknown VP8L version")
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1


@attrs.define
class _WebpScanner(_Scanner):
    canvas: tuple[int, int] = attrs.field(init=False, default=(0, 0))
    frames: int = attrs.field(init=False, default=0)
    has_anim: bool = attrs.field(init=False, default=False)
    has_still: bool = attrs.field(init=False, default=False)
    exif_kept: bool = attrs.field(init=False, default=False)

    def scan(self) -> ImageInfo:
        self.need(12)
        riff_end = 8 + _u32le(self.data, 4)
        self.need(riff_end)
        chunks = _riff_chunks(self.data, 12, riff_end)
        if not chunks:
            raise _corrupt("no image data")
        self.pieces.append(b"")  # the RIFF header, written once the size is known
        first = chunks[0]
        if first.kind == _VP8X:
            self.extended(chunks)
        elif first.kind in {_VP8, _VP8L}:
            self.canvas = _bitstream_size(self.data, first)
            self.on_size(*self.canvas)
            self.keep(first)
            self.frames = 1
        else:
            raise _corrupt("unknown WebP layout")
        body = sum(len(piece) for piece in self.pieces)
        self.pieces[0] = b"RIFF" + (body + 4).to_bytes(4, "little") + b"WEBP"
        return ImageInfo(
            media_type=_WEBP,
            width=self.canvas[0],
            height=self.canvas[1],
            animated=self.frames > 1,
            frames=self.frames,
            orientation=self.orientation,
        )

    def chunk_pieces(self, chunk: _RiffChunk) -> list[_Piece]:
        """The pieces of a chunk as stored (header, payload, a zero pad byte if odd)."""
        size = chunk.end - chunk.start
        pad = b"\x00" if size % 2 else b""
        return [chunk.kind + size.to_bytes(4, "little"), self.view[chunk.start : chunk.end], pad]

    def keep(self, chunk: _RiffChunk) -> None:
        """Keep a chunk as it is (normalising its pad byte)."""
        self.pieces.extend(self.chunk_pieces(chunk))

    def extended(self, chunks: list[_RiffChunk]) -> None:
        """Walk an extended (VP8X) file: canvas, animation, colour, and metadata chunks."""
        header = chunks[0]
        if header.end - header.start < 10:
            raise _corrupt("VP8X header too short")
        flags = self.data[header.start]
        self.canvas = (
            _u24le(self.data, header.start + 4) + 1,
            _u24le(self.data, header.start + 7) + 1,
        )
        self.on_size(*self.canvas)
        if self.canvas[0] * self.canvas[1] > _MAX_CANVAS_PIXELS:
            raise _corrupt("canvas too large")
        animated = bool(flags & _FLAG_ANIMATION)
        header_index = len(self.pieces)
        self.pieces.append(b"")  # the VP8X chunk, written with corrected flags below
        for chunk in chunks[1:]:
            self.extended_chunk(chunk, animated=animated)
        if animated and not (self.has_anim and self.frames):
            raise _corrupt("an animation without frames")
        if not animated:
            if not self.has_still:
                raise _corrupt("no image data")
            self.frames = 1
        flags &= ~(_FLAG_EXIF | _FLAG_XMP) & 0xFF
        if self.exif_kept:
            flags |= _FLAG_EXIF
        rest = self.data[header.start + 1 : header.start + 10]
        self.pieces[header_index] = _VP8X + (10).to_bytes(4, "little") + bytes((flags,)) + rest

    def extended_chunk(self, chunk: _RiffChunk, *, animated: bool) -> None:
        """Check one chunk after VP8X and keep it if it is image or colour data."""
        kind = chunk.kind
        if kind == _ICCP:
            self.keep(chunk)
        elif kind == _ANIM:
            if not animated or self.has_anim or chunk.end - chunk.start < 6:
                raise _corrupt("unexpected ANIM chunk")
            self.has_anim = True
            self.keep(chunk)
        elif kind == _ANMF:
            if not animated:
                raise _corrupt("a frame in a still image")
            self.frame(chunk)
        elif kind in {_VP8, _VP8L, _ALPH}:
            if animated or self.has_still:
                raise _corrupt("unexpected image data")
            self.still_image(chunk)
        elif kind == _EXIF:
            self.exif(chunk)
        # XMP and unknown chunks are dropped.

    def still_image(self, chunk: _RiffChunk) -> None:
        """Keep a still image's alpha or bitstream chunk; the bitstream must fill the canvas."""
        if chunk.kind != _ALPH:
            if _bitstream_size(self.data, chunk) != self.canvas:
                raise _corrupt("the image data does not match the canvas")
            self.has_still = True
        self.keep(chunk)

    def exif(self, chunk: _RiffChunk) -> None:
        """Note the orientation, drop the EXIF chunk, maybe keep a synthetic one."""
        tiff = self.data[chunk.start : chunk.end]
        kept = self.read_exif(tiff[6:] if tiff[:6] == b"Exif\x00\x00" else tiff)
        if kept is not None:
            self.exif_kept = True
            self.pieces.extend((_EXIF + len(kept).to_bytes(4, "little"), kept))

    def frame(self, chunk: _RiffChunk) -> None:
        """Check one ANMF frame (inside the canvas, with image data) and keep it without extras."""
        start = chunk.start
        if chunk.end - start < 16:
            raise _corrupt("ANMF header too short")
        left, top = _u24le(self.data, start) * 2, _u24le(self.data, start + 3) * 2
        width, height = _u24le(self.data, start + 6) + 1, _u24le(self.data, start + 9) + 1
        if left + width > self.canvas[0] or top + height > self.canvas[1]:
            raise _corrupt("a frame lies outside the canvas")
        inner: list[_Piece] = []
        has_image = False
        for sub in _riff_chunks(self.data, start + 16, chunk.end):
            if sub.kind in {_VP8, _VP8L}:
                if has_image:
                    raise _corrupt("a frame with two images")
                if _bitstream_size(self.data, sub) != (width, height):
                    raise _corrupt("the frame data does not match the frame size")
                has_image = True
                inner.extend(self.chunk_pieces(sub))
            elif sub.kind == _ALPH and not has_image:
                inner.extend(self.chunk_pieces(sub))
        if not has_image:
            raise _corrupt("a frame without image data")
        size = 16 + sum(len(piece) for piece in inner)
        self.pieces.extend(
            (_ANMF + size.to_bytes(4, "little"), self.view[start : start + 16], *inner),
        )
        self.frames += 1


# --------------------------------------------------------------------------- sniffing

_SIGNATURES: Final = (
    (_PNG_SIGNATURE, _PNG),
    (b"\xff\xd8\xff", _JPEG),
    (b"GIF87a", _GIF),
    (b"GIF89a", _GIF),
)
_SCANNERS: Final[dict[str, type[_Scanner]]] = {
    _PNG: _PngScanner,
    _JPEG: _JpegScanner,
    _GIF: _GifScanner,
    _WEBP: _WebpScanner,
}


def _sniff(data: bytes, field: str) -> str | None:
    """Return the media type from the magic numbers, ``None`` if it is none of ours.

    Raises:
        ValidationError: ``<field>.empty`` for no bytes, ``<field>.truncated`` when the
            data stops inside one of the signatures.
    """
    if not data:
        raise ValidationError.single(field, "empty", "the picture file is empty")
    for signature, media_type in _SIGNATURES:
        if data.startswith(signature):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _WEBP
    partial = any(signature.startswith(data) for signature, _ in _SIGNATURES) or (
        len(data) < 12 and b"RIFF".startswith(data[:4]) and b"WEBP".startswith(data[8:])
    )
    if partial:
        raise ValidationError.single(
            field,
            "truncated",
            "the picture is incomplete: the file was cut off",
            media_type=None,
            reason="the file ends inside its signature",
        )
    return None


def _scan(
    data: bytes,
    media_type: str,
    *,
    field: str,
    on_size: _SizeCheck,
    keep_orientation: bool,
) -> tuple[ImageInfo, list[_Piece]]:
    scanner = _SCANNERS[media_type](data, on_size, keep_orientation)
    try:
        info = scanner.scan()
    except _MalformedError as exc:
        raise _malformed_to_validation(exc, field, media_type) from None
    return info, scanner.pieces


# --------------------------------------------------------------------------- limits


def _check_bytes(data: bytes, policy: PicturePolicy, field: str) -> None:
    if len(data) > policy.max_bytes:
        raise ValidationError.single(
            field,
            "too_large",
            f"the picture file must not exceed {policy.max_bytes} bytes",
            limit=policy.max_bytes,
            actual=len(data),
        )


def _check_header_size(policy: PicturePolicy, field: str, width: int, height: int) -> None:
    """The limits a header alone decides (called before the rest of the file is read)."""
    errors: list[FieldError] = []
    if width > policy.max_width or height > policy.max_height:
        errors.append(
            _field_error(
                field,
                "too_large_dimensions",
                f"the picture must be at most {policy.max_width}x{policy.max_height} pixels",
                max_width=policy.max_width,
                max_height=policy.max_height,
                width=width,
                height=height,
            ),
        )
    if width * height > policy.max_pixels:
        errors.append(
            _field_error(
                field,
                "too_many_pixels",
                f"the picture must have at most {policy.max_pixels} pixels",
                limit=policy.max_pixels,
                actual=width * height,
            ),
        )
    if errors:
        raise ValidationError(errors)


def _check_whole(policy: PicturePolicy, field: str, info: ImageInfo) -> None:
    """The limits that need the whole file: minimum size and animation."""
    errors: list[FieldError] = []
    if info.width < policy.min_width or info.height < policy.min_height:
        errors.append(
            _field_error(
                field,
                "too_small",
                f"the picture must be at least {policy.min_width}x{policy.min_height} pixels",
                min_width=policy.min_width,
                min_height=policy.min_height,
                width=info.width,
                height=info.height,
            ),
        )
    if info.animated and not policy.allow_animated:
        errors.append(
            _field_error(field, "animated_not_allowed", "animated pictures are not accepted"),
        )
    if info.frames > policy.max_frames:
        errors.append(
            _field_error(
                field,
                "too_many_frames",
                f"an animated picture may have at most {policy.max_frames} frames",
                limit=policy.max_frames,
                actual=info.frames,
            ),
        )
    total = info.frames * info.width * info.height
    if total > policy.max_total_pixels:
        errors.append(
            _field_error(
                field,
                "animation_too_large",
                "the animation is too long for its size",
                limit=policy.max_total_pixels,
                actual=total,
            ),
        )
    if errors:
        raise ValidationError(errors)


_DEFAULT_POLICY: Final = PicturePolicy()


def _examine(
    data: bytes,
    *,
    policy: PicturePolicy,
    field: str,
    keep_orientation: bool,
) -> tuple[ImageInfo, list[_Piece]]:
    _check_bytes(data, policy, field)
    media_type = _sniff(data, field)
    if media_type not in policy.allowed_types:
        raise _unsupported(field, media_type, policy.allowed_types)

    def on_size(width: int, height: int) -> None:
        _check_header_size(policy, field, width, height)

    info, pieces = _scan(
        data,
        media_type,
        field=field,
        on_size=on_size,
        keep_orientation=keep_orientation,
    )
    _check_whole(policy, field, info)
    return info, pieces


# --------------------------------------------------------------------------- public functions


def inspect_image(
    data: bytes,
    *,
    policy: PicturePolicy | None = None,
    field: str = "picture",
) -> ImageInfo:
    """Identify a picture from its bytes and check it against a policy, without decoding.

    The size limits are checked as soon as the header declares the image size, so a
    decompression bomb is refused before the rest of the file is read. Trailing bytes
    after the format's end marker are tolerated (:func:`strip_metadata` drops them).

    Args:
        data: The uploaded file, as bytes. Its name and client content type are irrelevant.
        policy: The limits to apply (default: :class:`PicturePolicy` defaults).
        field: The field name to put in errors.

    Returns:
        The type, size, animation and orientation of the picture.

    Raises:
        ValidationError: With one of the codes ``<field>.empty``, ``.too_large`` (bytes),
            ``.unsupported_type``, ``.truncated``, ``.corrupt``, or the limit codes
            ``.too_large_dimensions`` and ``.too_many_pixels`` (together, from the header),
            ``.too_small``, ``.animated_not_allowed``, ``.too_many_frames`` and
            ``.animation_too_large`` (together, after the whole file was checked).

    >>> try:
    ...     inspect_image(b"<!DOCTYPE html><title>avatar.png</title>")
    ... except ValidationError as exc:
    ...     print(exc.codes, exc.errors[0].params["detected"])
    ('picture.unsupported_type',) None
    """
    data = bytes(data)
    info, _ = _examine(
        data,
        policy=policy if policy is not None else _DEFAULT_POLICY,
        field=field,
        keep_orientation=True,
    )
    return info


def strip_metadata(data: bytes, *, field: str = "picture", keep_orientation: bool = True) -> bytes:
    """Remove metadata from a PNG, JPEG, GIF or WebP file; the pixels are untouched.

    Kept: everything needed to decode the image and its colours (PNG critical chunks,
    ``tRNS``, ``gAMA``, ``cHRM``, ``sRGB``, ``iCCP``, ``sBIT``, ``cICP``, ``mDCv``,
    ``cLLi``, ``bKGD``, ``pHYs``, ``hIST`` and the APNG chunks; JPEG tables and scans,
    JFIF ``APP0`` without thumbnail, ``APP2 ICC_PROFILE`` and ``APP14 Adobe``; GIF
    graphic control and ``NETSCAPE2.0``/``ANIMEXTS1.0`` looping extensions; WebP image,
    alpha, ``ICCP`` and animation chunks). Everything else goes, including bytes after
    the end of the image. WebP ``VP8X`` flags and the ``RIFF`` size are corrected.

    No size limits are applied here; use :func:`prepare_picture` for uploads.

    Args:
        data: A PNG, JPEG, GIF or WebP file.
        field: The field name to put in errors.
        keep_orientation: Keep the EXIF orientation (only that tag, in a block we write)
            so photos keep displaying upright. ``False`` drops it too.

    Returns:
        A valid file of the same type and size.

    Raises:
        ValidationError: ``<field>.empty``, ``.unsupported_type``, ``.truncated`` or
            ``.corrupt``.
    """
    data = bytes(data)
    media_type = _sniff(data, field)
    if media_type is None:
        raise _unsupported(field, None, PICTURE_TYPES)
    _, pieces = _scan(
        data,
        media_type,
        field=field,
        on_size=_no_size_check,
        keep_orientation=keep_orientation,
    )
    return b"".join(pieces)


def prepare_picture(
    data: bytes,
    *,
    policy: PicturePolicy | None = None,
    field: str = "picture",
    keep_orientation: bool = True,
) -> PreparedPicture:
    """Check an upload against the policy, strip its metadata and check the result again.

    Args:
        data: The uploaded file.
        policy: The limits to apply (default: :class:`PicturePolicy` defaults).
        field: The field name to put in errors.
        keep_orientation: See :func:`strip_metadata`.

    Returns:
        The stripped bytes, what they are, and their SHA-256.

    Raises:
        ValidationError: Any code :func:`inspect_image` raises.
    """
    data = bytes(data)
    policy = policy if policy is not None else _DEFAULT_POLICY
    info, pieces = _examine(data, policy=policy, field=field, keep_orientation=keep_orientation)
    stripped = b"".join(pieces)
    again = inspect_image(stripped, policy=policy, field=field)
    expected = attrs.evolve(info, orientation=info.orientation if keep_orientation else 1)
    if again != expected:  # pragma: no cover - a bug in this module, never the user's input
        raise ValidationError.single(
            field,
            "corrupt",
            "the picture could not be cleaned safely",
            media_type=info.media_type,
            reason="stripping changed the image",
        )
    return PreparedPicture(data=stripped, info=again, sha256=hashlib.sha256(stripped).hexdigest())


# ---------------------------------------------------------------------- re-encoding with Pillow

_PILLOW_FORMATS: Final = {_PNG: "PNG", _JPEG: "JPEG", _GIF: "GIF", _WEBP: "WEBP"}
_FORMAT_NAMES: Final = {
    "png": _PNG,
    "apng": _PNG,
    "jpeg": _JPEG,
    "jpg": _JPEG,
    "gif": _GIF,
    "webp": _WEBP,
    **{media_type: media_type for media_type in PICTURE_TYPES},
}
_ANIMATABLE: Final = frozenset({_PNG, _GIF, _WEBP})
_SAVE_OPTIONS: Final[dict[str, dict[str, object]]] = {
    _PNG: {"optimize": True},
    _JPEG: {"quality": 88, "optimize": True, "progressive": True},
    _GIF: {"disposal": 2},
    _WEBP: {"quality": 88, "method": 4},
}


def _target_type(format_name: str) -> str:
    target = _FORMAT_NAMES.get(format_name.lower())
    if target is None:
        raise ValidationError.single(
            "format",
            "unsupported_type",
            "the output format must be PNG, JPEG, GIF or WebP",
            allowed=tuple(sorted(_FORMAT_NAMES)),
        )
    return target


def _check_target_size(size: int | None, policy: PicturePolicy) -> None:
    if size is None:
        return
    low = max(policy.min_width, policy.min_height)
    high = min(policy.max_width, policy.max_height)
    if isinstance(size, bool) or not low <= size <= high:
        raise ValidationError.single(
            "size",
            "out_of_range",
            f"size must be between {low} and {high} pixels",
            minimum=low,
            maximum=high,
        )


@attrs.frozen(kw_only=True)
class _Reencoding:
    """What to do to every frame."""

    target: str
    orientation: int
    square: bool
    size: int | None


def _transpose_method(orientation: int) -> PILImage.Transpose | None:
    from PIL import Image  # noqa: PLC0415 - only called once Pillow imported fine

    return {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)


def _has_alpha(frame: PILImage.Image) -> bool:
    return frame.mode in {"RGBA", "LA", "PA", "La", "RGBa"} or "transparency" in frame.info


def _convert_frame(frame: PILImage.Image, job: _Reencoding) -> PILImage.Image:
    """Normalise the mode, orient, crop and resize one frame."""
    from PIL import Image  # noqa: PLC0415 - only called once Pillow imported fine

    if _has_alpha(frame):
        image = frame.convert("RGBA")
    elif frame.mode == "L":
        image = frame.copy()
    else:
        image = frame.convert("RGB")
    method = _transpose_method(job.orientation)
    if method is not None:
        image = image.transpose(method)
    width, height = image.size
    if job.square and width != height:
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
        width = height = side
    if job.size is not None:
        scale = job.size / max(width, height)
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        if target != image.size:
            image = image.resize(target, Image.Resampling.LANCZOS)
    if job.target == _JPEG and image.mode == "RGBA":
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    image.info = {}
    return image


def _icc_profile(source: PILImage.Image, output: PILImage.Image) -> bytes | None:
    """Keep the ICC profile only when the colour space did not change."""
    profile = source.info.get("icc_profile")
    if not isinstance(profile, bytes) or not profile:
        return None
    rgb = {"RGB", "RGBA"}
    same = (source.mode in rgb and output.mode in rgb) or source.mode == output.mode == "L"
    return profile if same else None


def _pillow_reencode(
    data: bytes,
    info: ImageInfo,
    job: _Reencoding,
    policy: PicturePolicy,
    field: str,
) -> bytes:
    from PIL import Image, ImageSequence  # noqa: PLC0415 - imported by reencode already

    animate = info.animated and job.target in _ANIMATABLE
    frames: list[PILImage.Image] = []
    durations: list[int] = []
    with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[info.media_type]]) as source:
        icc: bytes | None = None
        loop = source.info.get("loop")
        for index, frame in enumerate(ImageSequence.Iterator(source)):
            if index >= policy.max_frames:
                break
            # Pillow may grow a GIF canvas per frame: check before it decodes pixels.
            _check_header_size(policy, field, *frame.size)
            converted = _convert_frame(frame, job)
            if index == 0:
                icc = _icc_profile(frame, converted)
            frames.append(converted)
            durations.append(round(float(frame.info.get("duration", 0) or 0)))
            if not animate:
                break
    options: dict[str, object] = dict(_SAVE_OPTIONS[job.target])
    if icc is not None and job.target != _GIF:
        options["icc_profile"] = icc
    if len(frames) > 1:
        options.update(save_all=True, append_images=frames[1:], duration=durations)
        if isinstance(loop, int):
            options["loop"] = loop
    output = io.BytesIO()
    frames[0].save(output, format=_PILLOW_FORMATS[job.target], **options)
    return output.getvalue()


def reencode(
    data: bytes,
    *,
    square: bool = True,
    size: int | None = None,
    format: str | None = None,  # noqa: A002 - the name the issue promises
    policy: PicturePolicy | None = None,
    field: str = "picture",
) -> PreparedPicture:
    """Rebuild a picture from its pixels: orient, centre-crop to a square, resize, re-encode.

    Needs the optional ``[images]`` extra (Pillow). The input first goes
    through :func:`prepare_picture`, so Pillow only sees a checked file without metadata
    and is told which format to expect. The EXIF orientation is applied to the pixels; nothing
    of the original metadata survives, and the result is checked by
    :func:`prepare_picture`. Animations stay animated when the output format can animate
    (PNG, GIF, WebP); JPEG output keeps the first frame. Transparent pixels become white
    in JPEG output.

    Args:
        data: The uploaded file.
        square: Centre-crop to a square (the shorter side).
        size: Resize so that the longer side is ``size`` pixels (up or down); ``None``
            keeps the size. Must lie within the policy's minimum and maximum sizes.
        format: Output format, ``"png"``, ``"jpeg"``, ``"gif"``, ``"webp"`` or a media
            type; ``None`` keeps the input's format.
        policy: The limits to apply to the input and the output.
        field: The field name to put in errors.

    Returns:
        The re-encoded picture, stripped and checked.

    Raises:
        MissingExtraError: Pillow is not installed.
        ValidationError: Any code :func:`inspect_image` raises (for the input, and for the
            output: a PNG made from a large photo can exceed ``max_bytes``),
            ``<field>.corrupt`` when Pillow cannot decode the file, ``size.out_of_range``,
            or ``format.unsupported_type``.
    """
    policy = policy if policy is not None else _DEFAULT_POLICY
    _check_target_size(size, policy)
    target = None if format is None else _target_type(format)
    # Pillow only ever sees a checked file without metadata, trailing data or extras.
    prepared = prepare_picture(data, policy=policy, field=field)
    info = prepared.info
    job = _Reencoding(
        target=target or info.media_type,
        orientation=info.orientation,
        square=square,
        size=size,
    )
    try:
        from PIL import Image  # noqa: PLC0415 - Pillow is an optional extra, imported lazily
    except ImportError as exc:
        raise MissingExtraError("images", "re-encoding pictures") from exc
    try:
        encoded = _pillow_reencode(prepared.data, info, job, policy, field)
    except ValidationError:
        raise
    except Image.DecompressionBombError as exc:
        raise ValidationError.single(
            field,
            "too_many_pixels",
            "the picture has too many pixels",
            limit=policy.max_pixels,
            actual=info.width * info.height,
        ) from exc
    except (OSError, ValueError, EOFError, SyntaxError, struct.error, IndexError, KeyError) as exc:
        raise ValidationError.single(
            field,
            "corrupt",
            f"the picture is damaged or not a valid {_NAMES[info.media_type]} file",
            media_type=info.media_type,
            reason="the image data could not be decoded",
        ) from exc
    return prepare_picture(encoded, policy=policy, field=field, keep_orientation=False)

"""The one image loader: a file (or stdin's bytes) in, a validated RGB array out.

Pillow decodes only PNG, JPEG, WebP, GIF (first frame) and BMP, and HEIC/HEIF
(phones' photos) through pillow-heif where it is installed (the `heic` extra); the header's size is
checked against a pixel limit before any pixel is decoded (decompression bombs);
EXIF orientation is applied; transparency is laid on white (screenshots and logos
read as they look); 16-bit and other modes are brought to 8-bit RGB. The file's
EXIF block is kept, as bytes, for vision/facts/photo.py (date, camera, GPS). Never a URL.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from askgpt.runtime.errors import ImageError, InputNotFoundError

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
HEIF = "HEIF"  # pillow-heif's format name, for .heic/.heif files
# ISO base media "ftyp" brands of HEIF stills and sequences (ISO/IEC 23008-12).
HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1")
MAX_EXIF_BYTES = 256 * 1024  # a JPEG's EXIF segment is at most 64 KB; more is not metadata
# What Pillow raises on EXIF it cannot parse: such metadata is skipped, never an error.
_EXIF_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, SyntaxError,
                struct.error, OSError)
MAX_PIXELS = 40_000_000  # e.g. 8000 x 5000; a decoded RGB image this size is 120 MB
MAX_BYTES = 64 * 1024 * 1024
STDIN = "-"


@dataclass(frozen=True, eq=False)
class LoadedImage:
    source: str  # the name the user gave, or "stdin"
    pixels: np.ndarray  # (H, W, 3) uint8, RGB, orientation applied
    format: str  # PNG, JPEG, ...
    sha256: str  # of the file's bytes: identifies the image in logs and caches
    exif: bytes = b""  # the file's EXIF block as read (orientation as in the file); b"" if none

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def read_image_bytes(path: str) -> bytes:
    """A named image file's bytes; a missing one is exit 3."""
    hint = "check the path given to -i/--image"
    p = Path(path).expanduser()
    try:
        size = p.stat().st_size
        if p.is_dir():
            raise InputNotFoundError(f"{path} is a folder, not an image", hint=hint)
        if size > MAX_BYTES:
            raise ImageError(f"image {path} is {size / 1e6:.0f} MB; the limit is {MAX_BYTES // 2**20} MB")
        return p.read_bytes()
    except FileNotFoundError as exc:
        raise InputNotFoundError(f"image not found: {path}", hint=hint) from exc
    except OSError as exc:  # it exists but cannot be read (permissions, I/O): exit 1, not "not found"
        raise ImageError(f"cannot read image {path}: {exc.strerror or exc}") from exc


def _to_rgb(img: Any) -> Any:
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / 32-bit greyscale: scale the range actually used to 0..255.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def is_heif(data: bytes) -> bool:
    """An ISO base media file whose brand is HEIF (an iPhone's .heic photo)."""
    return data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS


def _heif_opener() -> None:
    """Registers pillow-heif's opener with Pillow (again is harmless), only when a HEIF file is given:
    most images never pay for importing it."""
    try:
        import pillow_heif
    except ImportError as exc:
        raise ImageError("this is a HEIC/HEIF photo, and pillow-heif (which reads them) is not installed",
                         hint='pip install "askgpt[heic]" (pillow-heif), or convert the photo to JPEG') from exc
    pillow_heif.register_heif_opener()


def _exif_bytes(img: Any) -> bytes:
    """The EXIF block as the file has it (JPEG/WebP/PNG/HEIF), else Pillow's own reading
    (PNG text chunks), else b"". Odd EXIF is never an error here: vision/facts/photo.py judges it."""
    raw = img.info.get("exif")
    if isinstance(raw, bytes) and raw:
        return raw if len(raw) <= MAX_EXIF_BYTES else b""
    try:
        exif = img.getexif()
        raw = exif.tobytes() if len(exif) else b""
    except _EXIF_ERRORS:
        return b""
    return raw if len(raw) <= MAX_EXIF_BYTES else b""


@contextmanager
def _no_warnings() -> Iterator[None]:
    """Pillow warns (to stderr) on truncated or corrupt EXIF, which is then skipped:
    the library never prints."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def decode_image(data: bytes, source: str) -> LoadedImage:
    """Decode bytes already read; raises `ImageError` (exit 1) naming ``source``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise ImageError(f"{source} is empty, not an image")
    if len(data) > MAX_BYTES:
        raise ImageError(f"image {source} is over the {MAX_BYTES // 2**20} MB limit")
    formats = list(FORMATS)
    if is_heif(data):
        _heif_opener()
        formats.append(HEIF)
    try:
        with _no_warnings(), Image.open(io.BytesIO(data), formats=formats) as img:
            width, height = img.size
            if width < 1 or height < 1:
                raise ImageError(f"{source} has no pixels ({width}x{height})")
            if width * height > MAX_PIXELS:
                raise ImageError(f"{source} is {width}x{height} pixels; the limit is {MAX_PIXELS:,} pixels",
                                 hint="scale it down first")
            fmt = str(img.format)
            img.seek(0)  # animated GIF/WebP: the first frame
            img.load()
            exif = _exif_bytes(img)
            try:
                oriented = ImageOps.exif_transpose(img) or img
            except _EXIF_ERRORS:
                oriented = img  # an orientation Pillow cannot read: the pixels as stored, not an error
            rgb = _to_rgb(oriented)
            pixels = np.asarray(rgb, dtype=np.uint8).copy()
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError(f"{source} is not an image askgpt can read",
                         hint=f"use one of {', '.join(FORMATS)}") from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, MemoryError) as exc:
        raise ImageError(f"{source} is a damaged or unsupported image: {exc}") from exc
    return LoadedImage(source, pixels, fmt, hashlib.sha256(data).hexdigest(), exif)


DATA_URL_MAX_SIDE = 1024  # what vision models read well; larger only costs upload and tokens


def data_url(image: LoadedImage) -> str:
    """The image as a ``data:image/...;base64`` URL, re-encoded from the validated pixels
    (never the original bytes): JPEG for photos, PNG for images with few colours
    (screenshots, text), at most `DATA_URL_MAX_SIDE` pixels a side."""
    import base64

    from PIL import Image

    img = Image.fromarray(image.pixels, "RGB")
    if max(img.size) > DATA_URL_MAX_SIDE:
        img.thumbnail((DATA_URL_MAX_SIDE, DATA_URL_MAX_SIDE), Image.Resampling.LANCZOS)
    few_colours = img.getcolors(maxcolors=256) is not None
    buf = io.BytesIO()
    if few_colours:
        img.save(buf, format="PNG", optimize=True)
    else:
        img.save(buf, format="JPEG", quality=90)
    kind = "png" if few_colours else "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def load_image(path: str, *, stdin: bytes | None = None) -> LoadedImage:
    """``path`` ``-`` reads the image from stdin's bytes (given by the caller)."""
    if path == STDIN:
        if stdin is None:
            raise ImageError("-i - reads an image from stdin, but nothing was piped in")
        return decode_image(stdin, "stdin")
    return decode_image(read_image_bytes(path), path)

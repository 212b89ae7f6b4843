"""What a photo file itself says, as plain sentences for the model: when it was taken, with
what camera, where (only when the user allows it), and its main colours.

Everything comes from the loaded image: its EXIF block (kept by vision/images.py for
files and stdin alike; orientation is already applied to the pixels there) and its pixels.
EXIF is untrusted input: each field is checked on its own, and a value that does not parse
or is out of range is skipped, never an error and never a guess (a GPS position without
its N/S or E/W reference, the 0,0 that receivers write without a fix, a date of
0000:00:00). Camera names are cleaned to printable text of bounded length.
"""

from __future__ import annotations

import math
import re
import struct
import unicodedata
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from askgpt.vision.facts.colours import colour_phrase, dominant_colours
from askgpt.vision.facts.places import nearest_place
from askgpt.vision.images import LoadedImage

# EXIF tags (CIPA DC-008 / TIFF 6.0).
MAKE, MODEL, DATETIME, ORIENTATION = 0x010F, 0x0110, 0x0132, 0x0112
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
DATETIME_ORIGINAL, OFFSET_TIME, OFFSET_TIME_ORIGINAL = 0x9003, 0x9010, 0x9011
GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON, GPS_ALT_REF, GPS_ALT, GPS_STATUS = 1, 2, 3, 4, 5, 6, 9

# What Pillow raises on EXIF it cannot parse (measured with mutated EXIF blocks in the tests).
EXIF_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, SyntaxError,
               ZeroDivisionError, RecursionError, struct.error, OSError)
MAX_NAME = 48  # a camera make or model longer than this is not a name
_DATE = re.compile(r"\s*(\d{4})[:\-/.](\d{1,2})[:\-/.](\d{1,2})(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?")
_OFFSET = re.compile(r"\s*([+-])(\d{2}):?(\d{2})\s*$")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")


@dataclass(frozen=True)
class PhotoFacts:
    taken: datetime | None = None  # the camera's local time; aware when the file gives the offset
    camera: str | None = None  # "Canon EOS 80D", "Apple iPhone 12"
    gps: tuple[float, float] | None = None  # (latitude, longitude), degrees, south and west negative
    place: str | None = None  # "near Lyon, Auvergne-Rhône-Alpes, France"
    colours: tuple[tuple[str, float], ...] = ()  # (name, share of the image), largest first
    altitude: float | None = None  # metres above sea level (negative below)

    def when(self) -> str | None:
        """"Taken on 14 July 2021 at 18:05 with a Canon EOS 80D.", or None."""
        when = _when(self.taken) if self.taken is not None else ""
        if when and self.camera:
            return f"Taken {when} with {_article(self.camera)} {self.camera}."
        if when:
            return f"Taken {when}."
        if self.camera:
            return f"Taken with {_article(self.camera)} {self.camera}."
        return None

    def where(self) -> str | None:
        """"Taken near Lyon, France (45.7640° N, 4.8357° E).", or None."""
        if self.gps is None:
            return None
        lat, lon = self.gps
        position = f"{abs(lat):.4f}° {'N' if lat >= 0 else 'S'}, {abs(lon):.4f}° {'E' if lon >= 0 else 'W'}"
        return f"Taken {self.place} ({position})." if self.place else f"Taken at {position}."

    def colour(self) -> str | None:
        """"The main colours are blue and white.", or None."""
        if not self.colours:
            return None
        phrase = colour_phrase(self.colours)
        if phrase.startswith("mostly "):
            return f"The colours are {phrase}."
        if len(self.colours) == 1:
            return f"The main colour is {phrase}."
        return f"The main colours are {phrase}."

    def phrases(self, include_location: bool) -> list[str]:
        """Plain sentences for the model, in this order: when and with what, where (only
        with ``include_location``: a served model gets GPS only when the user opts in),
        colours. Nothing for a fact the file does not give."""
        found = (self.when(), self.where() if include_location else None, self.colour())
        return [sentence for sentence in found if sentence is not None]


def read_facts(image: LoadedImage, *, colours: bool = True) -> PhotoFacts:
    """The facts of one loaded image (file or stdin: both keep their EXIF block). The place
    is looked up offline whenever there is a GPS position; whether it is said is up to
    `PhotoFacts.phrases`."""
    exif = _parse_exif(image.exif)
    taken = _taken(exif)
    camera = _camera(exif)
    gps, altitude = _gps(exif)
    place = nearest_place(*gps) if gps is not None else None
    return PhotoFacts(
        taken=taken, camera=camera, gps=gps, place=place.phrase() if place is not None else None,
        colours=dominant_colours(image.pixels) if colours else (), altitude=altitude)


@dataclass(frozen=True)
class _Exif:
    main: dict[int, Any]
    exif: dict[int, Any]
    gps: dict[int, Any]


def _parse_exif(raw: bytes) -> _Exif:
    if not raw:
        return _Exif({}, {}, {})
    from PIL import Image

    exif = Image.Exif()

    def safe(read: Callable[[], Any]) -> dict[int, Any]:
        try:
            with warnings.catch_warnings():  # Pillow warns on truncated EXIF
                warnings.simplefilter("ignore")
                return dict(read())
        except EXIF_ERRORS:
            return {}

    def main() -> Any:
        exif.load(raw)
        return exif

    loaded = safe(main)
    if not loaded:
        return _Exif({}, {}, {})
    return _Exif(loaded, safe(lambda: exif.get_ifd(EXIF_IFD)), safe(lambda: exif.get_ifd(GPS_IFD)))


def _text(value: Any, limit: int = MAX_NAME) -> str | None:
    """Printable text from an EXIF string, or None."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    value = value.split("\x00", 1)[0]
    cleaned = "".join(c if unicodedata.category(c)[0] not in "CZ" else " " for c in value)
    cleaned = " ".join(cleaned.replace("\ufffd", " ").split())
    if not cleaned or len(cleaned) > limit:
        return None
    return cleaned


def _number(value: Any) -> float | None:
    if isinstance(value, (bytes, str)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _camera(exif: _Exif) -> str | None:
    make, model = _text(exif.main.get(MAKE)), _text(exif.main.get(MODEL))
    if model is None:
        return make
    if make is None:
        return model
    # "Canon" + "Canon EOS 80D", "NIKON CORPORATION" + "NIKON D750": the model says the make.
    if model.casefold().startswith(make.split()[0].casefold()):
        return model
    return f"{make} {model}"


def _offset(value: Any) -> timezone | None:
    text = _text(value, 10)
    match = _OFFSET.match(text) if text else None
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14):
        return None
    return timezone(-delta if sign == "-" else delta)


def _taken(exif: _Exif) -> datetime | None:
    for value, offset in ((exif.exif.get(DATETIME_ORIGINAL), exif.exif.get(OFFSET_TIME_ORIGINAL)),
                          (exif.main.get(DATETIME), exif.exif.get(OFFSET_TIME))):
        text = _text(value, 40)
        match = _DATE.match(text) if text else None
        if match is None:
            continue
        year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
        if not 1800 <= year <= 2200:  # 0000:00:00 00:00:00 is "no date" in EXIF
            continue
        try:
            return datetime(year, month, day, hour, minute, second, tzinfo=_offset(offset))
        except ValueError:
            continue
    return None


def _degrees(value: Any, ref: Any, positive: str, negative: str, limit: float) -> float | None:
    """An EXIF GPS coordinate: degrees, minutes, seconds as rationals, and its N/S or E/W
    reference; None when any part is missing, malformed or out of range."""
    ref_text = _text(ref, 8)
    if ref_text is None or ref_text[0].upper() not in (positive, negative):
        return None  # without its reference the hemisphere is a guess
    parts = value if isinstance(value, (tuple, list)) else (value,)
    if not 1 <= len(parts) <= 3:
        return None
    numbers = [_number(p) for p in parts]
    if any(n is None or n < 0 for n in numbers):
        return None
    numbers = [n for n in numbers if n is not None] + [0.0, 0.0]
    deg, minutes, seconds = numbers[:3]
    if minutes >= 60 or seconds >= 60:
        return None
    total = deg + minutes / 60 + seconds / 3600
    if total > limit:
        return None
    return -total if ref_text[0].upper() == negative else total


def _gps(exif: _Exif) -> tuple[tuple[float, float] | None, float | None]:
    g = exif.gps
    if not g:
        return None, None
    status = _text(g.get(GPS_STATUS), 4)
    if status is not None and status.upper().startswith("V"):  # "void": the receiver had no fix
        return None, None
    lat = _degrees(g.get(GPS_LAT), g.get(GPS_LAT_REF), "N", "S", 90.0)
    lon = _degrees(g.get(GPS_LON), g.get(GPS_LON_REF), "E", "W", 180.0)
    if lat is None or lon is None or (lat == 0.0 and lon == 0.0):
        return None, None
    altitude = _number(g.get(GPS_ALT)) if GPS_ALT in g else None
    if altitude is not None:
        ref = g.get(GPS_ALT_REF, 0)
        below = ref in (1, b"\x01") or (isinstance(ref, (bytes, tuple)) and len(ref) > 0 and ref[0] == 1)
        altitude = -altitude if below else altitude
        if not -12_000 <= altitude <= 100_000:
            altitude = None
    return (round(lat, 6), round(lon, 6)), altitude


def _when(taken: datetime) -> str:
    text = f"on {taken.day} {_MONTHS[taken.month - 1]} {taken.year} at {taken.hour:02d}:{taken.minute:02d}"
    offset = taken.utcoffset()
    if offset is not None:
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        text += f" (UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d})"
    return text


def _article(name: str) -> str:
    return "an" if name[:1].upper() in "AEIOU" else "a"

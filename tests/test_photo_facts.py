"""What a photo file itself says: EXIF date, camera, orientation and GPS read back from files
Pillow writes; the offline place lookup; dominant colours in words on images of known colour."""

from __future__ import annotations

import io
import random
import sys
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

from askgpt.runtime.errors import ImageError
from askgpt.vision.facts.colours import colour_name, colour_phrase, dominant_colours
from askgpt.vision.facts.photo import PhotoFacts, read_facts
from askgpt.vision.facts.places import haversine_km, nearest_place
from askgpt.vision.images import LoadedImage, decode_image, load_image


def sample(name: str) -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / name


def dms(value: float) -> tuple[float, float, float]:
    """Decimal degrees as EXIF's (degrees, minutes, seconds)."""
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = round((value - degrees - minutes / 60) * 3600, 2)
    return float(degrees), float(minutes), seconds


def exif_block(*, orientation: int | None = None, make: str | None = None, model: str | None = None,
               original: str | None = None, plain: str | None = None, offset: str | None = None,
               gps: dict[int, object] | None = None) -> Image.Exif:
    exif = Image.Exif()
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if make is not None:
        exif[ExifTags.Base.Make] = make
    if model is not None:
        exif[ExifTags.Base.Model] = model
    if plain is not None:
        exif[ExifTags.Base.DateTime] = plain
    if original is not None or offset is not None:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        if original is not None:
            sub[ExifTags.Base.DateTimeOriginal] = original
        if offset is not None:
            sub[ExifTags.Base.OffsetTimeOriginal] = offset
    if gps is not None:
        exif.get_ifd(ExifTags.IFD.GPSInfo).update(gps)
    return exif


def gps_tags(lat: float, lon: float) -> dict[int, object]:
    return {ExifTags.GPS.GPSLatitudeRef: "N" if lat >= 0 else "S", ExifTags.GPS.GPSLatitude: dms(lat),
            ExifTags.GPS.GPSLongitudeRef: "E" if lon >= 0 else "W", ExifTags.GPS.GPSLongitude: dms(lon)}


def encoded(pixels: np.ndarray, fmt: str = "JPEG", exif: Image.Exif | bytes | None = None) -> bytes:
    buf = io.BytesIO()
    kwargs: dict[str, object] = {}
    if exif is not None:
        kwargs["exif"] = exif if isinstance(exif, bytes) else exif.tobytes()
    if fmt == "JPEG":
        kwargs["quality"] = 95
    Image.fromarray(pixels).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def halves(height: int = 40, width: int = 80) -> np.ndarray:
    """Left half red, right half blue: where each half ends up shows the rotation."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = (255, 0, 0)
    pixels[:, width // 2:] = (0, 0, 255)
    return pixels


def is_red(rgb: np.ndarray) -> bool:
    return bool(rgb[0] > 200 and rgb[2] < 60)


def is_blue(rgb: np.ndarray) -> bool:
    return bool(rgb[2] > 200 and rgb[0] < 60)


# --- EXIF read back --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_date_camera_and_gps_are_read_back(fmt: str) -> None:
    block = exif_block(make="Canon", model="Canon EOS 80D", original="2021:07:14 18:05:33",
                       plain="2022:01:01 00:00:00", gps=gps_tags(45.7597, 4.8422))
    image = decode_image(encoded(halves(), fmt, block), "lyon." + fmt.lower())
    facts = read_facts(image)
    assert facts.taken == datetime(2021, 7, 14, 18, 5, 33)  # DateTimeOriginal, not DateTime
    assert facts.camera == "Canon EOS 80D"  # the model already says the make
    assert facts.gps is not None and facts.gps == pytest.approx((45.7597, 4.8422), abs=1e-4)
    assert facts.place is not None and facts.place.startswith("near Lyon") and facts.place.endswith("France")
    phrases = facts.phrases(include_location=True)
    assert phrases[0] == "Taken on 14 July 2021 at 18:05 with a Canon EOS 80D."
    assert phrases[1].startswith("Taken near Lyon, Auvergne-Rhône-Alpes, France (45.7597° N, 4.8422° E)")


def test_date_falls_back_to_datetime_and_keeps_the_offset() -> None:
    facts = read_facts(decode_image(encoded(halves(), "JPEG", exif_block(plain="2019:12:31 23:59:00")), "a.jpg"))
    assert facts.taken == datetime(2019, 12, 31, 23, 59)
    with_offset = exif_block(original="2021:07:14 18:05:33", offset="+02:00")
    facts = read_facts(decode_image(encoded(halves(), "JPEG", with_offset), "b.jpg"))
    assert facts.taken == datetime(2021, 7, 14, 18, 5, 33, tzinfo=timezone(timedelta(hours=2)))
    assert facts.phrases(False)[0] == "Taken on 14 July 2021 at 18:05 (UTC+02:00)."


@pytest.mark.parametrize("make, model, expected", [
    ("Apple", "iPhone 12", "Apple iPhone 12"),
    ("NIKON CORPORATION", "NIKON D750", "NIKON D750"),
    ("samsung\x00\x00", "SM-G991B  ", "samsung SM-G991B"),  # padding and NULs as cameras write them
    (None, "Pixel 7", "Pixel 7"),
    ("OLYMPUS", None, "OLYMPUS"),
    ("Canon\x1b[31m", "EOS\n<|im_start|>", "Canon [31m EOS <|im_start|>"),  # control bytes never pass
    ("x" * 200, "Z 9", "Z 9"),  # a "make" longer than a name is dropped
])
def test_camera_names_are_cleaned_text(make: str | None, model: str | None, expected: str) -> None:
    facts = read_facts(decode_image(encoded(halves(), "JPEG", exif_block(make=make, model=model)), "c.jpg"))
    assert facts.camera == expected
    assert all(ch.isprintable() for ch in facts.camera)
    sentence = facts.phrases(False)[0]
    assert sentence == f"Taken with {'an' if expected[0] in 'AEIOU' else 'a'} {expected}."


@pytest.mark.parametrize("orientation, top_left, bottom_left", [
    (6, is_red, is_blue),   # rotate 90 degrees clockwise: the left (red) half ends on top
    (8, is_blue, is_red),   # 90 degrees counter-clockwise: the right (blue) half ends on top
    (3, is_blue, is_blue),  # 180 degrees: blue now on the left, top to bottom
    (1, is_red, is_red),
])
def test_orientation_is_applied_to_the_pixels(orientation: int, top_left, bottom_left) -> None:  # type: ignore[no-untyped-def]
    for fmt in ("JPEG", "PNG"):
        image = decode_image(encoded(halves(40, 80), fmt, exif_block(orientation=orientation)), "o")
        rotated = orientation in (6, 8)
        assert (image.height, image.width) == ((80, 40) if rotated else (40, 80)), (fmt, orientation)
        assert top_left(image.pixels[2, 2]) and bottom_left(image.pixels[-3, 2]), (fmt, orientation)
        # The EXIF kept is the file's: its orientation says what was applied.
        kept = Image.Exif()
        kept.load(image.exif)
        assert kept.get(ExifTags.Base.Orientation) == orientation


@pytest.mark.parametrize("lat, lon, city, country", [
    (-33.8568, 151.2153, "Sydney", "Australia"),              # S, E
    (40.6892, -74.0445, "New York City", "United States"),    # N, W
    (-22.9519, -43.2105, "Rio de Janeiro", "Brazil"),         # S, W
    (45.7597, 4.8422, "Lyon", "France"),                      # N, E
])
def test_gps_hemispheres_and_the_place_read_back(lat: float, lon: float, city: str, country: str) -> None:
    tags = gps_tags(lat, lon)
    tags[ExifTags.GPS.GPSAltitude] = 58.0
    tags[ExifTags.GPS.GPSAltitudeRef] = b"\x00"
    block = exif_block(gps=tags)
    facts = read_facts(decode_image(encoded(halves(), "JPEG", block), "g.jpg"), colours=False)
    assert facts.gps is not None
    assert facts.gps[0] == pytest.approx(lat, abs=1e-4) and facts.gps[1] == pytest.approx(lon, abs=1e-4)
    assert facts.altitude == pytest.approx(58.0)
    assert facts.place is not None and f" {city}," in f" {facts.place.removeprefix('near ')}"
    assert facts.place.endswith(country)
    assert not any("Taken near" in p or "°" in p for p in facts.phrases(include_location=False))
    assert any(p.startswith(f"Taken near {city}") for p in facts.phrases(include_location=True))


def test_altitude_below_sea_level() -> None:
    tags = gps_tags(31.5, 35.5)  # the Dead Sea
    tags[ExifTags.GPS.GPSAltitude] = 430.0
    tags[ExifTags.GPS.GPSAltitudeRef] = b"\x01"
    facts = read_facts(decode_image(encoded(halves(), "JPEG", exif_block(gps=tags)), "d.jpg"), colours=False)
    assert facts.altitude == pytest.approx(-430.0)


@pytest.mark.parametrize("tags", [
    {ExifTags.GPS.GPSLatitude: dms(45.7), ExifTags.GPS.GPSLongitude: dms(4.8)},  # no N/S, E/W: hemisphere unknown
    {**gps_tags(45.7, 4.8), ExifTags.GPS.GPSLatitudeRef: "Q"},
    {**gps_tags(0.0, 0.0)},  # what receivers write without a fix
    {**gps_tags(45.7, 4.8), ExifTags.GPS.GPSStatus: "V"},  # "void"
    {**gps_tags(45.7, 4.8), ExifTags.GPS.GPSLatitude: (95.0, 0.0, 0.0)},
    {**gps_tags(45.7, 4.8), ExifTags.GPS.GPSLongitude: (4.0, 75.0, 0.0)},
    {**gps_tags(45.7, 4.8), ExifTags.GPS.GPSLatitude: (IFDRational(45, 0), 0.0, 0.0)},  # x/0: NaN
    {**gps_tags(45.7, 4.8), ExifTags.GPS.GPSLatitude: (45.0, 1.0, 2.0, 3.0)},
])
def test_bad_gps_values_are_skipped_not_guessed(tags: dict[int, object]) -> None:
    facts = read_facts(decode_image(encoded(halves(), "JPEG", exif_block(make="Canon", gps=tags)), "b.jpg"))
    assert facts.gps is None and facts.place is None
    assert facts.camera == "Canon"  # the rest of the block still counts
    assert not any("Taken near" in p or "Taken at" in p for p in facts.phrases(include_location=True))


@pytest.mark.parametrize("value", [
    "0000:00:00 00:00:00", "2021:13:40 25:00:00", "    ", "yesterday", "1066:10:14 09:00:00"])
def test_bad_dates_are_skipped(value: str) -> None:
    facts = read_facts(decode_image(encoded(halves(), "JPEG", exif_block(original=value)), "d.jpg"))
    assert facts.taken is None


def test_a_photo_without_exif_has_no_facts_but_its_colours() -> None:
    for fmt in ("JPEG", "PNG", "BMP", "GIF"):
        image = decode_image(encoded(halves(), fmt), "plain")
        assert image.exif == b""
        facts = read_facts(image)
        assert (facts.taken, facts.camera, facts.gps, facts.place, facts.altitude) == (None,) * 5, fmt
        assert {name for name, _ in facts.colours} == {"red", "blue"}, fmt  # half and half: either first
        assert facts.phrases(include_location=True) in (["The colours are mostly red and blue."],
                                                        ["The colours are mostly blue and red."]), fmt
    # A photo the project ships: no EXIF, no facts, no error.
    assert read_facts(load_image(str(sample("coffee.png")))).taken is None


def test_stdin_images_keep_their_exif() -> None:
    data = encoded(halves(), "JPEG", exif_block(make="Canon", model="Canon EOS 80D", orientation=6))
    image = load_image("-", stdin=data)
    assert image.source == "stdin" and image.height == 80
    assert read_facts(image).camera == "Canon EOS 80D"


def test_corrupted_exif_is_tolerated_silently() -> None:
    good = exif_block(make="Canon", model="Canon EOS 80D", original="2021:07:14 18:05:33", orientation=6,
                      gps=gps_tags(45.7597, 4.8422)).tobytes()
    rng = random.Random(20)
    variants = [b"Exif\x00\x00" + bytes(range(256)) * 3, good[:30], good[:10] + b"\xff\xff\xff\x7f" + good[14:]]
    for _ in range(300):
        mutated = bytearray(good)
        for _ in range(rng.randint(1, 12)):
            mutated[rng.randrange(6, len(mutated))] = rng.randrange(256)
        variants.append(bytes(mutated[: rng.randrange(8, len(mutated) + 1)]))
    parsed = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may reach stderr either
        for raw in variants:
            image = decode_image(encoded(halves(), "JPEG", raw), "odd.jpg")
            assert image.pixels.shape in ((40, 80, 3), (80, 40, 3))
            facts = read_facts(image)
            facts.phrases(include_location=True)
            # The same bytes handed over directly (as a LoadedImage from elsewhere would).
            read_facts(LoadedImage("odd", image.pixels, "JPEG", "0", raw), colours=False)
            parsed += facts.camera is not None
    assert parsed > 0  # mutations off the camera fields leave them readable: the parser is not just silent


def test_heic_photos_are_read_with_their_exif_and_orientation() -> None:
    pillow_heif = pytest.importorskip("pillow_heif")  # the `heic` extra, in the `test` extra too
    buf = io.BytesIO()
    block = exif_block(make="Apple", model="iPhone 12", original="2023:05:01 09:30:00", orientation=6,
                       gps=gps_tags(-33.8568, 151.2153))
    pillow_heif.from_pillow(Image.fromarray(halves(40, 80))).save(buf, quality=95, exif=block.tobytes())
    image = decode_image(buf.getvalue(), "IMG_0001.HEIC")
    assert image.format == "HEIF"
    assert (image.height, image.width) == (80, 40)
    assert is_red(image.pixels[2, 2]) and is_blue(image.pixels[-3, 2])
    facts = read_facts(image)
    assert facts.camera == "Apple iPhone 12" and facts.taken == datetime(2023, 5, 1, 9, 30)
    assert facts.place is not None and facts.place.startswith("near Sydney")


def test_heic_without_pillow_heif_is_one_clean_error(monkeypatch: pytest.MonkeyPatch) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    buf = io.BytesIO()
    pillow_heif.from_pillow(Image.fromarray(halves())).save(buf, quality=90)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import now fails, as where it is not installed
    with pytest.raises(ImageError, match="pillow-heif"):
        decode_image(buf.getvalue(), "x.heic")


def test_photo_facts_is_a_frozen_value() -> None:
    facts = PhotoFacts(camera="Canon EOS 80D")
    with pytest.raises(AttributeError):
        facts.camera = "other"  # type: ignore[misc]
    assert facts.phrases(True) == ["Taken with a Canon EOS 80D."]
    assert PhotoFacts().phrases(True) == []


# --- places ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lat, lon, expected", [
    (45.7597, 4.8422, "near Lyon, Auvergne-Rhône-Alpes, France"),      # not its arrondissement "Lyon 01"
    (48.8584, 2.2945, "near Paris, Île-de-France, France"),            # the Eiffel Tower
    (-33.8568, 151.2153, "near Sydney, New South Wales, Australia"),   # the Opera House
    (35.6586, 139.7454, "near Tokyo, Japan"),                          # region "Tokyo" said once
    (47.3769, 8.5417, "near Zürich, Switzerland"),                     # region "Zurich" is the same name
    (64.1466, -21.9426, "near Reykjavík, Capital Region, Iceland"),
])
def test_nearest_place_names_the_city(lat: float, lon: float, expected: str) -> None:
    place = nearest_place(lat, lon)
    assert place is not None and place.phrase() == expected


def test_far_places_say_how_far_and_bad_positions_have_none() -> None:
    place = nearest_place(27.9881, 86.925)  # Everest's summit: no town of 15,000 within 50 km
    assert place is not None and place.distance_km > 50
    assert place.phrase().startswith("about ") and " km from " in place.phrase()
    assert nearest_place(float("nan"), 0.0) is None and nearest_place(91.0, 0.0) is None
    assert nearest_place(0.0, 181.0) is None


def test_haversine_against_known_distances() -> None:
    # Paris - London: 343.5 km (great circle, mean Earth radius); a quarter meridian: 10,007.5 km.
    paris, london = np.radians((48.8566, 2.3522)), np.radians((51.5074, -0.1278))
    assert haversine_km(*paris, *london) == pytest.approx(343.5, abs=1.0)
    assert haversine_km(0.0, 0.0, np.pi / 2, 0.0) == pytest.approx(10007.5, abs=1.0)
    # Across the antimeridian: 179.9 E and 179.9 W are 22 km apart at the equator, not 40,000.
    assert haversine_km(0.0, np.radians(179.9), 0.0, np.radians(-179.9)) == pytest.approx(22.2, abs=0.2)


# --- colours ---------------------------------------------------------------------------------------------

# CSS/X11 colours and the everyday names a person would accept (57 checked while tuning; these
# are the ones whose name is not in doubt, plus light/dark variants).
NAMED = [
    ((255, 0, 0), {"red"}), ((139, 0, 0), {"dark red"}), ((220, 20, 60), {"red"}),
    ((255, 165, 0), {"orange"}), ((255, 140, 0), {"orange"}), ((255, 255, 0), {"yellow"}), ((255, 215, 0), {"yellow"}),
    ((0, 128, 0), {"green"}), ((34, 139, 34), {"green"}), ((0, 100, 0), {"dark green"}),
    ((144, 238, 144), {"light green"}), ((0, 0, 255), {"blue"}), ((0, 0, 128), {"dark blue"}),
    ((65, 105, 225), {"blue"}), ((135, 206, 235), {"light blue"}), ((173, 216, 230), {"light blue"}),
    ((128, 0, 128), {"purple"}), ((148, 0, 211), {"purple"}), ((255, 192, 203), {"pink"}), ((255, 105, 180), {"pink"}),
    ((255, 20, 147), {"pink"}), ((139, 69, 19), {"brown"}), ((160, 82, 45), {"brown"}), ((111, 78, 55), {"brown"}),
    ((0, 0, 0), {"black"}), ((255, 255, 255), {"white"}), ((245, 245, 220), {"white"}), ((128, 128, 128), {"grey"}),
    ((192, 192, 192), {"light grey"}), ((64, 64, 64), {"dark grey"}),
]


@pytest.mark.parametrize("rgb, names", NAMED)
def test_named_colours(rgb: tuple[int, int, int], names: set[str]) -> None:
    assert colour_name(rgb) in names
    solid = np.broadcast_to(np.asarray(rgb, np.uint8), (30, 50, 3)).copy()
    (name, share), = dominant_colours(solid)
    assert name in names and share == 1.0


def test_mixed_images_give_shares_and_a_phrase() -> None:
    pixels = np.zeros((100, 100, 3), np.uint8)
    pixels[:65] = (135, 206, 235)   # sky
    pixels[65:85] = (255, 255, 255)  # snow
    pixels[85:] = (34, 139, 34)      # grass
    colours = dominant_colours(pixels)
    assert [name for name, _ in colours] == ["light blue", "white", "green"]
    assert [share for _, share in colours] == pytest.approx([0.65, 0.20, 0.15], abs=0.02)
    assert colour_phrase(colours) == "mostly light blue, with some white and green"
    facts = PhotoFacts(colours=colours)
    assert facts.phrases(False) == ["The colours are mostly light blue, with some white and green."]

    pixels = np.zeros((100, 100, 3), np.uint8)
    pixels[:, :45] = (200, 30, 30)
    pixels[:, 45:85] = (255, 255, 0)
    pixels[:, 85:] = (0, 0, 0)
    colours = dominant_colours(pixels)
    assert [name for name, _ in colours] == ["red", "yellow", "black"]
    assert PhotoFacts(colours=colours).phrases(False) == ["The colours are mostly red and yellow, with some black."]
    # Below 10% a colour is not a main colour.
    pixels[:, 85:] = (255, 255, 0)
    pixels[:5] = (0, 0, 255)
    assert "blue" not in [name for name, _ in dominant_colours(pixels)]


def test_noise_and_large_images_keep_their_names() -> None:
    rng = np.random.default_rng(0)
    base = np.zeros((3000, 4000, 3), np.float64)
    base[:, :2000] = (30, 60, 200)
    base[:, 2000:] = (250, 250, 250)
    noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    colours = dominant_colours(noisy)
    assert sorted(name for name, _ in colours) == ["blue", "white"]
    assert all(share == pytest.approx(0.5, abs=0.02) for _, share in colours)


@pytest.mark.parametrize("name, main, absent", [
    # What a person sees in each photo (vision/facts/colours.py lists what was measured):
    ("chelsea.png", {"brown"}, {"blue", "green", "purple", "pink"}),            # a tabby cat on grey
    ("coffee.png", {"brown"}, {"blue", "green", "purple", "pink"}),             # coffee, wooden table, red saucer
    ("rocket.jpg", {"dark blue"}, {"green", "red", "orange", "pink"}),         # a launch pad at dusk
    ("astronaut.png", {"light grey", "black", "orange"}, {"green", "blue"}),   # orange suit, grey and black
    ("hubble_deep_field.jpg", {"black"}, {"white", "green"}),
    ("grass.png", {"grey"}, {"green"}),  # a greyscale photo of grass is grey
])
def test_skimage_photos_colours(name: str, main: set[str], absent: set[str]) -> None:
    colours = dominant_colours(load_image(str(sample(name))).pixels)
    names = [n for n, _ in colours]
    assert main <= set(names), colours
    assert names[0] in main, colours
    assert not absent & set(names), colours

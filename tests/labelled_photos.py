"""A labelled set of photos that installs offline, with the questions a user asks about them.

Sources (licences): scikit-image's bundled photos (skimage/data/README.txt: astronaut and
camera are public domain or CC0, chelsea, coffee, rocket and motorcycle are CC0/CC-BY as
listed there); matplotlib's sample ``grace_hopper.jpg`` (US Navy photo, public domain);
images rendered here (signs, colours); and copies of those photos carrying EXIF written
here (a date taken, a GPS position), as a phone's photos do. Every file gets a neutral
name (``photo-07.jpg``): a file name that names the subject is an answer in itself.

Each question's answer is scored by whole words (``\\bcat\\b``, never a substring), any of
the accepted words counting.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DESCRIBE = "Describe this picture."
# What a description must never contain: the block's machinery, not the picture.
MACHINERY = re.compile(r"\d\s*%|\b\d{2,5}\s*[x×]\s*\d{2,5}\b|\b(jpe?g|png|gif|webp|bmp|tiff?)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Case:
    name: str  # what the photo is (never the file's name)
    question: str
    accept: tuple[str, ...]  # any of these whole words is a right answer
    make: Callable[[Path], Path]  # writes the image under the given folder, returns its path
    topic: str  # animal | people | object | text | colour | date | place | describe

    def right(self, answer: str) -> bool:
        return any(re.search(rf"\b{re.escape(word)}\b", answer, re.IGNORECASE) for word in self.accept)


def _skimage(name: str) -> Image.Image:
    import skimage

    return Image.open(Path(skimage.__file__).parent / "data" / name).convert("RGB")


def _matplotlib(name: str) -> Image.Image:
    import matplotlib

    return Image.open(Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / name).convert("RGB")


def _save(image: Image.Image, folder: Path, stem: str, *, exif: Image.Exif | None = None) -> Path:
    path = folder / f"{stem}.jpg"
    image.save(path, quality=92, **({"exif": exif.tobytes()} if exif is not None else {}))
    return path


def _photo(loader: Callable[[str], Image.Image], source: str, stem: str) -> Callable[[Path], Path]:
    return lambda folder: _save(loader(source), folder, stem)


def _side_by_side(stem: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        left, right = _skimage("astronaut.png"), _matplotlib("grace_hopper.jpg").resize((512, 600))
        canvas = Image.new("RGB", (left.width + right.width + 40, max(left.height, right.height)), (235, 235, 230))
        canvas.paste(left, (0, 0))
        canvas.paste(right, (left.width + 40, 0))
        return _save(canvas, folder, stem)
    return make


def _font(size: int) -> ImageFont.ImageFont:
    for name in ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "LiberationSans-Bold.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _sign(word: str, background: tuple[int, int, int], stem: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        image = Image.new("RGB", (640, 420), (150, 170, 190))  # a sky-grey street behind the sign
        draw = ImageDraw.Draw(image)
        draw.rectangle((120, 110, 520, 310), fill=background, outline=(255, 255, 255), width=10)
        font = _font(96)
        box = draw.textbbox((0, 0), word, font=font)
        draw.text((320 - (box[2] - box[0]) / 2, 210 - (box[3] - box[1]) / 2 - box[1]), word, font=font,
                  fill=(255, 255, 255))
        draw.rectangle((310, 310, 330, 420), fill=(90, 90, 90))  # the post
        return _save(image, folder, stem)
    return make


def _solid(rgb: tuple[int, int, int], stem: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        noise = np.random.default_rng(0).normal(0, 6, (360, 480, 3))
        pixels = np.clip(np.array(rgb, dtype=float) + noise, 0, 255).astype(np.uint8)
        return _save(Image.fromarray(pixels), folder, stem)
    return make


def _with_exif(loader: Callable[[str], Image.Image], source: str, stem: str, *, taken: str | None = None,
               gps: tuple[float, float] | None = None) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = "Canon", "Canon EOS 80D"
        if taken is not None:
            exif.get_ifd(0x8769)[0x9003] = taken
        if gps is not None:
            lat, lon = gps
            ifd = exif.get_ifd(0x8825)
            ifd[1], ifd[3] = ("N" if lat >= 0 else "S"), ("E" if lon >= 0 else "W")
            ifd[2] = _dms(abs(lat))
            ifd[4] = _dms(abs(lon))
        return _save(loader(source), folder, stem, exif=exif)
    return make


def _dms(value: float) -> tuple[float, float, float]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    return (float(degrees), float(minutes), round(((value - degrees) * 60 - minutes) * 60, 2))


def cases() -> list[Case]:
    sk, mpl = _skimage, _matplotlib
    return [
        Case("cat (chelsea)", "What animal is in this picture?", ("cat", "cats", "kitten", "tabby"),
             _photo(sk, "chelsea.png", "photo-01"), "animal"),
        Case("cat (chelsea)", "Who or what is in this picture?", ("cat", "cats", "kitten", "tabby"),
             _photo(sk, "chelsea.png", "photo-02"), "animal"),
        Case("astronaut", "Who or what is in this picture?",
             ("person", "woman", "astronaut", "man", "people", "human", "lady"),
             _photo(sk, "astronaut.png", "photo-03"), "people"),
        Case("photographer (camera)", "Who or what is in this picture?",
             ("person", "man", "photographer", "people", "human"), _photo(sk, "camera.png", "photo-04"), "people"),
        Case("Grace Hopper", "Who or what is in this picture?",
             ("person", "woman", "officer", "man", "people", "human", "lady"),
             _photo(mpl, "grace_hopper.jpg", "photo-05"), "people"),
        Case("astronaut", "How many people are in this picture?", ("one", "1", "a person", "single"),
             _photo(sk, "astronaut.png", "photo-06"), "people"),
        Case("two people side by side", "How many people are in this picture?", ("two", "2", "both"),
             _side_by_side("photo-07"), "people"),
        Case("coffee cup", "What is in this picture?", ("coffee", "espresso", "cup", "mug", "cappuccino"),
             _photo(sk, "coffee.png", "photo-08"), "object"),
        Case("motorcycle", "What vehicle is in this picture?", ("motorcycle", "motorbike", "moped", "scooter"),
             _photo(sk, "motorcycle_left.png", "photo-09"), "object"),
        Case("rocket on its launch pad", "What is in this picture?", ("rocket", "spacecraft", "launch", "shuttle"),
             _photo(sk, "rocket.jpg", "photo-10"), "object"),
        Case("coins", "What is in this picture?", ("coin", "coins", "money"),
             lambda folder: _save(sk("coins.png").resize((768, 606)), folder, "photo-11"), "object"),
        Case("a STOP sign", "What does the sign say?", ("stop",), _sign("STOP", (200, 20, 30), "photo-12"), "text"),
        Case("an EXIT sign", "What does the sign say?", ("exit",), _sign("EXIT", (20, 130, 60), "photo-13"), "text"),
        Case("a page of text", "What is this page about?", ("segmentation", "markers", "coins", "region"),
             _photo(sk, "page.png", "photo-14"), "text"),
        Case("plain red", "What colour is this picture?", ("red",), _solid((200, 25, 30), "photo-15"), "colour"),
        Case("plain blue", "What colour is this picture?", ("blue",), _solid((30, 60, 200), "photo-16"), "colour"),
        Case("the rocket's sky", "What colour is the sky?", ("blue",), _photo(sk, "rocket.jpg", "photo-17"),
             "colour"),
        Case("cat with a date taken", "When was this photo taken?", ("2019", "May"),
             _with_exif(sk, "chelsea.png", "photo-18", taken="2019:05:04 16:20:00"), "date"),
        Case("coffee with a GPS position", "Where was this photo taken?", ("Paris", "France"),
             _with_exif(sk, "coffee.png", "photo-19", gps=(48.8566, 2.3522)), "place"),
        Case("astronaut", DESCRIBE, ("person", "woman", "astronaut", "man", "people", "human", "lady"),
             _photo(sk, "astronaut.png", "photo-20"), "describe"),
        Case("cat (chelsea)", DESCRIBE, ("cat", "cats", "kitten", "tabby"),
             _photo(sk, "chelsea.png", "photo-21"), "describe"),
        Case("coffee cup", DESCRIBE, ("coffee", "espresso", "cup", "mug", "cappuccino"),
             _photo(sk, "coffee.png", "photo-22"), "describe"),
        Case("photographer (camera)", DESCRIBE, ("person", "man", "photographer", "people", "human"),
             _photo(sk, "camera.png", "photo-23"), "describe"),
    ]


def build(folder: Path) -> list[tuple[Case, Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    return [(case, case.make(folder)) for case in cases()]

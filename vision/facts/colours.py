"""Dominant colours in words: "mostly blue and white, with some green".

Each pixel of a downscaled copy (at most `SIDE` pixels a side) is named in CIE Lab
(perceptual: equal steps look equally different) by its lightness L*, chroma C* and hue
angle h: low chroma is black, grey or white by lightness; otherwise the hue sector names it
(red, orange, yellow, green, blue, purple, pink), dark or muted oranges and yellows are brown, and
blue, green, red, purple, grey and brown take "light"/"dark" where their lightness is far
from the family's usual one. A histogram of those names (a family's share counted together,
named by its commonest variant) gives the top colours. Named rules rather than k-means: the
same pixel always gets the same name, and each boundary can be checked on its own.

Measured (the boundaries were set on these, so they are not a held-out score): 57 of 57 CSS/X11
named colours get an everyday name a person accepts (navy "dark blue", saddlebrown "brown",
deeppink "pink", silver "light grey"); skimage photos: chelsea "mostly brown, with some grey",
coffee "brown, with some orange and black", astronaut "light grey and black, with some orange",
rocket "mostly dark blue, with some black and dark grey", hubble "mostly black". A small subject
is not a main colour: the red motorcycle in motorcycle_left.png is 7% of the picture.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SIDE = 96  # enough pixels for shares to 1%; a 4000x3000 photo is named in milliseconds
MIN_SHARE = 0.10  # a colour below this is not among "the main colours"
MAX_COLOURS = 3

# Families in a fixed order (ties and tests are deterministic).
FAMILIES = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "grey", "white")
# (family, variant) index: variant 0 plain, 1 light, 2 dark.
_VARIANT_WORD = ("", "light ", "dark ")

# D65 white and the sRGB -> XYZ matrix (IEC 61966-2-1).
_WHITE = np.array([0.95047, 1.0, 1.08883])
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 sRGB to (..., 3) float CIE L*a*b* (D65)."""
    c = rgb.astype(np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE
    eps = 216 / 24389
    f = np.where(xyz > eps, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


def _name_indices(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each Lab row's family index (into FAMILIES) and variant (0 plain, 1 light, 2 dark)."""
    lightness, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    chroma = np.hypot(a, b)
    hue = np.degrees(np.arctan2(b, a)) % 360
    family = np.full(len(lab), FAMILIES.index("grey"))
    variant = np.zeros(len(lab), dtype=np.int64)
    fam = FAMILIES.index

    # Hue sectors (Lab hue angles of the sRGB primaries: red 40, CSS orangered 45.5, yellow 103, green 136,
    # cyan 196, blue 306, magenta 328; CSS deeppink 356, hotpink 351).
    family = np.where(hue < 42, fam("red"), family)
    family = np.where((hue >= 42) & (hue < 75), fam("orange"), family)
    family = np.where((hue >= 75) & (hue < 110), fam("yellow"), family)
    family = np.where((hue >= 110) & (hue < 190), fam("green"), family)
    family = np.where((hue >= 190) & (hue < 311), fam("blue"), family)
    family = np.where((hue >= 311) & (hue < 340), fam("purple"), family)
    family = np.where(hue >= 340, fam("pink"), family)
    # A dark pink is a deep red (raspberry, wine).
    family = np.where((family == fam("pink")) & (lightness < 40), fam("red"), family)
    # Light, soft reds and light purples read as pink (rose, salmon pinks, orchid).
    family = np.where((family == fam("red")) & (lightness > 70) & (chroma < 45), fam("pink"), family)
    family = np.where((family == fam("purple")) & (lightness > 65) & (hue > 320), fam("pink"), family)
    # Dark or muted oranges and yellows are brown (wood, coffee, soil, a tabby's fur), and so
    # are muted dark reds; a dark yellow-green (olive) is green.
    olive = (family == fam("yellow")) & (hue >= 95) & (lightness < 60)
    warm = (family == fam("orange")) | (family == fam("yellow"))
    brown = (warm & ~olive & ((lightness < 35) | ((chroma < 55) & (lightness < 80)))) | (
        (family == fam("red")) & (chroma < 30) & (lightness < 50))
    family = np.where(brown, fam("brown"), family)
    family = np.where(olive, fam("green"), family)

    # Low chroma: black, grey or white. A tint shows more on a light colour than on a dark
    # one (pale blue is blue, slate grey is grey), but a near-white with a tint is white.
    neutral = (chroma < 14 - 0.05 * lightness) | ((lightness > 90) & (chroma < 15))
    family = np.where(neutral & (lightness < 22), fam("black"), family)
    family = np.where(neutral & (lightness >= 22) & (lightness <= 88), fam("grey"), family)
    family = np.where(neutral & (lightness > 88), fam("white"), family)
    family = np.where(~neutral & (lightness < 12), fam("black"), family)  # too dark for a hue to show

    def mark(name: str, dark_below: float | None, light_above: float | None) -> None:
        nonlocal variant
        this = family == fam(name)
        if dark_below is not None:
            variant = np.where(this & (lightness < dark_below), 2, variant)
        if light_above is not None:
            variant = np.where(this & (lightness > light_above), 1, variant)

    mark("blue", 30, 65)
    mark("green", 40, 80)
    mark("red", 35, None)
    mark("purple", 25, 65)
    mark("grey", 40, 70)
    mark("brown", 25, 65)
    return family, variant


def colour_name(rgb: Sequence[int]) -> str:
    """One colour's name: ``colour_name((30, 60, 200))`` is "blue"."""
    lab = srgb_to_lab(np.asarray(rgb, dtype=np.uint8).reshape(1, 3))
    family, variant = _name_indices(lab)
    return _VARIANT_WORD[int(variant[0])] + FAMILIES[int(family[0])]


def _downscaled(pixels: np.ndarray) -> np.ndarray:
    height, width = pixels.shape[:2]
    if max(height, width) <= SIDE:
        return pixels
    from PIL import Image

    scale = SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # BOX averages each block: a fine texture keeps its mean colour, not one sampled pixel.
    return np.asarray(Image.fromarray(pixels, "RGB").resize(size, Image.Resampling.BOX))


def dominant_colours(pixels: np.ndarray, *, top: int = MAX_COLOURS,
                     min_share: float = MIN_SHARE) -> tuple[tuple[str, float], ...]:
    """The main colours of an (H, W, 3) uint8 RGB image, largest share first, as
    (name, share) pairs with shares of the whole image (0..1); at most ``top``, each at
    least ``min_share``."""
    small = _downscaled(pixels)
    family, variant = _name_indices(srgb_to_lab(small.reshape(-1, 3)))
    total = len(family)
    counts = np.bincount(family * 3 + variant, minlength=len(FAMILIES) * 3).reshape(len(FAMILIES), 3)
    shares = counts.sum(axis=1) / total
    order = sorted(range(len(FAMILIES)), key=lambda i: (-shares[i], i))
    found = []
    for i in order[:top]:
        if shares[i] < min_share:
            break
        found.append((_VARIANT_WORD[int(np.argmax(counts[i]))] + FAMILIES[i], round(float(shares[i]), 3)))
    return tuple(found)


def _and(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def colour_phrase(colours: Sequence[tuple[str, float]]) -> str:
    """Shares in words, for a reader that should not quote numbers: "mostly blue, with
    some white and green"; "blue and white, with some green"; "" when there are none."""
    if not colours:
        return ""
    names = [name for name, _ in colours]
    shares = [share for _, share in colours]
    if shares[0] >= 0.6:
        head, rest = [names[0]], names[1:]
        text = "mostly " + names[0]
    else:
        # Colours within a factor of two of the largest are main colours; the rest are "some".
        k = 1 + sum(1 for s in shares[1:] if s >= shares[0] / 2)
        head, rest = names[:k], names[k:]
        text = ("mostly " if k == 2 and sum(shares[:k]) >= 0.6 else "") + _and(head)
    if rest:
        text += ", with some " + _and(rest)
    return text

